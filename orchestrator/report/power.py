"""What the design could have detected (issue 24): minimum detectable differences and the subjects /
seeds a sweep would need, from the variance components the report measured.

- :func:`mde`: the smallest true difference a two-sided test at the table's per-test level would detect
  with probability ``power`` (80%), normal approximation from the bootstrap SE of Δ:
  ``MDE = (z_{1 - a/2} + z_{power}) * SE``. The per-test level ``a`` is the table's alpha for
  ``--correction none`` and alpha / m for Holm and Benjamini-Hochberg over m tests (the bar the smallest
  p of the family must pass; later Holm steps are easier, so this is the conservative reading);
- :func:`variance_components` / :func:`subjects_needed`: the shared-seed model
  ``Var(Δ; n, k) = n0 * SE_s^2 / n + sd_d^2 / k``: SE_s the subject bootstrap SE of the seed-mean Δ on
  the sweep's n0 subjects (subjects and their clips), sd_d the sd over seeds of the seed-paired
  differences (the training seed's share, which does not shrink with more subjects when every fold of a
  seed starts from the same weights). Under ``seed_scheme: per_unit`` the seed share does shrink with
  subjects, so the subject counts it gives are an upper bound.
"""

from __future__ import annotations

import math

from scipy import stats

from orchestrator.report.stats import ALPHA

POWER = 0.80


def per_test_alpha(alpha: float, correction: str, m: int) -> float:
    """The level one test must pass: alpha uncorrected, alpha / m for Holm / BH over m tests."""
    return alpha if correction == "none" or m <= 1 else alpha / m


def z_sum(alpha: float, power: float = POWER) -> float:
    """z_{1 - alpha/2} + z_{power}: the multiple of the SE a true difference must reach."""
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def mde(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable difference (same unit as ``se``) at two-sided level ``alpha`` and ``power``."""
    return z_sum(alpha, power) * se if se == se else float("nan")


def variance_components(se_subjects: float, n_subjects: int, seed_sd: float) -> tuple[float, float]:
    """(A, B) of ``Var(Δ; n, k) = A / n + B / k``: A = n0 * SE_s^2, B = sd_d^2 (0 when one seed: the
    seed share was not measured and is left out, said where it is shown)."""
    b = 0.0 if seed_sd != seed_sd else seed_sd**2
    return n_subjects * se_subjects**2, b


def mde_at(a: float, b: float, n: int, k: int, alpha: float, power: float = POWER) -> float:
    """MDE of a sweep of n subjects and k seeds under the components (A, B)."""
    return z_sum(alpha, power) * math.sqrt(a / n + b / k)


def subjects_needed(a: float, b: float, d: float, k: int, alpha: float, power: float = POWER) -> float:
    """Subjects for an MDE of ``d`` with k seeds: A / ((d / z)^2 - B / k), rounded up; ``inf`` when the
    seed share B / k alone exceeds the budget (more seeds needed, not more subjects)."""
    room = (d / z_sum(alpha, power)) ** 2 - b / k
    if d <= 0 or room <= 0:
        return math.inf
    return float(math.ceil(a / room))


__all__ = ["POWER", "mde", "mde_at", "per_test_alpha", "subjects_needed", "variance_components", "z_sum"]
