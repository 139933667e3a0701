"""The ``search`` section: an Optuna search over config keys (sampler, trials, parameter ranges, pruner)
and how its trials are scored (``selection``: on the LOSO test subjects, or nested).

Each parameter's ends are checked against mer_model's field for its key here; :func:`search_points`
gives the corners of the space that ``load`` checks as whole configs (so an invalid combination is refused
before Optuna could suggest it).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from orchestrator.spec.config_keys import Overrides, check_key, check_value
from orchestrator.spec.protocol import InnerSpec
from orchestrator.spec.section import MAX_CONFIGS, Section, Seed


class FloatParam(Section):
    low: float
    high: float
    step: float | None = Field(None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if not self.low < self.high:
            raise ValueError(f"low {self.low} must be < high {self.high}")
        # Optuna raises these only at suggest time, after the trial exists: it would stay RUNNING without
        # parameters and every rerun would train the default config in its place
        if self.log and self.step is not None:
            raise ValueError("step and log: true together; allowed: one of them (Optuna refuses both)")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0, got {self.low}; allowed: a positive low")
        return self

    def n_points(self) -> int:
        """Grid points of a stepped range (low, low + step, ..., high)."""
        assert self.step is not None
        return int(round((self.high - self.low) / self.step)) + 1


class CategoricalParam(Section):
    choices: list[Any] = Field(min_length=1)


class PrunerSpec(Section):
    type: Literal["none", "wilcoxon"] = "none"
    p_threshold: float = Field(0.1, gt=0, le=1)  # WilcoxonPruner: prune when p < p_threshold
    n_startup_steps: int = Field(2, ge=0)  # folds reported before the pruner may act


class SearchSpec(Section):
    name: str = "search"  # arm names are "<name>-<trial number>"
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    seed: Seed = 0  # sampler seed
    n_trials: int = Field(ge=1)
    direction: Literal["maximize", "minimize"] = "maximize"
    base: Overrides = Field(default_factory=Overrides)  # fixed keys of every trial (over `model`)
    params: dict[str, FloatParam | CategoricalParam] = Field(min_length=1)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    concurrent_trials: int = Field(2, ge=1)  # configs in flight at once (their folds fill the workers)
    # test: one study, trials scored on the LOSO test subjects (the paper's way; optimistic);
    # nested: one study per outer subject on the other subjects (orchestrator/spec/folds.py)
    selection: Literal["test", "nested"] = "test"
    inner: InnerSpec = Field(default_factory=InnerSpec)

    @model_validator(mode="after")
    def _grid_needs_steps(self) -> SearchSpec:
        if self.sampler == "grid":
            for k, p in self.params.items():
                if isinstance(p, FloatParam) and p.step is None:
                    raise ValueError(f"params.{k}: the grid sampler needs a step; allowed: low, high, step")
            sizes = [p.n_points() if isinstance(p, FloatParam) else len(p.choices)
                     for p in self.params.values()]
            if math.prod(sizes) > MAX_CONFIGS:  # GridSampler materialises every point up front
                raise ValueError(f"the grid sampler's space has {math.prod(sizes)} points; allowed: at most "
                                 f"{MAX_CONFIGS} (a coarser step)")
        return self

    @field_validator("params")
    @classmethod
    def _param_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k, p in v.items():
            check_key(k)
            values = p.choices if isinstance(p, CategoricalParam) else [p.low, p.high]
            for value in values:  # each value against mer_model's own field: its type and range, once
                check_value(k, value)
        return v


def search_points(s: SearchSpec) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, keys)`` for every categorical combination of the search at each end (low, high) of its
    float ranges, over ``base``: the points whose configs must all be valid."""
    fixed = s.base.set_keys()
    cats = {k: p.choices for k, p in s.params.items() if isinstance(p, CategoricalParam)}
    floats = {k: p for k, p in s.params.items() if isinstance(p, FloatParam)}
    keys = list(cats)
    for combo in itertools.product(*(cats[k] for k in keys)):
        for end in ("low", "high"):
            point = {**fixed, **dict(zip(keys, combo, strict=True)),
                     **{k: getattr(p, end) for k, p in floats.items()}}
            desc = ", ".join(f"{k}={v}" for k, v in dict(zip(keys, combo, strict=True)).items())
            yield f"search.params ({desc or end})", point
