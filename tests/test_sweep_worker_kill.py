"""``kill -9`` of a worker actor in the middle of a fold: the driver replaces the actor, counts a failed
attempt, retries the fold (``protocol.retries``), and the sweep ends complete with one MLflow run per
(arm, subject) and nothing left RUNNING. The retried fold gives what an uninterrupted fold gives (same
seed): its logged predictions equal ``train_fold``'s."""

from __future__ import annotations

import csv
import os
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from mer_model import train_fold
from orchestrator.spec import load_spec
from orchestrator.spec.plan import grid_configs
from orchestrator.sweep.inputs import load_data

pytestmark = pytest.mark.slow

SPEC = {
    "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": 3, "n_clips": 30}},
    "protocol": {"seed": 3, "retries": 1},
    "train": {"epochs": 40, "batch_size": 8},  # a few seconds per fold: time to catch one mid-call
    "grid": [
        {"name": "SS-GN", "table": "III", "model": "ss_gn", "features": "A", "lam": False, "au_loss": "none"},
        {"name": "GTS-GN+LAM+AAU", "table": "V"},
    ],
    "resources": {"cpu_per_fold": 1},
    "tracking": {"experiment": "t-worker-kill"},
}


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(d.name))
    return tree


def _busy_worker(root: int) -> int | None:
    """A descendant of ``root`` whose process title says it is a FoldWorker inside a call."""
    tree, stack = _children(), [root]
    while stack:
        pid = stack.pop()
        stack += tree.get(pid, [])
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "FoldWorker" in title and "run_group" in title:
            return pid
    return None


def test_kill_9_of_a_busy_worker_retries_its_fold_and_loses_nothing(tmp_path: Path, start_sweep) -> None:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    proc = start_sweep(tmp_path)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
        if (pid := _busy_worker(proc.pid)) is not None:
            time.sleep(0.5)  # well inside the fold's training, not at its first instruction
            os.kill(pid, signal.SIGKILL)
            killed = pid
    out, _ = proc.communicate(timeout=400)
    assert killed is not None, "no busy FoldWorker was found to kill:\n" + out
    assert proc.returncode == 0, out

    client = MlflowClient(f"sqlite:///{tmp_path / 'mer-runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("t-worker-kill")
    folds = client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'fold'", max_results=100)
    keys = [(r.data.tags["mer.arm"], r.data.tags["mer.subject"]) for r in folds]
    assert len(keys) == len(set(keys)) == 6  # 2 arms x 3 subjects, no duplicate from the killed attempt
    assert all(r.info.status == "FINISHED" and r.data.tags["mer.status"] == "complete" for r in folds)
    all_runs = client.search_runs([exp.experiment_id], "", max_results=100)
    assert not [r for r in all_runs if r.info.status == "RUNNING"]
    retried = [r for r in folds if r.data.tags["mer.attempt"] == "2"]
    assert len(retried) == 1, [r.data.tags["mer.attempt"] for r in folds]

    # The retried fold equals an uninterrupted train_fold of the same (config, subject, seed).
    run = retried[0]
    spec = load_spec(tmp_path / "space.yaml")
    ds = load_data(spec)
    plan = next(p for p in grid_configs(spec) if p.arm == run.data.tags["mer.arm"])
    _, tr, te = next(s for s in ds.loso_splits() if s[0] == run.data.tags["mer.subject"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the worker (cpu_per_fold 1): same float reductions
    try:
        ref = train_fold(plan.config, ds.subset(tr), ds.subset(te), spec.protocol.seed, "cpu")
    finally:
        torch.set_num_threads(threads)
    logged = _predictions(client, run.info.run_id, tmp_path / "dl")
    assert logged == [int(v) for v in ref.y_pred]


def _predictions(client: MlflowClient, run_id: str, dst: Path) -> list[int]:
    """The fold run's logged predictions (``predictions.csv``, test clips in split order)."""
    dst.mkdir()
    path = Path(client.download_artifacts(run_id, "predictions.csv", str(dst)))
    with path.open() as f:
        return [int(r["y_pred"]) for r in csv.DictReader(f)]


def test_delete_partial_folds_keeps_done_runs_and_other_folds(tmp_path: Path) -> None:
    """What the driver does when a worker dies under a fold, on a real SQLite tracking store."""
    from orchestrator.store.tracking import delete_partial_folds, log_fold_run

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("t-partial", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(exp).info.run_id
    tags = {"mer.sweep_id": "s1", "mer.arm": "A'rm", "mer.seed": "0", "mer.attempt": "1"}

    def partial(subject: str, sweep: str = "s1", seed: str = "0") -> str:  # a burst cut short, never ended
        return client.create_run(exp, tags={**tags, "mer.sweep_id": sweep, "mer.subject": subject,
                                            "mer.seed": seed, "mer.kind": "fold"}).info.run_id

    done = log_fold_run(client, exp, parent, tags={**tags, "mer.subject": "s01"}, metrics={"accuracy": 1.0},
                        status="complete", loss_curve=[0.5])
    cut_s01, cut_s02, other_sweep = partial("s01"), partial("s02"), partial("s02", sweep="s0")
    other_seed = partial("s02", seed="1")
    assert delete_partial_folds(client, exp, sweep_id="s1", arm="A'rm", seed=0, subject="s02") == 1
    assert client.get_run(cut_s02).info.lifecycle_stage == "deleted"
    assert client.get_run(cut_s01).info.lifecycle_stage == "active"  # another fold: not this call's
    assert client.get_run(other_sweep).info.lifecycle_stage == "active"  # another sweep
    assert client.get_run(other_seed).info.lifecycle_stage == "active"  # another seed's unit
    assert delete_partial_folds(client, exp, sweep_id="s1", arm="A'rm", seed=0, subject="s01") == 1
    assert client.get_run(cut_s01).info.lifecycle_stage == "deleted"
    assert client.get_run(done).info.lifecycle_stage == "active"  # a done fold is never touched
