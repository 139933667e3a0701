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

import numpy as np
import pandas as pd
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


DETECT = 0.05  # the difference `mer-orch report --detect` asks about by default (fraction; ACC: 5 pp)
SEEDS_ASKED = (1, 3, 5, 10)


def _seed_sd(diffs: object) -> float:
    vals = [float(x) for x in str(diffs).split(";") if x not in ("", "nan")]
    return float(np.std(vals, ddof=1)) if len(vals) >= 2 else float("nan")


def power_table(sig: pd.DataFrame, correction: str, alpha: float = ALPHA, detect: float = DETECT
                ) -> pd.DataFrame:
    """Per primary row of a significance frame: the variance components (A, B), the MDE of this design,
    and the subjects needed to detect ``detect`` with k seeds for each k of :data:`SEEDS_ASKED`.

    Columns: arm, metric, n_subjects, n_seeds, se_subjects, seed_sd (sd of the seed-paired Δ), alpha
    (per test), mde (this design, the components' model), then ``subjects_for_k<k>`` (inf: more seeds
    needed, not more subjects; with one seed the seed share is unmeasured and left out).
    """
    rows = sig[(sig.get("role", pd.Series("primary", index=sig.index)) == "primary")
               & sig["se_subjects"].notna()] if "se_subjects" in sig else sig.iloc[0:0]
    m = int(sig["p_adj"].notna().sum()) if "p_adj" in sig else 1
    a_test = per_test_alpha(alpha, correction, m)
    out = []
    for r in rows.to_dict("records"):
        n0, k0, sd = int(r["n_subjects"]), int(r["n_seeds"]), _seed_sd(r["seed_diffs"])
        a, b = variance_components(r["se_subjects"], n0, sd)
        row = {"arm": r["arm"], "metric": r["metric"], "n_subjects": n0, "n_seeds": k0,
               "se_subjects": r["se_subjects"], "seed_sd": sd, "alpha": a_test,
               "mde": mde_at(a, b, n0, k0, a_test), "detect": detect}
        row |= {f"subjects_for_k{k}": subjects_needed(a, b, detect, k, a_test) for k in SEEDS_ASKED}
        out.append(row)
    return pd.DataFrame(out)


__all__ = ["DETECT", "POWER", "SEEDS_ASKED", "mde", "mde_at", "per_test_alpha", "power_table",
           "subjects_needed", "variance_components", "z_sum"]
