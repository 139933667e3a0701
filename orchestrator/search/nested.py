"""The steps of a nested search (``search.selection: nested``, issue 13), as methods of the sweep driver.

Nested selection reuses the sweep's machinery: every unit is still a (config, seed, fold) unit queued in
``work_queue``, trained by the same actor pool and logged by the same tracking code; only the fold set of a
config differs (``nested.py``). Per outer subject ``o``:

1. a persistent Optuna study ``<study>-outer-<o>`` (optuna-dashboard shows each) whose trials (arms
   ``<name>-<o>-<n>``, table ``nested-inner``) are trained and validated on ``o``'s inner folds; the
   objective is pooled over the inner validation predictions (mean over seeds), pruning and reuse as in
   any search;
2. once the study has finished its budget, the best inner trial's params are retrained on every subject
   but ``o`` (every seed) and tested once on ``o``: the *chosen* config (arm ``<name>-<o>-chosen``, table
   ``nested``), whose config run is the record of what ``o`` chose (tags ``mer.inner_best_trial``,
   ``mer.inner_value``; params);
3. the nested estimate: each metric pooled over the chosen configs' outer test predictions, per seed, then
   the mean over seeds (``tracking.config_summary``, the sweep's own pooling), logged on the sweep run as
   ``nested_<metric>`` with ``tables/nested_choices.csv``.

Resume: studies, inner trials and chosen configs are found again by name; done folds are never rerun.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.spec.folds import (
    CHOSEN_TABLE,
    INNER_TABLE,
    NESTED_ROLE,
    OUTER_SUBJECT,
    FoldSet,
    inner_folds,
    outer_fold,
    subject_index,
)
from orchestrator.store import contract as C

INNER_BEST_TRIAL, INNER_VALUE = "mer.inner_best_trial", "mer.inner_value"  # chosen config run tags
NESTED_CSV = "tables/nested_choices.csv"


@dataclass
class OuterSearch:
    """One outer subject's search: its inner folds, study and (once finished) chosen config."""

    outer: str
    folds: FoldSet  # inner folds (subjects other than ``outer``)
    test: FoldSet  # the one outer fold: train on every other subject, test on ``outer``
    name: str  # arm prefix of its trials
    state: Any = None  # study.SearchState, opened after tracking
    study_name: str = ""
    chosen: Any = None  # runner.ConfigState of the chosen config
    no_choice: bool = False  # every inner trial failed or was pruned: nothing to retrain
    table: str = INNER_TABLE


class NestedSteps:
    """Mixed into ``runner._Sweep``: the per-outer-subject searches and the nested estimate."""

    @property
    def nested(self) -> bool:
        return self.spec.search is not None and self.spec.search.selection == "nested"

    def plan_outer_searches(self, splits: list) -> None:
        """Inner folds of every outer subject (pure; a ``search.inner.k`` the data cannot meet is exit 2
        before anything is written)."""
        if not self.nested:
            return
        idx = subject_index(splits)
        self.slots = [OuterSearch(o, inner_folds(idx, o, self.spec.search.inner, self.spec.source),
                                  outer_fold(idx, o), f"{self.spec.search.name}-{o}") for o in self.subjects]

    def open_outer_searches(self) -> None:
        from orchestrator.search.study import SearchState

        for slot in self.slots:
            slot.study_name = f"{self.study_name}-outer-{slot.outer}"
            slot.state = SearchState.open(self.spec.search, self.svc.storage_url, slot.study_name)

    def nested_totals(self) -> tuple[int, int]:
        """(configs, units) of the nested searches, for the progress display."""
        n_cfg = n_units = 0
        for slot in self.slots:
            s = slot.state
            n = s.n_trained() + len(s.orphans) + s.budget()
            n_cfg += n + 1
            n_units += (n * len(slot.folds.ids) + 1) * len(self.seeds)
        return n_cfg, n_units

    def nested_units_left(self) -> int:
        """Units of inner trials still to ask and of chosen configs not opened yet."""
        n = 0
        for slot in self.slots:
            s = slot.state
            n += (len(s.orphans) + s.budget()) * len(slot.folds.ids) * len(self.seeds)
            n += 0 if slot.chosen is not None or slot.no_choice else len(self.seeds)
        return n

    def ask_inner_trials(self) -> None:
        """Open inner trials, outer subject by outer subject, under the sweep's ``concurrent_trials``."""
        for slot in self.slots:
            while (self.active_trials() < self.spec.search.concurrent_trials
                   and len(self.queue) < max(1, self.pool.cap())):
                nxt = slot.state.next_trial()
                if nxt is None:
                    break
                self.open_inner(slot, *nxt)

    def open_inner(self, slot: OuterSearch, trial: Any, params: dict[str, Any]) -> Any:
        from orchestrator.spec.plan import search_config

        plan = search_config(self.spec, trial.number, params, self.data_hash, name=slot.name,
                             table=INNER_TABLE)
        return self.open_config(plan, trial, folds=slot.folds, search=slot.state,
                                extra_tags={OUTER_SUBJECT: slot.outer, NESTED_ROLE: "inner",
                                            C.OPTUNA_STUDY: slot.study_name})

    def slot_done(self, slot: OuterSearch) -> bool:
        """Its study asked every trial and each is finished (told)."""
        if slot.state.orphans or slot.state.budget() > 0:
            return False
        return all(self.finished(c) for c in self.configs if c.search is slot.state and c.trial is not None)

    def open_chosen(self) -> None:
        """For each outer subject whose study is done: retrain its best inner params, test on it."""
        for slot in self.slots:
            if slot.chosen is None and not slot.no_choice and self.slot_done(slot):
                best = slot.state.best()
                if best is None:
                    slot.no_choice = True
                    self.prog.note(f"outer subject {slot.outer}: no complete inner trial, nothing chosen")
                    continue
                slot.chosen = self.open_config(self.chosen_plan(slot, best[0]), folds=slot.test,
                                               extra_tags=self.chosen_tags(slot, *best))

    def chosen_plan(self, slot: OuterSearch, number: int) -> Any:
        from orchestrator.spec.plan import ConfigPlan, config_hash, make_config

        params = dict(slot.state.study.trials[number].params)
        cfg = make_config(self.spec, {**self.spec.search.base.set_keys(), **params})
        return ConfigPlan(arm=f"{slot.name}-chosen", table=CHOSEN_TABLE, config=cfg,
                          config_hash=config_hash(cfg, self.spec, self.data_hash), params=params)

    def chosen_tags(self, slot: OuterSearch, number: int, value: float) -> dict[str, str]:
        return {OUTER_SUBJECT: slot.outer, NESTED_ROLE: "chosen", INNER_BEST_TRIAL: str(number),
                INNER_VALUE: repr(value), C.OPTUNA_STUDY: slot.study_name}

    def finish_nested(self) -> dict[str, Any]:
        """The nested estimate and the choice per outer subject, logged on the sweep run; {} unless nested."""
        if not self.nested:
            return {}
        done = [s.chosen for s in self.slots if s.chosen is not None and s.chosen.status == "complete"]
        recs = [r for c in done for r in c.records.values()]
        est = self.summary(recs, len(self.slots)) if recs else {}
        complete = len(done) == len(self.slots)
        rows = [self.choice_row(s) for s in self.slots]
        self.log_nested(est, rows, complete)
        return {"estimate": {k: v for k, v in est.items() if k != "confusion"}, "choices": rows,
                "complete": complete, "n_outer": len(self.slots)}

    def choice_row(self, slot: OuterSearch) -> dict[str, Any]:
        """``tables/nested_choices.csv``: outer subject, inner trial chosen and its inner value, the params,
        status and the objective on the outer subject (mean over seeds; one subject, a per-fold value)."""
        objective = self.spec.protocol.objective
        row: dict[str, Any] = {"outer_subject": slot.outer, "study": slot.study_name}
        best = slot.state.best()
        row |= {"inner_trial": best[0] if best else "", "inner_value": best[1] if best else ""}
        params = slot.chosen.plan.params if slot.chosen is not None else {}
        row |= {f"param_{k}": params.get(k, "") for k in self.spec.search.params}
        row["status"] = slot.chosen.status if slot.chosen is not None else "no choice"
        row[f"outer_{objective}"] = slot.chosen.summary.get(objective, "") if slot.chosen is not None else ""
        return row

    def log_nested(self, est: dict[str, Any], rows: list[dict[str, Any]], complete: bool) -> None:
        import tempfile
        from pathlib import Path

        from orchestrator.store.tracking import write_csv

        for m, v in est.items():
            # the nested estimate, and on a union of datasets each dataset's (nested_dataset/<label>/<m>)
            name = (C.parse_dataset_metric(m) or ("", m))[1]
            if name in C.METRICS or (name.endswith("_sd") and name[:-3] in C.METRICS):
                self.client.log_metric(self.sweep_run, f"nested_{m}", float(v))
        self.client.set_tag(self.sweep_run, "mer.nested_complete", str(complete).lower())
        with tempfile.TemporaryDirectory() as tmp:
            header = list(rows[0]) if rows else ["outer_subject"]
            write_csv(Path(tmp) / NESTED_CSV, header, [[r[k] for k in header] for r in rows])
            self.client.log_artifacts(self.sweep_run, tmp)
