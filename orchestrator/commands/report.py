"""``mer-orch report``: thin click wrapper over :func:`orchestrator.report.build_report`."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click


@click.command(name="report")
@click.option(
    "--experiment", required=True, help="MLflow experiment of the sweep (one experiment per sweep)."
)
@click.option(
    "--tracking-uri",
    default=None,
    help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mer-runs/mlflow.db].",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report folder [default: mer-runs/reports/<experiment>]; replaced whole when the report is done.",
)
@click.option(
    "--storage",
    default=None,
    help="Optuna storage URL or journal:<path> of the sweep's study [default: the storage the sweep "
    "recorded, else $MER_OPTUNA_STORAGE, else mer-runs/optuna.db; when none exists the search is rebuilt "
    "from the MLflow runs].",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the permutation test and bootstrap.")
@click.option(
    "--correction",
    type=click.Choice(["holm", "bh", "none"]),
    default="holm",
    show_default=True,
    help="Multiple-comparison correction of each table's family (every arm x metric vs its baseline): "
    "Holm (family-wise error), bh (Benjamini-Hochberg false discovery rate) or none.",
)
def command(
    experiment: str, tracking_uri: str | None, out: Path | None, storage: str | None, seed: int,
    correction: str,
) -> None:
    """Paper-style tables (CSV), figures (PNG) and significance tests of one sweep, linked from report.md."""
    # Figures go to files; never look for a display.
    os.environ.setdefault("MPLBACKEND", "Agg")
    # One artifact download per fold: MLflow's per-download progress bar would flood the terminal.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from orchestrator.report.build import build_report

    # the command line as the user would type it again, recorded in the report's header
    argv = ["mer-orch", "report", "--experiment", shlex.quote(experiment)]
    for flag, value in (("--tracking-uri", tracking_uri), ("--out", out), ("--storage", storage)):
        if value is not None:
            argv += [flag, shlex.quote(str(value))]
    if seed:
        argv += ["--seed", str(seed)]
    if correction != "holm":
        argv += ["--correction", correction]
    path = build_report(
        experiment, tracking_uri, out, storage, seed=seed, correction=correction, command=" ".join(argv)
    )
    click.echo(str(path))
