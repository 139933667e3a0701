"""Thin driver: read the sweep, build every section of the report in order, write them, ``report.md`` and
``report.html`` into a folder. Each section lives in the module that owns it: ``sections_sweep`` (header,
environment, methods, failed folds), ``sections_tables`` (the paper tables, their significance and
reference values, published numbers), ``sections_effects`` (per-class, power, forest), ``sections_aau``
(Table VIII and the weight trajectories), ``sections_search`` (the Optuna study), ``nested`` (the nested
selection), ``sections_figures`` (Fig. 5, Fig. 9, confusion matrices); ``context`` holds what they share
and ``folder`` the output folder.

Output folder layout (all paths in ``report.md`` are relative to it)::

    report.md, report.html            the report; the HTML is the same text with the figures embedded
    tables/table_<tag>.csv / .tex     arms x metrics of each paper table (mer.table tag); LaTeX booktabs
    tables/paper_reference_<tag>.csv  the paper's values for that table's arms (spec `reference:` only)
    tables/significance_<tag>.csv/.tex  each arm vs its table's baseline
    tables/table_VII_grid.csv / .tex  Table VII in the paper's shape (when the arms allow it)
    tables/table_VIII_<arm>.csv/.tex  per-subject AAU weights + average
    figures/aau_trajectory_<arm>.*    the AAU weights over training (per-epoch history), beside Table VIII
    tables/tables.tex                 a standalone document inputting every .tex table
    tables/search_trials.csv          Optuna trials; tables/param_importances.csv
    tables/folds.csv                  every fold run: subject, status, per-fold metrics
    figures/*.png / .pdf / .svg       each with its numbers beside it (.csv / .npz)

The folder is built under a temporary name and swapped in at the end (:mod:`orchestrator.report.folder`),
so an interrupted report leaves the previous one (or nothing), never a half-written one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.report import (
    context,
    figures,
    guesses,
    nested,
    power,
    sections_aau,
    sections_figures,
    sections_search,
    sections_sweep,
    sections_tables,
    tables,
)
from orchestrator.report.context import Context
from orchestrator.report.folder import built_then_swapped, check_out_folder, slug, write_report
from orchestrator.report.markdown import ReportContent
from orchestrator.report.reference import banner, paper_reference
from orchestrator.report.runs import SweepRuns, load_sweep
from orchestrator.store import contract as C

__all__ = ["build_report", "slug"]


def build_report(
    experiment: str,
    tracking_uri: str | None = None,
    out: Path | str | None = None,
    storage: str | None = None,
    *,
    seed: int = 0,
    correction: str = "holm",
    command: str | None = None,
    sweep_id: str | None = None,
    n_resamples: int = 20_000,
    detect: float = power.DETECT,
) -> Path:
    """Read experiment ``experiment`` and write the report folder; returns the path of ``report.md``.

    ``tracking_uri`` / ``storage``: None resolves like ``mer-orch sweep`` does ($MLFLOW_TRACKING_URI, else
    ``mer-runs/mlflow.db``; the Optuna storage the sweep recorded, else $MER_OPTUNA_STORAGE, else
    ``mer-runs/optuna.db``), without ever creating a store that is not there. ``command``: the command
    line to print in the report's header (machine paths are shortened in the written report).
    ``correction``: multiple-comparison correction of each table's significance family (``holm`` | ``bh``
    | ``none``). ``sweep_id``: the sweep of the experiment to report (default: the latest; the header
    says which and why). ``n_resamples``: swap vectors of the Monte Carlo permutation tests (exact
    enumeration up to 2^n <= it; the Monte Carlo floor is 2 / (n_resamples + 1)). ``detect``: the
    difference (fraction) the power table gives the subjects needed for.
    """
    from orchestrator.services import resolve_services

    out = Path(out) if out is not None else C.reports_dir() / slug(experiment)
    check_out_folder(out)
    tracking_uri = resolve_services(tracking_uri).tracking_uri
    runs = load_sweep(experiment, tracking_uri, sweep_id)
    with built_then_swapped(out) as tmp:
        setup = runs.sweep_tags.get(C.SETUP) or next(iter(runs.configs["setup"].dropna()), None)
        n_subjects = context.n_subjects(runs)
        content = ReportContent(
            header=sections_sweep.header(runs, setup, n_subjects, tracking_uri, command),
            dataset_statement=sections_sweep.dataset_statement(runs.dataset, setup),
            notes=list(runs.notes),
        )
        ctx = Context(runs.dataset, setup, n_subjects, pd.DataFrame(), correction,
                      n_resamples=n_resamples, detect=detect)
        _sections(content, runs, tmp, seed, storage, ctx)
        write_report(content, runs, tmp)
    return out / "report.md"


def _sections(content: ReportContent, runs: SweepRuns, out: Path, seed: int, storage: str | None,
              ctx: Context) -> None:
    """The report's sections in the order they are built; each is computed once and handed on (the spec
    and objective to every section, the shown arms to Table VIII and the per-arm figures)."""
    spec, objective = _spec_and_objective(content, runs, ctx)
    content.tables = sections_tables.table_sections(runs, out, seed, ctx)
    sections_tables.published(content, spec, runs, out)
    content.au_supervision = tables.au_supervision(runs.configs, runs.folds)
    env_text = sections_sweep.environment_text(runs)
    content.environment, env_note = sections_sweep.environment(runs, env_text)
    _note(content, env_note)
    content.methods = sections_sweep.methods(spec, runs, ctx, objective, env_text)
    content.guesses = guesses.underspecified(runs.configs)
    shown = sections_figures.shown_arms(runs, objective)
    _note(content, sections_figures.coverage_note(runs, shown, objective))
    sections_aau.aau_tables(runs, shown, out, content)
    content.search, search_figs = sections_search.search_part(runs, out, storage, objective)
    content.selection = nested.selection_section(runs, out, objective, seed)
    content.figures = sections_figures.lam_figures(runs, shown, out) + sections_figures.beta_figure(runs, out)
    content.figures += search_figs + sections_figures.confusion_figures(runs, shown, out)
    for f in content.figures:
        f.vectors = figures.figure_files(f.png)[1:]
    content.failures = sections_sweep.failures(runs)


def _spec_and_objective(content: ReportContent, runs: SweepRuns, ctx: Context
                        ) -> tuple[dict[str, Any] | None, str]:
    """The sweep's spec and search objective, read once: its scheme, paper reference and primary metric go
    into ``ctx``, what could not be read into the report's notes."""
    spec, why = context.read_spec(runs)
    _note(content, why)
    ctx.scheme = context.scheme(spec)
    ctx.reference, bad_ref = paper_reference(spec)
    _note(content, bad_ref)
    if len(ctx.reference):
        content.reference_banner = banner(runs.dataset)
    objective = context.objective(spec)
    ctx.primary = context.primary(spec, objective)
    return spec, objective


def _note(content: ReportContent, note: str | None) -> None:
    """Add ``note`` to the report's notes (nothing when there is none)."""
    if note:
        content.notes.append(note)
