"""The significance table of one paper table: every arm x metric against the table's baseline.

One row per (arm, metric) for accuracy, UF1 and UAR. The p-values of one table form one family, corrected
together (``--correction``: Holm by default); ``significant`` is decided on the corrected p only. The
statistics themselves are the pure functions of :mod:`orchestrator.report.stats`; this module pairs the runs
(common subjects, seeds) and words the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from orchestrator.report import stats
from orchestrator.report.tables import COMPLETE, METRICS, baseline_arm, effective_status

COLUMNS = [
    "arm", "baseline", "status", "metric", "n_subjects", "n_seeds", "pooled_diff", "ci_low", "ci_high",
    "mean_diff", "seed_sd", "inside_seed_noise", "p_permutation", "p_wilcoxon", "min_p", "p_adj",
    "correction", "family", "significant", "verdict",
]  # fmt: skip
CORRECTION_NAMES = {"none": "uncorrected", "holm": "Holm", "bh": "Benjamini-Hochberg"}


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


def _seed_values(conf: np.ndarray, metric: str) -> np.ndarray:
    """Pooled ``metric`` of each seed on the given subjects: (n_seeds,)."""
    return stats.seed_pooled(conf)[metric]


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


def _compare(a: pd.DataFrame, b: pd.DataFrame, conf_a, conf_b, metric: str, seed: int) -> dict:
    """One (arm, metric) row's numbers on the common subjects (a, b: per_subject frames aligned)."""
    n = len(a)
    row = {"metric": metric, "n_subjects": n, "min_p": stats.min_attainable_p(n)}
    row["mean_diff"] = float(np.mean(a[metric] - b[metric])) if n else np.nan
    row["p_permutation"] = stats.permutation_p(a[metric], b[metric], seed=seed) if n else np.nan
    row["p_wilcoxon"] = stats.wilcoxon_p(a[metric], b[metric]) if n else np.nan
    if conf_a is None or conf_b is None or n == 0:  # no clip-level predictions: no pooled difference
        row.update(pooled_diff=np.nan, ci_low=np.nan, ci_high=np.nan, seed_sd=np.nan, n_seeds=np.nan)
        row["inside_seed_noise"] = None
        return row
    diff, lo, hi = stats.bootstrap_pooled_diff(conf_a, conf_b, metric, seed=seed)
    sd_a, sd_b = stats.seed_sd(_seed_values(conf_a, metric)), stats.seed_sd(_seed_values(conf_b, metric))
    row.update(pooled_diff=diff, ci_low=lo, ci_high=hi, n_seeds=min(len(conf_a), len(conf_b)))
    row["seed_sd"] = float(np.nanmax([sd_a, sd_b])) if not (np.isnan(sd_a) and np.isnan(sd_b)) else np.nan
    row["inside_seed_noise"] = stats.inside_seed_noise(diff, sd_a, sd_b)
    return row


def verdict(row: dict, correction: str, alpha: float = stats.ALPHA) -> str:
    """The row in words: significant or not after correction, and whether it is inside the seed noise."""
    if row["n_subjects"] == 0:
        return "no common completed subject"
    name = CORRECTION_NAMES[correction]
    if row["significant"]:
        words = f"significant ({name} p_adj < {alpha})"
    elif row["min_p"] >= alpha:
        words = f"n.s. (n={row['n_subjects']}: p cannot go below {row['min_p']:.3g})"
    else:
        words = f"n.s. ({name})"
    if row["inside_seed_noise"] is True:
        words += "; inside the seed noise: |Δ| is smaller than the larger seed sd of the two arms"
    elif row["inside_seed_noise"] is None and not np.isnan(row["pooled_diff"]):
        words += "; seed noise not measured (one seed)"
    if np.isnan(row["pooled_diff"]):
        words += "; no predictions.csv: pooled difference not computed"
    return words


def family_statement(tag: str, n_arms: int, n_tests: int, correction: str, base: str) -> str:
    """The sentence under a table saying which p-values were corrected together."""
    name = CORRECTION_NAMES[correction]
    what = "not corrected" if correction == "none" else f"{name}-corrected together"
    return (
        f"family: the {n_tests} tests of table {tag} ({n_arms} arm(s) x {len(METRICS)} metrics against "
        f"baseline {base}), {what}"
    )


def significance_table(
    configs: pd.DataFrame,
    folds: pd.DataFrame,
    table: str,
    predictions: Mapping[str, pd.DataFrame | None] | None = None,
    *,
    seed: int = 0,
    correction: str = "holm",
    alpha: float = stats.ALPHA,
) -> pd.DataFrame:
    """Each arm of ``table`` x metric against the table's baseline, on the subjects both completed;
    pruned arms (Optuna trials stopped early) take no place, neither as rows nor in the family size.

    predictions: config run id -> its ``predictions.csv`` frame (``seed, subject, clip, y_true, y_pred``;
    :func:`orchestrator.report.runs.read_predictions`), for the pooled differences and their bootstrap CIs;
    a run without one gets blank pooled columns. Columns: :data:`COLUMNS` (differences are fractions;
    ``significant`` = ``p_adj < alpha``, ``p_adj`` = ``p_permutation`` corrected over the table's family).
    """
    predictions = predictions or {}
    rows = configs[configs["table"] == table].copy()
    rows["status"] = effective_status(rows, folds)
    rows = rows[rows["status"] != "pruned"]  # a pruned trial was stopped on purpose: not an arm to test
    if rows.empty:
        return pd.DataFrame(columns=COLUMNS)
    base = baseline_arm(rows)
    base_run = rows.loc[rows["arm"] == base, "run_id"].iloc[0]
    b_all = per_subject(folds, base_run)
    others = rows[rows["arm"] != base]
    n_classes = _n_classes([predictions.get(r) for r in rows["run_id"]], rows)
    out = []
    for _, r in others.iterrows():
        a = per_subject(folds, r["run_id"])
        common = sorted(a.index.intersection(b_all.index))
        ca = _confusions(predictions.get(r["run_id"]), common, n_classes)
        cb = _confusions(predictions.get(base_run), common, n_classes)
        for m in (m for m in METRICS if m in a and m in b_all):  # fold runs log all three; old tests not
            cmp = _compare(a.loc[common], b_all.loc[common], ca, cb, m, seed)
            out.append({"arm": r["arm"], "baseline": base, "status": r["status"], **cmp})
    df = pd.DataFrame(out, columns=COLUMNS)
    if df.empty:
        return df
    df["p_adj"] = stats.adjust_pvalues(df["p_permutation"].to_numpy(float), correction)
    df["correction"] = correction
    m = int(df["p_adj"].notna().sum())
    df["family"] = family_statement(table, len(others), m, correction, base)
    floor = df["min_p"].min() * m  # Holm's smallest p_adj: the smallest attainable p times the family size
    if correction == "holm" and m and floor >= alpha:
        n = int(df["n_subjects"].max())
        df["family"] += f"; with {n} subjects no row can reach p_adj < {alpha} (floor {floor:.3g})"
    df["significant"] = (df["p_adj"] < alpha).to_numpy()
    df["verdict"] = [verdict(row, correction, alpha) for row in df.to_dict("records")]
    return df
