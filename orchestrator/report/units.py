"""The unit of a table's paired statistics: the subject, whatever a fold tests (issue 23).

Under LOSO (one dataset or the composite) a fold tests one subject, so fold runs and subjects coincide.
A cross-dataset fold tests a whole dataset: taken as the unit, three pairs could never show a difference
(a sign-flip over 3 units cannot go below p = 0.25). Its predictions carry each clip's own subject
(``contract.TEST_SUBJECT_COLUMN``), so the tests pair two arms on the same test subjects, as for LOSO:
:func:`by_subject` rewrites the fold rows and predictions the statistics read, one row per (config run,
seed, test subject), metrics from that subject's clips with ``mer_model.metrics`` (the one implementation).

On a union of datasets every subject id carries its dataset (``<label>:<subject>``): :func:`strata` gives
that label, the stratum of a dataset-stratified resample.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from mer_model.data.combine import SEP
from mer_model.metrics import classification_metrics
from orchestrator.store import contract as C
from orchestrator.store.contract import METRICS

COMPLETE = "complete"


def _subject_rows(fold_rows: pd.DataFrame, pred: pd.DataFrame, run_id: str, num_classes: int) -> list[dict]:
    done = {(int(s), str(f)) for s, f, st in zip(fold_rows["seed"], fold_rows["subject"], fold_rows["status"],
                                                 strict=True) if st == COMPLETE}
    arm = fold_rows["arm"].iloc[0] if len(fold_rows) else None
    out = []
    for (seed, fold, subject), g in pred.groupby(["seed", "subject", C.TEST_SUBJECT_COLUMN], sort=True):
        m = classification_metrics(g["y_true"].to_numpy(int), g["y_pred"].to_numpy(int), num_classes)
        out.append({"config_run_id": run_id, "arm": arm, "subject": str(subject), "fold": str(fold),
                    "seed": int(seed), "status": COMPLETE if (int(seed), str(fold)) in done else "failed",
                    "n_test": float(len(g)), **{k: float(m[k]) for k in METRICS}})
    return out


def by_subject(folds: pd.DataFrame, predictions: Mapping[str, pd.DataFrame | None],
               num_classes: int) -> tuple[pd.DataFrame, dict[str, pd.DataFrame | None]]:
    """(fold rows, predictions) with the subject as the unit: unchanged for runs whose predictions have no
    ``test_subject`` column (LOSO); for the others (cross-dataset) one row per (seed, test subject) and
    predictions whose ``subject`` is the clip's own (``fold`` keeps the fold id)."""
    by_clip = {rid: p for rid, p in predictions.items()
               if p is not None and C.TEST_SUBJECT_COLUMN in p and p[C.TEST_SUBJECT_COLUMN].notna().all()}
    if not by_clip:
        return folds, dict(predictions)
    rows = []
    for rid, p in by_clip.items():
        rows += _subject_rows(folds[folds["config_run_id"] == rid], p, rid, num_classes)
    kept = folds[~folds["config_run_id"].isin(list(by_clip))]
    new_preds = {rid: (p.assign(fold=p["subject"], subject=p[C.TEST_SUBJECT_COLUMN].astype(str))
                       if rid in by_clip else p) for rid, p in predictions.items()}
    return pd.concat([kept, pd.DataFrame(rows)], ignore_index=True), new_preds


def strata(subjects: list[str] | pd.Index | np.ndarray) -> list[str] | None:
    """Each subject's dataset on a union (the ``<label>:`` prefix); None unless every subject has one and
    there are at least two datasets (a one-dataset sweep has no strata)."""
    labels = [str(s).split(SEP, 1)[0] if SEP in str(s) else None for s in subjects]
    if any(lab is None for lab in labels) or len(set(labels)) < 2:
        return None
    return labels  # type: ignore[return-value]
