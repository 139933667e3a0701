"""A real local sweep (Ray, SQLite MLflow store, SQLite Optuna storage, real train_fold on SynthME):
the MLflow structure read back through MlflowClient, a NaN fold retried then recorded failed, and an
Optuna search whose clearly worse config is pruned by the Wilcoxon pruner and recorded PRUNED, after an
orphan trial (left RUNNING by a killed driver) is re-run with its own parameters."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from orchestrator.cli import main
from orchestrator.spec import load_spec
from orchestrator.spec.plan import sweep_id
from orchestrator.sweep.inputs import load_data

pytestmark = pytest.mark.slow

SPEC = {
    "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": 3, "n_clips": 30}},
    "protocol": {"seed": 0, "objective": "uf1", "retries": 1},
    "train": {"epochs": 1, "batch_size": 16},
    "grid": [
        {"name": "GCN+Type A", "table": "IV(a)", "model": "gcn", "features": "A", "lam": False,
         "au_loss": "none", "baseline": True},
        {"name": "GTS-GN+LAM+AAU", "table": "V", "model": "gts_gn", "lam": True, "au_loss": "aau"},
        # lr 1e30 makes the loss NaN in the first epoch: a real failing fold
        {"name": "diverging", "table": "V", "model": "gcn", "features": "A", "lam": False, "au_loss": "none",
         "lr": 1.0e30},
    ],
    # Grid sampler, seed 1: lr 0.01 is asked first, then lr 1e-7 (checked order); one config at a time so
    # the second is compared fold by fold with a finished best trial.
    "search": {"name": "lr", "sampler": "grid", "seed": 1, "n_trials": 2, "concurrent_trials": 1,
               "base": {"model": "gcn", "features": "A", "lam": False, "au_loss": "none", "epochs": 3},
               "params": {"lr": {"choices": [0.01, 1.0e-7]}},
               "pruner": {"type": "wilcoxon", "p_threshold": 1.0, "n_startup_steps": 2}},
    "resources": {"cpu_per_fold": 1},
    "tracking": {"experiment": "t-local"},
}


def _sid(path: Path) -> str:
    """The sweep id the driver gives this file on its data (spec + dataset content hash)."""
    spec = load_spec(path)
    return sweep_id(spec, load_data(spec).content_hash())


def _artifact_csv(client: MlflowClient, run_id: str, path: str, tmp: Path) -> list[dict[str, str]]:
    local = client.download_artifacts(run_id, path, str(tmp))
    return list(csv.DictReader(io.StringIO(Path(local).read_text())))


def test_local_sweep_mlflow_layout_failures_and_pruning(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for k in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE", "RAY_ADDRESS"):
        monkeypatch.delenv(k, raising=False)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    # An orphan: trial 0 asked and left RUNNING, as a driver killed mid-trial leaves it (Optuna heartbeats
    # do not act under ask/tell). The sweep must run it with its own params and tell it, not ask another.
    storage = f"sqlite:///{tmp_path / 'mer-runs' / 'optuna.db'}"
    (tmp_path / "mer-runs").mkdir()
    study_name = f"t-local-{_sid(tmp_path / 'space.yaml')}"
    pre = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                              sampler=optuna.samplers.GridSampler({"lr": [0.01, 1e-7]}, seed=1))
    orphan = pre.ask()
    assert orphan.suggest_categorical("lr", [0.01, 1e-7]) == 0.01
    # one worker: folds run one after another, so pruning can cancel the folds still queued
    r = CliRunner().invoke(main, ["sweep", "space.yaml", "--num-cpus", "2", "--max-concurrent", "1"])
    # a config with failed folds -> exit 1, and it is named
    assert r.exit_code == 1, r.output
    assert "configs incomplete" in r.stderr and "diverging" in r.stderr

    uri = f"sqlite:///{tmp_path / 'mer-runs' / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("t-local")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_kind: dict[str, list] = {}
    for run in runs:
        by_kind.setdefault(run.data.tags["mer.kind"], []).append(run)
    (sweep,) = by_kind["sweep"]
    configs = {c.data.tags["mer.arm"]: c for c in by_kind["config"]}
    assert set(configs) == {"GCN+Type A", "GTS-GN+LAM+AAU", "diverging", "lr-0", "lr-1"}
    assert all(c.data.tags["mlflow.parentRunId"] == sweep.info.run_id for c in configs.values())
    sid = sweep.data.tags["mer.sweep_id"]
    assert {c.data.tags["mer.sweep_id"] for c in configs.values()} == {sid}

    folds: dict[str, list] = {}
    for f in by_kind["fold"]:
        parent = next(a for a, c in configs.items() if c.info.run_id == f.data.tags["mlflow.parentRunId"])
        assert f.data.tags["mer.arm"] == parent
        assert f.info.run_name == f"{parent}/{f.data.tags['mer.subject']}"
        assert f.data.tags["mer.config_hash"] == configs[parent].data.tags["mer.config_hash"]
        assert f.data.tags["mer.node"]
        folds.setdefault(parent, []).append(f)

    # complete grid arms: 3 folds each, pooled metrics, per-fold mean/std, artifacts
    subjects = {"s1", "s2", "s3"}
    for arm in ("GCN+Type A", "GTS-GN+LAM+AAU"):
        c = configs[arm]
        assert c.data.tags["mer.status"] == "complete" and c.info.status == "FINISHED"
        assert {f.data.tags["mer.subject"] for f in folds[arm]} == subjects
        assert all(f.data.tags["mer.status"] == "complete" for f in folds[arm])
        m = c.data.metrics
        assert m["n_folds"] == 3 and m["n_failed"] == 0
        for k in ("accuracy", "uf1", "uar"):
            assert 0.0 <= m[k] <= 1.0
            per = [f.data.metrics[k] for f in folds[arm]]
            assert m[f"fold_mean_{k}"] == pytest.approx(np.mean(per))
            assert m[f"fold_std_{k}"] == pytest.approx(np.std(per))
        params = c.data.params
        assert (params["dataset"], params["setup"], params["seed"]) == ("synthme-tiny", "objective", "0")
        assert {"model", "features", "points", "lam", "fusion_layer", "au_loss", "beta", "num_classes",
                "num_aus", "epochs", "batch_size", "lr", "weight_decay", "optimizer"} <= set(params)
        arts = {a.path for a in client.list_artifacts(c.info.run_id)}
        assert {"confusion.csv", "confusion.png", "predictions.csv"} <= arts
        preds = _artifact_csv(client, c.info.run_id, "predictions.csv", tmp_path / arm.replace("+", "_"))
        assert len(preds) == sum(f.data.metrics["n_test"] for f in folds[arm]) == 30
        # pooled accuracy is the accuracy of the concatenated predictions (not the fold mean)
        assert m["accuracy"] == pytest.approx(np.mean([p["y_true"] == p["y_pred"] for p in preds]))
    assert configs["GCN+Type A"].data.tags["mer.baseline"] == "true"
    assert configs["GTS-GN+LAM+AAU"].data.tags["mer.table"] == "V"

    # AAU arm: per-layer weights W_r^2 / sum W^2 on every fold run, summing to 1; LAM arrays + heatmaps
    for f in folds["GTS-GN+LAM+AAU"]:
        w = [f.data.metrics[f"aau_weight_layer{r}"] for r in (1, 2, 3, 4)]
        assert sum(w) == pytest.approx(1.0, abs=1e-5) and all(x >= 0 for x in w)
        lam = {a.path for a in client.list_artifacts(f.info.run_id, "lam")}
        assert "lam/layer1.xy.npy" in lam or "lam/layer1.npy" in lam
        assert any(p.endswith(".png") for p in lam)
        assert len(client.get_metric_history(f.info.run_id, "train_loss")) == 1  # one per epoch
        # W's trajectory: step 0 = initialisation (equal weights 1/N_L), then one step per epoch; the
        # latest value (the one above) is the last step's
        hist = sorted(client.get_metric_history(f.info.run_id, "aau_weight_layer1"), key=lambda m: m.step)
        assert [m.step for m in hist] == [0, 1]
        assert hist[0].value == pytest.approx(0.25) and hist[-1].value == w[0]
    assert not any(k.startswith("aau_weight") for f in folds["GCN+Type A"] for k in f.data.metrics)

    # the diverging arm: a NaN fold is retried once, then recorded failed with its error; the config gets
    # no pooled value (here one subject's single mini-batch stays finite, so the config is "incomplete")
    d = configs["diverging"]
    failed = [f for f in folds["diverging"] if f.data.tags["mer.status"] == "failed"]
    assert len(folds["diverging"]) == 3  # one run per fold: failed attempts before the last are not logged
    assert len(failed) >= 1 and d.data.metrics["n_failed"] == len(failed)
    assert d.data.tags["mer.status"] == ("failed" if len(failed) == 3 else "incomplete")
    assert not {"uf1", "accuracy", "uar", "fold_mean_uf1"} & set(d.data.metrics)
    for f in failed:
        assert f.info.status == "FAILED" and f.data.tags["mer.attempt"] == "2"
        assert "not finite" in f.data.tags["mer.error"]

    # Optuna: the study lives in the SQLite storage next to the MLflow DB
    assert sweep.data.tags["mer.optuna_study"] == study_name
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = {t.number: t for t in study.trials}
    assert len(trials) == 2  # the orphan was resumed, not replaced by a new trial
    assert trials[0].params == {"lr": 0.01} and trials[0].state == TrialState.COMPLETE
    # the trial's value is the pooled objective of its config run
    assert trials[0].value == pytest.approx(configs["lr-0"].data.metrics["uf1"])
    assert sorted(trials[0].intermediate_values) == [0, 1, 2]  # step = fold index
    t1 = trials[1]
    assert t1.params == {"lr": 1e-7}
    # PRUNED, not COMPLETE (Optuna itself keeps the last fold value on a pruned trial; samplers know it)
    assert t1.state == TrialState.PRUNED
    c1 = configs["lr-1"]
    assert c1.data.tags["mer.status"] == "pruned" and c1.data.tags["mer.optuna_trial"] == "1"
    assert "uf1" not in c1.data.metrics  # never a partial value
    assert len(folds["lr-1"]) == 2 == len(t1.intermediate_values)  # the third fold was cancelled

    # sweep-level tables: arms x metrics (spec order, then trials) and the per-subject AAU weights
    arms = _artifact_csv(client, sweep.info.run_id, "tables/arms.csv", tmp_path / "sweep")
    assert [a["arm"] for a in arms] == ["GCN+Type A", "GTS-GN+LAM+AAU", "diverging", "lr-0", "lr-1"]
    row = {a["arm"]: a for a in arms}
    assert float(row["GCN+Type A"]["uf1"]) == pytest.approx(configs["GCN+Type A"].data.metrics["uf1"])
    assert row["diverging"]["uf1"] == "" and row["lr-1"]["status"] == "pruned"
    aau = _artifact_csv(client, sweep.info.run_id, "tables/aau_weights.csv", tmp_path / "sweep2")
    assert [a["subject"] for a in aau] == ["s1", "s2", "s3", "Average"]
    assert {a["arm"] for a in aau} == {"GTS-GN+LAM+AAU"}
    for a in aau:
        assert sum(float(a[f"layer{r}"]) for r in (1, 2, 3, 4)) == pytest.approx(1.0, abs=1e-5)
    assert "GCN+Type A" in r.stdout and "sweep summary" in r.stdout
