"""The report's table sections: one per paper table (arms x metrics, its significance against the
baseline, the paper's reference values, Table VII's grid), and the other methods' published numbers.

Each section computes its table and tests once, writes their CSV / LaTeX files into the report folder and
returns the :class:`~orchestrator.report.markdown.TableSection` the writers render.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.report import latex, significance, tables, units
from orchestrator.report.captions import table_caption
from orchestrator.report.context import Context, n_classes, reference_for
from orchestrator.report.display import (
    arm_display,
    extension_arms,
    extension_footnote,
    grid_display,
    published_display,
    significance_display,
)
from orchestrator.report.folder import write_csv
from orchestrator.report.markdown import ReportContent, TableSection, with_reference
from orchestrator.report.reference import published_banner, published_methods
from orchestrator.report.runs import SweepRuns, read_predictions
from orchestrator.report.sections_effects import effects
from orchestrator.store import contract as C


def table_sections(runs: SweepRuns, out: Path, seed: int, ctx: Context) -> list[TableSection]:
    """One section per paper table (and the test-selected search); a nested search's inner trials and
    chosen configs are no table of arms (each scores other subjects): its own section shows them."""
    tags = [t for t in tables.ordered_tables(runs.configs["table"]) if t not in C.NESTED_TABLES]
    return [table_section(runs, out, seed, tag, ctx) for tag in tags]


def table_section(runs: SweepRuns, out: Path, seed: int, tag: str, ctx: Context) -> TableSection:
    """Paper table ``tag``: its arm table, significance, reference columns, caption and LaTeX, then its
    effects (per-class, power, forest) and, for Table VII, the paper-shaped grid."""
    t = tables.arm_table(runs.configs, runs.folds, tag)
    ids = runs.configs.loc[runs.configs["table"] == tag, "run_id"]
    preds = {rid: read_predictions(runs.client, rid) for rid in ids}  # per-class results: one arm too
    # the unit of the paired tests is the subject: a cross-dataset fold's test subjects, not the pair
    unit_folds, unit_preds = units.by_subject(runs.folds, preds, n_classes(runs, preds))
    sig = significance.significance_table(
        runs.configs, unit_folds, tag, unit_preds, seed=seed, correction=ctx.correction, primary=ctx.primary,
        n_resamples=ctx.n_resamples,
    )
    s = tables.table_slug(tag)
    csv, sig_csv = f"tables/table_{s}.csv", f"tables/significance_{s}.csv"
    write_csv(t, out / csv)
    write_csv(sig, out / sig_csv)
    section = TableSection(tag, tables.table_title(tag), t, sig, csv, sig_csv)
    _reference(section, out, s, ctx)
    section.caption = table_caption(
        section.title, ctx.dataset, ctx.setup, ctx.n_subjects, t, sig, section.reference, ctx.scheme
    )
    section.tex["table"] = latex.write_table(
        out, f"tables/table_{s}.tex", arm_display(with_reference(t, section.reference), sig), section.caption
    )
    ext = extension_arms(t)
    note = f" {extension_footnote(ext)}" if ext else ""
    if len(sig):
        section.tex["significance"] = latex.write_table(
            out, f"tables/significance_{s}.tex", significance_display(sig, ext),
            f"{section.title}: each arm and metric against the baseline {sig['baseline'].iloc[0]}, paired "
            f"over the subjects both completed; pooled subject-swap permutation p, corrected "
            f"({ctx.correction}) over the table's family ({sig['family'].iloc[0]})." + note,
        )
    effects(runs, out, tag, preds, section, ctx, seed)
    if tag == "VII":
        _vii_grid(section, out, s, ctx, note)
    return section


def _reference(section: TableSection, out: Path, s: str, ctx: Context) -> None:
    """The paper's values for the section's arms, beside its table (``paper_reference_<s>.csv``)."""
    section.reference = reference_for(section.table, ctx)
    if section.reference is not None:
        section.reference_csv = f"tables/paper_reference_{s}.csv"
        write_csv(section.reference, out / section.reference_csv)


def _vii_grid(section: TableSection, out: Path, s: str, ctx: Context, note: str) -> None:
    """Table VII in the paper's shape (rows: fusion layer), when its arms allow it."""
    grid = tables.vii_grid(section.table)
    if grid is None:
        return
    section.grid, section.grid_csv = grid, f"tables/table_{s}_grid.csv"
    write_csv(grid, out / section.grid_csv)
    section.tex["grid"] = latex.write_table(
        out, f"tables/table_{s}_grid.tex", grid_display(grid),
        f"{section.title}, in the paper's shape (rows: fusion layer). {ctx.dataset}; pooled over "
        f"the LOSO folds; bold: best of each column.{note}",
    )


def published(content: ReportContent, spec: dict[str, Any] | None, runs: SweepRuns, out: Path) -> None:
    """Other methods' published numbers from the spec's ``reference`` block: CSV, LaTeX, their section."""
    pub = published_methods(spec)
    if pub.empty:
        return
    content.published, content.published_banner = pub, published_banner(runs.dataset)
    csv = "tables/published_methods.csv"
    write_csv(pub, out / csv)
    tex = latex.write_table(out, "tables/published_methods.tex", published_display(pub),
                            "Other methods' published numbers (display only; never in a statistic).")
    content.published_files = {"data": csv, "LaTeX": tex}

