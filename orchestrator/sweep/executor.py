"""The fold worker: a Ray actor that trains and logs (config, seed, subject) units, and how the sweep starts
Ray.

Why actors and not Ray Tune trials (stack-notes): a fresh worker per trial costs 1.5-2 s plus ``import
torch``; a reused actor pays that once. Each actor is created with the file's ``cpu_per_fold`` /
``gpu_per_fold`` (fractional GPUs are Ray bookkeeping, not a memory cap), sets torch's thread count to its
CPU share, receives the dataset once (an object-store reference ``ray.put`` by the driver), and then trains
fold after fold. How many actors exist, and when, is ``sweep/pool.py``'s business (an elastic pool whose
pending actors are demand an autoscaler answers). With ``resources.packing`` > 1 one call carries up to that
many folds of one config, trained together (``run_group`` -> ``mer_model.batched``) and logged one fold run
each; with ``tracking.save_models`` each fold also logs its final model (``mer_model.predict``).

The fold is logged to MLflow from the actor (``mer.node`` = where it really ran) in one burst after
training. A fold that raises, or whose loss is not finite, comes back as a failed ``FoldRecord`` with its
error; the driver retries it (``protocol.retries``) and only the last attempt's failure is logged. An actor
that dies (``kill -9``, OOM) is replaced by the pool and its fold counts as a failed attempt.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ray

from orchestrator.spec.plan import Unit
from orchestrator.store import contract as C
from orchestrator.store.contract import METRICS, FoldRecord


@dataclass
class Job:
    """Everything an actor needs for one unit (small: indices, not data)."""

    unit: Unit  # (arm, subject, seed, attempt)
    config: dict[str, Any]
    train_idx: Any  # np.ndarray (n_train,)
    test_idx: Any  # np.ndarray (n_test,)
    parent_run_id: str
    tags: dict[str, str]  # mer.sweep_id, mer.config_hash, mer.arm, mer.subject, mer.dataset
    last_attempt: bool
    experiment_id: str = ""  # where its fold run goes (the pool's actors may start before it exists)


class FoldWorker:
    """A Ray actor (created by ``orchestrator.sweep.pool``) that trains and logs folds."""

    def __init__(self, dataset: Any, tracking_uri: str, threads: int, device: str, save_models: bool = False):
        import torch

        _import_fold_code(tracking_uri)

        torch.set_num_threads(max(1, threads))
        self.threads = torch.get_num_threads()  # tagged on every fold run (mer.threads): results depend on it
        self.ds = dataset
        self.tracking_uri = tracking_uri
        self._client: Any = None  # opened on the first fold: see ``client``
        # "cuda" comes from the cluster's GPU resources; on a node whose GPUs are logical only (`ray start
        # --num-gpus` without hardware, as in the loopback multi-node test) train on its CPU: no failed folds
        self.device = device if device != "cuda" or torch.cuda.is_available() else "cpu"
        # hostname / node IP, plus the whole Ray node id: several nodes of one machine share hostname and IP,
        # and the fake autoscaler's node ids differ only in their last digits
        node_id = ray.get_runtime_context().get_node_id()
        self.node = f"{socket.gethostname()}/{_node_address(node_id)}/{node_id}"
        self.gpu_ids = ",".join(str(g) for g in ray.get_gpu_ids()) or "-"  # logical ids Ray gave this actor
        self.save_models = save_models  # tracking.save_models: log each fold's final model

    def ping(self) -> str:
        return self.node

    @property
    def client(self) -> Any:
        """The tracking client, opened on the first fold, not in ``__init__``: a local sweep starts its
        actors while the driver is still creating the store (``sweep/driver.py``), and MLflow's client
        opens (and, for a new SQLite file, migrates) the store when it is made. A remote store's outage is
        ridden out for a bounded time (store/outage.py); past it the fold comes back as not logged
        (log_failed) and is trained again, never lost."""
        if self._client is None:
            from orchestrator.store.outage import tracking_client

            self._client = tracking_client(self.tracking_uri)
        return self._client

    @client.setter
    def client(self, value: Any) -> None:
        self._client = value

    def run(self, job: Job) -> FoldRecord:
        from mer_model import train_fold

        t0 = time.perf_counter()
        try:
            train, test = self.ds.subset(job.train_idx), self.ds.subset(job.test_idx)
            res = _finite(train_fold(job.config, train, test, job.unit.train_seed, self.device,
                                     keep_model=self.save_models))
        except Exception as e:  # noqa: BLE001 - any fold failure is data for the driver, not a crash
            return self._failed(job, e, t0)
        return self._complete_or_log_failure(job, res, t0)

    def run_group(self, jobs: list[Job]) -> list[FoldRecord]:
        """Folds of one config trained together (``resources.packing``); one record per job, each logged
        as its own fold run exactly as :meth:`run` logs it. A group that fails as a whole fails every fold."""
        if len(jobs) == 1 or self.save_models:  # fold-batched training keeps no per-fold model: one by one
            return [self.run(j) for j in jobs]
        from mer_model.batched import train_folds_batched

        t0 = time.perf_counter()
        try:
            folds = [(self.ds.subset(j.train_idx), self.ds.subset(j.test_idx)) for j in jobs]
            configs, seeds = [j.config for j in jobs], [j.unit.train_seed for j in jobs]
            results = train_folds_batched(configs, folds, seeds, self.device)
        except Exception as e:  # noqa: BLE001
            return [self._failed(j, e, t0) for j in jobs]
        out = []
        for j, res in zip(jobs, results, strict=True):
            try:
                _finite(res)
            except FloatingPointError as e:
                out.append(self._failed(j, e, t0))
                continue
            out.append(self._complete_or_log_failure(j, res, t0))
        return out

    def _complete_or_log_failure(self, job: Job, res: Any, t0: float) -> FoldRecord:
        """Log a trained fold; a store that refuses the write (read-only, full, gone) is a *logging*
        failure of this fold, not a dead worker (an exception escaping the actor method read as one)."""
        try:
            return self._complete(job, res, t0)
        except Exception as e:  # noqa: BLE001 - reported to the driver, which deletes the partial run
            rec = self._record(job, "failed", None, t0)
            rec.error = f"logging the fold run failed: {type(e).__name__}: {e}".replace("\n", " ")[:480]
            rec.log_failed = True
            return rec

    def _tags(self, job: Job) -> dict[str, str]:
        return {**job.tags, C.NODE: self.node, C.GPU_IDS: self.gpu_ids, C.ATTEMPT: str(job.unit.attempt),
                C.DEVICE: self.device, C.THREADS: str(self.threads)}

    def _record(self, job: Job, status: str, run_id: str | None, t0: float) -> FoldRecord:
        u = job.unit
        return FoldRecord(arm=u.arm, subject=u.subject, seed=u.seed, status=status, run_id=run_id,
                          node=self.node, attempt=u.attempt, seconds=time.perf_counter() - t0)

    def _failed(self, job: Job, e: Exception, t0: float) -> FoldRecord:
        from orchestrator.store.tracking import log_fold_run

        err = f"{type(e).__name__}: {e}".replace("\n", " ")[:480]
        run_id = None
        log_failed = False
        if job.last_attempt:
            try:
                run_id = log_fold_run(self.client, job.experiment_id, job.parent_run_id,
                                      tags={**self._tags(job), C.ERROR: err}, metrics={}, status="failed")
            except Exception:  # noqa: BLE001 - the store refused the failure record: the driver writes it
                log_failed = True
        rec = self._record(job, "failed", run_id, t0)
        rec.error, rec.log_failed = err, log_failed
        return rec

    def _complete(self, job: Job, res: Any, t0: float) -> FoldRecord:
        from mer_model import classification_metrics
        from orchestrator.store.tracking import log_fold_run

        nc = int(job.config.get("num_classes") or self.ds.num_classes)
        m = classification_metrics(res.y_true, res.y_pred, nc)
        metrics = {k: float(m[k]) for k in METRICS}
        metrics["n_test"] = float(res.n_test)
        metrics["train_seconds"] = float(res.train_seconds)  # what --dry-run estimates a sweep's time from
        metrics["n_train"] = float(res.n_train)  # training clips (augment views not counted)
        metrics[C.N_AU_TRAIN] = float(res.n_au_train)  # ... of which carried AU labels (SMIC's have none)
        aau = {int(r): float(w) for r, w in zip(res.aau_layers, res.aau_weights, strict=True)}
        # the weights' trajectory, steps 0..E (contract.AAU_METRIC_PREFIX); its last row is ``aau``
        aau_curve = {f"{C.AAU_METRIC_PREFIX}{r}": [row[i] for row in res.aau_weight_curve]
                     for i, r in enumerate(res.aau_layers)}
        clips = [str(c) for c in self.ds.clips[job.test_idx]]
        subjects = [str(s) for s in self.ds.subjects[job.test_idx]]
        clip_subjects = subjects if len(set(subjects)) > 1 else []  # a cross-dataset fold tests many
        y_true, y_pred = [int(v) for v in res.y_true], [int(v) for v in res.y_pred]
        run_id = log_fold_run(self.client, job.experiment_id, job.parent_run_id, tags=self._tags(job),
                              metrics=metrics, status="complete", loss_curve=res.loss_curve, lam=res.lam,
                              step_metrics=aau_curve,
                              predictions=(clips, y_true, y_pred), clip_subjects=clip_subjects,
                              model=self._model(job, res))
        rec = self._record(job, "complete", run_id, t0)
        rec.clips, rec.y_true, rec.y_pred, rec.aau = clips, y_true, y_pred, aau
        rec.clip_subjects = clip_subjects
        rec.metrics = {k: metrics[k] for k in METRICS}
        return rec


    def _model(self, job: Job, res: Any) -> tuple[dict, dict] | None:
        """(state_dict, model.json content) of the fold's final model, when ``tracking.save_models``."""
        if res.state_dict is None:
            return None
        from mer_model.predict import model_meta

        u = job.unit
        meta = model_meta(job.config, self.ds.class_names, self.ds.au_names, dataset=self.ds.name,
                          setup=self.ds.setup, magnification=float(self.ds.meta.get("magnification", 1.0)),
                          subject=u.subject, arm=u.arm, seed=u.seed)
        return res.state_dict, meta


def _import_fold_code(tracking_uri: str) -> None:
    """Import what the first fold needs (the trainer, MLflow's client and, for a database URI, its SQL
    store) while the actor starts: a local sweep starts its actors while the driver opens the store, so
    these imports overlap the driver's work instead of delaying the first fold."""
    from mlflow.tracking import MlflowClient  # noqa: F401

    import orchestrator.store.tracking  # noqa: F401
    from mer_model import classification_metrics, train_fold  # noqa: F401

    if tracking_uri.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql"):
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def _node_address(node_id: str) -> str:
    """The address the Ray node registered with (``ray start --node-ip-address``), from the GCS: a worker
    process's own ``ray.util.get_node_ip_address()`` answers from its own view of the network instead."""
    return next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id),
                ray.util.get_node_ip_address())


def _finite(res: Any) -> Any:
    """``res`` unchanged, or FloatingPointError naming the first epoch whose training loss is not finite."""
    bad = [v for v in res.loss_curve if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"training loss is not finite ({bad[0]}) at epoch "
                                 f"{[math.isfinite(v) for v in res.loss_curve].index(False) + 1}")
    return res


def _died(job: Job, e: Exception) -> FoldRecord:
    u = job.unit
    return FoldRecord(arm=u.arm, subject=u.subject, seed=u.seed, status="failed", run_id=None, node="?",
                      attempt=u.attempt, error=f"worker died: {type(e).__name__}", actor_died=True)


def init_ray(address: str | None, num_cpus: int | None) -> None:
    """Attach to ``address`` (or ``RAY_ADDRESS``) or start a local Ray with ``num_cpus`` on loopback only.

    A local Ray would otherwise take the machine's network interface as its node address, and its GCS and
    raylet would listen on all interfaces. Ray's own switch for single-node Ray (what it does on macOS and
    Windows), ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, makes every address loopback and the GCS and raylet
    listen on 127.0.0.1 only (checked with ``ss -ltnp``; tests/test_ray_loopback.py). It is read when
    ``ray`` is imported, which happened before this call: so it goes into the environment of the processes
    Ray spawns (GCS, raylet, workers) and into this process's already-read constant. Ray's token
    authentication stays as Ray sets it.
    """
    from orchestrator.sweep import ray_messages

    ray_messages.install()  # a dying raylet's 20-line log tail becomes one line
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    with _keep_sigterm_handler():
        if address:
            ray.init(address=address, **kwargs)
        else:
            _init_loopback(num_cpus, kwargs)


@contextlib.contextmanager
def _keep_sigterm_handler() -> Iterator[None]:
    """A SIGTERM handler the caller installed (``mer-orch sweep``: one line, exit 143, resumable) survives
    ``ray.init``, which replaces it with ``sys.exit`` and lets its core worker print a C++ stack dump on
    SIGTERM. Without such a handler Ray's stays (it still lets ``finally`` blocks run)."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if callable(before):
            signal.signal(signal.SIGTERM, before)


def _init_loopback(num_cpus: int | None, kwargs: dict[str, Any]) -> None:
    """``ray.init`` of a single-node Ray on 127.0.0.1; this process's settings are restored after (a later
    ``ray.init(address=...)`` in the same process must resolve addresses as usual)."""
    from ray._private import ray_constants

    before_env, before_const = os.environ.get(LOOPBACK_ONLY), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ONLY] = "0"  # inherited by the GCS, raylet and workers that ray.init starts
    ray_constants.ENABLE_RAY_CLUSTER = False  # what the variable sets when present at import
    _token_auth_quietly()
    try:
        ray.init(num_cpus=num_cpus, **kwargs)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_const
        if before_env is None:
            os.environ.pop(LOOPBACK_ONLY, None)
        else:
            os.environ[LOOPBACK_ONLY] = before_env


def _token_auth_quietly() -> None:
    """Token authentication on, as Ray 2.60 turns it on for a new local cluster, without its notice.

    With ``RAY_AUTH_MODE`` unset, ``ray.init`` sets it to ``token`` (generating ``~/.ray/auth_token`` if
    missing) and logs a warning that it did; with the mode set explicitly it does the same silently. So
    this sets it first, the way Ray does (env + config refresh); a user's own ``RAY_AUTH_MODE`` wins."""
    from ray._private.authentication import authentication_token_setup as auth

    if os.environ.get(auth.AUTH_MODE_ENV_VAR) is None:
        auth._enable_token_auth()


# Ray's switch for clusters on Windows / macOS; "0" makes a single-node Ray bind 127.0.0.1 (stack notes)
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
