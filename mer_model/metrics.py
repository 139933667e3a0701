"""Accuracy, UF1, UAR and the confusion matrix (scikit-learn), pooled over LOSO folds and per fold.

"Pooled" (the field's convention, and the headline figure): computed once on the concatenated
predictions of all folds. "Per fold": each fold's value, then mean and std over folds. Always labelled.

Per-fold averaging over classes: a left-out subject rarely has every class. UAR (macro recall) averages
over the classes present in ``y_true`` (recall of an absent class is undefined); UF1 (macro F1) over the
classes present in ``y_true`` or ``y_pred`` (predicting an absent class is a real error, F1 = 0). On pooled
predictions, where every class occurs, both are the usual macro averages over all classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np

MetricName = Literal["accuracy", "uf1", "uar"]  # the names every table, tag and objective uses
METRICS: tuple[str, ...] = get_args(MetricName)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> dict[str, Any]:
    """``{"accuracy", "uf1", "uar"}`` as floats and ``"confusion"`` (num_classes x num_classes int array,
    rows = true class, columns = predicted)."""
    # imported here: METRICS / MetricName are read by light modules (CLI, MLflow contract) that must not
    # pay scikit-learn's ~1 s import
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    if yt.shape != yp.shape or yt.ndim != 1 or yt.size == 0:
        raise ValueError(f"y_true {yt.shape} and y_pred {yp.shape} must be equal-length non-empty 1-D arrays")
    present = np.unique(yt)
    seen = np.union1d(yt, yp)
    return {
        "accuracy": float(accuracy_score(yt, yp)),
        "uf1": float(f1_score(yt, yp, labels=seen, average="macro", zero_division=0)),
        "uar": float(recall_score(yt, yp, labels=present, average="macro", zero_division=0)),
        "confusion": confusion_matrix(yt, yp, labels=np.arange(num_classes)),
    }


def pooled_metrics(folds: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int) -> dict[str, Any]:
    """Metrics on the concatenation of every fold's ``(y_true, y_pred)``."""
    yt = np.concatenate([np.asarray(f[0]) for f in folds])
    yp = np.concatenate([np.asarray(f[1]) for f in folds])
    return classification_metrics(yt, yp, num_classes)


def fold_metrics(folds: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int) -> dict[str, float]:
    """``fold_mean_<m>`` and ``fold_std_<m>`` (population std) over the per-fold values of each metric."""
    per = [classification_metrics(yt, yp, num_classes) for yt, yp in folds]
    out: dict[str, float] = {}
    for m in METRICS:
        vals = np.array([p[m] for p in per], dtype=np.float64)
        out[f"fold_mean_{m}"] = float(vals.mean())
        out[f"fold_std_{m}"] = float(vals.std())
    return out


def metrics_from_confusion(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, UF1, UAR from confusion matrices, vectorised over leading axes.

    confusion: (..., C, C) counts, rows = true class, columns = predicted (as ``classification_metrics``).
    Returns ``{"accuracy", "uf1", "uar"}``, each of shape ``confusion.shape[:-2]``. Same averaging as
    :func:`classification_metrics` (UF1 over the classes seen in truth or prediction, UAR over the classes
    present in truth), so a matrix built from ``(y_true, y_pred)`` gives scikit-learn's values exactly.
    Why: the subject bootstrap recomputes pooled metrics thousands of times; summing per-subject confusion
    matrices and reading the metrics off them avoids thousands of scikit-learn calls.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)  # (..., C) true count per class
    predicted = cm.sum(axis=-2)  # (..., C) predicted count per class
    total = support.sum(axis=-1)
    present, seen = support > 0, (support + predicted) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(seen, 2 * tp / (support + predicted), 0.0)
        recall = np.where(present, tp / np.where(present, support, 1.0), 0.0)
        return {
            "accuracy": tp.sum(axis=-1) / total,
            "uf1": f1.sum(axis=-1) / seen.sum(axis=-1),
            "uar": recall.sum(axis=-1) / present.sum(axis=-1),
        }
