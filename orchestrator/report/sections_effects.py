"""A table section's effect sizes, beside its significance: per-class F1 / recall of every complete arm,
the power table of the primary tests, and the per-subject forest plot of the primary metric against the
baseline. Fields of the :class:`~orchestrator.report.markdown.TableSection` and their files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from orchestrator.report import effects as effect_sizes
from orchestrator.report import figures, latex, power, significance, tables
from orchestrator.report.context import Context
from orchestrator.report.display import extension_arms, per_class_display
from orchestrator.report.folder import write_csv
from orchestrator.report.markdown import FigureItem, TableSection
from orchestrator.report.runs import SweepRuns, read_confusion
from orchestrator.store import contract as C


def effects(runs: SweepRuns, out: Path, tag: str, preds: dict, section: TableSection, ctx: Context,
            seed: int) -> None:
    """Per-class F1 / recall of every complete arm, the per-subject forest plot of the primary metric
    against the baseline, and the power table of the primary tests: files and section fields."""
    rows = runs.configs[runs.configs["table"] == tag]
    rows = rows[(tables.effective_status(rows, runs.folds) == "complete").to_numpy()]
    s = tables.table_slug(tag)
    _per_class(runs, out, s, rows, preds, section, ctx, seed)
    sig = section.significance
    if not len(sig) or "se_subjects" not in sig:
        return
    section.power, section.power_csv = power.power_table(sig, ctx.correction, detect=ctx.detect), \
        f"tables/power_{s}.csv"
    write_csv(section.power, out / section.power_csv)
    _forest(runs, out, s, sig, section, ctx)


def _per_class(runs: SweepRuns, out: Path, s: str, rows: pd.DataFrame, preds: dict, section: TableSection,
               ctx: Context, seed: int) -> None:
    """Per-class F1 and recall of the complete arms ``rows`` from their pooled per-subject confusions."""
    n_classes = significance._n_classes([preds.get(r) for r in rows["run_id"]], rows)
    confs = {}
    for r in rows.itertuples():
        subjects = list(significance.per_subject(runs.folds, r.run_id).index)
        conf = significance._confusions(preds.get(r.run_id), subjects, n_classes)
        if conf is not None:
            confs[str(r.arm)] = conf
    if not confs:
        return
    labels = _class_labels(runs, list(rows["run_id"]), n_classes)
    section.per_class = effect_sizes.per_class(confs, labels, seed=seed)
    section.per_class_csv = f"tables/per_class_{s}.csv"
    write_csv(section.per_class, out / section.per_class_csv)
    section.tex["per_class"] = latex.write_table(
        out, f"tables/per_class_{s}.tex", per_class_display(section.per_class, extension_arms(section.table)),
        f"{section.title}: per-class F1 and recall of every complete arm, pooled over the LOSO folds "
        f"(mean over seeds), with 95% percentile intervals resampling whole subjects; {ctx.dataset}.")


def _class_labels(runs: SweepRuns, run_ids: list[str], n_classes: int) -> list[str]:
    """Class names from the first stored pooled confusion matrix of the table, else ``class <i>``."""
    for rid in run_ids:
        got = read_confusion(runs.client, rid)
        if got is not None and len(got[1]) == n_classes:
            return got[1]
    return [f"class {i}" for i in range(n_classes)]


def _forest(runs: SweepRuns, out: Path, s: str, sig: pd.DataFrame, section: TableSection, ctx: Context
            ) -> None:
    """Per left-out subject, each arm's primary metric minus the baseline's: CSV and figure."""
    metric = ctx.primary if ctx.primary in C.METRICS else "uf1"
    base = str(sig["baseline"].iloc[0])
    ids = dict(zip(runs.configs.loc[runs.configs["table"] == section.tag, "arm"].astype(str),
                   runs.configs.loc[runs.configs["table"] == section.tag, "run_id"], strict=True))
    arms = {a: ids[a] for a in dict.fromkeys(sig["arm"].astype(str)) if a in ids}
    if base not in ids or metric not in runs.folds:
        return
    d = effect_sizes.forest(runs.folds, arms, base, ids[base], metric)
    if d.empty:
        return
    png, csv = f"figures/forest_{s}.png", f"figures/forest_{s}.csv"
    write_csv(d, out / csv)
    label = {"accuracy": "ACC", "uf1": "UF1", "uar": "UAR"}[metric]
    figures.forest(d, label, f"{section.title}: per-subject Δ {label} against {base}", out / png)
    section.forest = FigureItem(
        f"Per-subject differences, {section.title}", png, csv,
        f"Per left-out subject: the arm's per-fold {label} minus the baseline's ({base}), mean over seeds "
        "(dot; blue: the arm wins, red: it loses) and min-max over seeds (line). Subject counts of wins / "
        "ties / losses are in the significance table.", vectors=figures.figure_files(png)[1:])
