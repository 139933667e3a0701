"""The driver of ``mer-orch sweep``: spec -> dataset -> MLflow/Optuna state -> Ray pool -> tables.

Order of events (each step before the next, so no worker ever races the driver):

1. services checked (``orchestrator.services.check_services``), dataset loaded once (cache built here);
2. tracking DB + experiment + sweep run created; the driver lease taken (a second driver of the sweep stops
   here, exit 2); done folds scanned (resume), stale fold runs deleted;
3. Optuna study opened (only with a ``search`` section); Ray started or attached, actor pool created;
4. loop: keep every actor busy with (config, fold) units, grid arms first, Optuna trials asked as room frees
   up (at most ``search.concurrent_trials`` in flight); each finished fold is reported to its trial (pruning);
   a config whose folds are all in is finalised (pooled metrics, artifacts, ``mer.status``, Optuna ``tell``);
5. sweep run: ``tables/arms.csv`` and ``tables/aau_weights.csv``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mer_model.errors import InputError
from orchestrator import tracking
from orchestrator.plan import (
    ConfigPlan,
    Unit,
    fold_subjects,
    grid_configs,
    search_config,
    sweep_id,
    units_for,
)
from orchestrator.spec import SweepSpec
from orchestrator.tracking import FoldRecord, config_summary

ARMS_HEADER = ["arm", "table", "status", "optuna_trial", "config_hash", "n_folds", "n_failed",
               "accuracy", "uf1", "uar", "fold_mean_accuracy", "fold_std_accuracy", "fold_mean_uf1",
               "fold_std_uf1", "fold_mean_uar", "fold_std_uar", "model", "features", "points", "lam",
               "fusion_layer", "au_loss", "beta", "epochs"]


@dataclass
class ConfigState:
    plan: ConfigPlan
    run_id: str
    units: list[Unit]
    records: dict[str, FoldRecord] = field(default_factory=dict)  # subject -> record
    attempts: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    queued: int = 0
    pruned: bool = False
    trial: Any = None  # optuna.trial.Trial for search configs
    status: str = ""
    summary: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.in_flight == 0 and self.queued == 0


@dataclass
class Services:
    tracking_uri: str
    storage_url: str
    artifact_root: Path | None


@dataclass
class SweepResult:
    sweep_id: str
    experiment: str
    configs: list[ConfigState]
    folds_run: int  # folds trained by this invocation (resume: excludes folds found done)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for c in self.configs:
            cfg = c.plan.config
            row = {"arm": c.plan.arm, "table": c.plan.table, "status": c.status,
                   "optuna_trial": "" if c.plan.optuna_trial is None else c.plan.optuna_trial,
                   "config_hash": c.plan.config_hash}
            row.update({k: c.summary.get(k, "") for k in ARMS_HEADER if k.startswith(("n_", "fold_"))})
            for m in ("accuracy", "uf1", "uar"):
                row[m] = c.summary.get(m, "") if c.status == "complete" else ""
            row.update({k: cfg.get(k) for k in ("model", "features", "points", "lam", "fusion_layer",
                                                 "au_loss", "beta", "epochs")})
            out.append(row)
        return out

    @property
    def incomplete(self) -> list[str]:
        return [c.plan.arm for c in self.configs if c.status not in ("complete", "pruned")]


def resolve(spec: SweepSpec, tracking_uri: str | None, storage_url: str | None) -> Services:
    """Tracking URI / Optuna storage: CLI option > spec > environment > ./mer-runs/ defaults (absolute)."""
    from orchestrator.services import resolve_services

    svc = resolve_services(tracking_uri or spec.tracking.uri, storage_url or spec.storage.url)
    local = svc.tracking_uri.startswith("sqlite:") or "://" not in svc.tracking_uri
    root = None
    if local and svc.tracking_uri.startswith("sqlite:///"):
        root = Path(svc.tracking_uri[len("sqlite:///"):]).parent / "artifacts"
    return Services(svc.tracking_uri, svc.optuna_storage, root)


def load_data(spec: SweepSpec) -> Any:
    """The dataset, loaded (and its landmark cache built) once, in the driver."""
    from mer_model.data import load_dataset

    d = spec.dataset
    cache = d.cache_dir or Path("mer-runs/cache")
    return load_dataset(d.name, setup=d.setup, root=d.root, seed=d.seed, magnification=d.magnification,
                        cache_dir=cache, **d.knobs)


def aau_rows(configs: list[ConfigState], subjects: list[str]) -> list[list[Any]]:
    """Paper Table VIII per AAU arm: ``arm, subject, layer1..layer4`` (blank where the arm has no such
    layer), then the arm's ``Average`` row over its complete folds."""
    rows: list[list[Any]] = []
    for c in configs:
        if c.plan.config.get("au_loss") != "aau":
            continue
        recs = [c.records.get(s) for s in subjects]
        per = [(r.subject, r.aau) for r in recs if r is not None and r.status == "complete"]
        if not per:
            continue
        for s, w in per:
            rows.append([c.plan.arm, s, *[w.get(r, "") for r in (1, 2, 3, 4)]])
        avg = [np.mean([w[r] for _, w in per]) if all(r in w for _, w in per) else "" for r in (1, 2, 3, 4)]
        rows.append([c.plan.arm, "Average", *avg])
    return rows


def run_sweep(spec: SweepSpec, **kwargs: Any) -> SweepResult:
    """Run (or resume) the sweep of ``spec`` (keyword options: see :func:`_run_sweep`), holding the
    sweep's driver lease (``orchestrator.lease``) from the moment its sweep run exists to the end."""
    leases: list[Any] = []
    try:
        return _run_sweep(spec, leases=leases, **kwargs)
    finally:
        for lease in leases:
            lease.release()


def _run_sweep(
    spec: SweepSpec,
    *,
    leases: list[Any],
    address: str | None = None,
    num_cpus: int | None = None,
    max_concurrent: int | None = None,
    tracking_uri: str | None = None,
    storage_url: str | None = None,
    progress: Any = None,
    dataset: Any = None,
) -> SweepResult:
    """Run (or resume) the sweep of ``spec``; see the module docstring for the order of events."""
    import ray
    from mlflow.tracking import MlflowClient

    from orchestrator import executor

    svc = resolve(spec, tracking_uri, storage_url)
    _check_services(svc)
    ds = dataset if dataset is not None else load_data(spec)
    dh = ds.content_hash()  # a changed dataset is another sweep: nothing trained on the old data is reused
    sid = sweep_id(spec, dh)
    splits = {s: (tr, te) for s, tr, te in ds.loso_splits()}
    subjects = fold_subjects(list(splits), spec)
    sizes = {"num_classes": ds.num_classes, "num_aus": len(ds.au_names)}

    exp_id = tracking.prepare_experiment(svc.tracking_uri, spec.experiment, svc.artifact_root)
    client = MlflowClient(svc.tracking_uri)
    from orchestrator.services import check_artifact_location

    check_artifact_location(client.get_experiment(exp_id).artifact_location)  # before any fold trains
    study_name = f"{spec.experiment}-{sid}"
    sweep_tags = {"mer.dataset": ds.name, "mer.setup": ds.setup, "mer.spec": Path(spec.source).name}
    if spec.search is not None:
        sweep_tags |= {"mer.optuna_study": study_name, "mer.optuna_storage": svc.storage_url}
    sweep_run = tracking.open_sweep_run(client, exp_id, sid, sweep_tags)
    from orchestrator.lease import Lease

    leases.append(Lease(svc.tracking_uri, sweep_run))
    leases[-1].acquire(spec.source, sid)  # a second driver of this sweep stops here, before any change
    done, stale = tracking.scan_folds(client, exp_id, sid)

    search = None
    if spec.search is not None:
        from orchestrator.study import SearchState

        search = SearchState.open(spec.search, svc.storage_url, study_name)
        _check_study_has_runs(search, spec, svc, client, exp_id, sid, sweep_run)

    configs: list[ConfigState] = []
    queue: collections.deque[tuple[ConfigState, Unit, int]] = collections.deque()
    n_search_total = 0 if search is None else search.n_finished() + len(search.orphans) + search.budget()
    prog = progress
    if prog is not None:
        n_cfg = len(grid_configs(spec, dh)) + n_search_total
        prog.start(sid, spec.experiment, n_cfg, n_cfg * len(subjects))

    def open_config(plan: ConfigPlan, trial: Any = None) -> ConfigState:
        plan.config.update(sizes)
        tags = {"mer.table": plan.table, "mer.config_hash": plan.config_hash, "mer.sweep_id": sid,
                "mer.dataset": ds.name}
        if plan.optuna_trial is not None:
            tags["mer.optuna_trial"] = str(plan.optuna_trial)
        if plan.baseline:
            tags["mer.baseline"] = "true"
        params = {**plan.config, "dataset": ds.name, "setup": ds.setup, "seed": spec.protocol.seed}
        run_id = tracking.open_config_run(client, exp_id, sweep_run, plan.arm, tags, params)
        for s in subjects:  # the config reruns: its stale fold runs (failed, partial) go now
            for rid in stale.pop((plan.arm, s), []):
                client.delete_run(rid)
        st = ConfigState(plan, run_id, units_for(plan, subjects), trial=trial)
        configs.append(st)
        for u in st.units:
            rec = done.get((plan.arm, u.subject))
            if rec is not None:
                fold_finished(st, u, rec, resumed=True)
            elif st.pruned:
                if prog is not None:
                    prog.folds_cancelled(1)
            else:
                queue.append((st, u, 1))
                st.queued += 1
        if st.finished:
            finalize(st)
        return st

    def fold_finished(st: ConfigState, u: Unit, rec: FoldRecord, resumed: bool = False) -> None:
        st.records[u.subject] = rec
        if prog is not None:
            prog.fold_done(rec.status == "complete", resumed=resumed)
        if search is not None and st.trial is not None and rec.status == "complete" and not st.pruned:
            value = rec.metrics[spec.protocol.objective]
            if search.report_fold(st.trial, value, u.fold_index):
                st.pruned = True
                dropped = [q for q in queue if q[0] is st]
                for q in dropped:
                    queue.remove(q)
                st.queued -= len(dropped)
                if prog is not None:
                    prog.folds_cancelled(len(dropped))

    def finalize(st: ConfigState) -> None:
        recs = [st.records[s] for s in subjects if s in st.records]
        n_ok = sum(r.status == "complete" for r in recs)
        if st.pruned:
            st.status = "pruned"
        elif n_ok == len(subjects):
            st.status = "complete"
        else:
            st.status = "failed" if n_ok == 0 else "incomplete"
        st.summary = config_summary(recs, len(subjects), ds.num_classes)
        if st.status == "pruned":
            st.summary["n_failed"] = float(sum(r.status == "failed" for r in recs))
        tracking.finish_config_run(client, st.run_id, recs, st.summary, st.status, ds.class_names)
        if search is not None and st.trial is not None:
            from optuna.trial import TrialState

            if st.status == "complete":
                search.tell(st.trial, st.summary[spec.protocol.objective], TrialState.COMPLETE)
            else:
                search.tell(st.trial, None, TrialState.PRUNED if st.pruned else TrialState.FAIL)
        if prog is not None:
            best = search.best() if search is not None else None
            prog.config_done(st.plan.arm, st.status, st.summary.get(spec.protocol.objective), best)

    # Grid arms, then the search trials that already finished in an earlier run (for the tables).
    for plan in grid_configs(spec, dh):
        open_config(plan)
    if search is not None:
        _restore_finished_trials(search, spec, configs, done, subjects, client, exp_id, sid, prog,
                                 ds.num_classes, dh)

    n_trials_left = 0 if search is None else len(search.orphans) + search.budget()
    units_left = len(queue) + n_trials_left * len(subjects)
    folds_run = 0
    if units_left:
        executor.init_ray(address, num_cpus)
        try:
            res = spec.resources
            n = executor.pool_size(res.cpu_per_fold, res.gpu_per_fold, max_concurrent, units_left)
            pool = executor.make_pool(n, ray.put(ds), svc.tracking_uri, exp_id, res.cpu_per_fold,
                                      res.gpu_per_fold)
            if prog is not None:
                prog.workers(n)
            active = lambda: sum(1 for c in configs if c.trial is not None and not c.finished)  # noqa: E731
            while True:
                while (search is not None and active() < spec.search.concurrent_trials  # type: ignore[union-attr]
                       and len(queue) < len(pool.actors)):
                    nxt = search.next_trial()
                    if nxt is None:
                        break
                    trial, params = nxt
                    open_config(search_config(spec, trial.number, params, dh), trial)
                while queue and pool.idle:
                    group = [queue.popleft()]
                    # resources.packing: first attempts of further folds of the same config join the call
                    # (fold-batched training); retries run alone
                    for q in list(queue):
                        if len(group) >= spec.resources.packing or group[0][2] != 1:
                            break
                        if q[0] is group[0][0] and q[2] == 1:
                            queue.remove(q)
                            group.append(q)
                    jobs = []
                    for st, u, attempt in group:
                        st.queued -= 1
                        st.in_flight += 1
                        tr, te = splits[u.subject]
                        jobs.append(executor.Job(
                            arm=st.plan.arm, subject=u.subject, config=st.plan.config,
                            seed=spec.protocol.seed, train_idx=tr, test_idx=te, parent_run_id=st.run_id,
                            tags={"mer.sweep_id": sid, "mer.config_hash": st.plan.config_hash,
                                  "mer.arm": st.plan.arm, "mer.subject": u.subject, "mer.dataset": ds.name},
                            attempt=attempt, last_attempt=attempt > spec.protocol.retries))
                    pool.submit_group(jobs)
                if not pool.busy:
                    break
                for job, out in pool.wait():
                    folds_run += 1
                    st = next(c for c in configs if c.plan.arm == job.arm)
                    st.in_flight -= 1
                    u = next(x for x in st.units if x.subject == job.subject)
                    # a worker that died, or failed to log, may have left a partial run: none may remain
                    if out.get("actor_died") or out.get("log_failed"):
                        tracking.delete_partial_folds(client, exp_id, sid, job.arm, job.subject)
                    if not out["ok"] and not job.last_attempt:
                        if prog is not None:
                            prog.retry(job.arm, job.subject, out["error"])
                        queue.appendleft((st, u, job.attempt + 1))
                        st.queued += 1
                        continue
                    if out["ok"]:
                        rec = FoldRecord(arm=job.arm, subject=job.subject, status="complete",
                                         run_id=out["run_id"], clips=out["clips"], y_true=out["y_true"],
                                         y_pred=out["y_pred"], metrics=out["metrics"], aau=out["aau"],
                                         node=out["node"], seconds=out["seconds"])
                    else:
                        run_id = out.get("run_id")
                        if run_id is None:  # the actor died on its last attempt: the driver records it
                            run_id = tracking.log_fold_run(
                                client, exp_id, st.run_id,
                                {**job.tags, "mer.node": out["node"], "mer.attempt": str(job.attempt),
                                 "mer.error": out["error"]}, {}, [], None, None, "failed")
                        rec = FoldRecord(arm=job.arm, subject=job.subject, status="failed", run_id=run_id,
                                         error=out["error"], node=out["node"])
                    fold_finished(st, u, rec)
                    if st.finished:
                        finalize(st)
        finally:
            ray.shutdown()

    # grid arms in file order, then Optuna trials by number (resumed trials were opened out of order)
    configs.sort(key=lambda c: (c.plan.optuna_trial is not None, c.plan.optuna_trial or 0))
    result = SweepResult(sid, spec.experiment, configs, folds_run)
    rows = result.rows()
    status = "complete" if not result.incomplete else "incomplete"
    tracking.finish_sweep_run(client, sweep_run, spec.text, ARMS_HEADER,
                              [[r[k] for k in ARMS_HEADER] for r in rows], aau_rows(configs, subjects),
                              status)
    return result


def _restore_finished_trials(search: Any, spec: SweepSpec, configs: list[ConfigState],
                             done: dict[tuple[str, str], FoldRecord], subjects: list[str], client: Any,
                             exp_id: str, sid: str, prog: Any, num_classes: int, data_hash: str) -> None:
    """Trials finished by an earlier run of this sweep: their config state for the final tables."""
    from optuna.trial import TrialState

    from orchestrator.tracking import config_run_status

    for t in search.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                             TrialState.FAIL)):
        plan = search_config(spec, t.number, dict(t.params), data_hash)
        status, run_id = config_run_status(client, exp_id, sid, plan.arm)
        st = ConfigState(plan, run_id or "", units_for(plan, subjects))
        st.records = {s: done[(plan.arm, s)] for s in subjects if (plan.arm, s) in done}
        st.pruned = t.state == TrialState.PRUNED
        by_state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}
        st.status = status or by_state.get(t.state, "failed")
        st.summary = config_summary(list(st.records.values()), len(subjects), num_classes)
        configs.append(st)
        if prog is not None:
            for _ in st.records:
                prog.fold_done(True, resumed=True)
            prog.folds_cancelled(len(subjects) - len(st.records))
            prog.config_done(plan.arm, st.status, st.summary.get(spec.protocol.objective), search.best())


def _check_study_has_runs(search: Any, spec: SweepSpec, svc: Services, client: Any, exp_id: str, sid: str,
                          sweep_run: str) -> None:
    """Refuse an Optuna study whose trials have no config runs in the tracking store (``mlflow.db``
    deleted beside a kept ``optuna.db``, or another tracking URI): resuming it would report Optuna values
    with no runs, predictions or folds behind them."""
    from optuna.trial import TrialState

    from orchestrator.tracking import config_run_status

    assert spec.search is not None
    # finished trials only: a RUNNING one may have been asked just before its driver was killed, before
    # its config run existed (the orphan is rerun); a finished one always logged its config run first
    done = search.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                           TrialState.FAIL))
    prefix = spec.search.name + "-"
    # (a trial failed before it had parameters never had a run either: not a lost one)
    lost = [t.number for t in done
            if t.params and config_run_status(client, exp_id, sid, prefix + str(t.number))[1] is None]
    if not lost:
        return
    if not tracking.config_runs_of(client, exp_id, sid):  # our sweep run is new and empty: leave nothing
        client.delete_run(sweep_run)
    raise InputError(
        f"{spec.source}: search: Optuna study {search.study.study_name!r} in {svc.storage_url} has "
        f"{len(lost)} trial(s) (first #{lost[0]}) with no run in the tracking store {svc.tracking_uri} "
        "(was mlflow.db deleted or replaced?); allowed: the tracking store the study ran with, or delete the "
        "study to start the search again")


def _check_services(svc: Services) -> None:
    """The issue-5 hook: prove the tracking store and the Optuna storage answer before Ray starts."""
    try:
        from orchestrator.services import check_services
    except ImportError:  # pragma: no cover - services module absent in a partial checkout
        return
    check_services(svc.tracking_uri, svc.storage_url)
    if svc.artifact_root is not None:  # where a new experiment's artifacts go (checked again per experiment)
        from orchestrator.services import check_writable_dir

        check_writable_dir(svc.artifact_root, "MLflow artifact folder")

