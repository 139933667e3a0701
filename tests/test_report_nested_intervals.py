"""The Selection section's intervals (issue 24): the nested estimate over outer subjects and seeds, and
the paired optimism gap, from predictions logged with MlflowClient (no training)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from orchestrator.report import seednoise, stats
from orchestrator.report.nested import selection_section

SUBJECTS, SEEDS, C = ["s1", "s2", "s3", "s4", "s5", "s6"], [0, 1], 3


def _preds(rng, subjects, p_right: float) -> pd.DataFrame:
    rows = []
    for k in SEEDS:
        for s in subjects:
            yt = rng.integers(0, C, 8)
            yp = np.where(rng.random(8) < p_right, yt, (yt + 1) % C)
            rows.append(pd.DataFrame({"seed": k, "subject": s, "clip": [f"{s}_{i}" for i in range(8)],
                                      "y_true": yt, "y_pred": yp}))
    return pd.concat(rows, ignore_index=True)


def _log(client, exp, tmp: Path, tags: dict, pred: pd.DataFrame, uf1: float | None = None) -> str:
    rid = client.create_run(exp, tags=tags).info.run_id
    pred.to_csv(tmp / "predictions.csv", index=False)
    client.log_artifact(rid, str(tmp / "predictions.csv"))
    if uf1 is not None:
        client.log_metric(rid, "uf1", uf1)
    return rid


def test_nested_interval_and_paired_optimism_gap(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    sweep = client.create_run(exp, tags={"mer.kind": "sweep", "mer.sweep_id": "nnn"}).info.run_id
    client.log_metric(sweep, "nested_uf1", 0.4)
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "nested_choices.csv").write_text("outer_subject,inner_trial\n" + "".join(
        f"{s},0\n" for s in SUBJECTS))
    client.log_artifact(sweep, str(tmp_path / "tables" / "nested_choices.csv"), "tables")
    chosen = {s: _preds(rng, [s], 0.5) for s in SUBJECTS}  # each chosen config scores its outer subject
    ids = [_log(client, exp, tmp_path, {"mer.kind": "config", "mer.table": "nested"}, p)
           for p in chosen.values()]
    test = _preds(rng, SUBJECTS, 0.7)
    best = _log(client, exp, tmp_path, {"mer.kind": "config", "mer.table": "search", "mer.status": "complete",
                                        "mer.arm": "t-3", "mer.sweep_id": "ttt"}, test, uf1=0.6)
    configs = pd.DataFrame({"run_id": [*ids, best], "table": ["nested"] * len(ids) + ["search"]})
    runs = SimpleNamespace(client=client, experiment_name="e", sweep_run_id=sweep,
                           sweep_tags={"mer.sweep_id": "nnn"}, configs=configs)
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    text = "\n".join(selection_section(runs, out, "uf1"))
    nested = pd.concat(chosen.values())
    cn = stats.subject_confusions(nested, SUBJECTS, SEEDS, C)
    ct = stats.subject_confusions(test, SUBJECTS, SEEDS, C)
    est = seednoise.bootstrap_value(cn, "uf1")
    gap = seednoise.bootstrap_diff(ct, cn, "uf1")
    assert f"{est.point:.4f} [{est.low:.4f}, {est.high:.4f}]" in text
    assert "6 outer subjects and 2 seeds" in text
    assert f"{gap.point:+.4f} [{gap.low:+.4f}, {gap.high:+.4f}]" in text
    assert "could not have been measured here" in text and "6 subjects: only 462 distinct" in text
    assert est.point == pytest.approx(np.mean(stats.seed_pooled(cn)["uf1"]))  # the seed-mean pooled UF1
