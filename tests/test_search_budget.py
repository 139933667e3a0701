"""No wasted budget (issue 13), on a real Optuna SQLite storage without Ray: a fully discrete space no
larger than ``n_trials`` is covered exactly once even with trials in flight, a trial asked at an evaluated
point takes its result instead of training, and pruned trials carry no value in search_trials.csv."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from orchestrator.report.search import trials_frame
from orchestrator.search.study import SearchState, exhaustive, grid_space
from orchestrator.search.trial_reuse import REUSED_FROM
from orchestrator.spec import SearchSpec

BETA_FUSION = {"n_trials": 30, "params": {"beta": {"low": 0.1, "high": 1.0, "step": 0.1},
                                          "fusion_layer": {"choices": [1, 2, 3]}}}


def _state(tmp_path: Path, **search) -> SearchState:
    return SearchState.open(SearchSpec(**search), f"sqlite:///{tmp_path / 'optuna.db'}", "s")


def _value(params: dict) -> float:
    return params["beta"] * 10 + params["fusion_layer"] if "beta" in params else float(params["lr"])


def _drive(s: SearchState, in_flight: int) -> list[dict]:
    """The driver's ask/tell pattern: up to ``in_flight`` trials open, the oldest told first."""
    trained, open_ = [], []
    while True:
        while len(open_) < in_flight and (nxt := s.next_trial()) is not None:
            open_.append(nxt)
        if not open_:
            return trained
        t, params = open_.pop(0)
        trained.append(params)
        s.tell(t, _value(params), TrialState.COMPLETE)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_discrete_space_covered_exactly_once(tmp_path: Path, sampler: str) -> None:
    s = _state(tmp_path, sampler=sampler, concurrent_trials=2, **BETA_FUSION)
    assert exhaustive(s.spec)
    trained = _drive(s, in_flight=2)
    points = {(p["beta"], p["fusion_layer"]) for p in trained}
    space = grid_space(s.spec)
    assert len(trained) == 30 == len(points)  # every point once, none twice, with two trials in flight
    assert points == {(b, f) for b in space["beta"] for f in space["fusion_layer"]}
    assert s.next_trial() is None and len(s.study.trials) == 30


def test_space_larger_than_n_trials_is_sampled_not_enumerated(tmp_path: Path) -> None:
    s = _state(tmp_path, sampler="tpe", **{**BETA_FUSION, "n_trials": 29})
    assert not exhaustive(s.spec) and s.total() == 29


def test_a_repeated_point_reuses_the_evaluated_result(tmp_path: Path) -> None:
    s = _state(tmp_path, sampler="random", n_trials=3, params={"lr": {"choices": [0.1, 0.2, 0.3, 0.4]}})
    first, params = s.next_trial()
    for step, v in enumerate((0.5, 0.7)):
        first.report(v, step)
    s.tell(first, 0.6, TrialState.COMPLETE)
    s.study.enqueue_trial(params)  # the sampler proposes the evaluated point again
    t, p2 = s.next_trial()
    assert p2 != params  # what comes back to train is a new point
    twin = s.study.trials[1]
    assert twin.params == params and twin.state == TrialState.COMPLETE and twin.value == 0.6
    assert twin.user_attrs[REUSED_FROM] == 0 and twin.intermediate_values == {0: 0.5, 1: 0.7}
    assert s.n_trained() == 1 and s.budget() == 1  # the reuse cost no training and no budget


def test_repeating_a_pruned_or_running_point_trains_nothing(tmp_path: Path) -> None:
    s = _state(tmp_path, sampler="random", n_trials=4, params={"lr": {"choices": [0.1, 0.2, 0.3, 0.4]}})
    pruned, p_pruned = s.next_trial()
    pruned.report(0.1, 0)
    s.tell(pruned, None, TrialState.PRUNED)
    running, p_running = s.next_trial()
    s.study.enqueue_trial(p_pruned)
    s.study.enqueue_trial(p_running)
    _, p3 = s.next_trial()
    assert p3 not in (p_pruned, p_running)
    repeat_pruned, repeat_running = s.study.trials[2], s.study.trials[3]
    assert repeat_pruned.state == TrialState.PRUNED and repeat_pruned.value is None
    assert repeat_running.state == TrialState.FAIL and repeat_running.user_attrs[REUSED_FROM] == 1


def test_reuse_is_capped_so_a_stuck_sampler_ends_the_search(tmp_path: Path) -> None:
    s = _state(tmp_path, sampler="random", n_trials=2, params={"lr": {"choices": [0.1, 0.2, 0.3]}})
    t, params = s.next_trial()
    s.tell(t, 1.0, TrialState.COMPLETE)
    for _ in range(2):
        s.study.enqueue_trial(params)
    assert s.next_trial() is None  # two reuses = n_trials: no more asking although one trial trained
    assert [t.state for t in s.study.trials] == [TrialState.COMPLETE] * 3


def test_pruned_trials_carry_no_value_in_search_trials(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", direction="maximize")
    t = study.ask({"lr": optuna.distributions.CategoricalDistribution([0.1, 0.2])})
    t.report(0.42, 0)
    study.tell(t, state=TrialState.PRUNED)
    assert study.trials[0].value == 0.42  # Optuna keeps the last reported value on a pruned trial ...
    df = trials_frame(study)
    assert df["state"].tolist() == ["PRUNED"] and df["value"].isna().all()  # ... the report does not


def test_a_reuse_left_untold_by_a_killed_driver_is_told_on_resume_not_trained(tmp_path: Path) -> None:
    s = _state(tmp_path, sampler="random", n_trials=3, params={"lr": {"choices": [0.1, 0.2, 0.3, 0.4]}})
    first, params = s.next_trial()
    first.report(0.5, 0)
    s.tell(first, 0.5, TrialState.COMPLETE)
    s.study.enqueue_trial(params)
    t = s.study.ask()
    t.suggest_categorical("lr", [0.1, 0.2, 0.3, 0.4])
    t.set_user_attr(REUSED_FROM, 0)  # the driver died here, before telling it
    again = _state(tmp_path, sampler="random", n_trials=3, params={"lr": {"choices": [0.1, 0.2, 0.3, 0.4]}})
    assert again.orphans == []
    told = again.study.trials[1]
    assert told.state == TrialState.COMPLETE and told.value == 0.5 and told.intermediate_values == {0: 0.5}
