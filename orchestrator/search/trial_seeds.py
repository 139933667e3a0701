"""A sampler whose randomness for trial k depends only on (seed, k): resume replays no earlier point.

Optuna's seeded samplers draw from one random stream that starts at ``seed`` when the sampler is built.
A resumed sweep builds a new sampler, so its first new trial drew the *first* numbers of the stream again:
after ``kill -9`` and a rerun, trial 5 of a random search repeated trial 0's point, and the resumed study
differed from an uninterrupted one.

:class:`PerTrialSeed` builds a fresh inner sampler for each trial, seeded from
``SeedSequence([seed, trial.number])``. What a trial draws then no longer depends on how many trials this
process has asked before, only on its number and on the study's history in the storage, which resume keeps.
Hence (tests/test_adversarial.py):

- ``random``: the resumed study equals the uninterrupted one, point for point.
- ``tpe``: equal as long as each trial is asked with the same finished trials in the history, which holds
  with ``search.concurrent_trials: 1``. With more trials in flight, which trials have finished when a new one
  is asked depends on timing, resumed or not (TPE's constant liar counts the running ones as bad), so
  neither run is reproducible point for point; no point is replayed from the start of the stream either.
- ``grid`` (Optuna's ``GridSampler``, used as is): never repeats a point (visited points are read from
  the storage), but the order of the points not yet run may differ after a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


def trial_seed(seed: int, number: int) -> int:
    """An independent 32-bit seed for trial ``number`` of a search seeded ``seed``."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class PerTrialSeed(BaseSampler):
    """Delegates every call about trial k to ``make(trial_seed(seed, k))``, built when k is first seen."""

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self._make, self._seed = make, seed
        self._by_trial: dict[int, BaseSampler] = {}

    def _inner(self, trial: FrozenTrial) -> BaseSampler:
        s = self._by_trial.get(trial.number)
        if s is None:
            s = self._by_trial[trial.number] = self._make(trial_seed(self._seed, trial.number))
        return s

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._inner(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._inner(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:  # noqa: ANN401 - Optuna's type
        return self._inner(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._inner(trial).before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._inner(trial).after_trial(study, trial, state, values)
        self._by_trial.pop(trial.number, None)  # told: never sampled again

    def reseed_rng(self) -> None:
        """Nothing to reseed: every trial's stream is fixed by its number (that is the point)."""
