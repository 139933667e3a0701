"""The pooled metrics a config run carries, as the field reports them: each metric pooled over a seed's
folds (the concatenated predictions of every left-out subject), then the mean and sd over seeds; per-fold
means beside them, labelled; on a union of datasets the same per dataset. Pure: no MLflow here
(``tracking.finish_config_run`` writes what these return)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from orchestrator.store import contract as C
from orchestrator.store.contract import METRICS, FoldRecord


def config_summary(folds: Sequence[FoldRecord], *, seeds: Sequence[int], n_subjects: int,
                   num_classes: int) -> dict[str, Any]:
    """The config run's metrics, all with ``mer_model.metrics`` (the one implementation):

    - ``<m>_seed<k>``: metric m pooled over seed k's folds (concatenated predictions of every subject);
    - ``<m>``: the mean over seeds of ``<m>_seed<k>`` (one seed: the pooled value itself), the headline;
      ``<m>_sd``: their sample standard deviation (ddof=1), only with >= 2 seeds;
    - ``fold_mean_<m>`` / ``fold_std_<m>``: mean / population std of the per-fold values over every
      (seed, subject) fold (per-fold, labelled as such);
    - ``n_folds`` (seeds x subjects), ``n_failed``; ``"confusion"``: counts over every fold's predictions.

    Only meaningful when every fold is complete; the caller marks the config incomplete otherwise.
    """
    from mer_model.metrics import fold_metrics, pooled_metrics

    ok = [f for f in folds if f.ok]
    n_folds = len(seeds) * n_subjects
    out: dict[str, Any] = {"n_folds": float(n_folds), "n_failed": float(n_folds - len(ok))}
    if not ok:
        return out
    pairs = {k: [(np.asarray(f.y_true, dtype=np.int64), np.asarray(f.y_pred, dtype=np.int64))
                 for f in ok if f.seed == k] for k in seeds}
    pooled = {k: pooled_metrics(p, num_classes) for k, p in pairs.items() if p}
    for m in METRICS:
        vals = [pooled[k][m] for k in seeds if k in pooled]
        out.update({f"{m}_seed{k}": float(pooled[k][m]) for k in seeds if k in pooled})
        out[m] = float(np.mean(vals))
        if len(seeds) >= 2 and len(vals) >= 2:
            out[f"{m}_sd"] = float(np.std(vals, ddof=1))
    out.update(fold_metrics([p for k in seeds for p in pairs[k]], num_classes))
    out["confusion"] = sum(pooled[k]["confusion"] for k in pooled)
    return out


def group_summary(folds: Sequence[FoldRecord], groups: dict[str, str], *, seeds: Sequence[int],
                  num_classes: int) -> dict[str, Any]:
    """Per-dataset pooled metrics of a union of datasets: for each dataset d (in the order of ``groups``,
    fold id -> the dataset it tests), ``dataset/<d>/<m>`` (mean over seeds of m pooled over d's folds),
    ``<m>_sd`` and ``<m>_seed<k>`` as :func:`config_summary` computes them on d's folds alone, and
    ``dataset/<d>/n_clips`` (test clips of d per seed)."""
    out: dict[str, Any] = {}
    for label in dict.fromkeys(groups.values()):
        fids = {f for f, g in groups.items() if g == label}
        part = [f for f in folds if f.subject in fids]
        s = config_summary(part, seeds=seeds, n_subjects=len(fids), num_classes=num_classes)
        keep = [k for k in s if k in METRICS or k.endswith("_sd") or "_seed" in k]
        out.update({C.dataset_metric(label, k): s[k] for k in keep if not k.startswith("fold_")})
        if part:
            out[C.dataset_metric(label, "n_clips")] = float(sum(len(f.y_true) for f in part if f.ok)
                                                            / len(seeds))
    return out
