"""Is an arm really better than its table's baseline? Paired tests over LOSO subjects (pure functions).

Both arms are evaluated on the same left-out subjects, so the comparison is paired by subject:

- per-subject accuracy difference ``d_s = acc_arm(s) - acc_base(s)`` over the subjects both arms have
  completed (a subject missing or failed on either side is dropped from the pair, never imputed);
- a sign-flip permutation test on ``mean(d)`` (exact when 2^n_subjects fits ``n_resamples``), and the
  Wilcoxon signed-rank test, both two-sided, from scipy;
- a bootstrap confidence interval of the *pooled* accuracy difference (the number the tables show:
  correct / total over all test clips), resampling subjects with replacement so that clips of one subject
  stay together.

With n subjects the smallest two-sided p a sign-flip test can give is 2 / 2^n (0.25 for 3 subjects): a
"not significant" on a tiny sweep says the sweep is too small, not that the arms are equal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class PairedComparison:
    """Arm vs baseline on their common subjects. Accuracies are fractions in [0, 1]."""

    n_subjects: int
    mean_diff: float  # mean over subjects of acc_arm - acc_base
    pooled_diff: float  # pooled accuracy of the arm minus the baseline's, on the common subjects
    ci_low: float  # bootstrap CI of pooled_diff (subjects resampled)
    ci_high: float
    p_permutation: float  # two-sided sign-flip permutation test on mean_diff
    p_wilcoxon: float  # two-sided Wilcoxon signed-rank test (1.0 when every difference is 0)
    min_p: float  # smallest p the permutation test can reach with n_subjects
    significant: bool  # p_permutation < alpha

    def to_dict(self) -> dict:
        return asdict(self)


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


def bootstrap_pooled_diff(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    n_test: np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 5_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Pooled accuracy difference and its percentile bootstrap CI, resampling subjects.

    correct_a, correct_b, n_test: (n_subjects,) correct predictions of each arm and test clips per subject.
    Pooled accuracy = sum(correct) / sum(n_test) over the (resampled) subjects.
    Returns (pooled_diff, ci_low, ci_high).
    """
    ca, cb, n = (np.asarray(x, float) for x in (correct_a, correct_b, n_test))
    point = (ca.sum() - cb.sum()) / n.sum()
    if len(n) < 2 or np.allclose(ca, cb):
        return float(point), float(point), float(point)

    def pooled_diff(x, y, m, axis):
        return (x.sum(axis=axis) - y.sum(axis=axis)) / m.sum(axis=axis)

    res = stats.bootstrap(
        (ca, cb, n),
        pooled_diff,
        paired=True,  # one resampled subject brings its clips for both arms
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(point), float(res.confidence_interval.low), float(res.confidence_interval.high)


def compare_paired(
    acc_arm: np.ndarray,
    acc_base: np.ndarray,
    n_test: np.ndarray,
    *,
    alpha: float = ALPHA,
    seed: int = 0,
) -> PairedComparison:
    """Arm vs baseline on the same subjects (all arrays (n_subjects,), aligned by subject).

    acc_*: per-subject (per-fold) accuracy in [0, 1]; n_test: test clips of each subject (same for both arms,
    the fold is the same). Correct counts are recovered as round(acc * n_test).
    """
    acc_arm, acc_base, n_test = (np.asarray(x, float) for x in (acc_arm, acc_base, n_test))
    n = len(acc_arm)
    if n == 0:
        nan = float("nan")
        return PairedComparison(0, nan, nan, nan, nan, nan, nan, 1.0, False)
    p_perm = permutation_p(acc_arm, acc_base, seed=seed)
    pooled, lo, hi = bootstrap_pooled_diff(
        np.round(acc_arm * n_test), np.round(acc_base * n_test), n_test, seed=seed
    )
    return PairedComparison(
        n_subjects=n,
        mean_diff=float(np.mean(acc_arm - acc_base)),
        pooled_diff=pooled,
        ci_low=lo,
        ci_high=hi,
        p_permutation=p_perm,
        p_wilcoxon=wilcoxon_p(acc_arm, acc_base),
        min_p=min_attainable_p(n),
        significant=bool(p_perm < alpha),
    )
