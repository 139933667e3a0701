"""Per-class results and per-subject effects of a table's arms (issue 24): what a reviewer asks after "is
it significant".

- :func:`per_class`: every arm's per-class F1 and recall, pooled over the LOSO folds (each seed's pooled
  confusion, then the mean over seeds), with a 95% percentile bootstrap interval resampling whole
  subjects (the same subject draws for every arm, so arms can be compared class by class);
- :func:`forest`: per left-out subject the difference of the per-fold primary metric of each arm against
  the table's baseline, the mean over seeds and the min / max over seeds (what the forest plot draws).

Both read the confusion stacks of :func:`orchestrator.report.stats.subject_confusions` or the fold
frame; nothing here is a test.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from orchestrator.report.seednoise import N_BOOT

PER_CLASS_COLUMNS = ["arm", "class", "n_true", "f1", "f1_low", "f1_high", "recall", "recall_low",
                     "recall_high", "n_subjects", "n_seeds"]
FOREST_COLUMNS = ["arm", "baseline", "subject", "metric", "diff", "low", "high", "n_seeds"]


def class_scores(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class F1 and recall of confusion matrices (..., C, C) (rows true): each (..., C); a class never
    true has recall NaN, a class neither true nor predicted F1 NaN."""
    cm = np.asarray(conf, float)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
    return f1, recall


def _seed_mean_scores(conf: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(b, C) seed-mean per-class F1 and recall for subject counts w (b, n); conf (k, n, C, C)."""
    f1, rec = class_scores(np.einsum("bn,snij->bsij", w, conf))
    with warnings.catch_warnings():  # a class absent from every seed of a resample: NaN, said as such
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(f1, axis=1), np.nanmean(rec, axis=1)


def per_class(confs: Mapping[str, np.ndarray], labels: Sequence[str], *, n_resamples: int = N_BOOT,
              seed: int = 0) -> pd.DataFrame:
    """One row per (arm, class): :data:`PER_CLASS_COLUMNS`. confs: arm -> (n_seeds, n_subjects, C, C) on
    that arm's complete subjects; ``labels``: the C class names."""
    rows = []
    for arm, conf in confs.items():
        k, n = conf.shape[:2]
        ones = np.ones((1, n))
        f1, rec = (x[0] for x in _seed_mean_scores(conf, ones))
        w = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(float)
        bf1, brec = _seed_mean_scores(conf, w)
        with warnings.catch_warnings():  # all-NaN columns: a class no resample holds
            warnings.simplefilter("ignore", RuntimeWarning)
            f_lo, f_hi = np.nanquantile(bf1, [0.025, 0.975], axis=0)
            r_lo, r_hi = np.nanquantile(brec, [0.025, 0.975], axis=0)
        support = conf.sum(axis=(1, 3)).mean(axis=0)  # true clips per class, mean over seeds
        for c, name in enumerate(labels):
            rows.append({"arm": arm, "class": name, "n_true": float(support[c]), "f1": f1[c],
                         "f1_low": f_lo[c], "f1_high": f_hi[c], "recall": rec[c], "recall_low": r_lo[c],
                         "recall_high": r_hi[c], "n_subjects": n, "n_seeds": k})
    return pd.DataFrame(rows, columns=PER_CLASS_COLUMNS)


def forest(folds: pd.DataFrame, arms: Mapping[str, str], base: str, base_run: str, metric: str
           ) -> pd.DataFrame:
    """Per-subject differences of the per-fold ``metric`` of every arm (name -> config run id) against the
    baseline: :data:`FOREST_COLUMNS`, on the subjects both completed on every seed of both (diff: mean
    over seeds of the seed-paired difference; low / high: its min / max over seeds)."""
    def table(run: str) -> pd.DataFrame:
        f = folds[(folds["config_run_id"] == run) & folds["status"].eq("complete")]
        f = f.assign(seed=f["seed"] if "seed" in f else 0)
        return f.pivot_table(index="subject", columns="seed", values=metric, aggfunc="first")

    b = table(base_run)
    rows = []
    for arm, run in arms.items():
        a = table(run)
        seeds = a.columns.intersection(b.columns)
        d = (a[seeds] - b.reindex(a.index)[seeds]).dropna()
        for s, v in d.iterrows():
            rows.append({"arm": arm, "baseline": base, "subject": s, "metric": metric, "diff": v.mean(),
                         "low": v.min(), "high": v.max(), "n_seeds": len(v)})
    return pd.DataFrame(rows, columns=FOREST_COLUMNS)


__all__ = ["FOREST_COLUMNS", "PER_CLASS_COLUMNS", "class_scores", "forest", "per_class"]
