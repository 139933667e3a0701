"""The significance table of one paper table: every arm x metric against the table's baseline.

One row per (arm, metric) for accuracy, UF1 and UAR. The test behind † is the **pooled subject-swap
permutation test** (:mod:`orchestrator.report.swap`) of the seed-mean pooled difference, the number the
table shows. The tests of the *primary* metric (``report.primary`` of the spec, default
``protocol.objective``; ``all``: every metric) form the table's family, corrected together
(``--correction``: Holm by default); ``significant`` is decided on the corrected p only, and only primary
rows can carry †. The other metrics are secondary: their p is uncorrected and labelled so. Beside it: the
two-level bootstrap interval and the seed-paired noise (:mod:`orchestrator.report.seednoise`), the minimum
detectable difference (:mod:`orchestrator.report.power`), subject win / tie / loss counts, and the
per-fold-mean tests (sign-flip and Wilcoxon on the seed-averaged per-subject metric: a second view,
labelled "per-fold mean", never behind †). This module pairs the runs (common subjects, seeds) and words
the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from orchestrator.report import power, seednoise, stats, swap, units
from orchestrator.report.display import SIG_MARK as SIG
from orchestrator.report.tables import COMPLETE, METRICS, baseline_arm, effective_status

COLUMNS = [
    "arm", "baseline", "status", "metric", "role", "n_subjects", "n_seeds", "pooled_diff", "ci_low",
    "ci_high", "ci_levels", "ci_note", "p_swap", "p_floor", "p_adj", "correction", "family", "significant",
    "seed_diffs", "seed_se", "seed_resolved", "se_boot", "se_subjects", "mde", "wins", "ties", "losses",
    "mean_diff", "p_fold_permutation", "p_fold_wilcoxon", "verdict",
]  # fmt: skip
CORRECTION_NAMES = {"none": "uncorrected", "holm": "Holm", "bh": "Benjamini-Hochberg"}
PRIMARY, SECONDARY = "primary", "secondary (uncorrected)"
ALL = "all"  # report.primary: all -> every metric in the family (k arms x 3 metrics)


def per_subject(folds: pd.DataFrame, config_run_id: str) -> pd.DataFrame:
    """Seed-averaged per-subject metrics of one config run: index subject, columns accuracy, uf1, uar,
    n_test. A subject counts only when its fold completed on every seed the arm ran (a subject failed on
    one seed would otherwise be averaged over fewer seeds than the others)."""
    f = folds[folds["config_run_id"] == config_run_id]
    if "seed" not in f:
        f = f.assign(seed=0)
    ok = f[f["status"].eq(COMPLETE)]
    if "n_test" not in ok:
        ok = ok.assign(n_test=1.0)
    cols = [m for m in METRICS if m in ok]
    g = ok.groupby("subject")
    out = g[cols + ["n_test"]].mean()
    return out[g.size() == f["seed"].nunique()]


def _confusions(pred: pd.DataFrame | None, subjects: list[str], n_classes: int) -> np.ndarray | None:
    if pred is None or pred.empty:
        return None
    seeds = sorted(pred["seed"].astype(int).unique())
    return stats.subject_confusions(pred, subjects, seeds, n_classes)


def _n_classes(preds: list[pd.DataFrame | None], configs: pd.DataFrame) -> int:
    """Class count of the table: the config runs' ``num_classes`` param, else the largest label seen + 1."""
    if "param.num_classes" in configs and configs["param.num_classes"].notna().any():
        return int(pd.to_numeric(configs["param.num_classes"], errors="coerce").max())
    labels = [int(p[["y_true", "y_pred"]].to_numpy().max()) for p in preds if p is not None and len(p)]
    return max(labels, default=0) + 1


_NO_POOLED = dict(pooled_diff=np.nan, ci_low=np.nan, ci_high=np.nan, ci_levels="", ci_note="", p_swap=np.nan,
                  seed_diffs="", seed_se=np.nan, seed_resolved=None, se_boot=np.nan, se_subjects=np.nan,
                  n_seeds=np.nan)


def _fold_tests(a: pd.Series, b: pd.Series, n_resamples: int, seed: int) -> dict:
    """The per-fold-mean view: sign-flip and Wilcoxon on the seed-averaged per-subject values, and the
    subject win / tie / loss counts (|d| < 1e-12 is a tie)."""
    d = (a - b).to_numpy(float)
    n = len(d)
    return {
        "mean_diff": float(d.mean()) if n else np.nan,
        "p_fold_permutation": stats.permutation_p(a, b, n_resamples=n_resamples, seed=seed) if n else np.nan,
        "p_fold_wilcoxon": stats.wilcoxon_p(a, b) if n else np.nan,
        "wins": int((d > 1e-12).sum()), "ties": int((np.abs(d) <= 1e-12).sum()),
        "losses": int((d < -1e-12).sum()),
    }


def _pooled(conf_a: np.ndarray, conf_b: np.ndarray, metric: str, n_resamples: int, seed: int,
            strata: list[str] | None = None) -> dict:
    """The pooled view: swap test, two-level and subject-only bootstrap intervals, seed-paired noise.
    ``strata``: each subject's dataset on a union (composite, cross-dataset): the bootstrap resamples
    subjects within each dataset, so every resample keeps the union's make-up (the swap test exchanges the
    arms within each subject, so it is stratified already)."""
    test = swap.swap_test(conf_a, conf_b, metric, n_resamples=n_resamples, seed=seed)
    two = seednoise.bootstrap_diff(conf_a, conf_b, metric, seed=seed, strata=strata)
    subj = seednoise.bootstrap_diff(conf_a, conf_b, metric, seeds=False, seed=seed, strata=strata)
    sp = seednoise.seed_paired(conf_a, conf_b, metric)
    return {"pooled_diff": two.point, "ci_low": two.low, "ci_high": two.high, "ci_levels": two.levels,
            "ci_note": seednoise.few_subjects_note(conf_a.shape[1], two.distinct), "p_swap": test.p,
            "p_floor": test.floor, "seed_diffs": ";".join(f"{x:.6g}" for x in sp.diffs), "seed_se": sp.se,
            "seed_resolved": sp.resolved, "se_boot": two.se, "se_subjects": subj.se, "n_seeds": len(conf_a)}


def _compare(a: pd.DataFrame, b: pd.DataFrame, conf_a, conf_b, metric: str, seed: int, n_resamples: int
             ) -> dict:
    """One (arm, metric) row's numbers on the common subjects (a, b: per_subject frames aligned)."""
    n = len(a)
    row = {"metric": metric, "n_subjects": n, "p_floor": swap.floor_p(n, n_resamples)}
    row |= _fold_tests(a[metric], b[metric], n_resamples, seed)
    if conf_a is None or conf_b is None or n == 0:  # no clip-level predictions: no pooled difference
        return row | _NO_POOLED
    return row | _pooled(conf_a, conf_b, metric, n_resamples, seed, units.strata(list(a.index)))


def fmt_diff(x: float, metric: str) -> str:
    """A signed difference in the metric's display unit: ACC in percentage points, UF1 / UAR fractions."""
    return f"{100 * x:+.2f} pp" if metric == "accuracy" else f"{x:+.3f}"


def _interval_words(row: dict) -> str:
    """What the interval says beside the test: disagreement in words, and the equivalence reading."""
    m, lo, hi = row["metric"], row["ci_low"], row["ci_high"]
    if np.isnan(lo):
        return ""
    span = f"[{fmt_diff(lo, m)}, {fmt_diff(hi, m)}]"
    excludes = lo > 0 or hi < 0
    if row["significant"] and not excludes:
        return f"; but the 95% interval {span} includes 0: test and interval disagree, read as borderline"
    if row["role"] == PRIMARY and not row["significant"] and excludes:
        return (f"; the 95% interval {span} excludes 0 but the corrected test does not reject: "
                "not established")
    if excludes:  # a secondary row: the interval is as uncorrected as its p
        return f"; 95% interval {span}, uncorrected"
    if not row["significant"]:
        return f"; Δ within {span} (95% interval), not 'no effect'"
    return ""


def _seed_words(row: dict) -> str:
    """The seed-noise statement from the seed-paired differences (their sd / sqrt(k))."""
    if np.isnan(row["pooled_diff"]):
        return "; no predictions.csv: pooled difference not computed"
    if row["seed_resolved"] is None:
        return "; seed noise not measured (one seed)"
    se, m = row["seed_se"], row["metric"]
    se_txt = f"{100 * se:.2f} pp" if m == "accuracy" else f"{se:.3f}"
    k = int(row["n_seeds"])
    if row["seed_resolved"]:
        return f"; resolved from the seed noise (seed-paired SE {se_txt}, {k} seeds)"
    return f"; within the seed noise (seed-paired SE {se_txt}: the {k}-seed t interval includes 0)"


def verdict(row: dict, correction: str, alpha: float = stats.ALPHA, family_floor: float = 0.0) -> str:
    """The row in words: the pooled swap test (after correction for the primary metric, uncorrected for
    a secondary one), what the interval adds, the power of a "not significant", and the seed noise."""
    if row["n_subjects"] == 0:
        return "no common completed subject"
    name, m = CORRECTION_NAMES[correction], row["metric"]
    p = row["p_swap"] if not np.isnan(row.get("p_swap", np.nan)) else row["p_fold_permutation"]
    if row["role"] != PRIMARY:
        words = f"secondary metric: uncorrected p = {p:.3g}, not in the family (no {SIG})"
    elif row["significant"]:
        words = f"significant (pooled swap test, {name} p_adj < {alpha})"
    elif family_floor >= alpha:
        words = f"n.s. (n={row['n_subjects']}: p_adj cannot go below {family_floor:.3g})"
    else:
        words = f"n.s. ({name})"
    words += _interval_words(row)
    if not row["significant"] and not np.isnan(row["mde"]):
        words += f"; detectable at 80% power: |Δ| ≥ {fmt_diff(row['mde'], m).lstrip('+')}"
    if row["ci_note"]:
        words += f"; {row['ci_note']}"
    return words + _seed_words(row)


def family_statement(tag: str, n_arms: int, n_tests: int, correction: str, base: str, primary: str,
                     n_pruned: int = 0) -> str:
    """The sentence under a table saying which p-values were corrected together."""
    name = CORRECTION_NAMES[correction]
    what = "not corrected" if correction == "none" else f"{name}-corrected together"
    metric = f"{len(METRICS)} metrics" if primary == ALL else f"the primary metric {primary}"
    out = (f"family: the {n_tests} pooled swap tests of table {tag} ({n_arms} arm(s) x {metric} against "
           f"baseline {base}), {what}")
    if primary != ALL:
        others = ", ".join(x for x in METRICS if x != primary)
        out += f"; {others}: secondary, uncorrected p, no {SIG}"
    if n_pruned:
        out += (f"; {n_pruned} pruned trial(s) excluded (stopped by the pruner on the same test subjects, "
                "so the family is smaller than the search)")
    return out


def _rows(rows: pd.DataFrame, folds: pd.DataFrame, predictions, base: str, seed: int, n_resamples: int
          ) -> list[dict]:
    base_run = rows.loc[rows["arm"] == base, "run_id"].iloc[0]
    b_all = per_subject(folds, base_run)
    n_classes = _n_classes([predictions.get(r) for r in rows["run_id"]], rows)
    out = []
    for _, r in rows[rows["arm"] != base].iterrows():
        a = per_subject(folds, r["run_id"])
        common = sorted(a.index.intersection(b_all.index))
        ca = _confusions(predictions.get(r["run_id"]), common, n_classes)
        cb = _confusions(predictions.get(base_run), common, n_classes)
        for m in (m for m in METRICS if m in a and m in b_all):  # fold runs log all three; old tests not
            cmp = _compare(a.loc[common], b_all.loc[common], ca, cb, m, seed, n_resamples)
            out.append({"arm": r["arm"], "baseline": base, "status": r["status"], **cmp})
    return out


def significance_table(
    configs: pd.DataFrame,
    folds: pd.DataFrame,
    table: str,
    predictions: Mapping[str, pd.DataFrame | None] | None = None,
    *,
    seed: int = 0,
    correction: str = "holm",
    alpha: float = stats.ALPHA,
    primary: str = "uf1",
    n_resamples: int = swap.DEFAULT_RESAMPLES,
) -> pd.DataFrame:
    """Each arm of ``table`` x metric against the table's baseline, on the subjects both completed;
    pruned arms (Optuna trials stopped early) take no place, neither as rows nor in the family size.

    predictions: config run id -> its ``predictions.csv`` frame (``seed, subject, clip, y_true, y_pred``;
    :func:`orchestrator.report.runs.read_predictions`), for the pooled differences, the swap test and the
    intervals; a run without one gets blank pooled columns and falls back on the per-fold sign-flip p.
    ``primary``: the metric whose tests form the corrected family (``all``: every metric). Columns:
    :data:`COLUMNS` (differences are fractions; ``significant`` = primary and ``p_adj < alpha``).
    """
    predictions = predictions or {}
    rows = configs[configs["table"] == table].copy()
    rows["status"] = effective_status(rows, folds)
    n_pruned = int((rows["status"] == "pruned").sum())
    rows = rows[rows["status"] != "pruned"]  # a pruned trial was stopped on purpose: not an arm to test
    if rows.empty:
        return pd.DataFrame(columns=COLUMNS)
    base = baseline_arm(rows)
    df = pd.DataFrame(_rows(rows, folds, predictions, base, seed, n_resamples), columns=COLUMNS)
    if df.empty:
        return df
    df["role"] = np.where((df["metric"] == primary) | (primary == ALL), PRIMARY, SECONDARY)
    test_p = df["p_swap"].fillna(df["p_fold_permutation"])  # no predictions: the per-fold test stands in
    fam = (df["role"] == PRIMARY).to_numpy()
    df["p_adj"] = np.nan
    df.loc[fam, "p_adj"] = stats.adjust_pvalues(test_p[fam].to_numpy(float), correction)
    df["correction"] = correction
    m = int(df["p_adj"].notna().sum())
    df["family"] = family_statement(table, df["arm"].nunique(), m, correction, base, primary, n_pruned)
    floor = float(df.loc[fam, "p_floor"].min()) * m if m else 0.0  # Holm's smallest p_adj can be no lower
    if correction == "holm" and m and floor >= alpha:
        n = int(df["n_subjects"].max())
        df["family"] += f"; with {n} subjects no row can reach p_adj < {alpha} (floor {floor:.3g})"
    df["significant"] = (df["p_adj"] < alpha).to_numpy()
    per_test = power.per_test_alpha(alpha, correction, m)
    df["mde"] = [power.mde(se, per_test if f else alpha) for se, f in zip(df["se_boot"], fam, strict=True)]
    df["verdict"] = [verdict(row, correction, alpha, floor if correction == "holm" else 0.0)
                     for row in df.to_dict("records")]
    return df
