"""A nested search (``search.selection: nested``, issue 13): one outer subject's search and its choice.

Nested selection reuses the sweep's machinery: every unit is still a (config, seed, fold) unit queued in
``work_queue``, trained by the same actor pool and logged by the same tracking code; only the fold set of a
config differs (``spec/folds.py``). Per outer subject ``o``:

1. a persistent Optuna study ``<study>-outer-<o>`` (optuna-dashboard shows each) whose trials (arms
   ``<name>-<o>-<n>``, table ``nested-inner``) are trained and validated on ``o``'s inner folds; the
   objective is pooled over the inner validation predictions (mean over seeds), pruning and reuse as in
   any search;
2. once the study has finished its budget, the best inner trial's params are retrained on every subject
   but ``o`` (every seed) and tested once on ``o``: the *chosen* config (arm ``<name>-<o>-chosen``, table
   ``nested``), whose config run is the record of what ``o`` chose (tags ``mer.inner_best_trial``,
   ``mer.inner_value``; params);
3. the nested estimate: each metric pooled over the chosen configs' outer test predictions, per seed, then
   the mean over seeds (``store.pooled.config_summary``, the sweep's own pooling), logged on the sweep run as
   ``nested_<metric>`` with ``tables/nested_choices.csv``.

Resume: studies, inner trials and chosen configs are found again by name; done folds are never rerun.

:class:`OuterSearch` is one outer subject's state; the functions below are pure; ``searches.py`` drives
them with the sweep's flat study.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.spec import SweepSpec
from orchestrator.spec.folds import FoldSet, inner_folds, outer_fold, subject_index
from orchestrator.spec.plan import ConfigPlan, config_hash, make_config
from orchestrator.store import contract as C


@dataclass
class OuterSearch:
    """One outer subject's search: its inner folds, study and (once finished) chosen config."""

    outer: str
    folds: FoldSet  # inner folds (subjects other than ``outer``)
    test: FoldSet  # the one outer fold: train on every other subject, test on ``outer``
    name: str  # arm prefix of its trials
    state: Any = None  # study.SearchState, opened after tracking
    study_name: str = ""
    chosen: Any = None  # the chosen config's sweep.results.ConfigState
    no_choice: bool = False  # every inner trial failed or was pruned: nothing to retrain
    table: str = C.INNER_TABLE


def plan_outer_searches(spec: SweepSpec, subjects: list[str], splits: list) -> list[OuterSearch]:
    """Inner folds of every outer subject (pure; a ``search.inner.k`` the data cannot meet is exit 2
    before anything is written)."""
    assert spec.search is not None
    idx = subject_index(splits)
    return [OuterSearch(o, inner_folds(idx, o, spec.search.inner, spec.source), outer_fold(idx, o),
                        f"{spec.search.name}-{o}") for o in subjects]


def inner_tags(slot: OuterSearch) -> dict[str, str]:
    return {C.OUTER_SUBJECT: slot.outer, C.NESTED_ROLE: "inner", C.OPTUNA_STUDY: slot.study_name}


def chosen_plan(spec: SweepSpec, slot: OuterSearch, number: int, data_hash: str) -> ConfigPlan:
    """The best inner trial's params, as the config retrained on every subject but the outer one."""
    assert spec.search is not None
    params = dict(slot.state.study.trials[number].params)
    cfg = make_config(spec, {**spec.search.base.set_keys(), **params})
    return ConfigPlan(arm=f"{slot.name}-chosen", table=C.CHOSEN_TABLE, config=cfg,
                      config_hash=config_hash(cfg, spec, data_hash), params=params)


def chosen_tags(slot: OuterSearch, number: int, value: float) -> dict[str, str]:
    return {C.OUTER_SUBJECT: slot.outer, C.NESTED_ROLE: "chosen", C.INNER_BEST_TRIAL: str(number),
            C.INNER_VALUE: repr(value), C.OPTUNA_STUDY: slot.study_name}


def choice_row(spec: SweepSpec, slot: OuterSearch) -> dict[str, Any]:
    """``tables/nested_choices.csv``: outer subject, inner trial chosen and its inner value, the params,
    status and the objective on the outer subject (mean over seeds; one subject, a per-fold value)."""
    assert spec.search is not None
    objective = spec.protocol.objective
    row: dict[str, Any] = {"outer_subject": slot.outer, "study": slot.study_name}
    best = slot.state.best()
    row |= {"inner_trial": best[0] if best else "", "inner_value": best[1] if best else ""}
    params = slot.chosen.plan.params if slot.chosen is not None else {}
    row |= {f"param_{k}": params.get(k, "") for k in spec.search.params}
    row["status"] = slot.chosen.status if slot.chosen is not None else "no choice"
    row[f"outer_{objective}"] = slot.chosen.summary.get(objective, "") if slot.chosen is not None else ""
    return row
