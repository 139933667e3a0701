"""``mer-orch status SWEEP_ID``: one sweep's configs and their units, from MLflow only (no Ray)."""

from __future__ import annotations

import click


@click.command(name="status")
@click.argument("sweep_id")
@click.option("--tracking-uri", default=None,
              help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else mer-runs/mlflow.db].")
def command(sweep_id: str, tracking_uri: str | None) -> None:
    """The configs of sweep SWEEP_ID (see `mer-orch ls`): status, units done / failed / reused, objective."""
    from rich.table import Table

    from orchestrator.commands.ls import fmt, store_client
    from orchestrator.commands.sweep import _console
    from orchestrator.store.listing import config_rows

    head, rows = config_rows(store_client(tracking_uri), sweep_id)
    t = Table(title=f"sweep {sweep_id} · experiment {head['experiment']!r} · {head['file']} · "
                    f"{head['status']} · units {head['done']}/{head['total']} done, {head['failed']} failed, "
                    f"{head['reused']} reused")
    for col in ("arm", "table", "status", "units done/total", "failed", "reused", head["objective"]):
        t.add_column(col)
    for r in rows:
        t.add_row(r["arm"], r["table"], r["status"], f"{r['done']}/{r['total']}", str(r["failed"]),
                  str(r["reused"]), fmt(r["value"]))
    _console().print(t)
