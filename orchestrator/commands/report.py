"""``mer-orch report``: thin click wrapper over :func:`orchestrator.report.build_report`."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click


@click.command(name="report")
@click.option(
    "--experiment", default=None,
    help="MLflow experiment of the sweep (required unless --sweep-id names the sweep).",
)
@click.option(
    "--sweep-id", default=None,
    help="The sweep to report (`mer-orch ls` lists them) [default: the experiment's latest, said at the "
    "top].",
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
@click.option(
    "--resamples", type=click.IntRange(min=99), default=20_000, show_default=True,
    help="Swap vectors of each permutation test: exact enumeration while 2^subjects <= it, else Monte "
    "Carlo, whose smallest p is 2/(resamples+1).",
)
@click.option(
    "--detect", type=click.FloatRange(min=0, min_open=True, max=1), default=0.05, show_default=True,
    help="The true difference (fraction of the primary metric; ACC 0.05 = 5 pp) the power table gives "
    "the subjects needed to detect, at 80% power.",
)
def command(
    experiment: str | None, sweep_id: str | None, tracking_uri: str | None, out: Path | None,
    storage: str | None, seed: int, correction: str, resamples: int, detect: float,
) -> None:
    """Paper-style tables (CSV), figures (PNG) and significance tests of one sweep, linked from report.md."""
    # Figures go to files; never look for a display.
    os.environ.setdefault("MPLBACKEND", "Agg")
    # One artifact download per fold: MLflow's per-download progress bar would flood the terminal.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from orchestrator.report.build import build_report

    experiment = _experiment(experiment, sweep_id, tracking_uri)
    # the command line as the user would type it again, recorded in the report's header
    argv = ["mer-orch", "report", "--experiment", shlex.quote(experiment)]
    if sweep_id is not None:
        argv += ["--sweep-id", shlex.quote(sweep_id)]
    for flag, value in (("--tracking-uri", tracking_uri), ("--out", out), ("--storage", storage)):
        if value is not None:
            argv += [flag, shlex.quote(str(value))]
    if seed:
        argv += ["--seed", str(seed)]
    if correction != "holm":
        argv += ["--correction", correction]
    if resamples != 20_000:
        argv += ["--resamples", str(resamples)]
    if detect != 0.05:
        argv += ["--detect", str(detect)]
    path = build_report(
        experiment, tracking_uri, out, storage, seed=seed, correction=correction, command=" ".join(argv),
        sweep_id=sweep_id, n_resamples=resamples, detect=detect,
    )
    click.echo(str(path))


def _experiment(experiment: str | None, sweep_id: str | None, tracking_uri: str | None) -> str:
    """``--experiment``, else the experiment holding ``--sweep-id``; one of the two is needed."""
    if experiment is not None:
        return experiment
    if sweep_id is None:
        raise click.UsageError("give --experiment or --sweep-id (mer-orch ls lists both)")
    from orchestrator.commands.ls import store_client
    from orchestrator.store.listing import find_sweep

    return find_sweep(store_client(tracking_uri), sweep_id, named="--sweep-id")[0].name
