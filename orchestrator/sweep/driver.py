"""The driver of ``mer-orch sweep``: spec -> dataset -> MLflow/Optuna state -> Ray pool -> tables.

Order of events (each step before the next, so no worker ever races the driver):

1. services checked (``orchestrator.services.check_services``), dataset loaded once (cache built here);
2. tracking DB + experiment; the driver lease taken (a second driver of the sweep stops here, exit 2);
   sweep run created; done folds scanned (resume), stale fold runs deleted;
3. Optuna study opened (only with a ``search`` section); Ray started or attached, actor pool created;
4. loop: keep every actor busy with units from the queue (``work_queue.py``), grid arms first, Optuna trials
   asked as room frees up (at most ``search.concurrent_trials`` in flight); each finished fold is reported to
   its trial (pruning); a config whose folds are all in is finalised (pooled metrics, artifacts,
   ``mer.status``, Optuna ``tell``);
5. sweep run: ``tables/arms.csv`` and ``tables/aau_weights.csv``.

A nested search (``search.selection: nested``) runs through the same steps with one study per outer
subject, its trials on inner folds, then a chosen config per outer subject (``nested_sweep.py``).

``run_sweep`` is that order; the :class:`_Sweep` methods are its steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mer_model.config import EXTENSION_DEFAULTS, SUMMARY_KEYS, extensions
from mer_model.errors import InputError
from orchestrator.search.nested import NestedSteps
from orchestrator.spec import SweepSpec
from orchestrator.spec.folds import FoldSet
from orchestrator.spec.plan import (
    ConfigPlan,
    Unit,
    check_au_supervision,
    grid_configs,
    search_config,
    sweep_folds,
    sweep_id,
    units_for,
)
from orchestrator.store import contract as C
from orchestrator.store.contract import METRICS, FoldRecord, sqlite_path
from orchestrator.store.tracking import config_summary, group_summary
from orchestrator.sweep.progress import NullProgress
from orchestrator.sweep.work_queue import WorkQueue

# tables/arms.csv and the summary rows: identity, counts, pooled then per-fold metrics, the config keys
ARMS_HEADER = ["arm", "table", "status", "optuna_trial", "config_hash", "n_folds", "n_failed", *METRICS,
               *[f"fold_{s}_{m}" for m in METRICS for s in ("mean", "std")], *SUMMARY_KEYS]


def arms_header(n_seeds: int) -> list[str]:
    """``ARMS_HEADER``; with >= 2 seeds also ``n_seeds`` and the sd over seeds ``<m>_sd`` of each metric
    (one-seed sweeps keep the header they always had)."""
    if n_seeds < 2:
        return list(ARMS_HEADER)
    i = ARMS_HEADER.index("n_failed") + 1
    j = ARMS_HEADER.index(METRICS[-1]) + 1
    return [*ARMS_HEADER[:i], "n_seeds", *ARMS_HEADER[i:j], *[f"{m}_sd" for m in METRICS], *ARMS_HEADER[j:]]


@dataclass
class ConfigState:
    plan: ConfigPlan
    run_id: str
    units: list[Unit]
    records: dict[tuple[int, str], FoldRecord] = field(default_factory=dict)  # (seed, subject) -> record
    in_flight: int = 0
    pruned: bool = False
    trial: Any = None  # optuna.trial.Trial for search configs
    status: str = ""
    folds: FoldSet | None = None  # where its units train and test (the sweep's LOSO folds unless nested)
    search: Any = None  # the study.SearchState its trial belongs to
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class _ReuseState:
    """Reuse bookkeeping of one sweep (orchestrator/store/reuse.py): the store's done units by unit key, the
    queued / training unit that owns each key in this sweep, and the units waiting for their owner."""

    enabled: bool = True
    data_hash: str = ""
    index: dict[str, Any] = field(default_factory=dict)
    owners: dict[str, Unit] = field(default_factory=dict)
    waiting: dict[str, list[tuple[ConfigState, Unit]]] = field(default_factory=dict)


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
    n_seeds: int = 1
    folds_reused: int = 0  # folds linked to an identical done unit by this invocation (reuse.py)
    nested: dict[str, Any] = field(default_factory=dict)  # nested search: _Sweep.finish_nested()
    datasets: list[str] = field(default_factory=list)  # a union's dataset labels: per-dataset columns

    @property
    def header(self) -> list[str]:
        """``arms_header``; a non-paper option's column only when some arm turns it on (a paper sweep's
        tables/arms.csv is the same as before the options existed); on a union of datasets the pooled
        metrics of each dataset (``dataset/<label>/<m>``, and ``_sd``) after the whole's."""
        used = {k for c in self.configs for k in extensions(c.plan.config)}
        head = [k for k in arms_header(self.n_seeds) if k not in EXTENSION_DEFAULTS or k in used]
        if not self.datasets:
            return head
        i = head.index(f"{METRICS[-1]}_sd" if self.n_seeds >= 2 else METRICS[-1]) + 1
        return [*head[:i], *self.dataset_columns, *head[i:]]

    @property
    def dataset_columns(self) -> list[str]:
        sd = ("", "_sd") if self.n_seeds >= 2 else ("",)
        return [C.dataset_metric(d, f"{m}{x}") for d in self.datasets for m in METRICS for x in sd]

    def rows(self) -> list[dict[str, Any]]:
        """One row per config, keyed by :attr:`header`; pooled metrics (mean over seeds, and their sd)
        only for a complete config."""
        out = []
        pooled = [*METRICS, *[f"{m}_sd" for m in METRICS if self.n_seeds >= 2]]
        for c in self.configs:
            row: dict[str, Any] = {"arm": c.plan.arm, "table": c.plan.table, "status": c.status,
                                   "optuna_trial": "" if c.plan.optuna_trial is None else c.plan.optuna_trial,
                                   "config_hash": c.plan.config_hash}
            row.update({k: c.summary.get(k, "") for k in ARMS_HEADER if k.startswith(("n_", "fold_"))})
            if self.n_seeds >= 2:
                row["n_seeds"] = self.n_seeds
            pooled_now = [*pooled, *self.dataset_columns]
            row.update({m: c.summary.get(m, "") if c.status == "complete" else "" for m in pooled_now})
            row.update({k: c.plan.config.get(k) for k in SUMMARY_KEYS})
            out.append(row)
        return out

    @property
    def incomplete(self) -> list[str]:
        return [c.plan.arm for c in self.configs if c.status not in ("complete", "pruned")]


def resolve(spec: SweepSpec, tracking_uri: str | None, storage_url: str | None) -> Services:
    """Tracking URI / Optuna storage: CLI option > spec > environment > ./mer-runs/ defaults (absolute)."""
    from orchestrator.services import resolve_services

    svc = resolve_services(tracking_uri or spec.tracking.uri, storage_url or spec.storage.url)
    db = sqlite_path(svc.tracking_uri)
    return Services(svc.tracking_uri, svc.optuna_storage, None if db is None else db.parent / "artifacts")


def load_data(spec: SweepSpec) -> Any:
    """The dataset, loaded (and its landmark cache built) once, in the driver; several datasets: their
    union (``mer_model.data.combine``), subjects prefixed by each dataset's label."""
    from mer_model.data import load_dataset
    from mer_model.data.combine import combine

    parts = [load_dataset(d.name, setup=d.setup, root=d.root, seed=d.seed, magnification=d.magnification,
                          cache_dir=d.cache_dir or C.cache_dir(), **d.knobs) for d in spec.datasets]
    if len(parts) == 1:
        return parts[0]
    try:
        return combine(parts, [d.short for d in spec.datasets])
    except InputError as e:
        raise InputError(f"{spec.source}: {e}") from None


def _subject_aau(c: ConfigState, subjects: list[str]) -> list[tuple[str, dict[int, float]]]:
    """(subject, layer -> AAU weight) over the complete folds of ``c``; a subject's weight is the mean over
    its seeds (one seed: the fold's own weight)."""
    per = []
    for s in subjects:
        ws = [r.aau for (_, subj), r in c.records.items() if subj == s and r.ok]
        if ws:
            layers = sorted(set.intersection(*(set(w) for w in ws)))
            per.append((s, {r: float(np.mean([w[r] for w in ws])) for r in layers}))
    return per


def aau_rows(configs: list[ConfigState], subjects: list[str]) -> list[list[Any]]:
    """Paper Table VIII per AAU arm: ``arm, subject, layer1..layer4`` (blank where the arm has no such
    layer), then the arm's ``Average`` row over its complete folds."""
    rows: list[list[Any]] = []
    for c in configs:
        if c.plan.config.get("au_loss") != "aau":
            continue
        per = _subject_aau(c, subjects)
        if not per:
            continue
        for s, w in per:
            rows.append([c.plan.arm, s, *[w.get(r, "") for r in (1, 2, 3, 4)]])
        avg = [np.mean([w[r] for _, w in per]) if all(r in w for _, w in per) else "" for r in (1, 2, 3, 4)]
        rows.append([c.plan.arm, "Average", *avg])
    return rows


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
) -> SweepResult:
    """Run (or resume) the sweep of ``spec``; see the module docstring for the order of events.

    ``reuse``: link units whose result the tracking store already holds instead of training them
    (``orchestrator/store/reuse.py``); False (``--no-reuse``) trains every unit this sweep has not done."""
    import ray

    from orchestrator.sweep import executor

    svc = resolve(spec, tracking_uri, storage_url)
    _check_services(svc, needs_storage=spec.search is not None)
    sw = _Sweep(spec, svc, dataset if dataset is not None else load_data(spec), progress or NullProgress())
    plans = grid_configs(spec, sw.data_hash)
    check_au_supervision(spec, plans, sw.loso, sw.ds.au_mask)  # exit 2 before anything is written
    sw.open_tracking(leases)
    sw.open_reuse(reuse)
    sw.open_search()
    sw.start_progress()
    for plan in plans:  # grid arms, then the trials an earlier run finished
        sw.open_config(plan)
    sw.restore_finished_trials()
    sw.open_chosen()  # nested: outer subjects whose study an earlier run finished
    units_left = len(sw.queue) + sw.units_to_ask()
    if units_left:
        executor.init_ray(address, num_cpus)
        try:
            sw.make_pool(max_concurrent)
            sw.loop()
        finally:
            if sw.pool is not None:
                sw.pool.shutdown()  # every actor released: an autoscaler may take the workers down
            ray.shutdown()
    return sw.finish()


class _Sweep(NestedSteps):
    """The state of one ``run_sweep`` call and its steps (each a method, called in the documented order;
    the steps of a nested search are in ``nested_sweep.py``)."""

    def __init__(self, spec: SweepSpec, svc: Services, ds: Any, progress: NullProgress) -> None:
        self.spec, self.svc, self.ds, self.prog = spec, svc, ds, progress
        # a changed dataset (a label fixed in the coding spreadsheet) is another sweep: nothing trained on
        # the old data is resumed (the hash enters the sweep id and every config hash)
        self.data_hash = ds.content_hash()
        self.sid = sweep_id(spec, self.data_hash)
        # the sweep's folds: LOSO (one dataset or a union) or cross-dataset pairs; every unit of a grid arm
        # or trial trains and tests on one of them
        self.loso = sweep_folds(spec, ds)
        self.subjects = self.loso.ids
        splits = ds.loso_splits()
        self.sizes = {"num_classes": ds.num_classes, "num_aus": len(ds.au_names)}  # from the data, once
        self.seeds = spec.protocol.seed_list
        self.scheme = spec.protocol.seed_scheme  # shared / per_unit training seeds (plan.torch_seed)
        self.configs: list[ConfigState] = []
        self.queue = WorkQueue(spec.resources.packing)
        self.search: Any = None
        self.slots: list[Any] = []  # nested: one nested_sweep.OuterSearch per outer subject
        self.plan_outer_searches(splits)  # nested: inner folds per outer subject; bad k is exit 2 here
        self.pool: Any = None
        self.folds_run = self.folds_reused = 0
        self.reuse = _ReuseState()

    # ------------------------------------------------------------------------------------ set-up steps
    def open_tracking(self, leases: list[Any]) -> None:
        """Experiment, sweep run and its driver lease (appended to ``leases``, released by ``run_sweep``),
        the environment record, and the folds an earlier run finished."""
        from orchestrator.services import check_artifact_location
        from orchestrator.store import environment, tracking
        from orchestrator.store.outage import HealthWatch, Reporting, tracking_client
        from orchestrator.sweep.lease import Lease

        self.exp_id = tracking.prepare_experiment(self.svc.tracking_uri, self.spec.experiment,
                                                  self.svc.artifact_root)
        # a remote store: every call rides out an outage for a bounded time, one line to the user
        leases.append(Reporting(self.prog.note))  # released with the lease at the end
        self.client = tracking_client(self.svc.tracking_uri)
        leases.append(Lease(self.svc.tracking_uri, self.sid, client=self.client))
        leases[-1].acquire(self.spec.source)  # atomic: of two drivers of this sweep, the second stops here
        watch = HealthWatch.start_for(self.client, self.svc.tracking_uri)
        if watch is not None:
            leases.append(watch)  # released with the lease at the end
        check_artifact_location(self.client.get_experiment(self.exp_id).artifact_location)  # before training
        self.study_name = f"{self.spec.experiment}-{self.sid}"
        tags = {C.DATASET: self.ds.name, C.SETUP: self.ds.setup, C.SPEC: Path(self.spec.source).name,
                C.OBJECTIVE: self.spec.protocol.objective, C.SCHEME: self.spec.protocol.scheme}
        if self.spec.search is not None:
            tags |= {C.OPTUNA_STUDY: self.study_name, C.OPTUNA_STORAGE: self.svc.storage_url}
        self.sweep_run = tracking.open_sweep_run(self.client, self.exp_id, self.sid, tags)
        # reproducibility record (environment.json); a resume in another environment warns
        environment.record_sweep(self.client, self.sweep_run, environment.collect_environment(
            self.ds, threads_per_fold=max(1, int(self.spec.resources.cpu_per_fold)),
            data_hash=self.data_hash))
        self.done, self.stale = tracking.scan_folds(self.client, self.exp_id, self.sid, self.seeds[0])

    def open_reuse(self, enabled: bool) -> None:
        """The store's done units by unit key (every experiment), when reuse is on."""
        from orchestrator.store import reuse

        self.reuse.enabled = enabled
        self.reuse.data_hash = self.data_hash
        if enabled:
            self.reuse.index = reuse.scan_store(self.client)

    def open_search(self) -> None:
        if self.nested:
            self.open_outer_searches()
        elif self.spec.search is not None:
            from orchestrator.search.study import SearchState

            self.search = SearchState.open(self.spec.search, self.svc.storage_url, self.study_name)
            self._check_study_has_runs()

    def _check_study_has_runs(self) -> None:
        """Refuse an Optuna study whose finished trials have no config run in the tracking store
        (``mlflow.db`` deleted beside a kept ``optuna.db``, or another tracking URI): resuming it would report
        Optuna values with no runs, predictions or folds behind them."""
        from optuna.trial import TrialState

        from orchestrator.store import tracking

        # finished trials only: a RUNNING one may have been asked just before its driver was killed, before
        # its config run existed (the orphan is rerun); a trial failed before it had params never had a run
        done = self.search.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                    TrialState.FAIL))
        arm = f"{self.spec.search.name}-"  # search_config names trial n "<name>-<n>"
        lost = [t.number for t in done if t.params and tracking.config_run_status(
            self.client, self.exp_id, self.sid, arm + str(t.number))[1] is None]
        if not lost:
            return
        if not tracking.config_runs_of(self.client, self.exp_id, self.sid):  # our new sweep run: none left
            self.client.delete_run(self.sweep_run)
        raise InputError(
            f"{self.spec.source}: search: Optuna study {self.search.study.study_name!r} in "
            f"{self.svc.storage_url} has {len(lost)} trial(s) (first #{lost[0]}) with no run in the "
            f"tracking store {self.svc.tracking_uri} (was mlflow.db deleted or replaced?); allowed: the "
            "tracking store the study ran with, or delete the study to start the search again")

    def start_progress(self) -> None:
        s = self.search
        n_search = 0 if s is None else s.n_trained() + len(s.orphans) + s.budget()
        n_cfg = len(grid_configs(self.spec, self.data_hash)) + n_search
        n_nested, units_nested = self.nested_totals()
        n_units = n_cfg * self.n_units + units_nested
        self.prog.start(self.sid, self.spec.experiment, n_cfg + n_nested, n_units)
        self.client.set_tag(self.sweep_run, C.N_UNITS, str(n_units))  # for mer-orch ls

    @property
    def n_units(self) -> int:
        """Units per config: seeds x subjects."""
        return len(self.seeds) * len(self.subjects)

    def trials_left(self) -> int:
        return 0 if self.search is None else len(self.search.orphans) + self.search.budget()

    def units_to_ask(self) -> int:
        """Units of configs not opened yet: trials still to ask (and, nested, the chosen configs)."""
        return self.trials_left() * self.n_units + self.nested_units_left()

    def make_pool(self, max_concurrent: int | None) -> None:
        """An elastic pool (``sweep/pool.py``): actors for the work there is, pending ones are demand an
        autoscaler answers; ``loop`` grows and shrinks it."""
        import ray

        from orchestrator.sweep.pool import start_pool

        res = self.spec.resources
        self.pool = start_pool(ray.put(self.ds), self.svc.tracking_uri, self.exp_id,
                               cpu_per_fold=res.cpu_per_fold, gpu_per_fold=res.gpu_per_fold,
                               max_concurrent=max_concurrent, packing=res.packing,
                               save_models=self.spec.tracking.save_models, say=self.prog.note)

    # --------------------------------------------------------------------------------------- configs
    def open_config(self, plan: ConfigPlan, trial: Any = None, *, folds: FoldSet | None = None,
                    search: Any = None, extra_tags: dict[str, str] | None = None) -> ConfigState:
        """Open the config run, delete its stale fold runs, take its done folds, queue the rest.

        ``folds``: where its units train and test (default: the sweep's LOSO folds); ``search``: the
        SearchState of ``trial`` (default: the sweep's study)."""
        from orchestrator.store import tracking

        plan.config.update(self.sizes)
        folds = folds or self.loso
        tags = {C.TABLE: plan.table, C.CONFIG_HASH: plan.config_hash, C.SWEEP_ID: self.sid,
                C.DATASET: self.ds.name, **(extra_tags or {})}
        if plan.optuna_trial is not None:
            tags[C.OPTUNA_TRIAL] = str(plan.optuna_trial)
        if plan.baseline:
            tags[C.BASELINE] = "true"
        params = {**plan.config, "dataset": self.ds.name, "setup": self.ds.setup,
                  "seeds": ",".join(map(str, self.seeds))}
        if len(self.seeds) == 1:
            params["seed"] = self.seeds[0]  # as before seeds existed
        run_id = tracking.open_config_run(self.client, self.exp_id, sweep_run_id=self.sweep_run,
                                          arm=plan.arm, tags=tags, params=params)
        if search is None and trial is not None:
            search = self.search
        units = units_for(plan, folds.ids, self.seeds, self.scheme)
        st = ConfigState(plan, run_id, units, trial=trial, folds=folds, search=search)
        for u in st.units:  # the config reruns: its stale fold runs (failed, partial) go now
            for rid in self.stale.pop((plan.arm, u.seed, u.subject), []):
                self.client.delete_run(rid)
        self.configs.append(st)
        for u in st.units:
            rec = self.done.get((plan.arm, u.seed, u.subject))
            if rec is not None:
                self.fold_finished(st, u, rec, resumed=True)
            elif st.pruned:
                self.prog.folds_cancelled(1)
            else:
                self.place(st, u)
        if self.finished(st):
            self.finalise(st)
        return st

    def key(self, st: ConfigState, u: Unit) -> str:
        from orchestrator.store.reuse import unit_key

        # the training seed: the protocol seed under the shared scheme (every stored key unchanged), the
        # unit's own under per_unit (a per_unit unit never links to a shared-scheme result)
        return unit_key(st.plan.config, u.train_seed, u.subject, self.reuse.data_hash)

    def place(self, st: ConfigState, u: Unit) -> None:
        """A unit not done in this sweep: linked when the store holds its result, waiting when an
        identical unit of this sweep is queued or training, else queued (and, for a grid arm, the owner
        its duplicates wait for: grid arms are never pruned, so an owner always finishes)."""
        key, r = self.key(st, u), self.reuse
        if r.enabled and key in r.index:
            self.link(st, u, r.index[key])
        elif r.enabled and key in r.owners:
            r.waiting.setdefault(key, []).append((st, u))
            st.in_flight += 1  # not finished until its owner is
        else:
            if r.enabled and st.trial is None:
                r.owners[key] = u
            self.queue.push(u)

    def link(self, st: ConfigState, u: Unit, source: Any) -> None:
        """Record ``u`` as a fold run linked to ``source`` (``mer.reused_from``), not trained."""
        from orchestrator.store import reuse, tracking

        run_id = reuse.link_fold(self.client, self.exp_id, st.run_id, source, self.fold_tags(st, u))
        self.reuse.index[self.key(st, u)] = self.client.get_run(run_id)
        self.folds_reused += 1
        self.fold_finished(st, u, tracking.read_fold_run(self.client, run_id, seed=u.seed), reused=True)

    def release(self, st: ConfigState, u: Unit, rec: FoldRecord) -> None:
        """``u`` has its final record: a complete one joins the index (a config opened later, e.g. an
        Optuna trial, links to it); an owner's waiting units are linked, or, when it failed, queued to
        train themselves."""
        key, r = self.key(st, u), self.reuse
        if not r.enabled:
            return
        done = rec.ok and rec.run_id is not None
        if done:
            r.index[key] = self.client.get_run(rec.run_id)
        owner = r.owners.get(key)
        if owner is None or (owner.arm, owner.seed, owner.subject) != (u.arm, u.seed, u.subject):
            return  # not an owner (a retry of an owner has a higher attempt: compare the unit, not it)
        del r.owners[key]
        for wst, wu in r.waiting.pop(key, []):
            wst.in_flight -= 1
            if done:
                self.link(wst, wu, r.index[key])
            else:
                self.queue.push(wu)
            if self.finished(wst):
                self.finalise(wst)

    def fold_tags(self, st: ConfigState, u: Unit) -> dict[str, str]:
        """The driver's tags of a fold run of ``u`` (the worker adds where and how it trained)."""
        return {C.SWEEP_ID: self.sid, C.CONFIG_HASH: st.plan.config_hash, C.ARM: u.arm, C.SUBJECT: u.subject,
                C.SEED: str(u.seed), C.DATASET: self.ds.name, C.UNIT_KEY: self.key(st, u),
                **(st.folds or self.loso).tags(u.subject)}  # nested: its training / test subjects

    def finished(self, st: ConfigState) -> bool:
        return st.in_flight == 0 and self.queue.pending(st.plan.arm) == 0

    def fold_finished(self, st: ConfigState, u: Unit, rec: FoldRecord, resumed: bool = False,
                      reused: bool = False) -> None:
        """Record a fold; report it to the config's trial, dropping the config's queue when pruned.

        A trial is never pruned on its last unit: once every unit has a record there is nothing left to
        save, and the trial is told COMPLETE with its seed-mean value."""
        st.records[(u.seed, u.subject)] = rec
        self.prog.fold_done(rec.ok, resumed=resumed, reused=reused)
        if st.search is not None and st.trial is not None and rec.ok and not st.pruned:
            value = rec.metrics[self.spec.protocol.objective]
            prune = st.search.report_fold(st.trial, value, u.step(len(st.units) // len(self.seeds)))
            if prune and len(st.records) < len(st.units):
                st.pruned = True
                self.prog.folds_cancelled(self.queue.drop(st.plan.arm))

    def status(self, st: ConfigState) -> str:
        n_ok = sum(r.ok for r in st.records.values())
        if n_ok == len(st.units):  # every unit finished: complete, even if the pruner had spoken meanwhile
            return "complete"
        if st.pruned:
            return "pruned"
        return "failed" if n_ok == 0 else "incomplete"

    def finalise(self, st: ConfigState) -> None:
        """Pooled metrics, artifacts and ``mer.status`` of a config whose folds are all in; Optuna tell."""
        from orchestrator.store import tracking

        recs = [st.records[(u.seed, u.subject)] for u in st.units if (u.seed, u.subject) in st.records]
        st.status = self.status(st)
        st.summary = self.summary(recs, len(st.units) // len(self.seeds), st.folds)
        if st.status == "pruned":
            st.summary["n_failed"] = float(sum(not r.ok for r in recs))
        tracking.finish_config_run(self.client, st.run_id, folds=recs, summary=st.summary, status=st.status,
                                   class_names=self.ds.class_names)
        if st.search is not None and st.trial is not None:
            self.tell(st)
        self.prog.config_done(st.plan.arm, st.status, st.summary.get(self.spec.protocol.objective))

    def summary(self, recs: list[FoldRecord], n_folds: int | None = None,
                folds: FoldSet | None = None) -> dict[str, Any]:
        """config_summary over ``n_folds`` folds per seed (default: the sweep's folds); on a union of
        datasets also the per-dataset pooled metrics (``tracking.group_summary``)."""
        out = config_summary(recs, seeds=self.seeds, n_subjects=n_folds or len(self.subjects),
                             num_classes=self.ds.num_classes)
        groups = (folds or self.loso).groups
        if groups:
            out.update(group_summary(recs, groups, seeds=self.seeds, num_classes=self.ds.num_classes))
        return out

    def tell(self, st: ConfigState) -> None:
        from optuna.trial import TrialState

        if st.status == "complete":
            st.search.tell(st.trial, st.summary[self.spec.protocol.objective], TrialState.COMPLETE)
        else:
            st.search.tell(st.trial, None, TrialState.PRUNED if st.pruned else TrialState.FAIL)

    def restore_finished_trials(self) -> None:
        """Trials finished by an earlier run of this sweep: their config state, for the final tables."""
        if self.search is not None:
            self.restore_trials_of(self.search, self.loso)
        for slot in self.slots:
            self.restore_trials_of(slot.state, slot.folds, name=slot.name, table=slot.table)

    def restore_trials_of(self, search: Any, folds: FoldSet, name: str | None = None,
                          table: str = "search") -> None:
        """The finished trials of one study (``name``: its arm prefix), evaluated on ``folds``."""
        from optuna.trial import TrialState

        from orchestrator.search.trial_reuse import is_reused
        from orchestrator.store.tracking import config_run_status

        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        for t in search.study.get_trials(deepcopy=False, states=states):
            if is_reused(t):  # took an earlier trial's result: no config run, no row of its own
                continue
            plan = search_config(self.spec, t.number, dict(t.params), self.data_hash, name=name, table=table)
            status, run_id = config_run_status(self.client, self.exp_id, self.sid, plan.arm)
            units = units_for(plan, folds.ids, self.seeds, self.scheme)
            st = ConfigState(plan, run_id or "", units, folds=folds)
            st.records = {(u.seed, u.subject): self.done[(plan.arm, u.seed, u.subject)] for u in st.units
                          if (plan.arm, u.seed, u.subject) in self.done}
            st.pruned = t.state == TrialState.PRUNED
            by_state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}
            st.status = status or by_state.get(t.state, "failed")
            st.summary = self.summary(list(st.records.values()), len(folds.ids), folds)
            self.configs.append(st)
            for _ in st.records:
                self.prog.fold_done(True, resumed=True)
            self.prog.folds_cancelled(len(st.units) - len(st.records))
            self.prog.config_done(plan.arm, st.status, st.summary.get(self.spec.protocol.objective))

    # ------------------------------------------------------------------------------------------ loop
    def loop(self) -> None:
        """Keep every actor busy until nothing is queued, in flight or left to ask."""
        while True:
            self.ask_trials()
            self.ask_inner_trials()
            self.open_chosen()
            while len(self.queue) and self.pool.idle:
                self.submit(self.queue.take())
            self.pool.fit(len(self.queue))  # grow for queued work, release idle actors when it ran dry
            self.prog.workers(len(self.pool.actors))
            if not self.pool.has_work(len(self.queue)):
                return
            for job, rec in self.pool.wait():
                self.folds_run += 1
                self.outcome(job, rec)

    def ask_trials(self) -> None:
        """Open Optuna trials while fewer than ``concurrent_trials`` are in flight and workers would idle."""
        if self.search is None:
            return
        while (self.active_trials() < self.spec.search.concurrent_trials  # type: ignore[union-attr]
               and len(self.queue) < max(1, self.pool.cap())):
            nxt = self.search.next_trial()
            if nxt is None:
                return
            trial, params = nxt
            self.open_config(search_config(self.spec, trial.number, params, self.data_hash), trial)

    def active_trials(self) -> int:
        return sum(1 for c in self.configs if c.trial is not None and not self.finished(c))

    def state(self, arm: str) -> ConfigState:
        return next(c for c in self.configs if c.plan.arm == arm)

    def submit(self, units: list[Unit]) -> None:
        """One actor call for ``units`` (one config's: packed when more than one)."""
        from orchestrator.sweep.executor import Job

        jobs = []
        for u in units:
            st = self.state(u.arm)
            st.in_flight += 1
            tr, te = (st.folds or self.loso).splits[u.subject]
            jobs.append(Job(unit=u, config=st.plan.config, train_idx=tr, test_idx=te, parent_run_id=st.run_id,
                            tags=self.fold_tags(st, u), last_attempt=u.attempt > self.spec.protocol.retries))
        self.pool.submit_group(jobs)

    def outcome(self, job: Any, rec: FoldRecord) -> None:
        """A finished call's record: retry a failed attempt that has attempts left, else record the fold."""
        from orchestrator.store import tracking

        u, st = job.unit, self.state(job.unit.arm)
        st.in_flight -= 1
        if rec.actor_died or rec.log_failed:  # it may have left a partial run (mid-burst): none may remain
            tracking.delete_partial_folds(self.client, self.exp_id, sweep_id=self.sid, arm=u.arm,
                                          seed=u.seed, subject=u.subject)
        if not rec.ok and not job.last_attempt:
            self.prog.retry(u.arm, u.subject, rec.error)
            self.queue.retry(u)
            return
        if not rec.ok and rec.run_id is None:  # the actor died on its last attempt: the driver records it
            rec.run_id = tracking.log_fold_run(
                self.client, self.exp_id, st.run_id, metrics={}, status="failed",
                tags={**job.tags, C.NODE: rec.node, C.ATTEMPT: str(u.attempt), C.ERROR: rec.error})
        self.fold_finished(st, u, rec)
        self.release(st, u, rec)
        if self.finished(st):
            self.finalise(st)

    # ------------------------------------------------------------------------------------------- end
    def finish(self) -> SweepResult:
        """Sweep run tables: grid arms in file order, then Optuna trials by number (resumed trials were
        opened out of order)."""
        from orchestrator.store import tracking

        self.configs.sort(key=_table_order)
        result = SweepResult(self.sid, self.spec.experiment, self.configs, self.folds_run, len(self.seeds),
                             self.folds_reused, datasets=list(dict.fromkeys(self.loso.groups.values())))
        result.nested = self.finish_nested()
        rows = [[r[k] for k in result.header] for r in result.rows()]
        tracking.finish_sweep_run(self.client, self.sweep_run, spec_text=self.spec.text,
                                  arms_header=result.header, arms_rows=rows,
                                  aau_rows=aau_rows(self.configs, self.subjects),
                                  status="incomplete" if result.incomplete else "complete")
        return result


def _table_order(c: ConfigState) -> tuple:
    """Grid arms (and nested chosen configs) first in the order opened, then trials by study and number."""
    if c.plan.optuna_trial is None:
        return (0,)
    return (1, c.plan.table, (c.folds.outer if c.folds else None) or "", c.plan.optuna_trial)


def _check_services(svc: Services, needs_storage: bool) -> None:
    """The issue-5 hook: prove the tracking store and (for a ``search``) the Optuna storage answer before
    Ray starts. A grid-only sweep never touches the Optuna storage, so it creates no Optuna database."""
    from orchestrator.services import check_services, check_tracking

    if needs_storage:
        check_services(svc.tracking_uri, svc.storage_url)
    else:
        check_tracking(svc.tracking_uri)
