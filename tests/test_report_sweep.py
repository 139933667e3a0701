"""`mer-orch report` on a small real sweep (the session's `finished_sweep`: Ray, SQLite MLflow + Optuna,
train_fold on SynthME): every table and figure file exists and holds the values MlflowClient / Optuna read
back from the same stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from orchestrator.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(finished_sweep):
    client = MlflowClient(finished_sweep["tracking_uri"])
    exp = client.get_experiment_by_name(finished_sweep["experiment"])
    assert exp is not None, finished_sweep["output"]
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    configs = {r.data.tags["mer.arm"]: r for r in runs if r.data.tags.get("mer.kind") == "config"}
    folds: dict[str, dict[str, object]] = {}
    by_id = {c.info.run_id: a for a, c in configs.items()}
    for r in runs:
        if r.data.tags.get("mer.kind") == "fold":
            folds.setdefault(by_id[r.data.tags["mlflow.parentRunId"]], {})[r.data.tags["mer.subject"]] = r
    return {**finished_sweep, "client": client, "configs": configs, "folds": folds}


@pytest.fixture(scope="module")
def report(sweep) -> Path:
    out = sweep["dir"] / "report"
    r = CliRunner().invoke(
        main,
        [
            "report",
            "--experiment",
            sweep["experiment"],
            "--tracking-uri",
            sweep["tracking_uri"],
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert r.output.strip().endswith("report.md")
    return out


def test_table_rows_are_the_config_runs(sweep, report):
    t = pd.read_csv(report / "tables/table_IV_a.csv").set_index("arm")
    assert list(t.index) == ["GCN+Type A", "GTS-GN+LAM+AAU", "diverging"]  # spec order
    assert list(t["baseline"]) == [True, False, False]  # the spec's baseline: true (tag mer.baseline)
    for arm in ("GCN+Type A", "GTS-GN+LAM+AAU"):
        m = sweep["configs"][arm].data.metrics
        assert t.loc[arm, "status"] == "complete" and t.loc[arm, "n_folds_complete"] == 3
        for k in ("accuracy", "uf1", "uar", "fold_mean_accuracy", "fold_std_accuracy", "fold_mean_uf1"):
            assert t.loc[arm, k] == pytest.approx(m[k]), (arm, k)
    # the diverging arm: shown incomplete with its failed folds counted, no metric averaged in
    div = sweep["folds"]["diverging"]
    n_failed = sum(f.data.tags["mer.status"] == "failed" for f in div.values())
    assert n_failed >= 1 and sweep["configs"]["diverging"].data.tags["mer.status"] == "incomplete"
    d = t.loc["diverging"]
    assert d["status"] == "incomplete" and d["n_folds_failed"] == n_failed
    assert d["n_folds_complete"] == len(div) - n_failed
    assert np.isnan(d["accuracy"]) and np.isnan(d["fold_mean_accuracy"])

    s = pd.read_csv(report / "tables/table_search.csv").set_index("arm")
    assert len(s) == 3 and list(s["optuna_trial"]) == [0, 1, 2]
    for arm, row in s.iterrows():
        run = sweep["configs"][arm]
        assert row["uf1"] == pytest.approx(run.data.metrics["uf1"])
        assert row["beta"] == pytest.approx(float(run.data.params["beta"]))


def test_significance_pairs_the_runs_per_subject_accuracies(sweep, report):
    sig = pd.read_csv(report / "tables/significance_IV_a.csv")
    assert set(sig["metric"]) == {"accuracy", "uf1", "uar"}
    sig = sig[sig["metric"] == "accuracy"].set_index("arm")
    base, arm = sweep["folds"]["GCN+Type A"], sweep["folds"]["GTS-GN+LAM+AAU"]
    diffs = [arm[s].data.metrics["accuracy"] - base[s].data.metrics["accuracy"] for s in base]
    row = sig.loc["GTS-GN+LAM+AAU"]
    assert row["baseline"] == "GCN+Type A" and row["n_subjects"] == 3
    assert row["mean_diff"] == pytest.approx(np.mean(diffs))
    pooled = (
        sweep["configs"]["GTS-GN+LAM+AAU"].data.metrics["accuracy"]
        - sweep["configs"]["GCN+Type A"].data.metrics["accuracy"]
    )
    assert row["pooled_diff"] == pytest.approx(pooled, abs=1e-9)
    assert row["ci_low"] <= row["pooled_diff"] <= row["ci_high"]
    full = pd.read_csv(report / "tables/significance_IV_a.csv").set_index(["arm", "metric"])
    for m in ("uf1", "uar"):  # recomputed from the config runs' predictions.csv: the logged pooled values
        want = (
            sweep["configs"]["GTS-GN+LAM+AAU"].data.metrics[m]
            - sweep["configs"]["GCN+Type A"].data.metrics[m]
        )
        assert full.loc[("GTS-GN+LAM+AAU", m), "pooled_diff"] == pytest.approx(want, abs=1e-9)
    assert row["p_floor"] == 0.25 and not row["significant"]  # 3 subjects can never reach p < 0.05
    # the diverging arm is compared only on the subjects whose fold completed
    ok = [s for s, f in sweep["folds"]["diverging"].items() if f.data.tags["mer.status"] == "complete"]
    assert sig.loc["diverging", "n_subjects"] == len(ok)


def test_table_viii_is_the_folds_aau_weights(sweep, report):
    t = pd.read_csv(report / "tables/table_VIII_GTS-GN_LAM_AAU.csv", index_col="subject")
    folds = sweep["folds"]["GTS-GN+LAM+AAU"]
    layers = [c for c in t.columns if c.startswith("layer")]
    assert layers == ["layer1", "layer2", "layer3", "layer4"]  # fusion at layer 1: AAU on all four (Eq. 11)
    for subject, run in folds.items():
        for c in layers:
            assert t.loc[subject, c] == pytest.approx(run.data.metrics[f"aau_weight_{c}"])
        assert t.loc[subject, layers].astype(float).sum() == pytest.approx(1.0, abs=1e-5)
    assert t.loc["Average", layers].astype(float).to_numpy() == pytest.approx(
        t.drop(index="Average")[layers].astype(float).mean().to_numpy()
    )


def test_figures_hold_the_runs_values(sweep, report, tmp_path):
    client = sweep["client"]
    figs = report / "figures"
    for png in figs.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000, png
    # Fig. 5: mean over the folds of each learned A_L artifact
    lam = np.load(figs / "fig5_lam_GTS-GN_LAM_AAU.npz")
    folds = sweep["folds"]["GTS-GN+LAM+AAU"]
    keys = sorted(
        Path(f.path).stem
        for f in client.list_artifacts(next(iter(folds.values())).info.run_id, "lam")
        if f.path.endswith(".npy")
    )
    assert sorted(lam.files) == keys and len(keys) >= 4
    for k in keys:
        stack = [
            np.load(client.download_artifacts(r.info.run_id, f"lam/{k}.npy", str(tmp_path)))
            for r in folds.values()
        ]
        np.testing.assert_allclose(lam[k], np.mean(stack, axis=0, dtype=np.float64), rtol=1e-9, atol=1e-12)
    assert (figs / "fig5_lam_GTS-GN_LAM_AAU.png").exists()
    assert not (figs / "fig5_lam_GCN_Type_A.png").exists()  # fixed adjacency: nothing learned
    # Fig. 9: each search trial at its beta with its pooled accuracy
    all_pts = pd.read_csv(figs / "fig9_accuracy_vs_beta.csv")
    # points of the beta x fusion-layer grid that no trial ran are listed (no arm) and marked on the plot
    holes = all_pts[all_pts["arm"].isna()]
    assert set(holes["status"]) <= {"not run"} and holes["accuracy"].isna().all()
    ran = {(b, f) for b, f in zip(all_pts["beta"], all_pts["fusion_layer"], strict=True)}
    assert len(ran) == len(all_pts) == all_pts["beta"].nunique() * all_pts["fusion_layer"].nunique()
    pts = all_pts.dropna(subset=["arm"]).set_index("arm")
    assert len(pts) == 3
    for arm, row in pts.iterrows():
        run = sweep["configs"][arm]
        assert row["beta"] == pytest.approx(float(run.data.params["beta"]))
        assert row["accuracy"] == pytest.approx(run.data.metrics["accuracy"])
    # confusion matrices: the config runs' pooled confusion.csv
    for arm in ("GCN+Type A", "GTS-GN+LAM+AAU"):
        name = arm.replace("+", "_").replace(" ", "_")
        got = pd.read_csv(figs / f"confusion_{name}.csv", index_col=0)
        src = pd.read_csv(
            client.download_artifacts(sweep["configs"][arm].info.run_id, "confusion.csv", str(tmp_path)),
            index_col=0,
        )
        np.testing.assert_array_equal(got.to_numpy(), src.to_numpy())
        assert list(got.columns) == list(src.columns)
        assert got.to_numpy().sum() == sum(
            int(f.data.metrics["n_test"]) for f in sweep["folds"][arm].values()
        )
    assert not (figs / "confusion_diverging.png").exists()


def test_optuna_history_and_importances_are_the_study(sweep, report):
    tags = sweep["configs"]["search-0"].data.tags
    sweep_run = sweep["client"].get_run(tags["mlflow.parentRunId"])
    study = optuna.load_study(study_name=sweep_run.data.tags["mer.optuna_study"], storage=sweep["storage"])
    trials = pd.read_csv(report / "tables/search_trials.csv").set_index("number")
    assert len(trials) == len(study.trials) == 3
    for t in study.trials:
        assert trials.loc[t.number, "state"] == t.state.name
        assert trials.loc[t.number, "value"] == pytest.approx(t.value)
        assert trials.loc[t.number, "param_beta"] == pytest.approx(t.params["beta"])
        # the study's value is the config run's pooled objective (uf1)
        assert t.value == pytest.approx(sweep["configs"][f"search-{t.number}"].data.metrics["uf1"])
    imp = pd.read_csv(report / "tables/param_importances.csv")
    assert set(imp["param"]) == {"beta", "fusion_layer"} and imp["importance"].sum() == pytest.approx(1.0)
    for name in ("search_history.png", "param_importances.png"):
        assert (report / "figures" / name).exists()


def test_markdown_report_links_everything_and_names_the_dataset(report):
    md = (report / "report.md").read_text()
    assert "synthme-tiny" in md and "They are not CASME II or SAMM numbers" in md
    for f in report.rglob("*"):
        if f.is_file() and f.name != "report.md":
            assert f"({f.relative_to(report).as_posix()})" in md, f
    assert "**incomplete**" in md and "diverging" in md.split("## Folds that did not complete")[1]
