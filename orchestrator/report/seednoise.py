"""Training-seed noise, measured (issue 24): the seed-paired differences and a two-level bootstrap.

Two sources of randomness move a pooled difference between two arms: *which subjects* were sampled (the
LOSO population) and *which training seeds* were drawn. With ``seed_scheme: shared`` every fold of a seed
starts from the same initial weights, so a seed's luck is shared by all its subjects: a component the
subject bootstrap cannot see (it resamples subjects inside each seed). Two measurements replace the old
"|Δ| < the larger seed sd" rule:

- :func:`seed_paired`: the per-seed paired differences d_k = pooled_arm(k) - pooled_base(k) on the
  common subjects; their mean is the table's Δ, their standard error sd(d) / sqrt(k) is the seed noise of
  that Δ (subjects held fixed), and Δ is *resolved from the seed noise* when the seed-paired t interval
  (k - 1 degrees of freedom, 95%) excludes 0;
- :func:`bootstrap_diff`: a two-level percentile bootstrap: each resample draws the subjects with
  replacement (within strata when given) **and**, independently, the seeds with replacement; every drawn
  seed's pooled metric is recomputed on the drawn subjects, the arm's and baseline's are averaged over
  the drawn seeds (with multiplicity) and differenced. Paired: one draw serves both arms. With one seed
  it is the subject bootstrap. Its standard deviation over resamples is the SE the power figure uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

import numpy as np
from scipy import stats

from mer_model.metrics import metrics_from_confusion

N_BOOT = 5_000
FEW_SUBJECTS = 15  # below this a percentile interval over subjects is flagged (few distinct resamples)


@dataclass(frozen=True)
class SeedPaired:
    """The per-seed paired differences of one (arm, metric): ``diffs`` (k,), their mean, ``se`` =
    sd(ddof=1) / sqrt(k) (NaN with one seed), and ``resolved``: the 95% t interval on k - 1 df excludes 0
    (None with one seed: not measured)."""

    diffs: np.ndarray
    mean: float
    se: float
    resolved: bool | None


def seed_paired(conf_arm: np.ndarray, conf_base: np.ndarray, metric: str, confidence: float = 0.95
                ) -> SeedPaired:
    """Seed-paired differences of the pooled ``metric`` on every subject of conf_* (n_seeds, n_subjects,
    C, C); seeds aligned (seed k of the arm against seed k of the baseline)."""
    a = metrics_from_confusion(np.asarray(conf_arm, float).sum(axis=1))[metric]
    b = metrics_from_confusion(np.asarray(conf_base, float).sum(axis=1))[metric]
    d = np.asarray(a - b, float)
    k = len(d)
    if k < 2:
        return SeedPaired(d, float(d.mean()) if k else float("nan"), float("nan"), None)
    se = float(np.std(d, ddof=1) / np.sqrt(k))
    half = float(stats.t.ppf(0.5 + confidence / 2, k - 1)) * se
    return SeedPaired(d, float(d.mean()), se, bool(abs(d.mean()) > half))


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval of a seed-mean pooled difference: point, percentile ``low`` / ``high``, ``se``
    (sd of the resampled differences), ``levels`` (``subjects`` or ``subjects and seeds``),
    ``distinct``: how many distinct subject resamples exist, C(2n - 1, n)."""

    point: float
    low: float
    high: float
    se: float
    levels: str
    distinct: int


def _subject_draws(rng: np.random.Generator, n: int, b: int, strata: Sequence[object] | None) -> np.ndarray:
    """(b, n) counts: how often each subject is drawn; within each stratum its own size (stratified)."""
    if strata is None:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(float)
    labels = np.asarray([str(s) for s in strata])
    w = np.zeros((b, n))
    for g in np.unique(labels):
        idx = np.flatnonzero(labels == g)
        w[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=b)
    return w


def _diff(conf_a: np.ndarray, conf_b: np.ndarray, metric: str, w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(b,) seed-weighted mean of the pooled difference: w (b, n) subject counts, v (b, k) seed counts."""
    a = metrics_from_confusion(np.einsum("bn,snij->bsij", w, conf_a))[metric]
    b = metrics_from_confusion(np.einsum("bn,snij->bsij", w, conf_b))[metric]
    d = np.where(v > 0, a - b, 0.0)  # a seed not drawn may have an empty confusion: no NaN into the sum
    return (d * v).sum(axis=-1) / v.sum(axis=-1)


def bootstrap_diff(
    conf_arm: np.ndarray,
    conf_base: np.ndarray,
    metric: str,
    *,
    seeds: bool = True,
    strata: Sequence[object] | None = None,
    confidence: float = 0.95,
    n_resamples: int = N_BOOT,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap of the seed-mean pooled ``metric`` difference (arm - baseline).

    conf_*: (n_seeds, n_subjects, C, C), subjects and seeds aligned. ``seeds``: resample the seeds too
    (two-level; ignored with one seed). ``strata``: one label per subject; subjects are then resampled
    within their stratum (a composite protocol keeps each dataset's subject count).
    """
    a, b = np.asarray(conf_arm, float), np.asarray(conf_base, float)
    k, n = a.shape[:2]
    point = float(_diff(a, b, metric, np.ones((1, n)), np.ones((1, k)))[0])
    distinct = comb(2 * n - 1, n) if n else 0
    two = seeds and k >= 2
    levels = "subjects and seeds" if two else "subjects"
    if n < 2 or np.array_equal(a, b):
        return Interval(point, point, point, 0.0, levels, distinct)
    rng = np.random.default_rng(seed)
    w = _subject_draws(rng, n, n_resamples, strata)
    v = rng.multinomial(k, np.full(k, 1.0 / k), size=n_resamples).astype(float) if two \
        else np.ones((n_resamples, k))
    reps = np.concatenate([_diff(a, b, metric, w[i:i + 1000], v[i:i + 1000])
                           for i in range(0, n_resamples, 1000)])
    lo, hi = np.quantile(reps, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Interval(point, float(lo), float(hi), float(np.std(reps, ddof=1)), levels, distinct)


def bootstrap_value(conf: np.ndarray, metric: str, *, confidence: float = 0.95, n_resamples: int = N_BOOT,
                    seed: int = 0) -> Interval:
    """Two-level percentile bootstrap of one seed-mean pooled ``metric`` (no baseline): conf (n_seeds,
    n_subjects, C, C); subjects and (with two or more) seeds resampled as in :func:`bootstrap_diff`."""
    c = np.asarray(conf, float)
    k, n = c.shape[:2]

    def value(w: np.ndarray, v: np.ndarray) -> np.ndarray:
        m = metrics_from_confusion(np.einsum("bn,snij->bsij", w, c))[metric]
        return (np.where(v > 0, m, 0.0) * v).sum(axis=-1) / v.sum(axis=-1)

    point = float(value(np.ones((1, n)), np.ones((1, k)))[0])
    levels = "subjects and seeds" if k >= 2 else "subjects"
    if n < 2:
        return Interval(point, point, point, 0.0, levels, comb(2 * n - 1, n) if n else 0)
    rng = np.random.default_rng(seed)
    w = _subject_draws(rng, n, n_resamples, None)
    v = rng.multinomial(k, np.full(k, 1.0 / k), size=n_resamples).astype(float) if k >= 2 \
        else np.ones((n_resamples, k))
    reps = value(w, v)
    lo, hi = np.quantile(reps, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Interval(point, float(lo), float(hi), float(np.std(reps, ddof=1)), levels, comb(2 * n - 1, n))


def few_subjects_note(n: int, distinct: int) -> str:
    """The flag of a percentile interval over fewer than :data:`FEW_SUBJECTS` subjects ("" otherwise)."""
    if n >= FEW_SUBJECTS or n == 0:
        return ""
    return (f"{n} subjects: only {distinct} distinct subject resamples, so the percentile interval is "
            "coarse and tends to be too narrow")


__all__ = ["FEW_SUBJECTS", "N_BOOT", "Interval", "SeedPaired", "bootstrap_diff", "bootstrap_value",
           "few_subjects_note", "seed_paired"]
