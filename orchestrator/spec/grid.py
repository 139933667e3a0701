"""The ``grid`` section: named arms and cartesian products of config keys, and their expansion into
:class:`GridArm` rows (file order; a product's first key varies slowest).

An arm is an :class:`~orchestrator.spec.config_keys.Overrides` with a name, its paper table and whether
it is that table's baseline; a product names its rows with a ``str.format`` template over the keys it
varies and may ``exclude`` combinations.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from mer_model.errors import InputError
from orchestrator.spec.config_keys import Overrides, check_key
from orchestrator.spec.section import MAX_CONFIGS, Section


class ArmSpec(Overrides):
    name: str = Field(min_length=1)
    table: str = "-"  # paper table the arm belongs to: III, IV(a), IV(b), V, VI, VII, IX
    baseline: bool = False  # the row its table's other arms are tested against (tag mer.baseline)


class ProductSpec(Section):
    """A cartesian product of key values; ``name`` is a ``str.format`` template over the varied keys."""

    product: dict[str, list[Any]]
    name: str
    table: str = "-"
    base: Overrides = Field(default_factory=Overrides)
    exclude: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("product")
    @classmethod
    def _keys(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for k, vals in v.items():
            check_key(k)
            if not vals:
                raise ValueError(f"{k}: empty list; allowed: a non-empty list of values")
        return v

    @model_validator(mode="after")
    def _name_and_exclude(self) -> ProductSpec:
        keys = list(self.product)
        _check_template(self.name, keys)
        for j, ex in enumerate(self.exclude):
            # a misspelt key would match nothing and exclude nothing, silently
            bad = [k for k in ex if k not in keys]
            if bad or not ex:
                first = (bad or ["(none)"])[0]
                raise ValueError(f"exclude[{j}]: key {first!r} is not varied by this product; "
                                 f"allowed: a non-empty mapping over {', '.join(keys)}")
        return self

    def size(self) -> int:
        """Combinations before ``exclude`` (computed without expanding them)."""
        return math.prod(len(v) for v in self.product.values())


def _check_template(name: str, keys: list[str]) -> None:
    """Allow only plain ``{key}`` / ``{key:spec}`` placeholders over ``keys``: ``str.format`` would also
    evaluate ``{beta.real}`` / ``{beta[0]}`` (attribute and index access) and raise odd errors later."""
    allowed = f"placeholders among {{{'}, {'.join(keys)}}}"
    try:
        fields = [f for _, f, spec, _ in string.Formatter().parse(name) if f is not None]
        specs = [spec or "" for _, f, spec, _ in string.Formatter().parse(name) if f is not None]
    except ValueError as e:
        raise ValueError(f"name template {name!r} does not parse ({e}); allowed: {allowed}") from None
    for f, spec in zip(fields, specs, strict=True):
        if f not in keys or "{" in spec:
            raise ValueError(f"name template {name!r} has placeholder {{{f}}}; allowed: {allowed}")


def _grid_kind(v: Any) -> str:
    # called with the raw dict when validating and with the model instance when serialising
    return "product" if isinstance(v, ProductSpec) or (isinstance(v, dict) and "product" in v) else "arm"


GridEntry = Annotated[
    Annotated[ArmSpec, Tag("arm")] | Annotated[ProductSpec, Tag("product")], Discriminator(_grid_kind)
]


@dataclass(frozen=True)
class GridArm:
    name: str
    table: str
    overrides: dict[str, Any]  # keys set over the `model` / `train` defaults
    where: str  # dotted key for error messages
    baseline: bool = False


def expand_entries(grid: Sequence[ArmSpec | ProductSpec], source: str) -> list[GridArm]:
    """Every arm of the ``grid`` entries in file order; products expand in the order of their lists (first
    key slowest) and ``exclude`` removes combinations. ``source``: the file, for error messages."""
    out: list[GridArm] = []
    for i, entry in enumerate(grid):
        if isinstance(entry, ArmSpec):
            out.append(GridArm(entry.name, entry.table, entry.set_keys(), f"grid[{i}] ({entry.name!r})",
                               entry.baseline))
            continue
        rows = _product_rows(entry, i, source)
        if not rows:
            raise InputError(f"{source}: grid[{i}].exclude: removes all {entry.size()} combinations; "
                             "allowed: an exclude list that leaves at least one arm")
        out += rows
    return out


def _product_rows(entry: ProductSpec, i: int, source: str) -> list[GridArm]:
    """The arms of product ``entry`` (grid entry ``i``) left after its ``exclude``, in product order."""
    keys = list(entry.product)
    out: list[GridArm] = []
    for combo in itertools.product(*(entry.product[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        if any(all(values.get(k) == v for k, v in ex.items()) for ex in entry.exclude):
            continue
        try:
            name = entry.name.format(**values)
        except (KeyError, IndexError, ValueError) as e:
            raise InputError(
                f"{source}: grid[{i}].name: template {entry.name!r} cannot be filled ({e}); "
                f"allowed: placeholders among {{{'}, {'.join(keys)}}}"
            ) from None
        combo_desc = ", ".join(f"{k}={v}" for k, v in values.items())
        out.append(GridArm(name, entry.table, {**entry.base.set_keys(), **values},
                           f"grid[{i}].product ({combo_desc})"))
    return out


def check_grid_size(grid: Sequence[ArmSpec | ProductSpec], source: str) -> None:
    """Refuse a grid that expands to more than :data:`MAX_CONFIGS` arms, before expanding it."""
    n = sum(e.size() if isinstance(e, ProductSpec) else 1 for e in grid)
    if n > MAX_CONFIGS:
        raise InputError(f"{source}: grid: expands to {n} configurations; allowed: at most "
                         f"{MAX_CONFIGS} per file (split it, or vary fewer keys)")
