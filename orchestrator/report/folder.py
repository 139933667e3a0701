"""The report's output folder: what ``--out`` may replace, file names, the build-then-swap that keeps an
interrupted report from leaving a half-written folder behind, and the files written last (folds.csv,
tables.tex, report.md, report.html).

The folder is built under a temporary name beside ``--out`` and swapped in at the end, so an interrupted
report leaves the previous one (or nothing), never a half-written one. :data:`MARKER` in every report
folder says that a later ``--out`` may replace it whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from mer_model.errors import InputError
from orchestrator.report import latex
from orchestrator.report.html import render_html
from orchestrator.report.markdown import ReportContent, render
from orchestrator.report.redact import redact_paths
from orchestrator.report.runs import SweepRuns
from orchestrator.store.names import distinct_names, safe_name

MARKER = ".mer-report"  # written into every report folder: what --out may replace
_LEGACY = {"report.md", "tables", "figures"}  # a report written before the marker existed


def slug(name: str) -> str:
    """File-name-safe experiment / arm name (never ``..``, never over ~110 characters)."""
    return safe_name(name)


def arm_file(runs: SweepRuns, arm: str) -> str:
    """The file-name part of ``arm``, distinct from every other arm of the sweep (``P+Q`` vs ``P Q``)."""
    return distinct_names(runs.configs["arm"].astype(str))[str(arm)]


def write_csv(df: pd.DataFrame, path: Path, index: bool = False) -> None:
    """``df`` as CSV at ``path``, its folder made first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=index)


def check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or a non-empty folder that is not a previous report: the report
    replaces its folder whole, and must never delete what it did not write."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: --out: is a file; allowed: a new folder, an empty one or a previous report")
    if not out.is_dir():
        return
    entries = {p.name for p in out.iterdir()}
    if entries and MARKER not in entries and not ("report.md" in entries and entries <= _LEGACY):
        raise InputError(f"{out}: --out: folder is not empty and holds no mer-orch report ({MARKER} "
                         "missing); allowed: a new folder, an empty one or a previous report")


@contextmanager
def built_then_swapped(out: Path) -> Iterator[Path]:
    """A fresh folder (with ``tables/`` and ``figures/``) to write the report into; on leaving the block it
    replaces ``out`` whole (the old report stays until the new one is complete); on any exception it is
    removed and ``out`` is untouched."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the report is an ordinary folder
    try:
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "report")
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_report(content: ReportContent, runs: SweepRuns, out: Path) -> None:
    """folds.csv, tables/tables.tex, report.md and report.html, machine paths left out of all of them."""
    fold_cols = [c for c in runs.folds.columns if c not in ("config_run_id", "start_time")]
    folds = runs.folds[fold_cols].copy()
    if "error" in folds:
        folds["error"] = folds["error"].map(lambda e: redact_paths(e) if isinstance(e, str) else e)
    write_csv(folds, out / "tables/folds.csv")
    content.folds_csv = "tables/folds.csv"
    tex = [f for s in content.tables for f in s.tex.values()] + list(content.aau_tex.values())
    tex += [content.published_files["LaTeX"]] if "LaTeX" in content.published_files else []
    if tex:
        content.latex_document = "tables/tables.tex"
        doc = latex.document(tex, f"mer-orch report: {runs.experiment_name} ({runs.dataset})")
        (out / content.latex_document).write_text(doc)
    content.html = "report.html"
    md = redact_paths(render(content)) + (
        f"\nThis folder was written by `mer-orch report`; the file [{MARKER}]({MARKER}) marks it as a report "
        "that a later `--out` may replace whole.\n")
    (out / "report.md").write_text(md)
    (out / MARKER).write_text("written by mer-orch report; --out may replace this folder\n")
    (out / "report.html").write_text(render_html(md, out, f"mer-orch report: {runs.experiment_name}"))
