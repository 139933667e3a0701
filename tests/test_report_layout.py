"""`mer-orch report` on a sweep written run by run in the documented MLflow layout (docs/architecture.md).

The runs are built here with a real MlflowClient on a real SQLite store, with values chosen by
construction (an arm better on every subject, an arm identical to the baseline, a failed fold, a pruned
Optuna trial) so that the report's handling of each case can be checked; the values the test compares the
report files with are read back through MlflowClient, never taken from the construction.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from orchestrator.cli import main

SUBJECTS = [f"s{i:02d}" for i in range(1, 7)]  # 6 subjects: the sign-flip test can reach p = 2/2^6
CLASSES = ["negative", "positive", "surprise"]
V = 14


def _log_fold(
    client, exp_id, parent, arm, subject, rng, acc_target, *, failed=False, aau_layers=(), lam=False
):
    run = client.create_run(
        exp_id,
        run_name=f"{arm}/{subject}",
        tags={
            "mlflow.parentRunId": parent,
            "mer.kind": "fold",
            "mer.subject": subject,
            "mer.arm": arm,
            "mer.status": "failed" if failed else "complete",
            "mer.attempt": "1",
            "mer.node": "127.0.0.1",
            **({"mer.error": "RuntimeError: NaN loss"} if failed else {}),
        },
    )
    rid = run.info.run_id
    if failed:
        client.set_terminated(rid, "FAILED")
        return None
    n = 6
    n_ok = int(round(acc_target * n))
    y_true = rng.integers(0, len(CLASSES), n)
    y_pred = y_true.copy()
    wrong = rng.permutation(n)[: n - n_ok]
    y_pred[wrong] = (y_true[wrong] + 1) % len(CLASSES)
    acc = float(np.mean(y_true == y_pred))
    metrics = {"accuracy": acc, "uf1": acc * 0.9, "uar": acc * 0.95, "n_test": n}
    if aau_layers:
        w = rng.dirichlet(np.ones(len(aau_layers)))
        metrics.update({f"aau_weight_layer{r}": float(wr) for r, wr in zip(aau_layers, w, strict=True)})
    client.log_batch(rid, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()])
    if lam:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            for key in ("layer1", "layer2", "layer3"):
                np.save(Path(tmp) / f"{key}.npy", rng.random((V, V)).astype(np.float32))
            client.log_artifacts(rid, tmp, "lam")
    client.set_terminated(rid, "FINISHED")
    return pd.DataFrame({"subject": subject, "y_true": y_true, "y_pred": y_pred})


def _log_config(
    client, exp_id, sweep_id, parent, tmp_path, arm, table, params, per_subject, status=None, **kw
):
    rng = np.random.default_rng(zlib.crc32(arm.encode()))
    run = client.create_run(
        exp_id,
        run_name=arm,
        tags={
            "mlflow.parentRunId": parent,
            "mer.kind": "config",
            "mer.arm": arm,
            "mer.table": table,
            "mer.sweep_id": sweep_id,
            "mer.dataset": "synthme-casme2",
            "mer.config_hash": f"h-{arm}",
            **kw.pop("tags", {}),
        },
    )
    rid = run.info.run_id
    failed_subjects = kw.pop("failed_subjects", ())
    preds = [
        _log_fold(client, exp_id, rid, arm, s, rng, per_subject[s], failed=s in failed_subjects, **kw)
        for s in SUBJECTS
    ]
    params = {**params, "dataset": "synthme-casme2", "setup": "objective", "seed": 0}
    ok = [p for p in preds if p is not None]
    if status is None:
        status = "complete" if len(ok) == len(SUBJECTS) else "incomplete"
    metrics = {"n_folds": len(SUBJECTS), "n_failed": len(SUBJECTS) - len(ok)}
    if status == "complete":
        allp = pd.concat(ok)
        accs = [np.mean(p.y_true == p.y_pred) for p in ok]
        metrics.update(
            accuracy=float(np.mean(allp.y_true == allp.y_pred)),
            uf1=0.5,
            uar=0.6,
            fold_mean_accuracy=float(np.mean(accs)),
            fold_std_accuracy=float(np.std(accs)),
        )
        cm = pd.crosstab(allp.y_true, allp.y_pred).reindex(index=range(3), columns=range(3), fill_value=0)
        cm = pd.DataFrame(cm.to_numpy(), index=CLASSES, columns=CLASSES)
        cm.to_csv(tmp_path / "confusion.csv")
        client.log_artifact(rid, str(tmp_path / "confusion.csv"))
    client.log_batch(
        rid,
        metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag("mer.status", status)],
    )
    client.set_terminated(rid, "FINISHED")
    return rid


@pytest.fixture(scope="module")
def layout_sweep(tmp_path_factory):
    """A finished sweep in the documented layout: tables V (4 arms) and search (4 trials)."""
    tmp = tmp_path_factory.mktemp("layout")
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = MlflowClient(uri)
    exp_id = client.create_experiment("layout-sweep", artifact_location=str(tmp / "artifacts"))
    sweep = client.create_run(
        exp_id,
        run_name="sweep",
        tags={
            "mer.kind": "sweep",
            "mer.sweep_id": "sw1",
            "mer.dataset": "synthme-casme2",
            "mer.setup": "objective",
            "mer.spec": "layout.yaml",
        },
    )
    sid = sweep.info.run_id
    base = {s: a for s, a in zip(SUBJECTS, np.linspace(0.34, 0.67, len(SUBJECTS)), strict=True)}
    better = {s: min(1.0, a + 0.34) for s, a in base.items()}
    arms = [  # spec order: the baseline is not the first run created, so order must come from arms.csv
        (
            "gts_gn+lam+aau",
            "V",
            {"model": "gts_gn", "lam": True, "au_loss": "aau", "beta": 1.0},
            better,
            {"aau_layers": (1, 2, 3, 4), "lam": True},
        ),
        ("gts_gn", "V", {"model": "gts_gn", "lam": False, "au_loss": "none", "beta": 1.0}, base, {}),
        (
            "gts_gn+lam",
            "V",
            {"model": "gts_gn", "lam": True, "au_loss": "none", "beta": 1.0},
            base,
            {},  # lam=True but no lam/ artifacts: no Fig. 5 for it, and no error
        ),
        (
            "gts_gn+aau",
            "V",
            {"model": "gts_gn", "lam": False, "au_loss": "aau", "beta": 1.0},
            better,
            {"aau_layers": (1, 2, 3, 4), "failed_subjects": ("s03",)},
        ),
    ]
    ids = {}
    for arm, table, params, acc, kw in arms:
        ids[arm] = _log_config(client, exp_id, "sw1", sid, tmp, arm, table, params, acc, **kw)
    for i, (beta, fusion) in enumerate([(0.1, 1), (0.5, 2), (0.9, 1), (0.3, 2)]):
        arm = f"trial-{i}"
        status = "pruned" if i == 3 else None
        acc = {s: min(1.0, a + beta / 3) for s, a in base.items()}
        ids[arm] = _log_config(
            client,
            exp_id,
            "sw1",
            sid,
            tmp,
            arm,
            "search",
            {"model": "gts_gn", "lam": True, "au_loss": "aau", "beta": beta, "fusion_layer": fusion},
            acc,
            status=status,
            tags={"mer.optuna_trial": str(i)},
        )
    order = ["gts_gn", "gts_gn+lam", "gts_gn+aau", "gts_gn+lam+aau"] + [f"trial-{i}" for i in range(4)]
    pd.DataFrame({"arm": order}).to_csv(tmp / "arms.csv", index=False)
    client.log_artifact(sid, str(tmp / "arms.csv"), "tables")
    client.set_terminated(sid, "FINISHED")
    return {"uri": uri, "client": client, "ids": ids, "tmp": tmp}


@pytest.fixture(scope="module")
def layout_report(layout_sweep):
    out = layout_sweep["tmp"] / "report"
    res = CliRunner().invoke(
        main,
        ["report", "--experiment", "layout-sweep", "--tracking-uri", layout_sweep["uri"], "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    return out


def test_table_rows_are_the_runs_values_in_spec_order(layout_sweep, layout_report):
    client, ids = layout_sweep["client"], layout_sweep["ids"]
    t = pd.read_csv(layout_report / "tables/table_V.csv")
    assert list(t["arm"]) == ["gts_gn", "gts_gn+lam", "gts_gn+aau", "gts_gn+lam+aau"]
    assert list(t["baseline"]) == [True, False, False, False]
    for row in t.itertuples():
        m = client.get_run(ids[row.arm]).data.metrics
        if row.status == "complete":
            assert row.accuracy == pytest.approx(m["accuracy"])
            assert row.uf1 == pytest.approx(m["uf1"])
            assert row.fold_mean_accuracy == pytest.approx(m["fold_mean_accuracy"])
    # the arm with a failed fold is shown as incomplete, with its failed fold counted and no metric
    bad = t.set_index("arm").loc["gts_gn+aau"]
    assert bad["status"] == "incomplete" and bad["n_folds_failed"] == 1 and np.isnan(bad["accuracy"])
    # the params that tell the arms apart are columns
    assert {"lam", "au_loss"} <= set(t.columns) and "beta" not in t.columns


def test_significance_marks_the_constructed_difference_only(layout_report):
    s = pd.read_csv(layout_report / "tables/significance_V.csv").set_index("arm")
    assert set(s["baseline"]) == {"gts_gn"}
    assert s.loc["gts_gn+lam+aau", "significant"] and s.loc[
        "gts_gn+lam+aau", "p_permutation"
    ] == pytest.approx(2 / 2**6)
    # identical per-subject accuracies: no difference at all
    assert s.loc["gts_gn+lam", "p_permutation"] == 1.0 and not s.loc["gts_gn+lam", "significant"]
    assert s.loc["gts_gn+lam", "pooled_diff"] == 0.0
    # the incomplete arm is compared on the 5 subjects both completed, not on imputed values
    assert s.loc["gts_gn+aau", "n_subjects"] == len(SUBJECTS) - 1
    assert s.loc["gts_gn+lam+aau", "ci_low"] > 0


def test_aau_weights_table_viii(layout_sweep, layout_report):
    client, ids = layout_sweep["client"], layout_sweep["ids"]
    t = pd.read_csv(layout_report / "tables/table_VIII_gts_gn_lam_aau.csv", index_col="subject")
    folds = client.search_runs(
        [client.get_run(ids["gts_gn+lam+aau"]).info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{ids['gts_gn+lam+aau']}'",
    )
    assert len(folds) == len(SUBJECTS)
    for f in folds:
        for r in (1, 2, 3, 4):
            assert t.loc[f.data.tags["mer.subject"], f"layer{r}"] == pytest.approx(
                f.data.metrics[f"aau_weight_layer{r}"]
            )
    assert t.loc["Average", ["layer1", "layer2", "layer3", "layer4"]].sum() == pytest.approx(1.0)
    # the failed fold of the other AAU arm is listed as failed and kept out of its average
    t2 = pd.read_csv(layout_report / "tables/table_VIII_gts_gn_aau.csv", index_col="subject")
    assert t2.loc["s03", "status"] == "failed" and np.isnan(t2.loc["s03", "layer1"])
    ok = t2.drop(index=["s03", "Average"])
    assert t2.loc["Average", "layer1"] == pytest.approx(ok["layer1"].astype(float).mean())


def test_figures_exist_and_hold_the_runs_values(layout_sweep, layout_report):
    client, ids = layout_sweep["client"], layout_sweep["ids"]
    figs = layout_report / "figures"
    for name in (
        "fig9_accuracy_vs_beta.png",
        "search_history.png",
        "fig5_lam_gts_gn_lam_aau.png",
        "confusion_gts_gn.png",
    ):
        assert (figs / name).stat().st_size > 1000, name
        assert (figs / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Fig. 9: the complete search trials at their beta, the pruned one listed without a value
    pts = pd.read_csv(figs / "fig9_accuracy_vs_beta.csv").set_index("arm")
    for i in range(3):
        run = client.get_run(ids[f"trial-{i}"])
        assert pts.loc[f"trial-{i}", "accuracy"] == pytest.approx(run.data.metrics["accuracy"])
        assert pts.loc[f"trial-{i}", "beta"] == pytest.approx(float(run.data.params["beta"]))
    assert pts.loc["trial-3", "status"] == "pruned" and np.isnan(pts.loc["trial-3", "accuracy"])
    # Fig. 5: the heatmaps are the element-wise mean of the folds' lam/<key>.npy artifacts
    lam = np.load(figs / "fig5_lam_gts_gn_lam_aau.npz")
    rid = ids["gts_gn+lam+aau"]
    folds = client.search_runs(
        [client.get_run(rid).info.experiment_id], f"tags.`mlflow.parentRunId` = '{rid}'"
    )
    stack = [
        np.load(client.download_artifacts(f.info.run_id, "lam/layer2.npy", str(layout_sweep["tmp"])))
        for f in folds
    ]
    np.testing.assert_allclose(lam["layer2"], np.mean(stack, axis=0, dtype=np.float64), rtol=1e-9)
    assert sorted(lam.files) == ["layer1", "layer2", "layer3"]
    # confusion: the config run's confusion.csv
    cm = pd.read_csv(figs / "confusion_gts_gn.csv", index_col=0)
    src = pd.read_csv(
        client.download_artifacts(ids["gts_gn"], "confusion.csv", str(layout_sweep["tmp"])), index_col=0
    )
    np.testing.assert_array_equal(cm.to_numpy(), src.to_numpy())
    assert not (figs / "confusion_gts_gn_aau.png").exists()  # incomplete arm: no partial confusion matrix
    assert not (figs / "fig5_lam_gts_gn_lam.png").exists()  # its folds logged no LAM


def test_search_trials_and_importances(layout_report):
    trials = pd.read_csv(layout_report / "tables/search_trials.csv")
    assert sorted(trials["state"]) == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]
    imp = pd.read_csv(layout_report / "tables/param_importances.csv")
    assert set(imp["param"]) == {"beta", "fusion_layer"} and imp["importance"].sum() == pytest.approx(1.0)
    assert (layout_report / "figures/param_importances.png").exists()


def test_markdown_links_every_file_and_states_the_dataset(layout_report):
    md = (layout_report / "report.md").read_text()
    assert "SynthME" in md and "not CASME II or SAMM numbers" in md
    files = [p.relative_to(layout_report).as_posix() for p in layout_report.rglob("*") if p.is_file()]
    for f in files:
        if f != "report.md":
            assert f"({f})" in md, f"{f} not linked from report.md"
    assert "pooled" in md and "per-fold" in md
    assert "**incomplete**" in md and "**pruned**" in md
    assert "RuntimeError: NaN loss" in md  # the failed fold and its error are listed


@pytest.mark.parametrize(
    "args",
    [
        ["--experiment", "no-such-experiment"],
        ["--experiment", "x", "--tracking-uri", "http://127.0.0.1:9"],
        ["--experiment", "x", "--tracking-uri", "sqlite:////nonexistent/dir/mlflow.db"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(layout_sweep, tmp_path, args):
    if "--tracking-uri" not in args:
        args = args + ["--tracking-uri", layout_sweep["uri"]]
    res = CliRunner().invoke(main, ["report", *args, "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".r.*"))
    assert not (tmp_path.parent / "nonexistent").exists()
