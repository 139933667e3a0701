"""Is an arm really better than its table's baseline? Paired tests over LOSO subjects (pure functions).

Both arms are evaluated on the same left-out subjects (and, with ``protocol.seeds``, the same training
seeds), so the comparison is paired by subject; subjects are the unit of replication (LOSO):

- paired tests on the **seed-averaged per-subject** metric ``d_s = mean_k m_arm(s, k) - mean_k m_base(s, k)``
  over the subjects both arms completed on every seed: a sign-flip permutation test (exact when
  2^n_subjects fits ``n_resamples``) and the Wilcoxon signed-rank test, both two-sided, from scipy;
- a percentile bootstrap CI of the difference of the **seed-mean pooled** metric (accuracy, UF1, UAR:
  what the tables show), resampling whole subjects with replacement (a subject's clips stay together, in
  every seed): for each resample every seed's pooled metric is recomputed from the clip-level predictions
  (:func:`mer_model.metrics.metrics_from_confusion`, equal to scikit-learn's), averaged over seeds, and
  the baseline's is subtracted;
- multiple comparisons: :func:`adjust_pvalues` (Holm by default, Benjamini-Hochberg, or none) over the
  family of one table (every arm x metric against that table's baseline);
- seed noise (:func:`inside_seed_noise`): a difference smaller than the larger seed-to-seed standard
  deviation of the two arms' pooled metric cannot be told from a change of training seed.

With n subjects the smallest two-sided p a sign-flip test can give is 2 / 2^n (0.25 for 3 subjects): a
"not significant" on a tiny sweep says the sweep is too small, not that the arms are equal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mer_model.metrics import METRICS, metrics_from_confusion

ALPHA = 0.05
CORRECTIONS = ("none", "holm", "bh")


def min_attainable_p(n_subjects: int) -> float:
    """Smallest two-sided p of an exact sign-flip test on n paired values: 2 / 2^n (capped at 1)."""
    return min(1.0, 2.0 / 2.0**n_subjects) if n_subjects > 0 else 1.0


def permutation_p(a: np.ndarray, b: np.ndarray, *, n_resamples: int = 20_000, seed: int = 0) -> float:
    """Two-sided paired permutation test of mean(a - b) = 0 (a, b: (n_subjects,) per-subject values)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.allclose(a, b):
        return 1.0  # one pair: its two sign flips give +d and -d, both as extreme as d
    res = stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",  # swaps a/b within each subject: the sign flips of a paired design
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(res.pvalue)


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p on per-subject pairs; 1.0 when every difference is zero."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2 or np.allclose(d, 0.0):
        return 1.0
    # Exact null distribution when it is valid (no zero or tied |d|, small n); otherwise the normal
    # approximation with tie correction: scipy's "auto" would fall back to a slow unvectorised permutation,
    # which permutation_p already does properly. zsplit keeps zero differences in the ranking.
    ties = np.any(d == 0) or len(np.unique(np.abs(d))) < len(d)
    method = "approx" if ties or len(d) > 50 else "exact"
    return float(stats.wilcoxon(d, zero_method="zsplit", alternative="two-sided", method=method).pvalue)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values: sorted ascending, ``p_(i) * (m - i + 1)``, made monotone, <= 1.

    p: (m,) raw p-values of one family. Controls the family-wise error rate at any dependence.
    """
    p = np.asarray(p, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, p[order] * (m - np.arange(m)))
    out = np.empty(m)
    out[order] = np.maximum.accumulate(stepped)
    return out


def adjust_pvalues(p: Sequence[float], method: str = "holm") -> np.ndarray:
    """Adjusted p-values of one family: ``none`` (as given), ``holm``, or ``bh`` (Benjamini-Hochberg,
    scipy.stats.false_discovery_control). NaN entries (no test possible) stay NaN and are not counted."""
    if method not in CORRECTIONS:
        raise ValueError(f"correction {method!r}: expected one of {', '.join(CORRECTIONS)}")
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        if method == "none":
            out[ok] = p[ok]
        elif method == "holm":
            out[ok] = holm(p[ok])
        else:
            out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out


def subject_confusions(
    pred: pd.DataFrame, subjects: Sequence[str], seeds: Sequence[int], num_classes: int
) -> np.ndarray:
    """Per (seed, subject) confusion matrices of clip-level predictions: (n_seeds, n_subjects, C, C).

    pred: columns ``seed, subject, y_true, y_pred`` (a config run's ``predictions.csv``). Summing over
    subjects gives one seed's pooled confusion, from which the pooled metrics follow.
    """
    si = {int(s): i for i, s in enumerate(seeds)}
    ji = {str(s): j for j, s in enumerate(subjects)}
    p = pred[pred["seed"].astype(int).isin(si) & pred["subject"].astype(str).isin(ji)]
    out = np.zeros((len(seeds), len(subjects), num_classes, num_classes))
    idx = (
        p["seed"].astype(int).map(si).to_numpy(int),  # int even when empty (a running sweep's arm)
        p["subject"].astype(str).map(ji).to_numpy(int),
        p["y_true"].to_numpy(int),
        p["y_pred"].to_numpy(int),
    )
    np.add.at(out, idx, 1.0)
    return out


def seed_pooled(conf: np.ndarray, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Pooled metrics of every seed, subjects weighted by ``weights`` (..., n_subjects) (bootstrap counts;
    None = each subject once). conf: (n_seeds, n_subjects, C, C). Returns metric -> (..., n_seeds)."""
    w = np.ones(conf.shape[1]) if weights is None else weights
    pooled = np.einsum("...n,snab->...sab", w, conf)
    return metrics_from_confusion(pooled)


def bootstrap_pooled_diff(
    conf_arm: np.ndarray,
    conf_base: np.ndarray,
    metric: str,
    *,
    confidence: float = 0.95,
    n_resamples: int = 5_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Difference of the seed-mean pooled ``metric`` (arm - baseline) and its percentile bootstrap CI.

    conf_*: (n_seeds, n_subjects, C, C) from :func:`subject_confusions`, subjects aligned. A resample draws
    n_subjects subject indices with replacement, the same for both arms (paired) and for every seed.
    Returns (diff, ci_low, ci_high).
    """
    n = conf_arm.shape[1]

    def diff(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.moveaxis(np.asarray(idx), axis, -1)
        w = (idx[..., None] == np.arange(n)).sum(axis=-2)  # (..., n) times each subject was drawn
        a = seed_pooled(conf_arm, w)[metric].mean(axis=-1)
        b = seed_pooled(conf_base, w)[metric].mean(axis=-1)
        return a - b

    point = float(diff(np.arange(n)))
    if n < 2 or np.array_equal(conf_arm, conf_base):
        return point, point, point
    res = stats.bootstrap(
        (np.arange(n),),
        diff,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)


__all__ = [
    "ALPHA",
    "CORRECTIONS",
    "METRICS",
    "adjust_pvalues",
    "bootstrap_pooled_diff",
    "holm",
    "min_attainable_p",
    "permutation_p",
    "seed_pooled",
    "subject_confusions",
    "wilcoxon_p",
]
