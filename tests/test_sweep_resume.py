"""Resume after ``kill -9`` of the driver: the same command finishes the sweep, no fold that had finished
runs again, MLflow holds one run per (arm, subject), and the final table equals an uninterrupted
computation with the same seeds (a plain in-process loop of train_fold over the same folds)."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from mer_model import classification_metrics, train_fold
from orchestrator.spec import load_spec
from orchestrator.spec.plan import grid_configs
from orchestrator.sweep.inputs import load_data

pytestmark = pytest.mark.slow

SPEC = {
    "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": 3, "n_clips": 30}},
    "protocol": {"seed": 7},
    "train": {"epochs": 2, "batch_size": 16},
    "grid": [
        {"name": "GCN", "table": "III", "model": "gcn", "features": "A", "lam": False, "au_loss": "none"},
        {"name": "SS-GN", "table": "III", "model": "ss_gn", "features": "A", "lam": False, "au_loss": "none"},
        {"name": "GTS-GN+LAM+AAU", "table": "V"},
    ],
    "resources": {"cpu_per_fold": 1},
    "tracking": {"experiment": "t-resume"},
}


def _n_complete_folds(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute(
                "select count(*) from runs r join tags t on t.run_uuid = r.run_uuid "
                "where r.status = 'FINISHED' and t.key = 'mer.status' and t.value = 'complete' and "
                "r.run_uuid in (select run_uuid from tags where key = 'mer.kind' and value = 'fold')"
            ).fetchone()[0]
    except sqlite3.Error:  # tables not created yet
        return 0


def _fold_runs(client: MlflowClient, exp_id: str) -> list:
    return client.search_runs([exp_id], "tags.`mer.kind` = 'fold'", max_results=1000)


def test_kill_9_then_rerun_finishes_without_rerunning_done_folds(tmp_path: Path, start_sweep) -> None:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    db = tmp_path / "mer-runs" / "mlflow.db"
    uri = f"sqlite:///{db}"

    proc = start_sweep(tmp_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        # Read-only SQL, not MlflowClient: a client opening the store while the driver creates it would race
        # on the schema migration (stack-notes), which is exactly what the driver avoids for its workers.
        if _n_complete_folds(db) >= 1:
            os.kill(proc.pid, signal.SIGKILL)  # the driver, mid-sweep, without any chance to clean up
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read() if proc.stdout else ""
    # The killed driver's Ray processes are reaped, but a worker may still finish the fold it was logging:
    # wait until the count of done folds has been stable for a few seconds, then take it.
    n, stable_since = _n_complete_folds(db), time.monotonic()
    while time.monotonic() - stable_since < 5 and time.monotonic() < deadline:
        time.sleep(0.5)
        if (m := _n_complete_folds(db)) != n:
            n, stable_since = m, time.monotonic()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("t-resume")
    done_before = {(r.data.tags["mer.arm"], r.data.tags["mer.subject"]): r.info.run_id
                   for r in _fold_runs(client, exp.experiment_id)
                   if r.data.tags.get("mer.status") == "complete" and r.info.status == "FINISHED"}
    assert 1 <= len(done_before) < 9, "the kill must land mid-sweep for this test to mean anything"

    proc2 = start_sweep(tmp_path)
    out, _ = proc2.communicate(timeout=400)
    assert proc2.returncode == 0, out
    trained = int(re.search(r"(\d+) folds trained by this run", " ".join(out.split())).group(1))
    assert trained == 9 - len(done_before)

    folds = _fold_runs(client, exp.experiment_id)
    keys = [(r.data.tags["mer.arm"], r.data.tags["mer.subject"]) for r in folds]
    assert len(keys) == len(set(keys)) == 9  # no duplicates, nothing missing
    now = {k: r.info.run_id for k, r in zip(keys, folds, strict=True)}
    for k, run_id in done_before.items():
        assert now[k] == run_id  # the fold that had finished was kept, not rerun
    assert all(r.info.status == "FINISHED" and r.data.tags["mer.status"] == "complete" for r in folds)
    configs = client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'config'")
    assert sorted(c.data.tags["mer.arm"] for c in configs) == ["GCN", "GTS-GN+LAM+AAU", "SS-GN"]
    assert len(client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'sweep'")) == 1

    # The final table equals an uninterrupted computation with the same seeds.
    (sweep,) = client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'sweep'")
    path = client.download_artifacts(sweep.info.run_id, "tables/arms.csv", str(tmp_path / "dl"))
    table = {r["arm"]: r for r in csv.DictReader(io.StringIO(Path(path).read_text()))}
    spec = load_spec(tmp_path / "space.yaml")
    ds = load_data(spec)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers (cpu_per_fold 1): same float reductions
    try:
        for plan in grid_configs(spec):
            y_true, y_pred = [], []
            for _s, tr, te in ds.loso_splits():
                res = train_fold(plan.config, ds.subset(tr), ds.subset(te), spec.protocol.seed, "cpu")
                y_true.append(res.y_true)
                y_pred.append(res.y_pred)
            ref = classification_metrics(np.concatenate(y_true), np.concatenate(y_pred), ds.num_classes)
            row = table[plan.arm]
            assert row["status"] == "complete"
            for m in ("accuracy", "uf1", "uar"):
                assert float(row[m]) == pytest.approx(ref[m], abs=1e-12), (plan.arm, m)
    finally:
        torch.set_num_threads(threads)
