"""Reuse of an evaluated point: a trial that asks for a point its study already evaluated is not retrained.

Optuna's FAQ pattern ("How can I ignore duplicated samples?"): look the point up in the study's trials and
return the value found there. Here the driver does it between ``ask`` and opening the config, so no fold
of the repeated point is queued:

- twin COMPLETE: the new trial gets the twin's per-unit intermediate values (so ``WilcoxonPruner`` can
  still compare against it should it become the best trial) and is told COMPLETE with the twin's value;
- twin PRUNED: told PRUNED, no value (a pruned point stays pruned);
- twin RUNNING (only TPE/random can repeat an in-flight point; the exhaustive sampler skips those): told
  FAIL, since its result is not known yet and training it again would be the waste this module avoids.

Every reused trial carries the user attribute :data:`REUSED_FROM` (the twin's number), costs no training and
does not count against ``search.n_trials`` (that budget is of trained configs; ``study.SearchState.budget``).
A FAIL twin is not reused: a failure may be transient, the point is trained again.
"""

from __future__ import annotations

from typing import Any

from optuna import Study
from optuna.trial import FrozenTrial, Trial, TrialState

REUSED_FROM = "mer.reused_from"  # user attr: number of the trial whose result this one took

_TWIN_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def is_reused(t: FrozenTrial) -> bool:
    return REUSED_FROM in t.user_attrs


def evaluated_twin(study: Study, params: dict[str, Any], number: int) -> FrozenTrial | None:
    """The first trial other than ``number`` at exactly ``params`` that is COMPLETE, PRUNED or RUNNING
    (COMPLETE preferred: it carries a value), never itself a reused one."""
    twins = [t for t in study.get_trials(deepcopy=False, states=_TWIN_STATES)
             if t.number != number and not is_reused(t) and t.params == params]
    twins.sort(key=lambda t: (t.state != TrialState.COMPLETE, t.number))
    return twins[0] if twins else None


def reuse(study: Study, trial: Trial, twin: FrozenTrial) -> tuple[float | None, TrialState]:
    """Mark ``trial`` as a reuse of ``twin`` and copy its intermediate values; returns the (value, state) to
    tell it (the caller tells, so its own handling of ``Study.stop`` applies)."""
    trial.set_user_attr(REUSED_FROM, twin.number)
    if twin.state == TrialState.COMPLETE:
        for step, v in sorted(twin.intermediate_values.items()):
            trial.report(v, step)
        return float(twin.value), TrialState.COMPLETE
    if twin.state == TrialState.PRUNED:
        return None, TrialState.PRUNED
    return None, TrialState.FAIL
