"""``mer-orch ls``: one line per sweep of the tracking store (or of one experiment); reads MLflow only."""

from __future__ import annotations

import click


def store_client(tracking_uri: str | None):  # noqa: ANN201
    """An MlflowClient on the resolved tracking store; InputError when a local store does not exist (a
    listing must not create an empty one)."""
    from mlflow.tracking import MlflowClient

    from mer_model.errors import InputError
    from orchestrator.services import resolve_services
    from orchestrator.store.contract import sqlite_path

    uri = resolve_services(tracking_uri).tracking_uri
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise InputError(f"--tracking-uri {uri}: no tracking store there; expected the store a sweep wrote "
                         "(default mer-runs/mlflow.db in the working directory)")
    return MlflowClient(uri)


def fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))


@click.command(name="ls")
@click.option("--experiment", default=None, help="Only the sweeps of this MLflow experiment.")
@click.option("--tracking-uri", default=None,
              help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else mer-runs/mlflow.db].")
def command(experiment: str | None, tracking_uri: str | None) -> None:
    """One line per sweep: id, file, started, status, units done / total, failures, best objective."""
    from rich.table import Table

    from orchestrator.commands.sweep import _console
    from orchestrator.store.listing import sweep_rows

    rows = sweep_rows(store_client(tracking_uri), experiment)
    t = Table(title="sweeps (oldest first; units reused = linked to an identical earlier unit)")
    for col in ("sweep id", "experiment", "file", "started (UTC)", "status", "units done/total", "failed",
                "reused", "best"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["sweep_id"], r["experiment"], r["file"], r["started"], r["status"],
                  f"{r['done']}/{r['total']}", str(r["failed"]), str(r["reused"]),
                  "-" if r["best"] is None else f"{r['objective']} {r['best']:.3f}")
    _console().print(t)
