"""resources.packing: a sweep whose folds are trained fold-batched logs the same fold runs as unpacked."""

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

SPEC = {
    "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": 3, "n_clips": 30}},
    "protocol": {"seed": 0, "retries": 0},
    "train": {"epochs": 1, "batch_size": 16},
    "grid": [{"name": "GTS-GN+LAM+AAU", "table": "V", "model": "gts_gn", "lam": True, "au_loss": "aau"}],
    "resources": {"cpu_per_fold": 1},
    "tracking": {"experiment": "packing"},
}


def _sweep(d, packing):
    from orchestrator.cli import main

    spec = {**SPEC, "resources": {"cpu_per_fold": 1, "packing": packing}}
    (d / "space.yaml").write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{d / 'mer-runs' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)
        for k in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE", "RAY_ADDRESS"):
            mp.delenv(k, raising=False)
        r = CliRunner().invoke(main, ["sweep", "space.yaml", "--num-cpus", "1", "--tracking-uri", uri])
    assert r.exit_code == 0, r.output
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("packing")
    runs = client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'fold'")
    out = {}
    for run in runs:
        hist = [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")]
        arts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
        out[run.info.run_name] = (run, hist, arts)
    return out


def test_packed_sweep_logs_the_same_fold_runs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain, packed = _sweep(tmp_path / "a", 1), _sweep(tmp_path / "b", 3)
    assert sorted(plain) == sorted(packed) and len(plain) == 3
    # packing really took the fold-batched path: its float32 rounding differs from train_fold's somewhere
    assert any(plain[n][1] != packed[n][1] for n in plain)
    for name, (run, hist, arts) in plain.items():
        prun, phist, parts = packed[name]
        keep = ("mer.kind", "mer.subject", "mer.arm", "mer.status", "mer.config_hash", "mer.attempt")
        assert {k: run.data.tags.get(k) for k in keep} == {k: prun.data.tags.get(k) for k in keep}
        assert sorted(run.data.metrics) == sorted(prun.data.metrics)
        for k, v in run.data.metrics.items():
            if k not in ("train_loss", "train_seconds"):  # train_seconds: wall time (issue 14), not a result
                assert prun.data.metrics[k] == pytest.approx(v, abs=1e-6), (name, k)
        np.testing.assert_allclose(phist, hist, rtol=1e-3)
        assert arts == parts
