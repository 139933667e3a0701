"""What ran: the sweeps of a tracking store and the configs of one sweep, read from MLflow only (no Ray).

``mer-orch ls`` prints :func:`sweep_rows`, ``mer-orch status SWEEP_ID`` prints :func:`config_rows`. Counts
come from the fold runs (done = FINISHED with ``mer.status=complete``, as resume counts them; linked = done
with ``mer.reused_from``), counted once when the sweep finishes and kept on its sweep run with its best
value, so a listing reads one row per finished sweep, not its runs (a running or interrupted sweep is
counted live); the total from the sweep run's ``mer.n_units`` (written when the
sweep starts; "?" for sweeps from before issue 14), the best objective from the complete config runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mlflow.entities import RunTag

from mer_model.errors import InputError
from orchestrator.store import contract as C
from orchestrator.store.contract import run_filter, search_runs


def _experiments(client: Any, experiment: str | None) -> list[Any]:
    if experiment is None:
        return list(client.search_experiments())
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise InputError(f"--experiment {experiment}: no such experiment; expected one of "
                         f"{', '.join(names) or '(none)'}")
    return [exp]


def _fold_counts(runs: list[Any]) -> dict[str, int]:
    """done / failed / reused among fold runs (a failed attempt that was retried is not a failure yet)."""
    done = [r for r in runs if r.info.status == "FINISHED" and r.data.tags.get(C.STATUS) == "complete"]
    return {"done": len(done), "failed": sum(r.data.tags.get(C.STATUS) == "failed" for r in runs),
            "reused": sum(C.REUSED_FROM in r.data.tags for r in done)}


def _status(run: Any) -> str:
    """The sweep's ``mer.status`` once it ended; a RUNNING run is running now or was killed (the same to
    MLflow: rerunning the command resumes it either way)."""
    if run.info.status == "RUNNING":
        return "running/interrupted"
    return run.data.tags.get(C.STATUS, run.info.status.lower())


def _best(configs: list[Any], objective: str) -> float | None:
    vals = [r.data.metrics[objective] for r in configs
            if r.data.tags.get(C.STATUS) == "complete" and objective in r.data.metrics]
    return max(vals) if vals else None  # every objective is higher-is-better (accuracy, uf1, uar)


def _sweep_row(client: Any, exp: Any, sw: Any) -> dict[str, Any]:
    """The :func:`sweep_rows` row of sweep run ``sw``: its counts and best value from the tags it wrote when
    it finished (:func:`record_summary`), else (running, interrupted, or from before the tags) from its
    fold and config runs."""
    sid, tags = sw.data.tags.get(C.SWEEP_ID, ""), sw.data.tags
    objective = tags.get(C.OBJECTIVE, "uf1")
    if sw.info.status == "FINISHED" and C.UNITS_DONE in tags and C.BEST in tags:
        best = tags[C.BEST]  # "" when no config was complete
        summary = {"done": int(tags[C.UNITS_DONE]), "failed": int(tags.get(C.UNITS_FAILED, 0)),
                   "reused": int(tags.get(C.UNITS_REUSED, 0)), "best": float(best) if best else None}
    else:
        summary = _summary(client, exp.experiment_id, sid, objective)
    started = dt.datetime.fromtimestamp((sw.info.start_time or 0) / 1000, dt.UTC)
    return {"sweep_id": sid, "experiment": exp.name, "file": tags.get(C.SPEC, "?"),
            "started": started.strftime("%Y-%m-%d %H:%M"), "status": _status(sw), **summary,
            "total": tags.get(C.N_UNITS, "?"), "objective": objective, "_t": sw.info.start_time or 0}


def _summary(client: Any, exp_id: str, sweep_id: str, objective: str) -> dict[str, Any]:
    """done / failed / reused units and the best pooled ``objective``, read from the sweep's runs."""
    folds = search_runs(client, exp_id, run_filter(C.FOLD, sweep_id=sweep_id))
    configs = search_runs(client, exp_id, run_filter(C.CONFIG, sweep_id=sweep_id))
    return {**_fold_counts(folds), "best": _best(configs, objective)}


def sweep_rows(client: Any, experiment: str | None = None) -> list[dict[str, Any]]:
    """One row per sweep run, oldest first: id, experiment, file, started (UTC), status, units done /
    total, failed, reused, objective and the best pooled value over complete configs."""
    exps = {e.experiment_id: e for e in _experiments(client, experiment)}
    sweeps = search_runs(client, list(exps), run_filter(C.SWEEP)) if exps else []  # one query
    return _by_start([_sweep_row(client, exps[sw.info.experiment_id], sw) for sw in sweeps])


def record_summary(client: Any, exp_id: str, sweep_run_id: str, sweep_id: str, objective: str) -> None:
    """The sweep's units and best value, read once as it finishes, onto its sweep run (what ``ls`` reads)."""
    got = _summary(client, exp_id, sweep_id, objective)
    best = "" if got["best"] is None else repr(float(got["best"]))
    client.log_batch(sweep_run_id, tags=[RunTag(C.UNITS_DONE, str(got["done"])),
                                         RunTag(C.UNITS_FAILED, str(got["failed"])),
                                         RunTag(C.UNITS_REUSED, str(got["reused"])), RunTag(C.BEST, best)])


def _by_start(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` oldest first by their ``_t`` (start time, ms), which is then dropped."""
    rows.sort(key=lambda r: r["_t"])
    for r in rows:
        del r["_t"]
    return rows


def find_sweep(client: Any, sweep_id: str, named: str = "SWEEP_ID") -> tuple[Any, Any]:
    """(experiment, sweep run) of ``sweep_id`` anywhere in the store (one query); InputError naming the
    known ids and the argument as the user typed it (``named``)."""
    exps = {e.experiment_id: e for e in client.search_experiments()}
    hit = search_runs(client, list(exps), run_filter(C.SWEEP, sweep_id=sweep_id)) if exps else []
    if hit:
        return exps[hit[0].info.experiment_id], hit[0]
    known = [sw.data.tags.get(C.SWEEP_ID, "?") for sw in search_runs(client, list(exps), run_filter(C.SWEEP))
             ] if exps else []
    raise InputError(f"{named} {sweep_id}: no such sweep in the tracking store; expected one of "
                     f"{', '.join(known) or '(none: no sweep has run here)'}")


def config_rows(client: Any, sweep_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the sweep's :func:`sweep_rows` row, one row per config: arm, table, status, units done / failed /
    reused, the pooled objective when complete)."""
    exp, sw = find_sweep(client, sweep_id)
    head = _sweep_row(client, exp, sw)
    folds = search_runs(client, exp.experiment_id, run_filter(C.FOLD, sweep_id=sweep_id))
    rows = []
    for cfg in search_runs(client, exp.experiment_id, run_filter(C.CONFIG, sweep_id=sweep_id)):
        mine = [f for f in folds if f.data.tags.get(C.PARENT) == cfg.info.run_id]
        done = cfg.data.tags.get(C.STATUS) == "complete"
        value = cfg.data.metrics.get(head["objective"]) if done else None
        n = cfg.data.metrics.get("n_folds")  # written when the config finished
        tags = cfg.data.tags
        rows.append({"arm": tags.get(C.ARM, cfg.info.run_name), "table": tags.get(C.TABLE, ""),
                     "status": cfg.data.tags.get(C.STATUS) or "running/interrupted", **_fold_counts(mine),
                     "total": "?" if n is None else int(n), "value": value, "_t": cfg.info.start_time or 0})
    return head, _by_start(rows)
