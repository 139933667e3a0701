"""``kill -9`` of the driver in the middle of an Optuna search, then the same command again: the study ends
with exactly ``n_trials`` trained trials (a point the restarted sampler replays is reused, not retrained),
the trial that was running keeps its parameters and the folds it had finished, nothing runs twice, and
every trial's value is its config run's pooled objective."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from orchestrator.search.trial_reuse import REUSED_FROM
from orchestrator.spec import load_spec
from orchestrator.spec.plan import sweep_id
from orchestrator.sweep.inputs import load_data

pytestmark = pytest.mark.slow

N_TRIALS, N_SUBJECTS = 3, 3
SPEC = {
    "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": N_SUBJECTS, "n_clips": 30}},
    "protocol": {"seed": 5},
    "model": {"model": "ss_gn", "features": "A", "lam": False, "au_loss": "none"},
    "train": {"epochs": 25, "batch_size": 8},  # ~1-2 s per fold: the kill lands inside the search
    "grid": [],
    "search": {"name": "s", "sampler": "random", "seed": 1, "n_trials": N_TRIALS,
               "params": {"lr": {"choices": [0.01, 0.003, 0.001]},
                          "weight_decay": {"low": 0.0, "high": 0.001}},
               "concurrent_trials": 1},
    "resources": {"cpu_per_fold": 1},
    "tracking": {"experiment": "t-search-kill"},
}


def _running_with_a_fold_done(db: Path) -> bool:
    """Read-only SQL (opening the storage with Optuna while the driver creates it would race on the
    schema): is a trial RUNNING that has reported at least one fold?"""
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute(
                "select count(*) from trials t where t.state = 'RUNNING' and exists (select 1 from "
                "trial_intermediate_values v where v.trial_id = t.trial_id)"
            ).fetchone()[0] > 0
    except sqlite3.Error:  # tables not created yet
        return False


def _trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).trials


def test_kill_9_mid_search_then_rerun_finishes_the_study(tmp_path: Path, start_sweep) -> None:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    spec = load_spec(tmp_path / "space.yaml")
    name = f"{spec.experiment}-{sweep_id(spec, load_data(spec).content_hash())}"
    storage = f"sqlite:///{tmp_path / 'mer-runs' / 'optuna.db'}"

    proc = start_sweep(tmp_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if _running_with_a_fold_done(tmp_path / "mer-runs" / "optuna.db"):  # mid-trial
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read() if proc.stdout else ""
    time.sleep(3)  # a worker may still be logging the fold it had finished
    before = _trials(storage, name)
    running = [t for t in before if t.state == TrialState.RUNNING]
    assert len(running) == 1 and len(before) < N_TRIALS + 1, [t.state for t in before]
    orphan = running[0]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mer-runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("t-search-kill")
    done_before = {(r.data.tags["mer.arm"], r.data.tags["mer.subject"]): r.info.run_id
                   for r in client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'fold'")
                   if r.data.tags.get("mer.status") == "complete" and r.info.status == "FINISHED"}
    assert any(arm == f"s-{orphan.number}" for arm, _ in done_before), "the orphan had a finished fold"

    proc2 = start_sweep(tmp_path)
    out, _ = proc2.communicate(timeout=400)
    assert proc2.returncode == 0, out
    said = re.search(r"(\d+) folds trained by this run, (\d+) reused", " ".join(out.split()))
    trained, reused = int(said.group(1)), int(said.group(2))
    # nothing that had finished ran again; a trial whose params repeat an earlier one's links its units
    # (issue 14: same config, seed, subject and data are never trained twice)
    assert trained + reused == N_TRIALS * N_SUBJECTS - len(done_before)

    after = {t.number: t for t in _trials(storage, name)}
    # exactly n_trials trained: the orphan was finished, not replaced. A restarted seeded sampler may replay
    # a point already evaluated: that trial takes the earlier result (trial_reuse.py), trains nothing and
    # does not count against n_trials
    reused_trials = {n: t for n, t in after.items() if REUSED_FROM in t.user_attrs}
    assert len(after) - len(reused_trials) == N_TRIALS and orphan.number not in reused_trials
    for t in reused_trials.values():
        twin = after[t.user_attrs[REUSED_FROM]]
        assert twin.params == t.params and twin.value == t.value and REUSED_FROM not in twin.user_attrs
    assert all(t.state == TrialState.COMPLETE for t in after.values())
    assert after[orphan.number].params == orphan.params  # its own parameters, not a new sample
    for t in before:
        if t.state == TrialState.COMPLETE:
            assert after[t.number].value == t.value

    folds = client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'fold'", max_results=100)
    keys = [(r.data.tags["mer.arm"], r.data.tags["mer.subject"]) for r in folds]
    assert len(keys) == len(set(keys)) == N_TRIALS * N_SUBJECTS
    ids = dict(zip(keys, [r.info.run_id for r in folds], strict=True))
    assert all(ids[k] == rid for k, rid in done_before.items())  # kept, not rerun
    assert all(r.info.status == "FINISHED" and r.data.tags["mer.status"] == "complete" for r in folds)
    configs = client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'config'")
    assert len(configs) == N_TRIALS
    for c in configs:
        t = after[int(c.data.tags["mer.optuna_trial"])]
        assert t.value == pytest.approx(c.data.metrics["uf1"])
        assert float(c.data.params["lr"]) == t.params["lr"]
