"""The ``protocol`` section: how every config is evaluated (scheme, seeds, seed scheme, cross-dataset
pairs), and the inner split of a nested search (``search.inner``), the protocol inside each outer fold.

The fold sets these describe are built by ``orchestrator/spec/folds.py``; :func:`check_protocol` checks,
once the whole file is read, that the scheme fits the file's datasets.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from mer_model.errors import InputError
from mer_model.metrics import MetricName
from orchestrator.spec.section import MAX_SEED, Section


class PairSpec(Section):
    """One cross-dataset unit: train on the datasets ``train`` (labels), test on the dataset ``test``."""

    train: list[str] = Field(min_length=1)
    test: str = Field(min_length=1)


class ProtocolSpec(Section):
    """How every config is evaluated, once per training seed.

    ``scheme``: ``loso`` (one dataset, leave one subject out), ``composite`` (several datasets as one: LOSO
    over the union, subjects prefixed by their dataset, metrics on the whole and per dataset: the MEGC2019
    composite) or ``cross_dataset`` (train on some datasets, test on another; ``pairs``, default: leave one
    dataset out, each dataset tested once after training on all the others).
    ``seeds: [0, 1, 2]`` trains every (config, fold) once per seed; ``seed: N`` is the one-seed shorthand
    (``seeds: [N]`` is normalised to it, so both give the same sweep id as before seeds existed).
    """

    scheme: Literal["loso", "composite", "cross_dataset"] = "loso"
    pairs: list[PairSpec] | None = Field(None, min_length=1)  # cross_dataset only
    seed: int = Field(0, ge=0, le=MAX_SEED, strict=True)  # one-seed shorthand; with `seeds`, their first
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)]] | None = Field(None, min_length=1)
    objective: MetricName = "uf1"  # pooled metric (mean over seeds) Optuna optimises / "best so far"
    # shared: every fold of a seed trains from the same torch seed (the stored sweeps); per_unit: each
    # (seed, subject) unit gets its own, derived with numpy's SeedSequence (plan.torch_seed; issue 24)
    seed_scheme: Literal["shared", "per_unit"] = "shared"
    retries: int = Field(1, ge=0)  # extra attempts of a failing fold before it is recorded failed
    # left-out subjects to run (default: all); training uses all others. [] would run nothing, "complete"
    subjects: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _seed_or_seeds(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "seeds" not in data:
            return data
        if "seed" in data:
            raise ValueError("seed and seeds are both given; allowed: one of them (seeds: [0, 1, 2], or "
                             "seed: 0 for one seed)")
        seeds = data["seeds"]
        first = seeds[0] if isinstance(seeds, list) and seeds else None
        if not (isinstance(first, int) and not isinstance(first, bool) and first >= 0):
            return data  # the field's own validation names what is wrong
        if len(seeds) == 1:  # seeds: [N] is seed: N
            return {**{k: v for k, v in data.items() if k != "seeds"}, "seed": seeds[0]}
        return {**data, "seed": seeds[0]}

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"{v} repeats a seed; allowed: distinct integers >= 0")
        return v

    @model_serializer(mode="wrap")
    def _without_unset_seeds(self, handler: Any) -> dict[str, Any]:
        # a one-seed protocol dumps exactly as before `seeds` existed: its sweep id does not change
        out = handler(self)
        if self.seeds is None:
            out.pop("seeds", None)
        if self.pairs is None:
            out.pop("pairs", None)
        if self.seed_scheme == "shared":  # likewise the scheme every sweep had before issue 24
            out.pop("seed_scheme", None)
        return out

    @property
    def seed_list(self) -> tuple[int, ...]:
        """The training seeds, in file order (one-seed protocols: ``(seed,)``)."""
        return tuple(self.seeds) if self.seeds else (self.seed,)


class InnerSpec(Section):
    """The inner split of a nested search (issue 13): over the subjects other than the outer one, grouped
    by subject, so no subject is ever in both an inner training set and its validation set."""

    scheme: Literal["loso", "group_kfold"] = "group_kfold"
    k: int = Field(5, ge=2)  # group_kfold: folds (at most the number of inner subjects; checked at run time)


def check_protocol(p: ProtocolSpec, labels: list[str], nested: bool, src: str) -> None:
    """The scheme fits the file's datasets (``labels``: their short names, in file order); cross-dataset
    pairs name datasets of the file; ``nested`` (a nested search) only with a LOSO-based scheme."""
    n = len(labels)
    if p.scheme == "loso" and n > 1:
        raise InputError(f"{src}: protocol.scheme: 'loso' with {n} datasets; allowed: 'composite' (LOSO over "
                         "their union) or 'cross_dataset', or one dataset")
    if p.scheme != "loso" and n < 2:
        raise InputError(f"{src}: protocol.scheme: {p.scheme!r} needs at least 2 datasets; allowed: a "
                         "`dataset` list, or scheme 'loso'")
    if p.pairs is not None and p.scheme != "cross_dataset":
        raise InputError(f"{src}: protocol.pairs: only for scheme 'cross_dataset'; allowed: remove it")
    if p.scheme != "cross_dataset":
        return
    if p.subjects is not None:
        raise InputError(f"{src}: protocol.subjects: not with scheme 'cross_dataset' (its units are "
                         "dataset pairs); allowed: remove it")
    if nested:
        raise InputError(f"{src}: search.selection: 'nested' is LOSO-based; allowed: 'test' with scheme "
                         "'cross_dataset', or scheme 'composite'")
    _check_pairs(p.pairs or [], labels, src)


def _check_pairs(pairs: list[PairSpec], labels: list[str], src: str) -> None:
    """Each pair over datasets of the file, none on both sides, each dataset tested at most once."""
    tests: set[str] = set()
    for j, pair in enumerate(pairs):
        for name in [*pair.train, pair.test]:
            if name not in labels:
                raise InputError(f"{src}: protocol.pairs[{j}]: {name!r} is not a dataset of this file; "
                                 f"allowed: {', '.join(labels)}")
        if pair.test in pair.train or len(set(pair.train)) != len(pair.train):
            raise InputError(f"{src}: protocol.pairs[{j}]: test {pair.test!r} is also trained on (or a "
                             "training dataset repeats); allowed: distinct datasets, none on both sides")
        if pair.test in tests:  # the per-dataset columns are per test dataset: one pair each
            raise InputError(f"{src}: protocol.pairs[{j}]: {pair.test!r} is tested twice; allowed: one pair "
                             "per test dataset (run another sweep for another training set)")
        tests.add(pair.test)
