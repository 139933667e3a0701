"""The pooled subject-swap permutation test: the test behind the report's † (issue 24).

The tables show the **pooled** metric (computed once on every LOSO fold's predictions, mean over seeds),
and the bootstrap interval is for the pooled difference; the test that decides † must test that same
number. Under the null hypothesis "the two arms are exchangeable on every subject", swapping the two arms'
predictions of a subject leaves the joint distribution unchanged. So:

- a *swap vector* z in {0, 1}^n marks the subjects whose arm / baseline predictions are exchanged; the
  same z holds for every seed (a subject is the unit of replication; its seeds are not exchangeable on
  their own because they share the subject's clips);
- for each z, each seed's pooled metric is recomputed from the per-(seed, subject) confusion counts
  (:func:`mer_model.metrics.metrics_from_confusion`, vectorised over the stack), averaged over seeds, and
  the baseline's is subtracted: T(z);
- the observed statistic is T(0). T(1 - z) = -T(z) exactly, so the null distribution is symmetric.

**Exact** when 2^n <= ``n_resamples`` (every z enumerated): p = #{z: |T(z)| >= |T(0)|} / 2^n, floor
2 / 2^n (z = 0 and z = 1 always count). **Monte Carlo** above: B = ``n_resamples`` uniform z,
two-sided p = min(1, 2 min((1 + #{T_b >= t}) / (B + 1), (1 + #{T_b <= t}) / (B + 1))), the convention of
:func:`scipy.stats.permutation_test`, floor 2 / (B + 1): a Monte Carlo p is never below it, whatever n.

``strata`` (optional per-subject group label, e.g. the dataset of a composite protocol): swaps stay
within subjects (a subject is exchanged whole, as before), and the statistic is either ``pooled`` over
every subject (strata ignored by the statistic) or ``strata_mean``: the seed-mean pooled difference
computed inside each stratum, then averaged over strata with equal weight (each dataset counts once,
whatever its clip count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mer_model.metrics import metrics_from_confusion

Combine = Literal["pooled", "strata_mean"]
DEFAULT_RESAMPLES = 20_000  # exact up to 14 subjects; the Monte Carlo floor 2/20001 ~ 1e-4 above
_CHUNK = 4096  # swap vectors per einsum: (chunk, seeds, C, C) floats stay a few MB


@dataclass(frozen=True)
class SwapTest:
    """Result of :func:`swap_test`. ``statistic``: T(0), arm minus baseline (fraction); ``p``: two-sided;
    ``floor``: the smallest p this test could have given (2/2^n exact, 2/(B+1) Monte Carlo); ``exact``:
    every swap vector enumerated; ``n_resamples``: 2^n when exact, else B."""

    statistic: float
    p: float
    floor: float
    exact: bool
    n_resamples: int


def _strata_index(strata: Sequence[object] | None, n: int) -> tuple[np.ndarray, int]:
    """Per-subject stratum index (n,) and the stratum count (one stratum without labels)."""
    if strata is None:
        return np.zeros(n, dtype=int), 1
    labels = np.asarray([str(s) for s in strata])
    if len(labels) != n:
        raise ValueError(f"strata: {len(labels)} labels for {n} subjects; expected one per subject")
    _, idx = np.unique(labels, return_inverse=True)
    return idx, int(idx.max()) + 1


def swapped_statistic(
    conf_arm: np.ndarray,
    conf_base: np.ndarray,
    metric: str,
    swaps: np.ndarray,
    strata: Sequence[object] | None = None,
    combine: Combine = "pooled",
) -> np.ndarray:
    """T(z) for each swap vector: (m,) from swaps (m, n_subjects) in {0, 1}.

    conf_*: (n_seeds, n_subjects, C, C) per-(seed, subject) confusion counts, subjects aligned (from
    :func:`orchestrator.report.stats.subject_confusions`). T(z): the seed-mean pooled ``metric`` of the
    arm minus the baseline's, after exchanging the two arms' counts on the subjects with z = 1; with
    ``combine="strata_mean"`` the pooled metric is computed per stratum and the differences averaged.
    """
    a, b = np.asarray(conf_arm, float), np.asarray(conf_base, float)
    z = np.asarray(swaps, float)
    idx, k = _strata_index(strata, a.shape[1]) if combine == "strata_mean" else (np.zeros(a.shape[1], int), 1)
    out = np.zeros(len(z))
    for g in range(k):
        sel = idx == g
        zg, ag, bg = z[:, sel], a[:, sel], b[:, sel]
        # arm side: its own counts where z = 0, the baseline's where z = 1 (and the reverse)
        arm = np.einsum("mn,snab->msab", 1.0 - zg, ag) + np.einsum("mn,snab->msab", zg, bg)
        base = np.einsum("mn,snab->msab", zg, ag) + np.einsum("mn,snab->msab", 1.0 - zg, bg)
        d = metrics_from_confusion(arm)[metric] - metrics_from_confusion(base)[metric]  # (m, seeds)
        out += np.nanmean(d, axis=-1) / k
    return out


def _chunked(conf_arm, conf_base, metric, swaps, strata, combine) -> np.ndarray:
    parts = [swapped_statistic(conf_arm, conf_base, metric, swaps[i:i + _CHUNK], strata, combine)
             for i in range(0, len(swaps), _CHUNK)]
    return np.concatenate(parts)


def all_swaps(n: int) -> np.ndarray:
    """Every swap vector of n subjects, (2^n, n) in {0, 1}; row 0 is the identity (no swap)."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.int8)


def swap_test(
    conf_arm: np.ndarray,
    conf_base: np.ndarray,
    metric: str,
    *,
    strata: Sequence[object] | None = None,
    combine: Combine = "pooled",
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> SwapTest:
    """Two-sided pooled subject-swap permutation test of the seed-mean pooled ``metric`` difference.

    conf_*: (n_seeds, n_subjects, C, C), subjects (and seeds) aligned between the arms; ``strata``: one
    label per subject or None; ``combine``: ``pooled`` (every subject in one pooled metric) or
    ``strata_mean`` (mean over strata of the per-stratum pooled difference). Exact when 2^n <=
    ``n_resamples``, Monte Carlo with B = ``n_resamples`` swap vectors (generator seeded by ``seed``)
    otherwise. Returns a :class:`SwapTest`.
    """
    n = np.asarray(conf_arm).shape[1]
    t0 = float(_chunked(conf_arm, conf_base, metric, np.zeros((1, n)), strata, combine)[0])
    if n == 0 or np.isnan(t0):
        return SwapTest(t0, float("nan"), 1.0, True, 0)
    tol = 1e-12 * max(1.0, abs(t0))  # equal statistics computed along different sums count as equal
    if 2**n <= n_resamples:
        t = _chunked(conf_arm, conf_base, metric, all_swaps(n), strata, combine)
        p = float(np.mean(np.abs(t) >= abs(t0) - tol)) if abs(t0) > tol else 1.0
        return SwapTest(t0, min(1.0, p), min(1.0, 2.0 / 2**n), True, 2**n)
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, size=(n_resamples, n), dtype=np.int8)
    t = _chunked(conf_arm, conf_base, metric, z, strata, combine)
    b = n_resamples
    upper, lower = (1 + np.sum(t >= t0 - tol)) / (b + 1), (1 + np.sum(t <= t0 + tol)) / (b + 1)
    return SwapTest(t0, float(min(1.0, 2 * min(upper, lower))), 2.0 / (b + 1), False, b)


def floor_p(n_subjects: int, n_resamples: int = DEFAULT_RESAMPLES) -> float:
    """The smallest p :func:`swap_test` (and the per-fold sign-flip test) can give: 2/2^n when the
    enumeration is exact (2^n <= ``n_resamples``), else the Monte Carlo floor 2/(B+1)."""
    if n_subjects <= 0:
        return 1.0
    return min(1.0, 2.0 / 2**n_subjects if 2**n_subjects <= n_resamples else 2.0 / (n_resamples + 1))


__all__ = ["DEFAULT_RESAMPLES", "SwapTest", "all_swaps", "floor_p", "swap_test", "swapped_statistic"]
