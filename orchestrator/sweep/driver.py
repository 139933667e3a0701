"""The driver of ``mer-orch sweep``: spec -> dataset -> MLflow/Optuna state -> Ray pool -> tables.

Order of events (no worker ever races the driver: a worker touches the store only in a fold, and folds are
submitted after step 2):

1. services checked (``orchestrator.services.check_services``), dataset loaded once (cache built here);
2. tracking DB + experiment; the driver lease taken (a second driver of the sweep stops here, exit 2);
   sweep run created; done folds scanned (resume), stale fold runs deleted; Optuna studies opened (only
   with a ``search`` section); every config run opened and its units queued;
3. Ray started or attached, actor pool created. A *local* Ray (no ``--address``, no ``RAY_ADDRESS``)
   starts during step 2 instead, its actors importing torch and MLflow while a background thread opens the
   store: the start-up the user waits for is the longer of the two, not their sum (issue 26; ``mer-orch
   sweep`` of a resumed sweep with nothing left starts and stops it for nothing, ~1-2 s). On a cluster the
   order stays: an actor created before the queue is known would be demand the autoscaler answers;
4. loop: keep every actor busy with units from the queue (``work_queue.py``), grid arms first, Optuna trials
   asked as room frees up (at most ``search.concurrent_trials`` in flight); each finished fold is reported to
   its trial (pruning); a config whose folds are all in is finalised (pooled metrics, artifacts,
   ``mer.status``, Optuna ``tell``);
5. sweep run: ``tables/arms.csv`` and ``tables/aau_weights.csv``.

``run_sweep`` is that order and :class:`_Sweep` the state it runs on: the configs, the queue and the pool.
It drives two collaborators and knows neither's insides: the store side (``sweep_store.SweepStore``, every
MLflow write; ``reuse_links.ReuseLinks``, which unit links to a stored result) and the search side
(``orchestrator.search.searches.Searches``: ask, report, tell; the nested searches' steps included). Every
protocol (LOSO, composite, cross-dataset, nested inner and outer folds) reaches it as a
``spec.folds.FoldSet``: the driver trains and tests each unit on its config's fold set, nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orchestrator.search.searches import Searches
from orchestrator.spec import SweepSpec
from orchestrator.spec.folds import FoldSet
from orchestrator.spec.plan import (
    ConfigPlan,
    Unit,
    check_au_supervision,
    grid_configs,
    sweep_folds,
    sweep_id,
    units_for,
)
from orchestrator.store import contract as C
from orchestrator.store.contract import FoldRecord
from orchestrator.store.pooled import config_summary, group_summary
from orchestrator.sweep.inputs import Services, check_services, load_data, resolve
from orchestrator.sweep.progress import NullProgress
from orchestrator.sweep.results import ConfigState, SweepResult, aau_rows, table_order
from orchestrator.sweep.reuse_links import ReuseLinks
from orchestrator.sweep.sweep_store import SweepStore
from orchestrator.sweep.work_queue import WorkQueue

__all__ = ["SweepResult", "run_sweep"]


def run_sweep(spec: SweepSpec, **kwargs: Any) -> SweepResult:
    """Run (or resume) the sweep of ``spec`` (keyword options: see :func:`_run_sweep`), holding the
    sweep's driver lease (``orchestrator.sweep.lease``) from the moment its sweep run exists to the end."""
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
    progress: NullProgress | None = None,
    dataset: Any = None,
    reuse: bool = True,
    stop: Callable[[], None] | None = None,
) -> SweepResult:
    """Run (or resume) the sweep of ``spec``; see the module docstring for the order of events.

    ``reuse``: link units whose result the tracking store already holds instead of training them
    (``orchestrator/store/reuse.py``); False (``--no-reuse``) trains every unit this sweep has not done.
    ``stop``: called in the loop at least every second; raises to end the sweep (``mer-orch sweep``: a
    signal whose exception Python dropped)."""
    import ray

    from orchestrator.sweep import executor

    svc = resolve(spec, tracking_uri, storage_url)
    check_services(svc, needs_storage=spec.search is not None)
    sw = _Sweep(spec, svc, dataset if dataset is not None else load_data(spec), progress or NullProgress())
    plans = grid_configs(spec, sw.data_hash)
    check_au_supervision(spec, plans, sw.folds, sw.ds.au_mask)  # exit 2 before anything is written
    ray_up = False
    try:
        if not (address or os.environ.get("RAY_ADDRESS")):  # a local Ray starts while the store opens
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mer-open-store") as ex:
                opening = ex.submit(sw.open, leases, reuse, plans)
                executor.init_ray(None, num_cpus)
                ray_up = True
                sw.make_pool(max_concurrent, sw.units_at_most(len(plans)))
                opening.result()  # the store's errors (a second driver, a bad study) raised here
        else:
            sw.open(leases, reuse, plans)
        if len(sw.queue) + sw.searches.units_left():
            if not ray_up:
                executor.init_ray(address, num_cpus)
                ray_up = True
                sw.make_pool(max_concurrent)
            sw.loop(stop)
    finally:
        if sw.pool is not None:
            sw.pool.shutdown()  # every actor released: an autoscaler may take the workers down
        if ray_up:
            ray.shutdown()
    return sw.finish()


class _Sweep:
    """The state of one ``run_sweep`` call: its configs, queue and pool, and the steps that move units
    between them. The store side is ``self.store`` / ``self.links``, the search side ``self.searches``."""

    def __init__(self, spec: SweepSpec, svc: Services, ds: Any, progress: NullProgress) -> None:
        self.spec, self.svc, self.ds, self.prog = spec, svc, ds, progress
        # a changed dataset (a label fixed in the coding spreadsheet) is another sweep: nothing trained on
        # the old data is resumed (the hash enters the sweep id and every config hash)
        self.data_hash = ds.content_hash()
        self.sid = sweep_id(spec, self.data_hash)
        # the sweep's folds: LOSO (one dataset or a union) or cross-dataset pairs; every unit of a grid arm
        # or trial trains and tests on one of them
        self.folds = sweep_folds(spec, ds)
        self.sizes = {"num_classes": ds.num_classes, "num_aus": len(ds.au_names)}  # from the data, once
        self.seeds = spec.protocol.seed_list
        self.scheme = spec.protocol.seed_scheme  # shared / per_unit training seeds (plan.torch_seed)
        self.configs: list[ConfigState] = []
        self.queue = WorkQueue(spec.resources.packing)
        self.pool: Any = None
        self.folds_run = self.folds_reused = 0
        self.store = SweepStore(spec, svc, ds, self.sid, self.data_hash)
        self.links = ReuseLinks()
        self.searches = Searches(spec, self.data_hash, self.folds, ds.loso_splits(), progress.note)

    def open(self, leases: list[Any], reuse: bool, plans: list[ConfigPlan]) -> None:
        """The store side, up to a full queue: experiment, lease, sweep run, reuse index, Optuna studies,
        every grid arm's and finished trial's config run, and the units left to train queued."""
        self.store.open(leases, self.prog.note)
        self.links.open(self.store.client, reuse, self.data_hash)
        self.searches.open(self.svc.storage_url, self.store.study_name)
        self.store.check_trials_have_runs(self.searches.finished_trial_arms())
        self.start_progress(len(plans))
        for plan in plans:  # grid arms, then the trials an earlier run finished
            self.open_config(plan)
        for plan, folds, pruned, status in self.searches.finished_trials():
            self.restore_config(plan, folds, pruned, status)
        self.searches.open_chosen(self)  # nested: outer subjects whose study an earlier run finished

    def units_at_most(self, n_grid: int) -> int:
        """Units the sweep could queue before its store is read (no search: every grid unit; a search asks
        as it goes): the actors a local sweep starts while its store opens, the pool's cap bounding it."""
        return n_grid * len(self.seeds) * len(self.folds.ids) + (10**6 if self.spec.search else 0)

    def start_progress(self, n_grid: int) -> None:
        n_search, units_search = self.searches.totals()
        n_units = n_grid * len(self.seeds) * len(self.folds.ids) + units_search
        self.prog.start(self.sid, self.spec.experiment, n_grid + n_search, n_units)
        self.store.set_units(n_units)

    def make_pool(self, max_concurrent: int | None, units: int = 0) -> None:
        """An elastic pool (``sweep/pool.py``): actors for the work there is, pending ones are demand an
        autoscaler answers; ``loop`` grows and shrinks it. ``units``: actors started now for that many
        units, before the queue is known (``units_at_most``); the loop's first ``fit`` drops the extra."""
        import ray

        from orchestrator.sweep.pool import start_pool

        res = self.spec.resources
        self.pool = start_pool(ray.put(self.ds), self.svc.tracking_uri, cpu_per_fold=res.cpu_per_fold,
                               gpu_per_fold=res.gpu_per_fold, max_concurrent=max_concurrent,
                               packing=res.packing, save_models=self.spec.tracking.save_models,
                               say=self.prog.note)
        self.pool.fit(units)

    # --------------------------------------------------------------------------------------- configs
    def open_config(self, plan: ConfigPlan, trial: Any = None, *, folds: FoldSet | None = None,
                    search: Any = None, extra_tags: dict[str, str] | None = None) -> ConfigState:
        """Open the config run, delete its stale fold runs, take its done folds, place the rest.

        ``folds``: where its units train and test (default: the sweep's folds); ``search``: the
        SearchState of ``trial``."""
        plan.config.update(self.sizes)
        folds = folds or self.folds
        run_id = self.store.open_config_run(plan, extra_tags)
        st = ConfigState(plan, run_id, units_for(plan, folds.ids, self.seeds, self.scheme), trial=trial,
                         folds=folds, search=search)
        self.store.drop_stale(plan.arm, st.units)
        self.links.look_up(st)
        self.configs.append(st)
        for u in st.units:
            rec = self.store.done.get((plan.arm, u.seed, u.subject))
            if rec is not None:
                self.fold_finished(st, u, rec, resumed=True)
            elif st.pruned:
                self.prog.folds_cancelled(1)
            else:
                self.place(st, u)
        if self.finished(st):
            self.finalise(st)
        return st

    def restore_config(self, plan: ConfigPlan, folds: FoldSet, pruned: bool, status: str) -> None:
        """A trial an earlier run finished: its config state from the store, for the final tables."""
        run_status, run_id = self.store.config_run_status(plan.arm)
        st = ConfigState(plan, run_id or "", units_for(plan, folds.ids, self.seeds, self.scheme), folds=folds,
                         pruned=pruned)
        st.records = {(u.seed, u.subject): self.store.done[(plan.arm, u.seed, u.subject)] for u in st.units
                      if (plan.arm, u.seed, u.subject) in self.store.done}
        st.status = run_status or status
        st.summary = self.summary(list(st.records.values()), len(folds.ids), folds)
        self.configs.append(st)
        for _ in st.records:
            self.prog.fold_done(True, resumed=True)
        self.prog.folds_cancelled(len(st.units) - len(st.records))
        self.prog.config_done(plan.arm, st.status, st.summary.get(self.spec.protocol.objective))

    def place(self, st: ConfigState, u: Unit) -> None:
        """A unit not done in this sweep: linked to the store's result, waiting for an identical unit of
        this sweep, or queued to train (``reuse_links.ReuseLinks.place``)."""
        how, source = self.links.place(st, u)
        if how == "link":
            self.link(st, u, source)
        elif how == "wait":
            st.in_flight += 1  # not finished until its owner is
        else:
            self.queue.push(u)

    def link(self, st: ConfigState, u: Unit, source: Any) -> None:
        """Record ``u`` as a fold run linked to ``source`` (``mer.reused_from``), not trained."""
        run, rec = self.store.link_fold(st.run_id, source, self.fold_tags(st, u), u.seed)
        self.links.linked(st, u, run)
        self.folds_reused += 1
        self.fold_finished(st, u, rec, reused=True)

    def release(self, st: ConfigState, u: Unit, rec: FoldRecord) -> None:
        """``u`` has its final record: the units that waited for it are linked, or queued to train
        themselves when it failed."""
        for wst, wu, source in self.links.release(st, u, rec, self.store.client.get_run):
            wst.in_flight -= 1
            if source is not None:
                self.link(wst, wu, source)
            else:
                self.queue.push(wu)
            if self.finished(wst):
                self.finalise(wst)

    def fold_tags(self, st: ConfigState, u: Unit) -> dict[str, str]:
        """The driver's tags of a fold run of ``u`` (the worker adds where and how it trained)."""
        return {C.SWEEP_ID: self.sid, C.CONFIG_HASH: st.plan.config_hash, C.ARM: u.arm, C.SUBJECT: u.subject,
                C.SEED: str(u.seed), C.DATASET: self.ds.name, C.UNIT_KEY: self.links.key(st, u),
                C.REUSE_GROUP: self.links.group(st),
                **st.folds.tags(u.subject)}  # nested: its training / test subjects

    def finished(self, st: ConfigState) -> bool:
        return st.in_flight == 0 and self.queue.pending(st.plan.arm) == 0

    def has_room(self) -> bool:
        return len(self.queue) < max(1, self.pool.cap())

    def fold_finished(self, st: ConfigState, u: Unit, rec: FoldRecord, resumed: bool = False,
                      reused: bool = False) -> None:
        """Record a fold; report it to the config's trial, dropping the config's queue when pruned.

        A trial is never pruned on its last unit: once every unit has a record there is nothing left to
        save, and the trial is told COMPLETE with its seed-mean value."""
        st.records[(u.seed, u.subject)] = rec
        self.prog.fold_done(rec.ok, resumed=resumed, reused=reused)
        if st.trial is not None and rec.ok and not st.pruned:
            value = rec.metrics[self.spec.protocol.objective]
            prune = self.searches.report(st, value, len(st.units) // len(self.seeds), u)
            if prune and len(st.records) < len(st.units):
                st.pruned = True
                self.prog.folds_cancelled(self.queue.drop(st.plan.arm))

    def finalise(self, st: ConfigState) -> None:
        """Pooled metrics, artifacts and ``mer.status`` of a config whose folds are all in; Optuna tell."""
        recs = st.ordered_records()
        st.status = st.outcome()
        st.summary = self.summary(recs, len(st.units) // len(self.seeds), st.folds)
        if st.status == "pruned":
            st.summary["n_failed"] = float(sum(not r.ok for r in recs))
        self.store.finish_config(st.run_id, recs, st.summary, st.status)
        if st.trial is not None:
            self.searches.tell(st)
        self.prog.config_done(st.plan.arm, st.status, st.summary.get(self.spec.protocol.objective))

    def summary(self, recs: list[FoldRecord], n_folds: int | None = None,
                folds: FoldSet | None = None) -> dict[str, Any]:
        """config_summary over ``n_folds`` folds per seed (default: the sweep's folds); on a union of
        datasets also the per-dataset pooled metrics (``store.pooled.group_summary``)."""
        out = config_summary(recs, seeds=self.seeds, n_subjects=n_folds or len(self.folds.ids),
                             num_classes=self.ds.num_classes)
        groups = (folds or self.folds).groups
        if groups:
            out.update(group_summary(recs, groups, seeds=self.seeds, num_classes=self.ds.num_classes))
        return out

    # ------------------------------------------------------------------------------------------ loop
    def loop(self, stop: Callable[[], None] | None = None) -> None:
        """Keep every actor busy until nothing is queued, in flight or left to ask; ``stop`` is called
        every turn, and a turn waits at most a second when there is one."""
        while True:
            if stop is not None:
                stop()
            self.searches.ask(self)
            while len(self.queue) and self.pool.idle:
                self.submit(self.queue.take())
            self.pool.fit(len(self.queue))  # grow for queued work, release idle actors when it ran dry
            self.prog.workers(len(self.pool.actors))
            if not self.pool.has_work(len(self.queue)):
                return
            for job, rec in self.pool.wait(timeout=None if stop is None else 1.0):
                self.folds_run += 1
                self.outcome(job, rec)

    def state(self, arm: str) -> ConfigState:
        return next(c for c in self.configs if c.plan.arm == arm)

    def submit(self, units: list[Unit]) -> None:
        """One actor call for ``units`` (one config's: packed when more than one)."""
        from orchestrator.sweep.executor import Job

        jobs = []
        for u in units:
            st = self.state(u.arm)
            st.in_flight += 1
            tr, te = st.folds.splits[u.subject]
            jobs.append(Job(unit=u, config=st.plan.config, train_idx=tr, test_idx=te, parent_run_id=st.run_id,
                            tags=self.fold_tags(st, u), last_attempt=u.attempt > self.spec.protocol.retries,
                            experiment_id=self.store.exp_id))
        self.pool.submit_group(jobs)

    def outcome(self, job: Any, rec: FoldRecord) -> None:
        """A finished call's record: retry a failed attempt that has attempts left, else record the fold."""
        u, st = job.unit, self.state(job.unit.arm)
        st.in_flight -= 1
        if rec.actor_died or rec.log_failed:  # it may have left a partial run (mid-burst): none may remain
            self.store.discard_partial(u)
        if not rec.ok and not job.last_attempt:
            self.prog.retry(u.arm, u.subject, rec.error)
            self.queue.retry(u)
            return
        if not rec.ok and rec.run_id is None:  # the actor died on its last attempt: the driver records it
            rec.run_id = self.store.log_lost_fold(st.run_id, job.tags, rec, u.attempt)
        self.fold_finished(st, u, rec)
        self.release(st, u, rec)
        if self.finished(st):
            self.finalise(st)

    # ------------------------------------------------------------------------------------------- end
    def finish(self) -> SweepResult:
        """Sweep run tables: grid arms in file order, then Optuna trials by number (resumed trials were
        opened out of order)."""
        self.configs.sort(key=table_order)
        result = SweepResult(self.sid, self.spec.experiment, self.configs, self.folds_run, len(self.seeds),
                             self.folds_reused, datasets=list(dict.fromkeys(self.folds.groups.values())))
        nested = self.searches.nested_result(self.summary)
        if nested is not None:
            est, rows, complete = nested
            self.store.log_nested(est, rows, complete)
            result.nested = {"estimate": {k: v for k, v in est.items() if k != "confusion"}, "choices": rows,
                             "complete": complete, "n_outer": len(rows)}
        rows = [[r[k] for k in result.header] for r in result.rows()]
        self.store.finish(result.header, rows, aau_rows(self.configs, self.folds.ids), not result.incomplete)
        return result
