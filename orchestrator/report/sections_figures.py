"""The report's figures section: which arms get per-arm figures, and the figures themselves (Fig. 5's
learned adjacency, Fig. 9's accuracy against beta, each arm's pooled confusion matrix), each written with
its numbers beside it (.npz / .csv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.report import figures, tables
from orchestrator.report.folder import arm_file, write_csv
from orchestrator.report.markdown import FigureItem
from orchestrator.report.runs import SweepRuns, read_confusion, read_lam
from orchestrator.store import contract as C


def shown_arms(runs: SweepRuns, objective: str) -> pd.DataFrame:
    """Config runs that get per-arm figures and Table VIII: every arm of the paper tables, and of the Optuna
    trials only the best complete one (a search of 50 trials would otherwise bury the paper's arms)."""
    c = runs.configs.assign(status=tables.effective_status(runs.configs, runs.folds))
    search_rows = c[(c["table"] == "search") & (c["status"] == "complete")]
    keep = ~c["table"].isin(["search", *C.NESTED_TABLES])
    if len(search_rows) and objective in search_rows:
        keep |= c["run_id"] == search_rows.loc[search_rows[objective].idxmax(), "run_id"]
    return runs.configs[keep.to_numpy()]


def coverage_note(runs: SweepRuns, shown: pd.DataFrame, objective: str) -> str | None:
    """The note saying which config runs got no per-arm figures and where their values are (None: all)."""
    if runs.configs["table"].isin(C.NESTED_TABLES).any():
        return (
            "A nested search's inner trials and chosen configs get no table of arms and no per-arm figures "
            "(each scores other subjects); see the Selection section. Their per-fold values are in "
            "tables/folds.csv (an inner fold's subject is its id: `<outer>/<validation subjects joined by "
            "+>`)."
        )
    if len(shown) < len(runs.configs):
        return (
            "Per-arm figures and Table VIII cover the arms of the paper tables and the best Optuna trial "
            f"(by pooled {objective}); every trial's per-fold values are in tables/folds.csv."
        )
    return None


def lam_figures(runs: SweepRuns, arms: pd.DataFrame, out: Path) -> list[FigureItem]:
    """Fig. 5 of every arm that learns its adjacency: each layer's A_L, mean over the complete folds."""
    items = []
    for _, c in arms.iterrows():
        if str(c.get("param.lam", "true")).lower() in ("false", "0"):
            continue  # fixed adjacency: nothing learned to show
        f = runs.folds[(runs.folds["config_run_id"] == c["run_id"]) & runs.folds["status"].eq("complete")]
        per_fold = [read_lam(runs.client, rid) for rid in f["run_id"]]
        per_fold = [m for m in per_fold if m]
        if not per_fold:
            continue
        keys = sorted(set.intersection(*(set(m) for m in per_fold)))
        mean = {k: np.mean([m[k] for m in per_fold], axis=0, dtype=np.float64) for k in keys}
        name = arm_file(runs, c["arm"])
        png, npz = f"figures/fig5_lam_{name}.png", f"figures/fig5_lam_{name}.npz"
        np.savez(out / npz, **mean)
        figures.lam_heatmaps(
            mean, f"Learned adjacency (LAM) per layer: {c['arm']}, mean of {len(per_fold)} folds", out / png
        )
        items.append(
            FigureItem(
                f"Fig. 5: LAM heatmaps, {c['arm']}",
                png,
                npz,
                f"Learned A_L (Eq. 6) of each layer, element-wise mean over the {len(per_fold)} complete "
                "LOSO folds (one model per left-out subject), on one colour scale.",
            )
        )
    return items


def _beta_points(runs: SweepRuns) -> tuple[pd.DataFrame, list[str]]:
    """Fig. 9's points (arm, table, status, beta, accuracy[, fusion_layer]) of the tables in which beta
    varies (the search, or a beta sweep written as arms); empty when there are none."""
    c = runs.configs.assign(status=tables.effective_status(runs.configs, runs.folds))
    if "param.beta" not in c:
        return pd.DataFrame(), []
    tags = [t for t in c["table"].unique()
            if t not in C.NESTED_TABLES and c.loc[c["table"] == t, "param.beta"].nunique() > 1]
    rows = c[c["table"].isin(tags)]
    if rows.empty:
        return pd.DataFrame(), tags
    pts = pd.DataFrame(
        {
            "arm": rows["arm"],
            "table": rows["table"],
            "status": rows["status"],
            "beta": pd.to_numeric(rows["param.beta"], errors="coerce"),
            "accuracy": rows["accuracy"] if "accuracy" in rows else np.nan,
        }
    )
    if "param.fusion_layer" in rows and rows["param.fusion_layer"].nunique() > 1:
        pts["fusion_layer"] = rows["param.fusion_layer"].to_numpy()
    pts.loc[pts["status"] != "complete", "accuracy"] = np.nan
    return pts, tags


def beta_figure(runs: SweepRuns, out: Path) -> list[FigureItem]:
    """Fig. 9: pooled accuracy against beta, the holes of the beta x fusion layer grid marked."""
    pts, tags = _beta_points(runs)
    if pts.empty:
        return []
    holes = figures.beta_grid_holes(pts)
    # the CSV beside the figure lists the holes too (arm blank where nothing ran), as the plot marks them
    not_run = holes[holes["status"] == "not run"].assign(arm="", table="", accuracy=np.nan)
    write_csv(pd.concat([pts, not_run], ignore_index=True), out / "figures/fig9_accuracy_vs_beta.csv")
    excluded = int((pts["status"] != "complete").sum())
    figures.accuracy_vs_beta(pts, holes,
                             "Pooled accuracy against beta", out / "figures/fig9_accuracy_vs_beta.png")
    caption = f"Pooled ACC of the complete arms of table(s) {', '.join(tags)} against beta (Eq. 12)"
    if excluded:
        caption += f"; {excluded} arm(s) not complete are left off the lines (listed in the data file)"
    if len(holes):
        caption += (f"; open triangles on the bottom edge mark the {len(holes)} point(s) of the beta x "
                    "fusion layer grid without a complete result (not run, or run but not complete)")
    return [
        FigureItem(
            "Fig. 9: accuracy against beta",
            "figures/fig9_accuracy_vs_beta.png",
            "figures/fig9_accuracy_vs_beta.csv",
            caption + ".",
        )
    ]


def confusion_figures(runs: SweepRuns, arms: pd.DataFrame, out: Path) -> list[FigureItem]:
    """The stored pooled confusion matrix of every complete arm of ``arms`` (CSV + figure)."""
    items = []
    status = tables.effective_status(arms, runs.folds)
    for c, st in zip(arms.itertuples(), status, strict=True):
        if st != "complete":
            continue  # a partial confusion matrix would be read as the arm's
        got = read_confusion(runs.client, c.run_id)
        if got is None:
            continue
        m, labels = got
        name = arm_file(runs, c.arm)
        png, csv = f"figures/confusion_{name}.png", f"figures/confusion_{name}.csv"
        write_csv(pd.DataFrame(m, index=labels, columns=labels), out / csv, index=True)
        figures.confusion(m, labels, f"{c.arm}: pooled confusion (rows true)", out / png)
        items.append(
            FigureItem(
                f"Confusion matrix, {c.arm}",
                png,
                csv,
                "Counts over all LOSO folds pooled; rows are true classes, columns predictions.",
            )
        )
    return items
