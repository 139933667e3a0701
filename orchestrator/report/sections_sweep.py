"""The report's sections about the sweep itself rather than its results: the header, the sentence saying
where the numbers come from, the environment record, the methods paragraph and the failed fold runs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd

from mer_model.data.dataset import is_synthetic
from orchestrator.report import tables
from orchestrator.report.context import Context
from orchestrator.report.display import mark_arm
from orchestrator.report.methods import methods_paragraph, parse_environment
from orchestrator.report.redact import redact_paths
from orchestrator.report.runs import SweepRuns, read_text_artifact
from orchestrator.store import contract as C


def header(runs: SweepRuns, setup: str | None, n_subjects: int, tracking_uri: str, command: str | None
           ) -> dict[str, str]:
    """The report's header: experiment, dataset, sweep, arms, subjects, store, time, command."""
    header = {
        "experiment": runs.experiment_name,
        "dataset": runs.dataset,
        "class setup": setup or "unknown",
        "sweep id": runs.sweep_tags.get(C.SWEEP_ID, "unknown") + (f" ({runs.choice})" if runs.choice else ""),
        "search-space file": runs.sweep_tags.get(C.SPEC, "unknown"),
        "arms / trials": str(len(runs.configs)),
        "LOSO subjects": f"{n_subjects}",
        "tracking URI": _public_uri(tracking_uri),
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if command:
        header["made by"] = f"`{redact_paths(command)}`"
    return header


def _public_uri(uri: str) -> str:
    """The tracking URI without a local machine path: a SQLite / file store by its file name only."""
    if uri.startswith("sqlite:") or "://" not in uri or uri.startswith("file:"):
        return f"local store `{Path(uri.split(':///')[-1]).name}`"
    return uri


def dataset_statement(dataset: str, setup: str | None) -> str:
    """The sentence under the report title saying where the numbers come from."""
    d = dataset.lower()
    setup_txt = f" (class setup `{setup}`)" if setup else ""
    if is_synthetic(d):
        return (
            f"These numbers come from **SynthME**{setup_txt}, the synthetic dataset embedded in "
            "mer-orch (landmarks moved by FACS-following AU templates). **They are not CASME II or SAMM "
            "numbers** and say nothing about GTS-GN on real micro-expressions; compare them only with "
            "other SynthME runs."
        )
    if d == "unknown":
        return (
            "The runs do not record their dataset (`mer.dataset` tag): do not compare these numbers "
            "with any paper."
        )
    return f"These numbers come from **{dataset}**{setup_txt}, leave-one-subject-out over its subjects."


def environment_text(runs: SweepRuns) -> str | None:
    """The sweep run's ``environment.json`` artifact (None when it has none)."""
    return read_text_artifact(runs.client, runs.sweep_run_id, C.ENVIRONMENT_JSON) if runs.sweep_run_id \
        else None


def environment(runs: SweepRuns, text: str | None) -> tuple[list[str], str | None]:
    """The sweep's reproducibility record (``environment.json`` text) as header lines, and a warning note
    when it was resumed in a different environment (tag ``mer.environment_changed``)."""
    from orchestrator.store import environment

    if text is None:
        return ["no environment.json: this sweep predates the reproducibility record"], None
    lines = environment.summary_lines(json.loads(text))
    changed = runs.sweep_tags.get(C.ENVIRONMENT_CHANGED)
    note = None
    if changed:
        note = (
            f"**Warning: this sweep was resumed in a different environment** ({changed} differ); folds run "
            "before and after the change may not be comparable. Every record is in the sweep run's "
            "`environment.json` and `environment/` artifacts."
        )
    return lines, note


def methods(spec: dict[str, Any] | None, runs: SweepRuns, ctx: Context, objective: str,
            env_text: str | None) -> str:
    """The sweep's generated methods paragraph (:func:`orchestrator.report.methods.methods_paragraph`)."""
    return methods_paragraph(spec, dataset=runs.dataset, setup=ctx.setup, n_subjects=ctx.n_subjects,
                             objective=objective, environment=parse_environment(env_text),
                             non_paper=tables.non_paper_options(runs.configs))


def failures(runs: SweepRuns) -> pd.DataFrame:
    """Every fold run that is not complete: arm, subject, status, attempt, node, error."""
    f = runs.folds[~runs.folds["status"].eq("complete")]
    cols = [c for c in ("arm", "subject", "status", "attempt", "node", "error") if c in f]
    out = f[cols].fillna("").reset_index(drop=True)
    if "arm" in out:  # an arm with options the paper lacks keeps its mark here too (the footnote: its table)
        ext = {a: v for a, v in zip(runs.configs["arm"].astype(str), tables.non_paper(runs.configs),
                                    strict=True) if v}
        out["arm"] = [mark_arm(a, ext) for a in out["arm"].astype(str)]
    return out
