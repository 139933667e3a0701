"""pydantic's ``ValidationError`` on a search-space file as the project's one-line :class:`InputError`:
``<file>: <dotted key>: <problem>[; allowed keys: <the section's keys>]``.

pydantic's error locations name union members and validators (``DatasetSpec``, ``function-after[...]``,
the grid's ``arm`` / ``product`` tags); the line names only keys of the file, and a grid entry by its name.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from mer_model.errors import InputError
from orchestrator.spec.config_keys import Overrides
from orchestrator.spec.grid import ArmSpec, ProductSpec
from orchestrator.spec.report import PaperReference, PaperValues
from orchestrator.spec.schema import SweepSpec

# pydantic's tags of union members in an error's location (`dataset`: a mapping or a list; `reference`:
# the paper's values of an arm or another method's numbers): not keys of the file
_UNION_MEMBERS = {"DatasetSpec", "PaperReference", "MethodReference"}


def input_error(e: ValidationError, raw: dict[str, Any], source: str) -> InputError:
    """The first error of ``e`` (the file's document ``raw`` failed :class:`SweepSpec`) as one line."""
    errors = e.errors()
    if isinstance(raw.get("dataset"), list):  # the list member's own error
        errors = [x for x in errors if tuple(x["loc"][:2]) != ("dataset", "DatasetSpec")]
    err = (errors or e.errors())[0]
    loc = tuple(err["loc"])
    extra = _allowed_keys(loc) if err["type"] == "extra_forbidden" else ""
    return InputError(f"{source}: {_dotted(loc, raw)}: {_describe(err)}{extra}")


def _dotted(loc: tuple[Any, ...], raw: Any) -> str:
    """('grid', 3, 'arm', 'beta') -> 'grid[3] (arm "X").beta' using the raw YAML to name the arm."""
    out = ""
    node = raw
    after_grid_index = False
    for part in loc:
        if after_grid_index and part in ("arm", "product"):
            after_grid_index = False
            continue  # the grid entry's discriminator tag, not a key
        after_grid_index = False
        if isinstance(part, str) and ("[" in part or part.startswith("function-") or part in _UNION_MEMBERS):
            continue  # pydantic's name of a union member, e.g. "function-after[_range(), FloatParam]"
        if isinstance(part, int) and out == "grid":
            after_grid_index = True
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({node['name']!r})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _describe(err: dict[str, Any]) -> str:
    typ, msg = err["type"], err["msg"]
    if typ == "extra_forbidden":
        return "unknown key"
    if typ == "missing":
        return "required key missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg[0].lower() + msg[1:]


def _allowed_keys(loc: tuple[Any, ...]) -> str:
    """For an unknown key: the keys the enclosing section accepts."""
    parent = [p for p in loc[:-1]
              if not isinstance(p, int) and "[" not in p and not p.startswith("function-")
              and p not in _UNION_MEMBERS]
    if parent and parent[0] == "reference":  # reference.<arm name>[.<dataset>]: the arm name is data
        ref_model = {2: PaperReference, 3: PaperValues}.get(len(parent))  # (another method's: source, values)
        return "; allowed keys: " + ", ".join(ref_model.model_fields) if ref_model else ""
    model: type[BaseModel] = SweepSpec
    for p in parent:
        if p == "arm":
            model = ArmSpec
        elif p == "product":
            model = ProductSpec
        elif p in ("base",):
            model = Overrides
        else:
            field = model.model_fields.get(p)
            ann = getattr(field, "annotation", None)
            sub = _first_model(ann)
            if sub is None:
                return ""
            model = sub
    names = [n for n in model.model_fields if n not in ("source", "text")]
    return "; allowed keys: " + ", ".join(names)


def _first_model(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in getattr(ann, "__args__", ()) or ():
        m = _first_model(a)
        if m is not None:
            return m
    return None
