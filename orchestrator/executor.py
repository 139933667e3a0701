"""Ray scheduling of (config, fold) units: a pool of reused actors, one fold per actor at a time.

Why actors and not Ray Tune trials (stack-notes): a fresh worker per trial costs 1.5-2 s plus ``import
torch``; a reused actor pays that once. Each actor is created with the file's ``cpu_per_fold`` /
``gpu_per_fold`` (fractional GPUs are Ray bookkeeping, not a memory cap), sets torch's thread count to its
CPU share, receives the dataset once (an object-store reference ``ray.put`` by the driver), and then trains
fold after fold. The driver keeps every actor busy (``submit`` / ``wait``); folds of a config run
concurrently on different actors.

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
        from mer_model import classification_metrics, train_fold
        from orchestrator.tracking import log_fold_run

        tags = {**job.tags, "mer.node": self.node, "mer.attempt": str(job.attempt)}
        t0 = time.perf_counter()
        try:
            train, test = self.ds.subset(job.train_idx), self.ds.subset(job.test_idx)
            res = train_fold(job.config, train, test, job.seed, self.device)
            bad = [v for v in res.loss_curve if not math.isfinite(v)]
            if bad:
                raise FloatingPointError(f"training loss is not finite ({bad[0]}) at epoch "
                                         f"{[math.isfinite(v) for v in res.loss_curve].index(False) + 1}")
        except Exception as e:  # noqa: BLE001 - any fold failure is data for the driver, not a crash
            err = f"{type(e).__name__}: {e}".replace("\n", " ")[:480]
            run_id = None
            if job.last_attempt:
                run_id = log_fold_run(self.client, self.exp_id, job.parent_run_id,
                                      {**tags, "mer.error": err}, {}, [], None, None, "failed")
            return {"ok": False, "error": err, "node": self.node, "run_id": run_id,
                    "trace": traceback.format_exc(limit=3), "seconds": time.perf_counter() - t0}
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


@dataclass
class Pool:
    """Fixed pool of FoldWorker actors; ``submit`` to an idle one, ``wait`` for any to finish."""

    actors: list[Any]
    factory: Any  # () -> new actor handle (replaces a dead one)
    busy: dict[Any, tuple[int, Job]]  # ObjectRef -> (actor index, job)

    @property
    def idle(self) -> list[int]:
        used = {i for i, _ in self.busy.values()}
        return [i for i in range(len(self.actors)) if i not in used]

    def submit(self, job: Job) -> None:
        i = self.idle[0]
        self.busy[self.actors[i].run.remote(job)] = (i, job)

    def wait(self, timeout: float | None = None) -> list[tuple[Job, dict[str, Any]]]:
        """Block until at least one fold finishes (or ``timeout``); return (job, outcome) pairs."""
        if not self.busy:
            return []
        ready, _ = ray.wait(list(self.busy), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            i, job = self.busy.pop(ref)
            try:
                out.append((job, ray.get(ref)))
            except ray.exceptions.RayError as e:
                # The actor died under this fold (kill -9, Ray's OOM killer: OutOfMemoryError, node lost).
                # FoldWorker.run catches every Python exception itself, so any RayError here is a dead
                # worker: replace it and let the driver count a failed attempt.
                ray.kill(self.actors[i], no_restart=True)
                self.actors[i] = self.factory()
                out.append((job, {"ok": False, "error": f"worker died: {type(e).__name__}", "node": "?",
                                  "run_id": None, "actor_died": True}))
        return out

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)


def pool_size(cpu_per_fold: float, gpu_per_fold: float, max_concurrent: int | None, n_units: int) -> int:
    """How many folds fit at once on the cluster's resources (at least 1)."""
    res = ray.cluster_resources()
    n = int(res.get("CPU", 1) // cpu_per_fold)
    if gpu_per_fold > 0:
        n = min(n, int(res.get("GPU", 0) / gpu_per_fold + 1e-9))
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
