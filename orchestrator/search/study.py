"""The Optuna side of a sweep: a persistent study driven by ask/tell from the driver.

Why ask/tell and not Ray Tune's ``OptunaSearch`` (stack-notes, Ray 2.60 + Optuna 5): ``OptunaSearch``
hard-codes the ``NopPruner`` and records early-stopped trials COMPLETE with a partial value, and
``Tuner.restore`` on a persistent storage crashed after SIGKILL. Here one trial = one config; its value is
the objective pooled over all LOSO folds of a seed, averaged over ``protocol.seeds``, told once every
(seed, subject) unit is in. Unit metrics are reported with ``step = seed_index * n_subjects + fold_index``
(the same (seed, subject) at the same step for every trial) so ``WilcoxonPruner`` compares trials on the
same units; a pruned trial is told ``PRUNED`` and never gets a value, and a trial whose every unit finished
is told ``COMPLETE``, never ``PRUNED``.

No wasted budget (issue 13): a fully discrete space no larger than ``n_trials`` is enumerated by
``BruteForceSampler`` (each point once), and a trial asked at a point the study already evaluated takes
that result instead of training again (``trial_reuse.py``).

Resume: trials left RUNNING by a killed driver (Optuna heartbeats act only under ``study.optimize``) are
picked up again with their own parameters and told when their folds finish.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import Trial, TrialState

from orchestrator.search.trial_reuse import REUSED_FROM, evaluated_twin, is_reused, reuse
from orchestrator.spec import CategoricalParam, FloatParam, SearchSpec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _sampler(s: SearchSpec) -> optuna.samplers.BaseSampler:
    """The search's sampler; random and TPE seeded per trial number, so a resumed study does not replay
    the stream from its start (search/trial_seeds.py says what a resume reproduces). A small fully
    discrete space is enumerated instead (:func:`exhaustive`; the enumeration skips evaluated points, so a
    resume replays nothing either)."""
    from orchestrator.search.trial_seeds import PerTrialSeed

    if exhaustive(s):
        return _exhaustive_sampler(s)
    if s.sampler == "random":
        return PerTrialSeed(lambda seed: optuna.samplers.RandomSampler(seed=seed), s.seed)
    if s.sampler == "grid":
        return optuna.samplers.GridSampler(grid_space(s), seed=s.seed)
    # constant_liar: trials in flight count as bad guesses, so concurrent trials do not all ask the same point
    return PerTrialSeed(lambda seed: optuna.samplers.TPESampler(seed=seed, constant_liar=True), s.seed)


def grid_space(s: SearchSpec) -> dict[str, list[Any]]:
    """Every point of the search space (float ranges need a step): the GridSampler's space."""
    out: dict[str, list[Any]] = {}
    for k, p in s.params.items():
        if isinstance(p, CategoricalParam):
            out[k] = list(p.choices)
        else:
            assert p.step is not None, "grid sampler needs a step on float ranges (checked in spec)"
            n = int(round((p.high - p.low) / p.step))
            out[k] = [round(p.low + i * p.step, 10) for i in range(n + 1)]
    return out


def discrete_size(s: SearchSpec) -> int | None:
    """Points of the search space when every param is discrete (choices, or a float range with a step);
    None when one is continuous."""
    if any(isinstance(p, FloatParam) and p.step is None for p in s.params.values()):
        return None
    return int(np.prod([len(v) for v in grid_space(s).values()]))


def exhaustive(s: SearchSpec) -> bool:
    """A fully discrete space no larger than ``n_trials``: enumerated, every point exactly once (TPE on
    beta_fusion.yaml's 30 points evaluated about 18 distinct points in 30 trials; issue 13)."""
    size = discrete_size(s)
    return s.sampler != "grid" and size is not None and size <= s.n_trials


def n_configs(s: SearchSpec) -> int:
    """Configs a search trains: ``n_trials``, or every point of a smaller discrete space (grid sampler,
    or :func:`exhaustive`)."""
    size = discrete_size(s)
    if size is not None and (s.sampler == "grid" or exhaustive(s)):
        return min(s.n_trials, size)
    return s.n_trials


def _exhaustive_sampler(s: SearchSpec) -> optuna.samplers.BaseSampler:
    # BruteForceSampler skips points of RUNNING trials too (avoid_premature_stop=False), so the
    # concurrent trials of ask/tell never share a point; GridSampler may (stack-notes)
    with warnings.catch_warnings():  # "experimental since v3.1": its enumeration is what we rely on, tested
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.BruteForceSampler(seed=s.seed)


def _pruner(s: SearchSpec) -> optuna.pruners.BasePruner:
    if s.pruner.type == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(p_threshold=s.pruner.p_threshold,
                                             n_startup_steps=s.pruner.n_startup_steps)
    return optuna.pruners.NopPruner()


def open_study(s: SearchSpec, storage_url: str, study_name: str) -> optuna.Study:
    """Create or reattach the persistent study ``study_name`` (RDB URL or ``journal:<path>``)."""
    from orchestrator.services import open_optuna_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=open_optuna_storage(storage_url), study_name=study_name,
                               sampler=_sampler(s), pruner=_pruner(s), direction=s.direction,
                               load_if_exists=True)


def suggest(trial: Trial, s: SearchSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, p in s.params.items():
        if isinstance(p, FloatParam):
            v = trial.suggest_float(k, p.low, p.high, step=p.step, log=p.log)
            out[k] = round(v, 10) if p.step is not None else v  # 0.30000000000000004 -> 0.3
        else:
            out[k] = trial.suggest_categorical(k, p.choices)
    return out


@dataclass
class SearchState:
    """The driver's view of the study: finished count, orphans to rerun, and how many trials remain."""

    study: optuna.Study
    spec: SearchSpec
    orphans: list[Trial]

    @classmethod
    def open(cls, s: SearchSpec, storage_url: str, study_name: str) -> SearchState:
        study = open_study(s, storage_url, study_name)
        orphans = [Trial(study, t._trial_id) for t in study.get_trials(deepcopy=False)
                   if t.state == TrialState.RUNNING]
        state = cls(study, s, orphans)
        state.finish_reuses()
        return state

    def finish_reuses(self) -> None:
        """Orphans a killed driver had marked as reuses but not told yet: told from their twin now (they
        never trained), not rerun."""
        for t in list(self.orphans):
            frozen = self.study._storage.get_trial(t._trial_id)
            if is_reused(frozen):
                self.orphans.remove(t)
                twin = self.study.trials[frozen.user_attrs[REUSED_FROM]]
                value, state = reuse(self.study, t, twin)
                self.tell(t, value, state)

    def n_finished(self) -> int:
        return sum(t.state in FINISHED for t in self.study.get_trials(deepcopy=False))

    def n_trained(self) -> int:
        """Finished trials that trained (a reused trial took an earlier trial's result: trial_reuse.py)."""
        return sum(t.state in FINISHED and not is_reused(t) for t in self.study.get_trials(deepcopy=False))

    def total(self) -> int:
        return n_configs(self.spec)

    def budget(self) -> int:
        """Trials still to train (orphans are already asked). Reused trials cost nothing, but at most
        ``n_trials`` of them, so a sampler that keeps proposing evaluated points still ends the search."""
        trials = self.study.get_trials(deepcopy=False)
        if sum(is_reused(t) for t in trials) >= self.spec.n_trials:
            return 0
        n_running = sum(t.state == TrialState.RUNNING for t in trials)
        return max(0, self.total() - self.n_trained() - n_running)

    def next_trial(self) -> tuple[Trial, dict[str, Any]] | None:
        """An orphan first (its own params), else a new trial at a point not evaluated yet, if the budget
        allows (asked trials at an evaluated point are told from it: trial_reuse.py)."""
        while self.orphans:
            t = self.orphans.pop(0)
            frozen = self.study._storage.get_trial(t._trial_id)
            if set(frozen.params) != set(self.spec.params):
                # asked but never given its parameters (the driver died, or a suggest raised, in between):
                # rerun it would train the default config under the trial's name; it failed, say so
                self.tell(t, None, TrialState.FAIL)
                continue
            return t, dict(frozen.params)
        while self.budget() > 0:
            t = self.study.ask()
            params = suggest(t, self.spec)
            if not self.reused(t, params):
                return t, params
        return None

    def reused(self, trial: Trial, params: dict[str, Any]) -> bool:
        """Tell ``trial`` from an evaluated twin at ``params``, if there is one; True when told."""
        twin = evaluated_twin(self.study, params, trial.number)
        if twin is None:
            return False
        value, state = reuse(self.study, trial, twin)
        self.tell(trial, value, state)
        return True

    def report_fold(self, trial: Trial, value: float, step: int) -> bool:
        """Report one unit's metric at ``step`` (``Unit.step``); True when the pruner says stop the config."""
        frozen = self.study._storage.get_trial(trial._trial_id)
        if step not in frozen.intermediate_values:  # a resumed trial re-reports its done folds
            trial.report(value, step)
        return trial.should_prune()

    def tell(self, trial: Trial, value: float | None, state: TrialState) -> None:
        try:
            if state == TrialState.COMPLETE:
                self.study.tell(trial, value)
            else:
                self.study.tell(trial, state=state)
        except RuntimeError as e:
            # GridSampler calls study.stop() after the last grid point, which raises outside optimize();
            # the trial's state and value are stored before that (optuna/study/_tell.py, `finally`).
            if "Study.stop" not in str(e):
                raise

    def best(self) -> tuple[int, float] | None:
        try:
            b = self.study.best_trial
        except ValueError:
            return None
        return b.number, float(b.value)
