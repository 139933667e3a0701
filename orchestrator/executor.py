"""Ray scheduling of (config, fold) units: a pool of reused actors, one call per actor at a time.

Why actors and not Ray Tune trials (stack-notes): a fresh worker per trial costs 1.5-2 s plus ``import
torch``; a reused actor pays that once. Each actor is created with the file's ``cpu_per_fold`` /
``gpu_per_fold`` (fractional GPUs are Ray bookkeeping, not a memory cap), sets torch's thread count to its
CPU share, receives the dataset once (an object-store reference ``ray.put`` by the driver), and then trains
fold after fold. The driver keeps every actor busy (``submit`` / ``wait``); folds of a config run
concurrently on different actors. With ``resources.packing`` > 1 one call carries up to that many folds of
one config, trained together (``run_group`` -> ``mer_model.batched``) and logged one fold run each.

The fold is logged to MLflow from the actor (``mer.node`` = where it really ran) in one burst after
training. A fold that raises, or whose loss is not finite, comes back ``ok=False`` with its error; the
driver retries it (``protocol.retries``) and only the last attempt's failure is logged. An actor that dies
(``kill -9``, OOM) is replaced and its fold counts as a failed attempt.
"""

from __future__ import annotations

import math
import os
import socket
import time
import traceback
from dataclasses import dataclass
from typing import Any

import ray


@dataclass
class Job:
    """Everything an actor needs for one fold (small: indices, not data)."""

    arm: str
    subject: str
    config: dict[str, Any]
    seed: int
    train_idx: Any  # np.ndarray (n_train,)
    test_idx: Any  # np.ndarray (n_test,)
    parent_run_id: str
    tags: dict[str, str]  # mer.sweep_id, mer.config_hash, mer.arm, mer.subject, mer.dataset
    attempt: int
    last_attempt: bool


class FoldWorker:
    """A Ray actor (wrapped by :func:`make_pool`) that trains and logs folds."""

    def __init__(self, dataset: Any, tracking_uri: str, experiment_id: str, threads: int, device: str):
        import torch
        from mlflow.tracking import MlflowClient

        torch.set_num_threads(max(1, threads))
        self.ds = dataset
        self.client = MlflowClient(tracking_uri)
        self.exp_id = experiment_id
        # "cuda" comes from the cluster's GPU resources; on a node whose GPUs are logical only (`ray start
        # --num-gpus` without hardware, as in the loopback multi-node test) train on its CPU: no failed folds
        self.device = device if device != "cuda" or torch.cuda.is_available() else "cpu"
        # hostname / node IP, plus the Ray node id: several nodes of one machine share hostname and IP
        node_id = ray.get_runtime_context().get_node_id()[:8]
        self.node = f"{socket.gethostname()}/{ray.util.get_node_ip_address()}/{node_id}"

    def ping(self) -> str:
        return self.node

    def run(self, job: Job) -> dict[str, Any]:
        from mer_model import train_fold

        t0 = time.perf_counter()
        try:
            train, test = self.ds.subset(job.train_idx), self.ds.subset(job.test_idx)
            res = _finite(train_fold(job.config, train, test, job.seed, self.device))
        except Exception as e:  # noqa: BLE001 - any fold failure is data for the driver, not a crash
            return self._failed(job, e, t0)
        return self._complete_or_log_failure(job, res, t0)

    def run_group(self, jobs: list[Job]) -> list[dict[str, Any]]:
        """Folds of one config trained together (``resources.packing``); one outcome per job, each logged
        as its own fold run exactly as :meth:`run` logs it. A group that fails as a whole fails every fold."""
        if len(jobs) == 1:
            return [self.run(jobs[0])]
        from mer_model.batched import train_folds_batched

        t0 = time.perf_counter()
        try:
            folds = [(self.ds.subset(j.train_idx), self.ds.subset(j.test_idx)) for j in jobs]
            configs, seeds = [j.config for j in jobs], [j.seed for j in jobs]
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

    def _complete_or_log_failure(self, job: Job, res: Any, t0: float) -> dict[str, Any]:
        """Log a trained fold; a store that refuses the write (read-only, full, gone) is a *logging*
        failure of this fold, not a dead worker (an exception escaping the actor method read as one)."""
        try:
            return self._complete(job, res, t0)
        except Exception as e:  # noqa: BLE001 - reported to the driver, which deletes the partial run
            err = f"logging the fold run failed: {type(e).__name__}: {e}".replace("\n", " ")[:480]
            return {"ok": False, "error": err, "node": self.node, "run_id": None, "log_failed": True,
                    "seconds": time.perf_counter() - t0}

    def _tags(self, job: Job) -> dict[str, str]:
        return {**job.tags, "mer.node": self.node, "mer.attempt": str(job.attempt)}

    def _failed(self, job: Job, e: Exception, t0: float) -> dict[str, Any]:
        from orchestrator.tracking import log_fold_run

        err = f"{type(e).__name__}: {e}".replace("\n", " ")[:480]
        run_id = None
        if job.last_attempt:
            run_id = log_fold_run(self.client, self.exp_id, job.parent_run_id,
                                  {**self._tags(job), "mer.error": err}, {}, [], None, None, "failed")
        return {"ok": False, "error": err, "node": self.node, "run_id": run_id,
                "trace": traceback.format_exc(limit=3), "seconds": time.perf_counter() - t0}

    def _complete(self, job: Job, res: Any, t0: float) -> dict[str, Any]:
        from mer_model import classification_metrics
        from orchestrator.tracking import log_fold_run

        tags = self._tags(job)
        nc = int(job.config.get("num_classes") or self.ds.num_classes)
        m = classification_metrics(res.y_true, res.y_pred, nc)
        metrics = {k: float(m[k]) for k in ("accuracy", "uf1", "uar")}
        metrics["n_test"] = float(res.n_test)
        aau = {int(r): float(w) for r, w in zip(res.aau_layers, res.aau_weights, strict=True)}
        metrics.update({f"aau_weight_layer{r}": w for r, w in aau.items()})
        clips = [str(c) for c in self.ds.clips[job.test_idx]]
        y_true, y_pred = [int(v) for v in res.y_true], [int(v) for v in res.y_pred]
        run_id = log_fold_run(self.client, self.exp_id, job.parent_run_id, tags, metrics, res.loss_curve,
                              res.lam, (clips, y_true, y_pred), "complete")
        return {"ok": True, "run_id": run_id, "node": self.node, "metrics": metrics, "aau": aau,
                "clips": clips, "y_true": y_true, "y_pred": y_pred, "seconds": time.perf_counter() - t0,
                "train_seconds": res.train_seconds}


def _finite(res: Any) -> Any:
    """``res`` unchanged, or FloatingPointError naming the first epoch whose training loss is not finite."""
    bad = [v for v in res.loss_curve if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"training loss is not finite ({bad[0]}) at epoch "
                                 f"{[math.isfinite(v) for v in res.loss_curve].index(False) + 1}")
    return res


@dataclass
class Pool:
    """Fixed pool of FoldWorker actors; ``submit`` to an idle one, ``wait`` for any to finish."""

    actors: list[Any]
    factory: Any  # () -> new actor handle (replaces a dead one)
    busy: dict[Any, tuple[int, list[Job]]]  # ObjectRef -> (actor index, the jobs of that call)

    @property
    def idle(self) -> list[int]:
        used = {i for i, _ in self.busy.values()}
        return [i for i in range(len(self.actors)) if i not in used]

    def submit(self, job: Job) -> None:
        self.submit_group([job])

    def submit_group(self, jobs: list[Job]) -> None:
        """One actor call for ``jobs`` (folds of one config: fold-batched when more than one)."""
        i = self.idle[0]
        self.busy[self.actors[i].run_group.remote(jobs)] = (i, jobs)

    def wait(self, timeout: float | None = None) -> list[tuple[Job, dict[str, Any]]]:
        """Block until at least one call finishes (or ``timeout``); return (job, outcome) pairs."""
        if not self.busy:
            return []
        ready, _ = ray.wait(list(self.busy), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            i, jobs = self.busy.pop(ref)
            try:
                out.extend(zip(jobs, ray.get(ref), strict=True))
            except ray.exceptions.RayError as e:
                # The actor died under this call (kill -9, Ray's OOM killer: OutOfMemoryError, node lost).
                # FoldWorker catches every Python exception itself, so any RayError here is a dead
                # worker: replace it and let the driver count a failed attempt for each of its folds.
                ray.kill(self.actors[i], no_restart=True)
                self.actors[i] = self.factory()
                out.extend((job, {"ok": False, "error": f"worker died: {type(e).__name__}", "node": "?",
                                  "run_id": None, "actor_died": True}) for job in jobs)
        return out

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)


def pool_size(cpu_per_fold: float, gpu_per_fold: float, max_concurrent: int | None, n_units: int) -> int:
    """How many folds fit at once on the cluster's resources (at least 1).

    A cluster without GPUs ignores ``gpu_per_fold``, as ``make_pool`` does (its actors then train on CPU):
    one search-space file serves a laptop and a GPU cluster.
    """
    res = ray.cluster_resources()
    n = int(res.get("CPU", 1) // cpu_per_fold)
    if gpu_per_fold > 0 and res.get("GPU", 0) > 0:
        n = min(n, int(res["GPU"] / gpu_per_fold + 1e-9))
    if max_concurrent:
        n = min(n, max_concurrent)
    return max(1, min(n, n_units))


def make_pool(n: int, dataset_ref: Any, tracking_uri: str, experiment_id: str, cpu_per_fold: float,
              gpu_per_fold: float) -> Pool:
    """Start ``n`` actors; each receives the dataset (object-store ref) and imports torch once."""
    use_gpu = gpu_per_fold > 0 and ray.cluster_resources().get("GPU", 0) > 0
    actor_cls = ray.remote(FoldWorker).options(num_cpus=cpu_per_fold, num_gpus=gpu_per_fold if use_gpu else 0,
                                               max_restarts=0)
    threads = max(1, int(cpu_per_fold))
    device = "cuda" if use_gpu else "cpu"

    def factory() -> Any:
        return actor_cls.remote(dataset_ref, tracking_uri, experiment_id, threads, device)

    actors = [factory() for _ in range(n)]
    ray.get([a.ping.remote() for a in actors])  # fail fast here, not in the first fold
    return Pool(actors, factory, {})


def init_ray(address: str | None, num_cpus: int | None) -> None:
    """Attach to ``address`` (or ``RAY_ADDRESS``) or start a local Ray with ``num_cpus``."""
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, **kwargs)
