"""Reading a search-space YAML file: ``load_spec(path) -> SweepSpec`` and ``parse_spec(document)``.

Everything is checked before Ray starts: unknown keys, wrong types and ranges (each section's model),
then what spans sections: the datasets and the protocol's scheme together, the grid's size and arm names
against the search's trial names, every arm / search point as a whole config against
``mer_model.config.validate_config`` (so e.g. ``aau`` with fusion layer 4 is refused here, naming the
arm) and the ``reference`` entries against the arms. A bad file raises :class:`InputError` with one line:
``<file>: <dotted key>: <problem>; allowed: <what>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mer_model.config import validate_config
from mer_model.errors import InputError
from orchestrator.spec import safe_yaml
from orchestrator.spec.dataset import check_datasets
from orchestrator.spec.grid import check_grid_size
from orchestrator.spec.protocol import check_protocol
from orchestrator.spec.pydantic_errors import input_error
from orchestrator.spec.report import check_reference
from orchestrator.spec.schema import SweepSpec, expand_grid
from orchestrator.spec.search import search_points


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read and validate a search-space YAML file, with ``--set KEY=VALUE`` ``overrides`` applied first
    (``orchestrator/spec/overrides.py``: the resolved document is validated, hashed and stored as spec.yaml).

    Raises:
        InputError: one line ``<file>: <dotted key>: <problem>; allowed: <what>`` for a missing or
            unreadable file, bad YAML, unknown keys, wrong types, out-of-range values and invalid arms.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"{p}: cannot read the file ({e.strerror}); allowed: a readable YAML file") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: byte {e.start}: not UTF-8 text; allowed: a UTF-8 YAML file") from None
    try:
        raw = safe_yaml.load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(top level)"
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise InputError(f"{p}: {where}: {problem}; allowed: a YAML mapping") from None
    if overrides:
        from orchestrator.spec.overrides import apply_overrides

        raw, text = apply_overrides(raw, overrides, str(p))
    return parse_spec(raw, str(p), text)


def parse_spec(raw: Any, source: str, text: str = "") -> SweepSpec:
    """Validate an already-parsed YAML document (see :func:`load_spec`); ``text``: the file's text, kept
    on the spec (stored as spec.yaml)."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: (top level): expected a mapping of sections; allowed keys: "
                         + ", ".join(n for n in SweepSpec.model_fields if n not in ("source", "text")))
    try:
        spec = SweepSpec.model_validate({**raw, "source": source, "text": text})
    except ValidationError as e:
        raise input_error(e, raw, source) from None
    check_datasets(spec.datasets, isinstance(spec.dataset, list), source)
    nested = spec.search is not None and spec.search.selection == "nested"
    check_protocol(spec.protocol, [d.short for d in spec.datasets], nested, source)
    check_grid_size(spec.grid, source)
    names = _check_arms(spec)
    _check_names(spec, names)
    if spec.search is not None:
        for where, point in search_points(spec.search):
            _check_config(spec, where, point)
    check_reference(spec.reference, names, ["full", *[d.short for d in spec.datasets]], source)
    return spec


def _check_arms(spec: SweepSpec) -> set[str]:
    """Every grid arm: a unique name MLflow can quote, and a valid config. Returns the arm names."""
    names: set[str] = set()
    for arm in expand_grid(spec):
        if arm.name in names:
            raise InputError(f"{spec.source}: {arm.where}: arm name {arm.name!r} is used twice; "
                             "allowed: unique names")
        if "'" in arm.name and '"' in arm.name:  # MLflow's search filter cannot quote such a name
            raise InputError(f"{spec.source}: {arm.where}: arm name {arm.name!r} has both quote characters; "
                             "allowed: at most one of ' and \"")
        names.add(arm.name)
        _check_config(spec, arm.where, arm.overrides)
    return names


def _check_names(spec: SweepSpec, names: set[str]) -> None:
    """Grid arm names must not look like Optuna trial names (``<search.name>-<n>``): both would share
    one config run (found by name), the trial would be told the arm's value and the arm would vanish."""
    if spec.search is None:
        return
    prefix = spec.search.name + "-"
    for n in sorted(names):
        if n.startswith(prefix) and n[len(prefix):].isdigit():
            raise InputError(f"{spec.source}: grid: arm name {n!r} has the form of an Optuna trial of "
                             f"search {spec.search.name!r}; allowed: a name not of the form "
                             f"'{prefix}<number>' (or another search.name)")


def _check_config(spec: SweepSpec, where: str, overrides: dict[str, Any]) -> None:
    """The ``model`` / ``train`` defaults updated by ``overrides`` are a valid config for this file's
    resources (``where``: the arm or search point, for the error line)."""
    base = {**spec.model.model_dump(), **spec.train.model_dump()}
    cfg = {**base, **overrides}
    try:
        validate_config(cfg)
    except InputError as e:
        detail = str(e).removeprefix("config: ")
        raise InputError(f"{spec.source}: {where}: {detail}") from None
    if spec.resources.packing > 1 and cfg.get("precision", "fp32") != "fp32":
        # fold-batched training refuses bf16 (vmapped BatchNorm): say so now, not once per fold at run time
        raise InputError(f"{spec.source}: {where}: precision: {cfg['precision']!r} with resources.packing "
                         f"{spec.resources.packing}; allowed: 'fp32' when folds are packed, or packing: 1")
