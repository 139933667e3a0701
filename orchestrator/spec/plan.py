"""Planning: a validated spec -> named configs (flat dicts) -> (config, seed, subject) units, plus stable ids.

Pure functions, no Ray / MLflow / Optuna. The ids make resume work: ``sweep_id`` depends only on the
spec's *contents* (validated, defaults filled, so comments and key order do not matter), the experiment
name and the dataset's content hash; ``config_hash`` only on the flat config, the dataset section, the seed
and the content hash. The content hash (``LandmarkDataset.content_hash``) makes a corrected dataset (a
label fixed in the coding spreadsheet) a new sweep that trains again, not a resume of the old results.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mer_model.config import paper_free, validate_config
from orchestrator.spec.schema import SweepSpec, expand_grid


def _digest(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


# Display-only sections: they change no result, so they do not identify a sweep (editing the paper's
# reference values must not start the sweep over, and files without them keep their old ids).
_NOT_IDENTITY = {"reference", "report"}


def _with_data(obj: dict[str, Any], data_hash: str) -> dict[str, Any]:
    # "" (no dataset at hand, e.g. tests of the spec alone) leaves the digest as it was before the key
    return {**obj, "data": data_hash} if data_hash else obj


def sweep_id(spec: SweepSpec, data_hash: str = "") -> str:
    """12 hex chars from the spec contents + experiment name + ``data_hash`` (the dataset's
    ``content_hash()``); the same file on the same data gives the same id. A test-selected search leaves
    out ``search.selection`` / ``search.inner`` (added by issue 13), so its id is what it was before them."""
    contents = spec.model_dump(mode="json", exclude=_NOT_IDENTITY)
    if spec.search is not None and spec.search.selection == "test":
        for k in ("selection", "inner"):
            contents["search"].pop(k)
    return _digest(_with_data({"spec": contents, "experiment": spec.experiment}, data_hash))


def config_hash(config: dict[str, Any], spec: SweepSpec, data_hash: str = "") -> str:
    """12 hex chars from the flat config (minus dataset-derived sizes), the dataset section, the seeds (one
    seed hashes as ``seed`` did before seeds existed) and ``data_hash`` (the dataset's ``content_hash()``)."""
    cfg = {k: v for k, v in paper_free(config).items() if k not in ("num_classes", "num_aus")}
    seeds = spec.protocol.seed_list
    key: dict[str, Any] = {"seed": seeds[0]} if len(seeds) == 1 else {"seeds": list(seeds)}
    if spec.protocol.seed_scheme != "shared":  # hashed only when set: every stored config keeps its hash
        key["seed_scheme"] = spec.protocol.seed_scheme
    return _digest(_with_data({"config": cfg, "dataset": _dataset_identity(spec), **key}, data_hash))


def _dataset_identity(spec: SweepSpec) -> Any:
    """The dataset section as hashed: one dataset's mapping (as always), or the list of them."""
    if isinstance(spec.dataset, list):
        return [d.model_dump(mode="json") for d in spec.dataset]
    return spec.dataset.model_dump(mode="json")


@dataclass
class ConfigPlan:
    """One configuration to evaluate over every LOSO fold (a grid arm or an Optuna trial)."""

    arm: str  # unique within the sweep; MLflow run name of the config run
    table: str  # paper table (III ... IX) or "search"
    config: dict[str, Any]  # flat config, every default filled (num_classes / num_aus set at run time)
    config_hash: str
    optuna_trial: int | None = None
    baseline: bool = False  # its table's baseline row (tag mer.baseline=true)
    params: dict[str, Any] = field(default_factory=dict)  # Optuna's suggested values (search only)


@dataclass(frozen=True)
class Unit:
    """One unit of work, (config, seed, subject): train on every subject but ``subject`` with training seed
    ``seed``, test on ``subject``. ``attempt`` counts tries of the same unit (retries)."""

    arm: str
    subject: str
    fold_index: int  # position of the subject in the sweep's fold list
    seed: int = 0
    seed_index: int = 0  # position of the seed in protocol.seeds
    attempt: int = 1
    torch_seed: int | None = None  # seed_scheme per_unit: this unit's own training seed (torch_seed())

    @property
    def train_seed(self) -> int:
        """The seed training starts from: ``seed`` (shared scheme: every fold of a seed alike) or the
        unit's own derived seed (per_unit)."""
        return self.seed if self.torch_seed is None else self.torch_seed

    def step(self, n_subjects: int) -> int:
        """Optuna report step: ``seed_index * n_subjects + fold_index``, the same (seed, subject) pairs at
        the same steps for every trial, so the pruner compares trials unit by unit."""
        return self.seed_index * n_subjects + self.fold_index


def make_config(spec: SweepSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """Defaults (``model`` + ``train`` sections) updated by an arm's keys, validated by mer_model."""
    return validate_config({**spec.model.model_dump(), **spec.train.model_dump(), **overrides})


def grid_configs(spec: SweepSpec, data_hash: str = "") -> list[ConfigPlan]:
    """Every grid arm (named arms and expanded products) in file order; ``data_hash``: see config_hash."""
    plans = []
    for arm in expand_grid(spec):
        cfg = make_config(spec, arm.overrides)
        plans.append(ConfigPlan(arm=arm.name, table=arm.table, config=cfg,
                                config_hash=config_hash(cfg, spec, data_hash), baseline=arm.baseline))
    return plans


def search_config(spec: SweepSpec, trial_number: int, params: dict[str, Any], data_hash: str = "", *,
                  name: str | None = None, table: str = "search") -> ConfigPlan:
    """The config of Optuna trial ``trial_number`` with its suggested ``params``; arm ``<name>-<number>``
    (``name``: the search's, or a nested search's per-outer-subject prefix)."""
    assert spec.search is not None
    cfg = make_config(spec, {**spec.search.base.set_keys(), **params})
    return ConfigPlan(arm=f"{name or spec.search.name}-{trial_number}", table=table, config=cfg,
                      config_hash=config_hash(cfg, spec, data_hash), optuna_trial=trial_number,
                      params=dict(params))


def fold_subjects(all_subjects: list[str], spec: SweepSpec) -> list[str]:
    """The left-out subjects of the sweep: all of the dataset's, or ``protocol.subjects`` (checked)."""
    from mer_model.errors import InputError

    wanted = spec.protocol.subjects
    if wanted is None:
        return list(all_subjects)
    missing = [s for s in wanted if s not in all_subjects]
    if missing:
        raise InputError(f"{spec.source}: protocol.subjects: {missing[0]!r} is not in the dataset; "
                         f"allowed: {', '.join(all_subjects)}")
    return [s for s in all_subjects if s in wanted]


def sweep_folds(spec: SweepSpec, ds: Any) -> Any:
    """The sweep's fold set (``orchestrator.spec.folds.FoldSet``), by ``protocol.scheme``:

    - ``loso``: one fold per left-out subject (``protocol.subjects``, default all);
    - ``composite``: the same over the union of datasets (subjects prefixed ``<dataset>:``), each fold
      tagged with its subject's dataset, whose per-dataset metrics its predictions enter;
    - ``cross_dataset``: one fold per (train datasets, test dataset) pair (default: leave one dataset out).
    """
    from orchestrator.spec.folds import cross_dataset_folds, loso_folds, subject_origins

    if spec.protocol.scheme == "cross_dataset":
        return cross_dataset_folds(ds.origins, [d.short for d in spec.datasets], spec.protocol.pairs)
    splits = ds.loso_splits()
    subjects = fold_subjects([s for s, _, _ in splits], spec)
    origins = subject_origins(ds.subjects, ds.origins) if spec.protocol.scheme == "composite" else None
    return loso_folds(splits, subjects, origins)


def check_au_supervision(spec: SweepSpec, configs: list[ConfigPlan], folds: Any, au_mask: Any) -> None:
    """Refuse, before anything trains, an AU-loss config (a grid arm, or a search that can suggest one) on a
    fold whose training clips carry no AU labels (e.g. trained on SMIC alone): one line naming both."""
    from mer_model.errors import InputError

    bare = [fid for fid in folds.ids if not au_mask[folds.splits[fid][0]].any()]
    if not bare:
        return
    aus = [(f"grid arm {c.arm!r}", c.config["au_loss"]) for c in configs if c.config["au_loss"] != "none"]
    if spec.search is not None:
        base = {**spec.model.model_dump(), **spec.search.base.set_keys()}.get("au_loss", "none")
        choices = getattr(spec.search.params.get("au_loss"), "choices", [base])
        aus += [(f"search {spec.search.name!r}", a) for a in choices if a != "none"][:1]
    if aus:
        who, au = aus[0]
        raise InputError(f"{spec.source}: {who}: au_loss {au!r} but fold {bare[0]!r} has no training clip "
                         "with AU labels (SMIC has none); allowed: au_loss 'none' there, or training data "
                         "with AU labels")


def torch_seed(seed: int, subject: str, scheme: str = "shared") -> int:
    """The training seed of unit (seed, subject). ``shared``: ``seed`` itself (every fold of a seed starts
    from the same initial weights, the scheme of every sweep before issue 24). ``per_unit``: a 32-bit
    seed drawn by :class:`numpy.random.SeedSequence` from (seed, the subject's SHA-256): independent
    across subjects, the same on every machine and run (Python's ``hash`` of a string is not)."""
    if scheme == "shared":
        return int(seed)
    subject_int = int.from_bytes(hashlib.sha256(str(subject).encode()).digest()[:8], "big")
    return int(np.random.SeedSequence([int(seed), subject_int]).generate_state(1, dtype=np.uint32)[0])


def units_for(plan: ConfigPlan, subjects: list[str], seeds: tuple[int, ...], scheme: str = "shared"
              ) -> list[Unit]:
    """The units of ``plan``: one per (seed, left-out subject), seed by seed in file order, subjects in the
    sweep's fold order; ``scheme`` (``protocol.seed_scheme``) ``per_unit`` gives each its own training
    seed (:func:`torch_seed`)."""
    per = scheme != "shared"
    return [Unit(arm=plan.arm, subject=s, fold_index=i, seed=seed, seed_index=k,
                 torch_seed=torch_seed(seed, s, scheme) if per else None)
            for k, seed in enumerate(seeds) for i, s in enumerate(subjects)]
