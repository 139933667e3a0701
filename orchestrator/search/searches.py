"""The Optuna side of a sweep, as the driver sees it: ask for configs, report folds, tell results.

One :class:`Searches` per sweep holds the sweep's flat study (``search.selection: test``) or one study per
outer subject (``nested``, ``nested.py``). The driver never learns how a point is chosen: it calls
:meth:`Searches.ask` when workers would idle, :meth:`Searches.report` with every finished fold (the
answer is whether to prune) and :meth:`Searches.tell` with every finished trial config. Configs are opened
through the driver's :class:`SweepHost` interface, so both sides keep their own state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from orchestrator.search.nested import (
    OuterSearch,
    choice_row,
    chosen_plan,
    chosen_tags,
    inner_tags,
    plan_outer_searches,
)
from orchestrator.spec import SweepSpec
from orchestrator.spec.folds import FoldSet
from orchestrator.spec.plan import ConfigPlan, search_config


class SweepHost(Protocol):
    """What a search needs from the sweep driver."""

    def open_config(self, plan: ConfigPlan, trial: Any = None, *, folds: FoldSet | None = None,
                    search: Any = None, extra_tags: dict[str, str] | None = None) -> Any: ...

    def finished(self, st: Any) -> bool: ...  # every unit of the config has its final record

    def has_room(self) -> bool: ...  # fewer units queued than workers could take


class Searches:
    """The sweep's studies: none (a grid sweep), its one study, or one per outer subject (nested)."""

    def __init__(self, spec: SweepSpec, data_hash: str, folds: FoldSet, splits: list,
                 note: Callable[[str], None]) -> None:
        self.spec, self.data_hash, self.folds, self.note = spec, data_hash, folds, note
        self.seeds = spec.protocol.seed_list
        self.flat: Any = None  # study.SearchState of a test-selected search
        self.nested = spec.search is not None and spec.search.selection == "nested"
        # nested: inner folds per outer subject, planned before anything is written (a bad k is exit 2)
        self.slots: list[OuterSearch] = plan_outer_searches(spec, folds.ids, splits) if self.nested else []
        self.asked: list[Any] = []  # the trial configs this run opened (ConfigState)

    def open(self, storage_url: str, study_name: str) -> None:
        """The persistent studies (``<study>``, or ``<study>-outer-<o>`` per outer subject)."""
        from orchestrator.search.study import SearchState

        if self.spec.search is None:
            return
        if not self.nested:
            self.flat = SearchState.open(self.spec.search, storage_url, study_name)
        for slot in self.slots:
            slot.study_name = f"{study_name}-outer-{slot.outer}"
            slot.state = SearchState.open(self.spec.search, storage_url, slot.study_name)

    def finished_trial_arms(self) -> list[tuple[int, str]]:
        """(number, arm) of the flat study's finished trials that had params: each must have a config run
        (a RUNNING one may have been asked just before its driver was killed, before its config run
        existed: the orphan is rerun; a trial failed before it had params never had a run)."""
        from optuna.trial import TrialState

        if self.flat is None:
            return []
        done = self.flat.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                  TrialState.FAIL))
        return [(t.number, f"{self.spec.search.name}-{t.number}") for t in done if t.params]

    # -------------------------------------------------------------------------------------- counting
    def totals(self) -> tuple[int, int]:
        """(configs, units) of every search, trained, orphaned or still to ask: for the progress display."""
        n_cfg = n_units = 0
        if self.flat is not None:
            n_cfg = self.flat.n_trained() + len(self.flat.orphans) + self.flat.budget()
            n_units = n_cfg * len(self.seeds) * len(self.folds.ids)
        for slot in self.slots:
            s = slot.state
            n = s.n_trained() + len(s.orphans) + s.budget()
            n_cfg += n + 1
            n_units += (n * len(slot.folds.ids) + 1) * len(self.seeds)
        return n_cfg, n_units

    def units_left(self) -> int:
        """Units of trials still to ask and of chosen configs not opened yet."""
        n = 0
        if self.flat is not None:
            n = (len(self.flat.orphans) + self.flat.budget()) * len(self.seeds) * len(self.folds.ids)
        for slot in self.slots:
            s = slot.state
            n += (len(s.orphans) + s.budget()) * len(slot.folds.ids) * len(self.seeds)
            n += 0 if slot.chosen is not None or slot.no_choice else len(self.seeds)
        return n

    # ------------------------------------------------------------------------------------ ask / tell
    def ask(self, host: SweepHost) -> None:
        """Open trials while fewer than ``concurrent_trials`` are in flight and workers would idle: the flat
        study's, then outer subject by outer subject; then the chosen config of every finished study."""
        studies = [(self.flat, None)] if self.flat is not None else []
        for state, slot in [*studies, *((s.state, s) for s in self.slots)]:
            while self.active(host) < self.spec.search.concurrent_trials and host.has_room():
                nxt = state.next_trial()
                if nxt is None:
                    break
                self.open_trial(host, slot, *nxt)
        self.open_chosen(host)

    def active(self, host: SweepHost) -> int:
        return sum(1 for c in self.asked if not host.finished(c))

    def open_trial(self, host: SweepHost, slot: OuterSearch | None, trial: Any, params: dict[str, Any]
                   ) -> None:
        if slot is None:
            plan = search_config(self.spec, trial.number, params, self.data_hash)
            self.asked.append(host.open_config(plan, trial, search=self.flat))
            return
        plan = search_config(self.spec, trial.number, params, self.data_hash, name=slot.name,
                             table=slot.table)
        self.asked.append(host.open_config(plan, trial, folds=slot.folds, search=slot.state,
                                           extra_tags=inner_tags(slot)))

    def open_chosen(self, host: SweepHost) -> None:
        """For each outer subject whose study is done: retrain its best inner params, test on it."""
        for slot in self.slots:
            if slot.chosen is None and not slot.no_choice and self.slot_done(slot, host):
                best = slot.state.best()
                if best is None:
                    slot.no_choice = True
                    self.note(f"outer subject {slot.outer}: no complete inner trial, nothing chosen")
                    continue
                slot.chosen = host.open_config(chosen_plan(self.spec, slot, best[0], self.data_hash),
                                               folds=slot.test, extra_tags=chosen_tags(slot, *best))

    def slot_done(self, slot: OuterSearch, host: SweepHost) -> bool:
        """Its study asked every trial and each is finished (told)."""
        if slot.state.orphans or slot.state.budget() > 0:
            return False
        return all(host.finished(c) for c in self.asked if c.search is slot.state)

    def report(self, st: Any, value: float, n_folds: int, unit: Any) -> bool:
        """A finished fold of trial config ``st``: True when the pruner stops the trial."""
        return st.search.report_fold(st.trial, value, unit.step(n_folds))

    def tell(self, st: Any) -> None:
        """A trial config has its final status: its study learns the value (seed mean), or PRUNED / FAIL."""
        from optuna.trial import TrialState

        if st.status == "complete":
            st.search.tell(st.trial, st.summary[self.spec.protocol.objective], TrialState.COMPLETE)
        else:
            st.search.tell(st.trial, None, TrialState.PRUNED if st.pruned else TrialState.FAIL)

    # ------------------------------------------------------------------------------ resume and end
    def finished_trials(self) -> Iterator[tuple[ConfigPlan, FoldSet, bool, str]]:
        """Trials an earlier run of this sweep finished: (plan, the folds it was evaluated on, pruned, the
        status its Optuna state implies), for the final tables. A trial that took an earlier trial's
        result (``trial_reuse``) has no config run and no row of its own."""
        from optuna.trial import TrialState

        from orchestrator.search.trial_reuse import is_reused

        studies = [(self.flat, self.folds, None, "search")] if self.flat is not None else []
        studies += [(s.state, s.folds, s.name, s.table) for s in self.slots]
        by_state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}
        for state, folds, name, table in studies:
            for t in state.study.get_trials(deepcopy=False, states=(*by_state, TrialState.FAIL)):
                if is_reused(t):
                    continue
                plan = search_config(self.spec, t.number, dict(t.params), self.data_hash, name=name,
                                     table=table)
                yield plan, folds, t.state == TrialState.PRUNED, by_state.get(t.state, "failed")

    def nested_result(self, summarise: Callable[[list, int], dict[str, Any]]
                      ) -> tuple[dict[str, Any], list[dict[str, Any]], bool] | None:
        """The nested estimate (``summarise``: the sweep's pooling over the chosen configs' outer test
        predictions), the choice per outer subject and whether every outer subject has one; None unless
        nested."""
        if not self.nested:
            return None
        done = [s.chosen for s in self.slots if s.chosen is not None and s.chosen.status == "complete"]
        recs = [r for c in done for r in c.records.values()]
        est = summarise(recs, len(self.slots)) if recs else {}
        return est, [choice_row(self.spec, s) for s in self.slots], len(done) == len(self.slots)
