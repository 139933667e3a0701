"""Paper-shaped tables from the ``configs`` / ``folds`` frames of :mod:`orchestrator.report.runs`.

Arms are rows; the metric columns are the pooled ACC / UF1 (the paper's F1 is macro-F1, i.e. UF1) / UAR
plus the per-fold mean and std, always labelled. An arm whose status is not ``complete`` (or one with a
failed fold whatever its tag says) keeps its row, shows its status and fold counts, and has its metrics
left blank: a partial mean is never shown as if it were the arm's result.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from orchestrator.contract import METRICS  # the one definition (mer_model.metrics via the contract)
from orchestrator.report.stats import compare_paired

# Paper table tags (``mer.table``) in the paper's order, with what each compares.
TABLE_TITLES: dict[str, str] = {
    "III": "Table III: graph models on landmarks (GCN vs SS-GN)",
    "IV(a)": "Table IV(a): graph models x node features (Type A / Type B)",
    "IV(b)": "Table IV(b): GTS-GN fusion layer",
    "V": "Table V: LAM x AAU loss ablation",
    "VI": "Table VI: AU loss on a single layer",
    "VII": "Table VII: basic / AU loss / AAU loss per fusion layer",
    "IX": "Table IX: landmark point sets",
    "search": "Optuna search over beta and the fusion layer",
}
COMPLETE = "complete"


def table_title(tag: str) -> str:
    """Heading of a table section: the paper's table, or what an unknown tag is."""
    if tag in ("-", "", "untagged"):
        return "Arms not assigned to a paper table"
    return TABLE_TITLES.get(tag, f"Table {tag}")


def table_slug(tag: str) -> str:
    """File-name-safe form of a table tag: ``IV(b)`` -> ``IV_b``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", tag).strip("_") or "untagged"


def ordered_tables(tags: pd.Series) -> list[str]:
    """The distinct table tags, paper order first, unknown tags after in name order."""
    present = set(tags.dropna())
    return [t for t in TABLE_TITLES if t in present] + sorted(present - set(TABLE_TITLES))


def fold_counts(folds: pd.DataFrame) -> pd.DataFrame:
    """Per config run: ``n_folds_complete``, ``n_folds_failed`` (any non-complete fold status)."""
    if folds.empty:
        return pd.DataFrame(columns=["n_folds_complete", "n_folds_failed"])
    ok = folds["status"].eq(COMPLETE)
    return pd.DataFrame(
        {
            "n_folds_complete": ok.groupby(folds["config_run_id"]).sum(),
            "n_folds_failed": (~ok).groupby(folds["config_run_id"]).sum(),
        }
    )


def effective_status(configs: pd.DataFrame, folds: pd.DataFrame) -> pd.Series:
    """The ``mer.status`` tag, demoted to ``incomplete`` when a fold of a 'complete' arm did not complete,
    and ``running`` for an untagged run MLflow still marks RUNNING."""
    counts = fold_counts(folds).reindex(configs["run_id"]).fillna(0)
    status = configs["status"].to_numpy(dtype=object).copy()
    failed = counts["n_folds_failed"].to_numpy() > 0
    status[(status == COMPLETE) & failed] = "incomplete"
    running = (status == "unknown") & (configs["run_status"].to_numpy() == "RUNNING")
    status[running] = "running"
    return pd.Series(status, index=configs.index, name="status")


def varying_params(rows: pd.DataFrame) -> list[str]:
    """``param.*`` columns whose value differs between the rows (what tells the arms apart)."""
    cols = [c for c in rows.columns if c.startswith("param.")]
    return [c for c in cols if rows[c].astype(str).nunique(dropna=False) > 1]


def baseline_arm(rows: pd.DataFrame) -> str:
    """The table's baseline: the arm tagged ``mer.baseline=true``, else the first arm (spec order)."""
    tagged = rows[rows["baseline"]]
    return str((tagged if len(tagged) else rows).iloc[0]["arm"])


def arm_table(configs: pd.DataFrame, folds: pd.DataFrame, table: str) -> pd.DataFrame:
    """One paper table: a row per arm of ``mer.table == table`` in spec order.

    Columns: ``arm, status, baseline, n_folds_complete, n_folds_failed``, the varying params (named without
    the ``param.`` prefix), then ``accuracy, uf1, uar`` (pooled over folds) and ``fold_mean_<m>`` /
    ``fold_std_<m>`` (per fold), all fractions in [0, 1]; blank (NaN) unless the status is complete.
    Optuna rows also carry ``optuna_trial``.
    """
    rows = configs[configs["table"] == table].copy()
    rows["status"] = effective_status(rows, folds)
    counts = fold_counts(folds).reindex(rows["run_id"]).fillna(0).astype(int)
    rows["n_folds_complete"] = counts["n_folds_complete"].to_numpy()
    rows["n_folds_failed"] = counts["n_folds_failed"].to_numpy()
    base = baseline_arm(rows)
    rows["baseline"] = rows["arm"] == base
    params = varying_params(rows)
    metric_cols = [m for m in METRICS if m in rows] + [
        f"fold_{s}_{m}" for m in METRICS for s in ("mean", "std") if f"fold_{s}_{m}" in rows
    ]
    for col in metric_cols:  # a partial mean is not the arm's result: blank it
        rows[col] = rows[col].where(rows["status"] == COMPLETE)
    lead = ["arm", "status", "baseline", "n_folds_complete", "n_folds_failed"]
    if table == "search" or rows["optuna_trial"].notna().any():
        lead.insert(1, "optuna_trial")
    out = rows[lead + params + metric_cols].rename(columns={p: p[len("param.") :] for p in params})
    return out.reset_index(drop=True)


def per_subject(folds: pd.DataFrame, config_run_id: str, metric: str = "accuracy") -> pd.DataFrame:
    """Completed folds of one config run: index subject, columns ``metric`` and ``n_test``."""
    f = folds[(folds["config_run_id"] == config_run_id) & folds["status"].eq(COMPLETE)]
    n_test = f["n_test"] if "n_test" in f else pd.Series(1.0, index=f.index)
    return pd.DataFrame(
        {metric: f[metric].to_numpy(float), "n_test": n_test.to_numpy(float)}, index=f["subject"].to_numpy()
    )


def significance_table(
    configs: pd.DataFrame, folds: pd.DataFrame, table: str, *, seed: int = 0
) -> pd.DataFrame:
    """Each arm of ``table`` against the table's baseline, paired on the subjects both completed.

    Columns: ``arm, baseline, status, n_subjects, mean_diff, pooled_diff, ci_low, ci_high, p_permutation,
    p_wilcoxon, min_p, significant, verdict`` (differences in accuracy, fractions).
    """
    rows = configs[configs["table"] == table].copy()
    rows["status"] = effective_status(rows, folds)
    base = baseline_arm(rows)
    base_run = rows.loc[rows["arm"] == base, "run_id"].iloc[0]
    b = per_subject(folds, base_run)
    out = []
    for _, r in rows[rows["arm"] != base].iterrows():
        a = per_subject(folds, r["run_id"])
        common = a.index.intersection(b.index).sort_values()
        cmp = compare_paired(
            a.loc[common, "accuracy"].to_numpy(),
            b.loc[common, "accuracy"].to_numpy(),
            b.loc[common, "n_test"].to_numpy(),
            seed=seed,
        )
        if cmp.n_subjects == 0:
            verdict = "no common completed subject"
        elif cmp.significant:
            verdict = "significant"
        elif cmp.min_p >= 0.05:
            verdict = f"n.s. (n={cmp.n_subjects}: p cannot go below {cmp.min_p:.3g})"
        else:
            verdict = "n.s."
        out.append(
            {"arm": r["arm"], "baseline": base, "status": r["status"], **cmp.to_dict(), "verdict": verdict}
        )
    cols = [
        "arm",
        "baseline",
        "status",
        "n_subjects",
        "mean_diff",
        "pooled_diff",
        "ci_low",
        "ci_high",
        "p_permutation",
        "p_wilcoxon",
        "min_p",
        "significant",
        "verdict",
    ]
    return pd.DataFrame(out, columns=cols)


def aau_weight_table(folds: pd.DataFrame, config_run_id: str) -> pd.DataFrame:
    """Paper Table VIII for one arm: rows = subjects + ``Average``, columns = ``layer1`` .. ``layerN``.

    Values are the fold runs' ``aau_weight_layer{r}`` (W_r^2 / sum W^2, Eq. 11). Failed folds keep their
    row with a ``status`` column saying so and do not enter the average.
    """
    f = folds[folds["config_run_id"] == config_run_id]
    wcols = sorted(
        (c for c in f.columns if c.startswith("aau_weight_layer") and f[c].notna().any()),
        key=lambda c: int(c[len("aau_weight_layer") :]),
    )
    t = f.set_index("subject")[wcols + ["status"]].rename(columns=lambda c: c.replace("aau_weight_", ""))
    t.index.name = "subject"
    layers = [c.replace("aau_weight_", "") for c in wcols]
    ok = t["status"].eq(COMPLETE)
    t.loc[~ok, layers] = np.nan
    avg = t.loc[ok, layers].mean().to_frame().T
    avg.index = pd.Index(["Average"], name="subject")
    avg["status"] = f"mean of {int(ok.sum())} complete folds"
    return pd.concat([t, avg])


def aau_arms(configs: pd.DataFrame, folds: pd.DataFrame) -> list[tuple[str, str]]:
    """(arm, config_run_id) of arms whose folds logged weights for 2+ layers (AAU loss, Table VIII)."""
    wcols = [c for c in folds.columns if c.startswith("aau_weight_layer")]
    if not wcols:
        return []
    n_layers = folds[wcols].notna().sum(axis=1).groupby(folds["config_run_id"]).max()
    ids = set(n_layers[n_layers >= 2].index)
    return [(r.arm, r.run_id) for r in configs.itertuples() if r.run_id in ids]


def vii_grid(table: pd.DataFrame) -> pd.DataFrame | None:
    """Table VII in the paper's shape: rows = fusion layer, column groups Basic / AU loss / AAU loss, each
    with pooled ACC and UF1. None when the arms do not carry ``fusion_layer`` and ``au_loss`` params."""
    if not {"fusion_layer", "au_loss"} <= set(table.columns):
        return None
    kind = table["au_loss"].map(lambda v: "Basic" if v == "none" else "AAU loss" if v == "aau" else "AU loss")
    long = table.assign(kind=kind)
    grid = long.pivot_table(
        index="fusion_layer", columns="kind", values=["accuracy", "uf1"], aggfunc="first", dropna=False
    )
    grid = grid.swaplevel(axis=1)
    order = [k for k in ("Basic", "AU loss", "AAU loss") if k in grid.columns.get_level_values(0)]
    grid = grid.reindex(columns=pd.MultiIndex.from_product([order, ["accuracy", "uf1"]]))
    grid.columns = [f"{k} {m}" for k, m in grid.columns]
    return grid.reset_index()
