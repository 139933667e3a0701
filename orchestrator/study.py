"""The Optuna side of a sweep: a persistent study driven by ask/tell from the driver.

Why ask/tell and not Ray Tune's ``OptunaSearch`` (stack-notes, Ray 2.60 + Optuna 5): ``OptunaSearch``
hard-codes the ``NopPruner`` and records early-stopped trials COMPLETE with a partial value, and
``Tuner.restore`` on a persistent storage crashed after SIGKILL. Here one trial = one config; its value is
the objective pooled over all LOSO folds of a seed, averaged over ``protocol.seeds``, told once every
(seed, subject) unit is in. Unit metrics are reported with ``step = seed_index * n_subjects + fold_index``
(the same (seed, subject) at the same step for every trial) so ``WilcoxonPruner`` compares trials on the
same units; a pruned trial is told ``PRUNED`` and never gets a value, and a trial whose every unit finished
is told ``COMPLETE``, never ``PRUNED``.

Resume: trials left RUNNING by a killed driver (Optuna heartbeats act only under ``study.optimize``) are
picked up again with their own parameters and told when their folds finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import Trial, TrialState

from orchestrator.spec import CategoricalParam, FloatParam, SearchSpec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _sampler(s: SearchSpec) -> optuna.samplers.BaseSampler:
    """The search's sampler; random and TPE seeded per trial number, so a resumed study does not replay
    the stream from its start (orchestrator/trial_seeds.py says what a resume reproduces)."""
    from orchestrator.trial_seeds import PerTrialSeed

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
        return cls(study, s, orphans)

    def n_finished(self) -> int:
        return sum(t.state in FINISHED for t in self.study.get_trials(deepcopy=False))

    def budget(self) -> int:
        """Trials still to ask (orphans are already asked)."""
        total = self.spec.n_trials
        if self.spec.sampler == "grid":
            total = min(total, int(np.prod([len(v) for v in grid_space(self.spec).values()])))
        n_running = sum(t.state == TrialState.RUNNING for t in self.study.get_trials(deepcopy=False))
        return max(0, total - self.n_finished() - n_running)

    def next_trial(self) -> tuple[Trial, dict[str, Any]] | None:
        """An orphan first (its own params), else a new trial if the budget allows."""
        while self.orphans:
            t = self.orphans.pop(0)
            frozen = self.study._storage.get_trial(t._trial_id)
            if set(frozen.params) != set(self.spec.params):
                # asked but never given its parameters (the driver died, or a suggest raised, in between):
                # rerun it would train the default config under the trial's name; it failed, say so
                self.tell(t, None, TrialState.FAIL)
                continue
            return t, dict(frozen.params)
        if self.budget() <= 0:
            return None
        t = self.study.ask()
        return t, suggest(t, self.spec)

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
