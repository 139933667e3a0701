"""The unit of the report's paired statistics is the subject (issue 23): a cross-dataset fold tests a whole
dataset, and its predictions' test subjects become the rows the tests pair; LOSO folds stay as they are."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from orchestrator.report.units import by_subject, strata
from orchestrator.store import contract as C


def _pred(rng, fold, subjects, seeds=(0, 1)):
    rows = []
    for seed in seeds:
        for s in subjects:
            for k in range(int(rng.integers(2, 6))):
                rows.append({"seed": seed, "subject": fold, "clip": f"{s}_c{k}",
                             "y_true": int(rng.integers(3)), "y_pred": int(rng.integers(3)),
                             C.TEST_SUBJECT_COLUMN: s})
    return pd.DataFrame(rows)


def test_a_cross_dataset_fold_becomes_one_row_per_test_subject_with_its_own_metrics():
    rng = np.random.default_rng(0)
    pred = pd.concat([_pred(rng, "b+c->a", ["a:s1", "a:s2"]),
                      _pred(rng, "a+c->b", ["b:s1", "b:s2", "b:s3"])])
    folds = pd.DataFrame([{"config_run_id": "r1", "arm": "x", "subject": f, "seed": s,
                           "status": "failed" if (f, s) == ("a+c->b", 1) else "complete"}
                          for f in ("b+c->a", "a+c->b") for s in (0, 1)])
    loso = pd.DataFrame([{"config_run_id": "r2", "arm": "y", "subject": "s1", "seed": 0,
                          "status": "complete"}])
    out, preds = by_subject(pd.concat([folds, loso]), {"r1": pred, "r2": None}, num_classes=3)
    assert out[out["config_run_id"] == "r2"].to_dict("records")[0]["subject"] == "s1"  # LOSO untouched
    mine = out[out["config_run_id"] == "r1"]
    assert sorted(set(mine["subject"])) == ["a:s1", "a:s2", "b:s1", "b:s2", "b:s3"]
    assert len(mine) == 2 * 5
    for r in mine.to_dict("records"):
        g = pred[(pred["seed"] == r["seed"]) & (pred[C.TEST_SUBJECT_COLUMN] == r["subject"])]
        assert r["accuracy"] == pytest.approx(accuracy_score(g["y_true"], g["y_pred"]))
        seen = np.union1d(g["y_true"], g["y_pred"])  # per-fold UF1: over the classes present (metrics.py)
        assert r["uf1"] == pytest.approx(f1_score(g["y_true"], g["y_pred"], average="macro", labels=seen,
                                                  zero_division=0))
        assert r["n_test"] == len(g) and r["fold"].endswith(r["subject"].split(":")[0])
        assert r["status"] == ("failed" if (r["fold"], r["seed"]) == ("a+c->b", 1) else "complete")
    assert (preds["r1"]["subject"] == pred[C.TEST_SUBJECT_COLUMN]).all()
    assert (preds["r1"]["fold"] == pred["subject"]).all()


def test_strata_are_the_dataset_prefixes_of_a_union_only():
    assert strata(["casme2:sub01", "smic:s01", "casme2:sub02"]) == ["casme2", "smic", "casme2"]
    assert strata(["sub01", "sub02"]) is None  # one dataset: no strata
    assert strata(["casme2:sub01", "casme2:sub02"]) is None
