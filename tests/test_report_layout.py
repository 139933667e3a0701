"""`mer-orch report` on a sweep written run by run in the documented MLflow layout (docs/architecture.md).

The runs are built here with a real MlflowClient on a real SQLite store, with values chosen by
construction (an arm better on every subject, an arm identical to the baseline, a failed fold, a pruned
Optuna trial) so that the report's handling of each case can be checked; the values the test compares the
report files with are read back through MlflowClient, never taken from the construction.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from orchestrator.cli import main

ODD_ARM = '14 <b>pts</b> | "q" & 5%_*x*'
# the sweep's spec.yaml as the sweep logs it: the paper's values for two arms of table V only
SPEC = {
    "dataset": {"name": "synthme-casme2", "setup": "objective", "magnification": 3.0},
    "protocol": {"seed": 0, "objective": "accuracy"},
    "train": {"epochs": 20, "batch_size": 16, "lr": 0.002, "weight_decay": 0.0001, "optimizer": "adamw"},
    "grid": [{"name": "gts_gn", "table": "V"}],
    "search": {"sampler": "tpe", "n_trials": 4, "params": {"beta": {"low": 0.1, "high": 1.0},
                                                            "fusion_layer": {"choices": [1, 2]}}},
    "reference": {
        "gts_gn": {"table": "V", "casme2": {"acc": 73.31, "f1": 0.717}, "samm": {"acc": 75.89, "f1": 0.741}},
        "gts_gn+lam+aau": {"table": "V", "casme2": {"acc": 77.29, "f1": 0.765}},
    },
}
ENVIRONMENT = {"python": "3.11.2", "torch": "2.13.0+cpu", "device": "cpu", "cwd": "/home/someone/secret"}
SUBJECTS = [f"s{i:02d}" for i in range(1, 7)]  # 6 subjects: the sign-flip test can reach p = 2/2^6
CLASSES = ["negative", "positive", "surprise"]
V = 14


def _log_fold(
    client, exp_id, parent, arm, subject, rng, acc_target, *, failed=False, aau_layers=(), lam=False,
    aau_epochs=0,
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
    if aau_layers and not aau_epochs:  # a store of before the trajectory: the final weight only, at step 0
        w = rng.dirichlet(np.ones(len(aau_layers)))
        metrics.update({f"aau_weight_layer{r}": float(wr) for r, wr in zip(aau_layers, w, strict=True)})
    client.log_batch(rid, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()])
    if aau_layers and aau_epochs:  # the contract's trajectory: step 0 = initialisation, e = after epoch e
        steps = rng.dirichlet(np.ones(len(aau_layers)), size=aau_epochs + 1)
        client.log_batch(rid, metrics=[Metric(f"aau_weight_layer{r}", float(w[i]), e, e)
                                       for e, w in enumerate(steps) for i, r in enumerate(aau_layers)])
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
    if ok:  # clip-level predictions of the complete folds, as the sweep logs them (one seed: no seed column)
        pred = pd.concat(ok)
        pred.insert(1, "clip", [f"{s}_c{i}" for s, i in zip(pred["subject"], range(len(pred)), strict=True)])
        pred.to_csv(tmp_path / "predictions.csv", index=False)
        client.log_artifact(rid, str(tmp_path / "predictions.csv"))
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
    for arm, pts in ((ODD_ARM, 14), ("31 points", 31)):  # a name that HTML, Markdown and LaTeX must escape
        ids[arm] = _log_config(client, exp_id, "sw1", sid, tmp, arm, "IX", {"model": "ss_gn", "points": pts},
                               base)
    order = ["gts_gn", "gts_gn+lam", "gts_gn+aau", "gts_gn+lam+aau"] + [f"trial-{i}" for i in range(4)]
    order += [ODD_ARM, "31 points"]
    pd.DataFrame({"arm": order}).to_csv(tmp / "arms.csv", index=False)
    client.log_artifact(sid, str(tmp / "arms.csv"), "tables")
    (tmp / "spec.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    client.log_artifact(sid, str(tmp / "spec.yaml"))
    (tmp / "environment.json").write_text(json.dumps(ENVIRONMENT))
    client.log_artifact(sid, str(tmp / "environment.json"))
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


def test_significance_marks_the_constructed_difference_only(layout_sweep, layout_report, tmp_path):
    full = pd.read_csv(layout_report / "tables/significance_V.csv")
    assert set(full["metric"]) == {"accuracy", "uf1", "uar"} and len(full) == 3 * 3
    s = full[full["metric"] == "accuracy"].set_index("arm")
    assert set(s["baseline"]) == {"gts_gn"}
    # better on all 6 subjects: the smallest exact p of both the pooled swap test and the per-fold
    # sign-flip test, 2/2^6; Holm over the table's 3 tests (3 arms x the primary metric, the spec's
    # objective accuracy) multiplies the smallest p by 3: not significant after correction with 6 subjects
    assert s.loc["gts_gn+lam+aau", "p_swap"] == pytest.approx(2 / 2**6)
    assert s.loc["gts_gn+lam+aau", "p_fold_permutation"] == pytest.approx(2 / 2**6)
    assert s.loc["gts_gn+lam+aau", "p_adj"] > 0.05 and not s.loc["gts_gn+lam+aau", "significant"]
    assert (full["correction"] == "holm").all() and "3 pooled swap tests" in full.loc[0, "family"]
    assert "no row can reach p_adj < 0.05 (floor 0.0938)" in full.loc[0, "family"]  # 3 x 2/2^6
    # uncorrected, the same p is significant
    out = tmp_path / "none"
    args = [
        "report",
        "--experiment",
        "layout-sweep",
        "--tracking-uri",
        layout_sweep["uri"],
        "--out",
        str(out),
    ]
    assert CliRunner().invoke(main, [*args, "--correction", "none"]).exit_code == 0
    raw = pd.read_csv(out / "tables/significance_V.csv")
    raw = raw[raw["metric"] == "accuracy"].set_index("arm")
    assert raw.loc["gts_gn+lam+aau", "significant"] and (raw["p_adj"] == raw["p_swap"]).all()
    assert "Multiple comparisons: family" in (layout_report / "report.md").read_text()
    # identical per-subject accuracies: no difference at all
    assert s.loc["gts_gn+lam", "p_swap"] == 1.0 and not s.loc["gts_gn+lam", "significant"]
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
    assert len(err.splitlines()) == 1 and ("experiment" in err or "tracking" in err or "storage" in err), err
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".r.*"))
    assert not (tmp_path.parent / "nonexistent").exists()


def _tex_rows(tex: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, body rows) of a booktabs tabular, cells as raw LaTeX (split on unescaped &)."""
    import re

    head, body = tex.split(r"\midrule")[0], tex.split(r"\midrule")[1].split(r"\bottomrule")[0]
    header_line = head.split(r"\toprule")[1]

    def cells(line: str) -> list[str]:
        return [c.strip() for c in re.split(r"(?<!\\)&", line.strip().removesuffix(r"\\").strip())]

    rows = [cells(r) for r in body.strip().split("\n") if r.strip()]
    return cells(header_line), rows


def test_latex_tables_parse_compile_and_equal_the_csv(layout_report, tmp_path):
    import shutil
    import subprocess

    from pylatexenc.latex2text import LatexNodes2Text
    from pylatexenc.latexwalker import LatexEnvironmentNode, LatexWalker

    from orchestrator.report.latex import latex_escape

    to_text = LatexNodes2Text().latex_to_text
    for tag in ("V", "search", "IX"):
        tex = (layout_report / f"tables/table_{tag}.tex").read_text()
        nodes, _, _ = LatexWalker(tex).get_latex_nodes()
        envs = [n.environmentname for n in nodes if isinstance(n, LatexEnvironmentNode)]
        assert envs == ["table*"], envs
        assert all(r in tex for r in (r"\toprule", r"\midrule", r"\bottomrule", r"\caption{", r"\label{"))
        csv = pd.read_csv(layout_report / f"tables/table_{tag}.csv")
        header, rows = _tex_rows(tex)
        header = [to_text(h) for h in header]
        assert len(rows) == len(csv)
        for raw, (_, r) in zip(rows, csv.iterrows(), strict=True):
            assert raw[header.index("arm")].startswith(latex_escape(r["arm"]))  # escaped, in spec order
            cell = dict(zip(header, (to_text(c) for c in raw), strict=True))
            expect_acc = "—" if np.isnan(r["accuracy"]) else f"{100 * r['accuracy']:.2f}"
            assert cell["ACC % (pooled)"] == expect_acc
            assert cell["F1 = UF1 (pooled)"] == ("—" if np.isnan(r["uf1"]) else f"{r['uf1']:.3f}")
            if not np.isnan(r["fold_mean_accuracy"]):
                m, s = 100 * r["fold_mean_accuracy"], 100 * r["fold_std_accuracy"]
                assert cell["ACC % per-fold mean ± std"] == f"{m:.2f} ± {s:.2f}"
        # the best pooled accuracy of the table is the bold one (none when every arm has the same value)
        acc = csv["accuracy"]
        best = list(acc == acc.max()) if acc.nunique() > 1 else [False] * len(acc)
        acc_col = header.index("ACC % (pooled)")
        assert [r"\textbf" in row[acc_col] for row in rows] == best, tag
    if shutil.which("pdflatex") is None:
        return  # parsed above; CI without TeX stops here
    work = tmp_path / "tex"
    shutil.copytree(layout_report / "tables", work)
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
                         cwd=work, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]
    assert (work / "tables.pdf").stat().st_size > 5000
    assert "Overfull \\hbox" not in (work / "tables.log").read_text()  # every table fits the text width


def test_paper_values_only_where_given_and_never_in_a_test(layout_sweep, layout_report, tmp_path):
    ref = pd.read_csv(layout_report / "tables/paper_reference_V.csv").set_index("arm")
    assert sorted(ref.index) == ["gts_gn", "gts_gn+lam+aau"]
    given = SPEC["reference"]["gts_gn+lam+aau"]["casme2"]
    assert ref.loc["gts_gn+lam+aau", "paper_casme2_acc"] == given["acc"]
    assert np.isnan(ref.loc["gts_gn+lam+aau", "paper_samm_acc"])  # not given: blank, not 0
    assert not list(layout_report.glob("tables/paper_reference_search.csv"))
    # our CSVs never carry them; the displayed table does, in its own labelled columns
    for f in layout_report.glob("tables/*.csv"):
        if not f.name.startswith("paper_reference"):
            assert not any(c.startswith("paper") for c in pd.read_csv(f).columns), f
    tex_v = (layout_report / "tables/table_V.tex").read_text()
    assert r"paper: CASME II ACC \%" in tex_v and "77.29" in tex_v and "73.31" in tex_v
    assert "paper:" not in (layout_report / "tables/table_search.tex").read_text()
    md = (layout_report / "report.md").read_text()
    assert "Not comparable: this sweep ran on SynthME" in md
    section_v = md.split("### Table V")[1].split("### ")[0]
    section_s = md.split("### Optuna search")[1].split("### ")[0]
    assert "paper: CASME II ACC %" in section_v and "paper:" not in section_s
    # the statistics are the same whether the paper's values are there or not
    from orchestrator.report.context import Context
    from orchestrator.report.reference import paper_reference
    from orchestrator.report.runs import load_sweep

    runs = load_sweep("layout-sweep", layout_sweep["uri"])
    with_ref = Context("synthme-casme2", "objective", 6, paper_reference(SPEC)[0])
    without = Context("synthme-casme2", "objective", 6, paper_reference({})[0])
    (tmp_path / "a/tables").mkdir(parents=True)
    (tmp_path / "b/tables").mkdir(parents=True)
    from orchestrator.report.sections_tables import table_section

    a = table_section(runs, tmp_path / "a", 0, "V", with_ref)
    b = table_section(runs, tmp_path / "b", 0, "V", without)
    pd.testing.assert_frame_equal(a.significance, b.significance)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.reference is not None and b.reference is None


def test_methods_paragraph_and_no_machine_paths(layout_sweep, layout_report):
    md = (layout_report / "report.md").read_text()
    methods = md.split("## Methods")[1].split("##")[0]
    for phrase in ("Leave-one-subject-out", "6 folds", "seed 0", "20 epochs", "AdamW", "learning rate 0.002",
                   "weight decay 0.0001", "batch size 16", "our choices", "magnified by 3",
                   "selected on the test subjects, optimistic", "torch: 2.13.0+cpu"):
        assert phrase in methods, phrase
    assert "secret" not in methods  # the environment's machine path is left out
    tmp = str(layout_sweep["tmp"])
    for f in ("report.md", "report.html", *(p.relative_to(layout_report) for p in
                                            layout_report.glob("tables/*.tex"))):
        assert tmp not in (layout_report / f).read_text(), f


def test_html_renders_in_a_real_browser(layout_report, tmp_path):
    from orchestrator.report import browser

    if not browser.available():
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run installs it)")
    md = (layout_report / "report.md").read_text()
    page = (layout_report / "report.html").read_text()
    assert 'src="figures/' not in page and page.count('src="data:image/png;base64,') == md.count("![")
    assert "<script" not in page  # the report itself runs nothing
    v = browser.check_page(layout_report / "report.html")
    assert v["errors"] == [] and v["broken_images"] == []
    assert v["images"] == md.count("![") and v["images"] >= 6
    n_md_tables = sum(1 for line in md.splitlines() if line.startswith("|:"))
    assert v["tables"] == n_md_tables and v["empty_tables"] == 0
    assert v["html_in_cells"] == 0 and ODD_ARM in v["text"]  # the odd arm name is text, not markup
    shot = browser.screenshot(layout_report / "report.html", tmp_path / "report-html.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


# --------------------------------------------------------- issue 16: W trajectory, non-paper arms, guesses
EPOCHS_16 = 5
_PAPER_16 = {"input": "absolute", "aau_weighting": "learned"}  # a sweep logs the extension keys too
_TRAJ_16 = {"aau_layers": (1, 2, 3, 4), "aau_epochs": EPOCHS_16}
ARMS_16 = [  # (arm, table, params, fold kw)
    ("GCN", "III", {"model": "gcn", "au_loss": "none", **_PAPER_16}, {}),
    ("GCN onset", "III", {"model": "gcn", "au_loss": "none", **_PAPER_16, "input": "onset_delta"}, {}),
    ("AAU learned", "V", {"model": "gts_gn", "au_loss": "aau", **_PAPER_16}, _TRAJ_16),
    ("AAU uncertainty", "V",
     {"model": "gts_gn", "au_loss": "aau", **_PAPER_16, "aau_weighting": "uncertainty"}, _TRAJ_16),
    ("GTS-GN (layer 1) AU loss", "VII", {"model": "gts_gn", "fusion_layer": 1, "au_loss": "layer:4"}, {}),
]


@pytest.fixture(scope="module")
def issue16(tmp_path_factory):
    """A second store: a gcn arm and the same arm with a non-paper input; two AAU arms whose folds log the
    per-epoch weight trajectory (steps 0..E); a Table VII AU-loss arm. Returns the client, ids, report."""
    tmp = tmp_path_factory.mktemp("issue16")
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = MlflowClient(uri)
    exp_id = client.create_experiment("issue16", artifact_location=str(tmp / "artifacts"))
    tags = {"mer.kind": "sweep", "mer.sweep_id": "sw16", "mer.dataset": "synthme-casme2",
            "mer.setup": "objective"}
    sid = client.create_run(exp_id, run_name="sweep", tags=tags).info.run_id
    acc = dict(zip(SUBJECTS, np.linspace(0.34, 0.67, len(SUBJECTS)), strict=True))
    ids = {arm: _log_config(client, exp_id, "sw16", sid, tmp, arm, table, params, acc, **kw)
           for arm, table, params, kw in ARMS_16}
    spec = {k: v for k, v in SPEC.items() if k not in ("search", "reference")}
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    client.log_artifact(sid, str(tmp / "spec.yaml"))
    client.set_terminated(sid, "FINISHED")
    out = tmp / "report"
    res = CliRunner().invoke(main, ["report", "--experiment", "issue16", "--tracking-uri", uri,
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    return {"client": client, "ids": ids, "out": out, "tmp": tmp}


def _fold_run_ids(client, config_run_id):
    exp = client.get_run(config_run_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{config_run_id}'")
    return [f.info.run_id for f in runs]


def test_aau_trajectory_is_the_mean_of_the_logged_histories(issue16):
    from orchestrator.report.build import slug

    client, out = issue16["client"], issue16["out"]
    md = (out / "report.md").read_text()
    for arm in ("AAU learned", "AAU uncertainty"):
        traj = pd.read_csv(out / f"figures/aau_trajectory_{slug(arm)}.csv")
        assert list(traj.columns) == ["epoch", "layer", "mean", "low", "high", "n_folds"]
        logged = pd.DataFrame(  # read back from the store, every fold run's whole history
            [(m.step, r, m.value) for rid in _fold_run_ids(client, issue16["ids"][arm]) for r in (1, 2, 3, 4)
             for m in client.get_metric_history(rid, f"aau_weight_layer{r}")],
            columns=["epoch", "layer", "w"])
        expect = logged.groupby(["epoch", "layer"])["w"].agg(m="mean", lo="min", hi="max", n="count")
        got = traj.merge(expect.reset_index(), on=["epoch", "layer"], validate="1:1")
        assert len(got) == len(traj) == (EPOCHS_16 + 1) * 4 and (got["n"] == len(SUBJECTS)).all()
        np.testing.assert_allclose(got["mean"], got["m"], rtol=1e-12)
        np.testing.assert_allclose(got[["low", "high"]].to_numpy(), got[["lo", "hi"]].to_numpy(), rtol=1e-12)
        # Table VIII is the final epoch's weight: its average is the trajectory's last point
        t8 = pd.read_csv(out / f"tables/table_VIII_{slug(arm)}.csv", index_col="subject")
        last = traj[traj["epoch"] == EPOCHS_16].set_index("layer")["mean"]
        assert [t8.loc["Average", f"layer{r}"] for r in (1, 2, 3, 4)] == pytest.approx(list(last))
        for suffix in (".png", ".pdf", ".svg"):
            assert (out / f"figures/aau_trajectory_{slug(arm)}{suffix}").stat().st_size > 1000
        # in report.md directly after the arm's Table VIII, captioned with what the weights are
        section = md.split(f"### {arm}\n")[1].split("\n### ")[0]
        assert section.index(f"table_VIII_{slug(arm)}.csv") < section.index(f"aau_trajectory_{slug(arm)}.png")
        assert "min-max range over the fold runs" in section and "0 = at initialisation" in section
    learned = md.split("### AAU learned\n")[1].split("\n### ")[0]
    unc = md.split("### AAU uncertainty\n")[1].split("\n### ")[0]
    assert "learned AAU layer weights W_r² / Σ W² (Eq. 11)" in learned
    assert "exp(-s_r) / Σ exp(-s)" in unc and "learned AAU" not in unc
    tex = (out / f"tables/table_VIII_{slug('AAU uncertainty')}.tex").read_text()
    assert "uncertainty" in tex and "learned AAU" not in tex


def test_old_store_without_trajectory_draws_nothing_and_says_why(layout_report):
    md = (layout_report / "report.md").read_text()
    section = md.split("### gts_gn+lam+aau\n")[1].split("\n### ")[0]
    assert "No trajectory of the layer weights over training" in section and "one value per layer" in section
    assert not list(layout_report.glob("figures/aau_trajectory_*"))


def test_non_paper_arms_are_marked_with_a_footnote(issue16, layout_report, tmp_path):
    out = issue16["out"]
    md = (out / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| GCN")]
    assert any(r.startswith("| GCN onset‡") for r in rows)
    assert any(r.startswith("| GCN (baseline)") for r in rows)
    assert not any(r.startswith("| GCN‡") for r in rows)
    assert "‡ not in the paper: GCN onset: input = onset_delta." in md
    assert "‡ not in the paper: AAU uncertainty: aau_weighting = uncertainty." in md
    tex = (out / "tables/table_III.tex").read_text()
    header, body = _tex_rows(tex)
    arm_cells = [row[header.index("arm")] for row in body]
    assert sorted(arm_cells) == ["GCN (baseline)", r"GCN onset$^\ddagger$"]
    assert r"not in the paper: GCN onset: input = onset\_delta" in tex
    t3 = pd.read_csv(out / "tables/table_III.csv").set_index("arm")
    assert t3.loc["GCN onset", "not_in_paper"] == "input = onset_delta"
    assert pd.isna(t3.loc["GCN", "not_in_paper"]) and "input" in t3.columns
    methods = md.split("## Methods")[1].split("\n## ")[0]
    assert "`input = onset_delta`: onset-relative input" in methods and "(ours, not in the paper)" in methods
    assert "`aau_weighting = uncertainty`" in methods
    # a sweep of paper arms only: no mark, no footnote, no extension column, no sentence
    plain = (layout_report / "report.md").read_text()
    assert "‡" not in plain and "not in the paper" not in plain
    assert "not_in_paper" not in pd.read_csv(layout_report / "tables/table_V.csv").columns
    assert "ddagger" not in (layout_report / "tables/table_V.tex").read_text()
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        return
    shutil.copytree(out / "tables", tmp_path / "tex")
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
                         cwd=tmp_path / "tex", capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]


def test_underspecified_lists_the_gcn_guess_only_with_a_gcn_arm(issue16, layout_report):
    def section(folder):
        md = (folder / "report.md").read_text()
        return md.split("## Where the paper is underspecified")[1].split("\n## ")[0]

    with_gcn, without = section(issue16["out"]), section(layout_report)
    assert "Vanilla GCN baseline" in with_gcn and "Vanilla GCN" not in without
    for s in (with_gcn, without):  # both sweeps have gts_gn arms and 14-point arms
        assert "SS module's BatchNorm and residual" in s and "17 (R brow out)" in s
    assert "31-point set" in without and "31-point set" not in with_gcn  # only the layout sweep has one
    assert "Table VII's \"AU loss\" column" in with_gcn and "au_loss `layer:4`" in with_gcn
    assert "Table VII's" not in without  # the layout sweep has no Table VII arm
