"""``--set KEY=VALUE`` overrides of a search-space file, applied to the parsed YAML before validation.

``KEY`` is a dotted path with list indices (``train.epochs``, ``dataset.knobs.n_subjects``,
``grid[0].beta``); ``VALUE`` is read as YAML (``5`` an int, ``0.2`` a float, ``true`` a bool, ``[0, 1]`` a
list, ``synthme-samm`` a string). The overridden document then goes through ``parse_spec`` like the file
itself, so a bad value gets the file's one-line exit-2 error naming the key; what is hashed (sweep id) and
stored as ``spec.yaml`` is the resolved document. Errors of the override itself (no ``=``, a path that
leads nowhere) name the override as typed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import yaml

from mer_model.errors import InputError
from orchestrator.spec import safe_yaml

_NAME = r"[^.\[\]=\s]+"
_KEY = re.compile(rf"{_NAME}(\[\d+\])*(\.{_NAME}(\[\d+\])*)*")
_TOKEN = re.compile(rf"({_NAME})|\[(\d+)\]")


def parse_key(key: str, where: str) -> list[str | int]:
    """``grid[0].beta`` -> ``["grid", 0, "beta"]``; ``where`` prefixes the one-line error."""
    if not _KEY.fullmatch(key):
        raise InputError(f"{where}: key {key!r} is not a dotted key; allowed: e.g. train.epochs, "
                         "dataset.knobs.n_subjects, grid[0].beta")
    return [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _TOKEN.finditer(key)]


def _child(node: Any, part: str | int, key: str, where: str, create: bool) -> Any:
    """``node[part]``; a missing mapping key becomes an empty mapping when ``create`` (the new value's
    section may be absent from the file: validation then judges the key)."""
    if isinstance(part, int):
        if not isinstance(node, list) or part >= len(node):
            n = len(node) if isinstance(node, list) else 0
            raise InputError(f"{where}: {key}: index [{part}] is out of range; allowed: "
                             + (f"[0]..[{n - 1}]" if n else "a key of a list the file has"))
        return node[part]
    if not isinstance(node, dict):
        raise InputError(f"{where}: {key}: .{part} is under a value that is not a mapping; allowed: a key "
                         "of a section or of an arm")
    if part not in node and create:
        node[part] = {}
    return node[part]


def apply_overrides(raw: Any, sets: Sequence[str], source: str) -> tuple[dict[str, Any], str]:
    """The document ``raw`` with every ``KEY=VALUE`` of ``sets`` applied in order, and its YAML text
    (what ``spec.yaml`` stores). ``raw`` is not modified."""
    doc = copy.deepcopy(raw) if raw is not None else {}
    where = f"{source}: --set"
    if not isinstance(doc, dict):
        return doc, yaml.safe_dump(doc, sort_keys=False)  # parse_spec says what the top level must be
    for item in sets:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq:
            raise InputError(f"{where} {item!r}: no '='; allowed: KEY=VALUE, e.g. train.epochs=5")
        try:
            value = safe_yaml.load(text) if text.strip() else None
        except yaml.YAMLError:
            raise InputError(f"{where} {key}: value {text!r} is not YAML; allowed: a YAML scalar, list or "
                             "mapping") from None
        parts = parse_key(key, where)
        node: Any = doc
        for part in parts[:-1]:
            node = _child(node, part, key, where, create=True)
        last = parts[-1]
        if isinstance(last, int):
            _child(node, last, key, where, create=False)  # the index must exist: no list grows here
        elif not isinstance(node, dict):
            raise InputError(f"{where}: {key}: not under a mapping; allowed: a key of a section or an arm")
        node[last] = value
    return doc, yaml.safe_dump(doc, sort_keys=False)
