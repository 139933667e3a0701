"""`mer-orch report` on a sweep logged with MlflowClient in the seeds layout (architecture.md, seeds
contract): two seeds, five subjects, three arms. The report must show mean ± sd over seeds, corrected
p-values and bootstrap intervals for accuracy, UF1 and UAR; every expected value is recomputed here from
what was logged (scikit-learn on each seed's predictions), never typed in."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from mer_model.metrics import classification_metrics
from orchestrator.cli import main
from orchestrator.report import stats

SEEDS = (1, 2)
SUBJECTS = ["s1", "s2", "s3", "s4", "s5"]
C, N_CLIPS = 3, 10
METRICS = ("accuracy", "uf1", "uar")


def _predictions(rng, p_right: float) -> pd.DataFrame:
    rows = []
    for k in SEEDS:
        for s in SUBJECTS:
            yt = rng.integers(0, C, N_CLIPS)
            yp = np.where(rng.random(N_CLIPS) < p_right, yt, (yt + rng.integers(1, C, N_CLIPS)) % C)
            rows.append(pd.DataFrame({"seed": k, "subject": s, "clip": [f"{s}_{i}" for i in range(N_CLIPS)],
                                      "y_true": yt, "y_pred": yp}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def _log_arm(client, exp, sweep, arm, pred: pd.DataFrame, tmp, baseline=False) -> str:
    tags = {"mlflow.parentRunId": sweep, "mer.kind": "config", "mer.arm": arm, "mer.table": "V",
            "mer.sweep_id": "sw", "mer.dataset": "synthme-tiny", "mer.status": "complete"}  # fmt: skip
    if baseline:
        tags["mer.baseline"] = "true"
    rid = client.create_run(exp, run_name=arm, tags=tags).info.run_id
    for (k, s), f in pred.groupby(["seed", "subject"]):
        m = classification_metrics(f.y_true, f.y_pred, C)
        fold = client.create_run(exp, run_name=f"{arm}/{s}", tags={
            "mlflow.parentRunId": rid, "mer.kind": "fold", "mer.arm": arm, "mer.subject": s,
            "mer.seed": str(k), "mer.status": "complete", "mer.attempt": "1"})  # fmt: skip
        ms = {x: m[x] for x in METRICS} | {"n_test": len(f)}
        client.log_batch(fold.info.run_id, metrics=[Metric(x, float(v), 0, 0) for x, v in ms.items()])
    per_seed = {k: classification_metrics(f.y_true, f.y_pred, C) for k, f in pred.groupby("seed")}
    metrics = {}
    for x in METRICS:
        vals = [per_seed[k][x] for k in SEEDS]
        metrics |= {f"{x}_seed{k}": v for k, v in zip(SEEDS, vals, strict=True)}
        metrics |= {x: float(np.mean(vals)), f"{x}_sd": float(np.std(vals, ddof=1))}
    params = {"seeds": ",".join(map(str, SEEDS)), "num_classes": C, "model": "gts_gn", "lam": arm != "base"}
    pred.to_csv(tmp / "predictions.csv", index=False)
    client.log_artifact(rid, str(tmp / "predictions.csv"))
    client.log_batch(rid, metrics=[Metric(x, float(v), 0, 0) for x, v in metrics.items()],
                     params=[Param(x, str(v)) for x, v in params.items()])  # fmt: skip
    return rid


@pytest.fixture(scope="module")
def seeds_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seeds")
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("seeds", artifact_location=str(tmp / "artifacts"))
    sweep = client.create_run(
        exp, tags={"mer.kind": "sweep", "mer.sweep_id": "sw", "mer.dataset": "synthme-tiny"}
    )
    rng = np.random.default_rng(0)
    preds = {
        "base": _predictions(rng, 0.35),
        "better": _predictions(rng, 0.9),
        "same": _predictions(rng, 0.35),
    }
    ids = {a: _log_arm(client, exp, sweep.info.run_id, a, p, tmp, a == "base") for a, p in preds.items()}
    client.set_tag(sweep.info.run_id, "mer.spec", "seeds.yaml")
    out = tmp / "report"
    res = CliRunner().invoke(
        main, ["report", "--experiment", "seeds", "--tracking-uri", uri, "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    return {"client": client, "ids": ids, "preds": preds, "out": out, "uri": uri}


def test_table_shows_mean_and_sd_over_seeds_of_every_pooled_metric(seeds_sweep):
    t = pd.read_csv(seeds_sweep["out"] / "tables/table_V.csv").set_index("arm")
    for arm, pred in seeds_sweep["preds"].items():
        per_seed = [classification_metrics(f.y_true, f.y_pred, C) for _, f in pred.groupby("seed")]
        for m in METRICS:
            assert t.loc[arm, m] == pytest.approx(np.mean([p[m] for p in per_seed]))
            assert t.loc[arm, f"{m}_sd"] == pytest.approx(np.std([p[m] for p in per_seed], ddof=1))
        assert t.loc[arm, "n_seeds"] == 2
    md = (seeds_sweep["out"] / "report.md").read_text()
    acc, sd = t.loc["better", "accuracy"], t.loc["better", "accuracy_sd"]
    assert f"{100 * acc:.2f} ± {100 * sd:.2f}" in md
    assert f"{t.loc['better', 'uf1']:.3f} ± {t.loc['better', 'uf1_sd']:.3f}" in md


def test_significance_has_corrected_p_and_subject_bootstrap_ci_for_all_three_metrics(seeds_sweep):
    s = pd.read_csv(seeds_sweep["out"] / "tables/significance_V.csv")
    assert sorted(zip(s.arm, s.metric, strict=True)) == sorted(
        (a, m) for a in ("better", "same") for m in METRICS
    )
    assert (
        (s["correction"] == "holm").all() and s["family"].nunique() == 1
        and "2 pooled swap tests" in s.loc[0, "family"]  # primary: the objective, uf1
    )
    prim = s[s["metric"] == "uf1"]
    assert prim["p_adj"].to_numpy() == pytest.approx(stats.holm(prim["p_swap"].to_numpy()))
    assert s.loc[s["metric"] != "uf1", "p_adj"].isna().all()
    base = seeds_sweep["preds"]["base"]
    for row in s.itertuples():
        arm = seeds_sweep["preds"][row.arm]
        want = np.mean([
            classification_metrics(arm[arm.seed == k].y_true, arm[arm.seed == k].y_pred, C)[row.metric]
            - classification_metrics(base[base.seed == k].y_true, base[base.seed == k].y_pred, C)[row.metric]
            for k in SEEDS
        ])  # fmt: skip
        assert row.pooled_diff == pytest.approx(want) and row.ci_low <= row.pooled_diff <= row.ci_high
        assert row.n_seeds == 2 and row.n_subjects == len(SUBJECTS)
    better = s[s.arm == "better"]
    assert (better["ci_low"] > 0).all()
    # 5 subjects: the exact swap test cannot go below 2/2^5 = 0.0625, Holm over 2 tests 0.125, so nothing
    # is significant; the verdict says why, and that the interval excluding 0 is not established
    assert (s["p_floor"] == 2 / 2**5).all()
    b_uf1 = better[better["metric"] == "uf1"].iloc[0]
    assert not s["significant"].any() and "p_adj cannot go below 0.125" in b_uf1["verdict"]
    assert "excludes 0 but the corrected test does not reject: not established" in b_uf1["verdict"]
    assert better.loc[better["metric"] != "uf1", "verdict"].str.startswith("secondary metric").all()
    md = (seeds_sweep["out"] / "report.md").read_text()
    assert "Multiple comparisons: family: the 2 pooled swap tests of table V" in md
    for label in ("ACC %", "UF1", "UAR"):  # one Markdown row per (arm, metric)
        assert re.search(rf"\|\s*better\s*\|\s*{label} \((primary|secondary)\)\s*\|", md), label


def test_bh_correction_from_the_command_line(seeds_sweep, tmp_path):
    out = tmp_path / "bh"
    res = CliRunner().invoke(main, ["report", "--experiment", "seeds", "--tracking-uri", seeds_sweep["uri"],
                                    "--out", str(out), "--correction", "bh"])  # fmt: skip
    assert res.exit_code == 0, res.output
    s = pd.read_csv(out / "tables/significance_V.csv")
    assert (s["correction"] == "bh").all()
    prim = s[s["metric"] == "uf1"]
    assert prim["p_adj"].to_numpy() == pytest.approx(stats.adjust_pvalues(prim["p_swap"], "bh"))
    bad = CliRunner().invoke(main, ["report", "--experiment", "seeds", "--tracking-uri", seeds_sweep["uri"],
                                    "--correction", "bonferroni"])  # fmt: skip
    assert bad.exit_code == 2


def test_per_class_forest_and_power_follow_the_logged_predictions(seeds_sweep):
    """Per-class F1 / recall of every arm = scikit-learn's per seed, averaged over seeds, inside its
    interval; the forest data are the per-fold differences; the power table names the primary tests."""
    from sklearn.metrics import f1_score, recall_score

    out = seeds_sweep["out"]
    pc = pd.read_csv(out / "tables/per_class_V.csv").set_index(["arm", "class"])
    assert set(pc.index.get_level_values("arm")) == set(seeds_sweep["preds"])
    for arm, pred in seeds_sweep["preds"].items():
        f1 = np.mean([f1_score(f.y_true, f.y_pred, labels=range(C), average=None)
                      for _, f in pred.groupby("seed")], axis=0)
        rec = np.mean([recall_score(f.y_true, f.y_pred, labels=range(C), average=None)
                       for _, f in pred.groupby("seed")], axis=0)
        for c in range(C):
            row = pc.loc[(arm, f"class {c}")]
            assert row["f1"] == pytest.approx(f1[c]) and row["recall"] == pytest.approx(rec[c])
            assert row["f1_low"] <= row["f1"] <= row["f1_high"]
    fo = pd.read_csv(out / "figures/forest_V.csv")
    assert set(fo["arm"]) == {"better", "same"} and (fo["metric"] == "uf1").all() and len(fo) == 2 * 5
    for r in fo.itertuples():
        d = [classification_metrics(f.y_true, f.y_pred, C)["uf1"] for _, f in
             seeds_sweep["preds"][r.arm][seeds_sweep["preds"][r.arm].subject == r.subject].groupby("seed")]
        b = [classification_metrics(f.y_true, f.y_pred, C)["uf1"] for _, f in
             seeds_sweep["preds"]["base"][seeds_sweep["preds"]["base"].subject == r.subject].groupby("seed")]
        assert r.diff == pytest.approx(np.mean(np.subtract(d, b)))
    pw = pd.read_csv(out / "tables/power_V.csv")
    assert list(pw["arm"]) == ["better", "same"] and (pw["alpha"] == 0.025).all()  # Holm over 2 tests
    assert "per_class_V.tex" in (out / "tables/tables.tex").read_text()
