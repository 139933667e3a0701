"""What a sweep holds per config and what it writes at the end: the state of each config, the rows of
``tables/arms.csv`` (and the summary the terminal prints) and of ``tables/aau_weights.csv`` (Table VIII).

Pure data and functions: the driver fills :class:`ConfigState` as folds come in; nothing here talks to
the store, the search or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mer_model.config import EXTENSION_DEFAULTS, SUMMARY_KEYS, extensions
from orchestrator.spec.folds import FoldSet
from orchestrator.spec.plan import ConfigPlan, Unit
from orchestrator.store import contract as C
from orchestrator.store.contract import METRICS, FoldRecord

# tables/arms.csv and the summary rows: identity, counts, pooled then per-fold metrics, the config keys
ARMS_HEADER = ["arm", "table", "status", "optuna_trial", "config_hash", "n_folds", "n_failed", *METRICS,
               *[f"fold_{s}_{m}" for m in METRICS for s in ("mean", "std")], *SUMMARY_KEYS]


def arms_header(n_seeds: int) -> list[str]:
    """``ARMS_HEADER``; with >= 2 seeds also ``n_seeds`` and the sd over seeds ``<m>_sd`` of each metric
    (one-seed sweeps keep the header they always had)."""
    if n_seeds < 2:
        return list(ARMS_HEADER)
    i = ARMS_HEADER.index("n_failed") + 1
    j = ARMS_HEADER.index(METRICS[-1]) + 1
    return [*ARMS_HEADER[:i], "n_seeds", *ARMS_HEADER[i:j], *[f"{m}_sd" for m in METRICS], *ARMS_HEADER[j:]]


@dataclass
class ConfigState:
    """One config of the sweep (grid arm, trial, nested chosen config): its run, units and their records."""

    plan: ConfigPlan
    run_id: str
    units: list[Unit]
    folds: FoldSet  # where its units train and test (the sweep's folds; nested: inner or outer ones)
    records: dict[tuple[int, str], FoldRecord] = field(default_factory=dict)  # (seed, subject) -> record
    in_flight: int = 0
    pruned: bool = False
    trial: Any = None  # optuna.trial.Trial for search configs
    status: str = ""
    search: Any = None  # the search.study.SearchState its trial belongs to
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def n_ok(self) -> int:
        return sum(r.ok for r in self.records.values())

    def outcome(self) -> str:
        """complete / pruned / failed / incomplete, from its records (every unit finished: complete, even if
        the pruner had spoken meanwhile)."""
        if self.n_ok == len(self.units):
            return "complete"
        if self.pruned:
            return "pruned"
        return "failed" if self.n_ok == 0 else "incomplete"

    def ordered_records(self) -> list[FoldRecord]:
        """Its records in unit order (seed by seed, the folds' order)."""
        return [self.records[(u.seed, u.subject)] for u in self.units if (u.seed, u.subject) in self.records]


@dataclass
class SweepResult:
    sweep_id: str
    experiment: str
    configs: list[ConfigState]
    folds_run: int  # folds trained by this invocation (resume: excludes folds found done)
    n_seeds: int = 1
    folds_reused: int = 0  # folds linked to an identical done unit by this invocation (reuse.py)
    nested: dict[str, Any] = field(default_factory=dict)  # nested search: Searches.nested_result()
    datasets: list[str] = field(default_factory=list)  # a union's dataset labels: per-dataset columns

    @property
    def header(self) -> list[str]:
        """``arms_header``; a non-paper option's column only when some arm turns it on (a paper sweep's
        tables/arms.csv is the same as before the options existed); on a union of datasets the pooled
        metrics of each dataset (``dataset/<label>/<m>``, and ``_sd``) after the whole's."""
        used = {k for c in self.configs for k in extensions(c.plan.config)}
        head = [k for k in arms_header(self.n_seeds) if k not in EXTENSION_DEFAULTS or k in used]
        if not self.datasets:
            return head
        i = head.index(f"{METRICS[-1]}_sd" if self.n_seeds >= 2 else METRICS[-1]) + 1
        return [*head[:i], *self.dataset_columns, *head[i:]]

    @property
    def dataset_columns(self) -> list[str]:
        sd = ("", "_sd") if self.n_seeds >= 2 else ("",)
        return [C.dataset_metric(d, f"{m}{x}") for d in self.datasets for m in METRICS for x in sd]

    def rows(self) -> list[dict[str, Any]]:
        """One row per config, keyed by :attr:`header`; pooled metrics (mean over seeds, and their sd)
        only for a complete config."""
        out = []
        pooled = [*METRICS, *[f"{m}_sd" for m in METRICS if self.n_seeds >= 2]]
        for c in self.configs:
            row: dict[str, Any] = {"arm": c.plan.arm, "table": c.plan.table, "status": c.status,
                                   "optuna_trial": "" if c.plan.optuna_trial is None else c.plan.optuna_trial,
                                   "config_hash": c.plan.config_hash}
            row.update({k: c.summary.get(k, "") for k in ARMS_HEADER if k.startswith(("n_", "fold_"))})
            if self.n_seeds >= 2:
                row["n_seeds"] = self.n_seeds
            pooled_now = [*pooled, *self.dataset_columns]
            row.update({m: c.summary.get(m, "") if c.status == "complete" else "" for m in pooled_now})
            row.update({k: c.plan.config.get(k) for k in SUMMARY_KEYS})
            out.append(row)
        return out

    @property
    def incomplete(self) -> list[str]:
        return [c.plan.arm for c in self.configs if c.status not in ("complete", "pruned")]


def _subject_aau(c: ConfigState, subjects: list[str]) -> list[tuple[str, dict[int, float]]]:
    """(subject, layer -> AAU weight) over the complete folds of ``c``; a subject's weight is the mean over
    its seeds (one seed: the fold's own weight)."""
    per = []
    for s in subjects:
        ws = [r.aau for (_, subj), r in c.records.items() if subj == s and r.ok]
        if ws:
            layers = sorted(set.intersection(*(set(w) for w in ws)))
            per.append((s, {r: float(np.mean([w[r] for w in ws])) for r in layers}))
    return per


def aau_rows(configs: list[ConfigState], subjects: list[str]) -> list[list[Any]]:
    """Paper Table VIII per AAU arm: ``arm, subject, layer1..layer4`` (blank where the arm has no such
    layer), then the arm's ``Average`` row over its complete folds."""
    rows: list[list[Any]] = []
    for c in configs:
        if c.plan.config.get("au_loss") != "aau":
            continue
        per = _subject_aau(c, subjects)
        if not per:
            continue
        for s, w in per:
            rows.append([c.plan.arm, s, *[w.get(r, "") for r in (1, 2, 3, 4)]])
        avg = [np.mean([w[r] for _, w in per]) if all(r in w for _, w in per) else "" for r in (1, 2, 3, 4)]
        rows.append([c.plan.arm, "Average", *avg])
    return rows


def table_order(c: ConfigState) -> tuple:
    """Grid arms (and nested chosen configs) first in the order opened, then trials by study and number."""
    if c.plan.optuna_trial is None:
        return (0,)
    return (1, c.plan.table, c.folds.outer or "", c.plan.optuna_trial)
