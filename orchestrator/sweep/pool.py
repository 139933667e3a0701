"""An elastic pool of FoldWorker actors: demand that an autoscaler can answer (issue 15).

Why not size the pool once from ``ray.cluster_resources()`` (as the sweep did before issue 15): on an
autoscaling cluster that starts with a CPU head and ``min_workers: 0`` (``cluster/gpu.yaml``) the GPU
workers are not there yet, so every fold trained on the head's CPUs. Ray's autoscaler launches nodes for
*pending resource demand*; a Ray-core actor whose ``num_gpus`` cannot be met yet is exactly that (Ray Tune's
pending trials work the same way). So the pool:

- creates actors for the work there is: ``want = min(cap, calls still to make)``, where ``cap`` is
  ``--max-concurrent`` on an autoscaling cluster and what the present resources hold otherwise;
- uses each actor as soon as its ``ping`` returns (it is placed and has imported torch); actors that are
  still pending never block the sweep, and actors created later (new nodes) join when ready;
- releases idle and pending actors beyond ``want`` after every finished call (the queue ran dry) and all at
  the end, so the autoscaler's idle timeout can take the workers down.

GPU or CPU (:func:`gpu_outlook`): GPUs are requested when the file asks for them (``gpu_per_fold`` > 0)
and the cluster has GPUs or an autoscaler is attached that may add some. With neither (a laptop) the
pool says so once and trains on CPU as before. A pool whose GPU actors never become ready stops with an
error after ``MER_GPU_WAIT_S`` seconds (default 900) instead of hanging.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from orchestrator.store.contract import FoldRecord
from orchestrator.sweep.executor import FoldWorker, Job, _died

GPU_WAIT_S = float(os.environ.get("MER_GPU_WAIT_S", "900"))
MAX_START_FAILURES = 3


@dataclass(frozen=True)
class Outlook:
    """What the cluster offers: GPUs now, and whether an autoscaler may add nodes."""

    gpus_now: float
    autoscaler: bool  # an autoscaler is attached (v1: its status in the GCS; v2: a scalable node group)
    autoscaler_gpus: bool | None  # v2 only: its node types include GPUs; None = not known (v1)

    def use_gpu(self, gpu_per_fold: float) -> bool:
        """Request GPUs: the file asks and the cluster has them or an autoscaler may bring them."""
        if gpu_per_fold <= 0:
            return False
        return self.gpus_now > 0 or (self.autoscaler and self.autoscaler_gpus is not False)


def gpu_outlook() -> Outlook:
    """Read the attached cluster's GPUs and autoscaler from the GCS (after ``ray.init``).

    The v1 autoscaler (Ray 2.60's default, also with ``provider: fake_multinode``) writes its status to
    the internal KV key ``__autoscaling_status``. A plain local Ray writes one too, from a read-only
    autoscaler that can launch nothing and names every node type ``node_<node id>``
    (``ray.autoscaler._private.util.format_readonly_node_type``); a cluster launched from a config names
    them after its ``available_node_types``. The v2 autoscaler publishes its node groups
    (``ray._private.state.state.get_cluster_config()``), whose resources say whether GPUs can come.
    """
    from ray._private.state import state
    from ray.experimental.internal_kv import _internal_kv_get

    gpus_now = float(ray.cluster_resources().get("GPU", 0))
    groups_gpu: bool | None = None
    scalable = False
    config = state.get_cluster_config()
    if config is not None and config.node_group_configs:
        groups = [g for g in config.node_group_configs if g.max_count != 0]
        scalable = any(g.max_count == -1 or g.max_count > g.min_count for g in groups)
        groups_gpu = any(g.resources.get("GPU", 0) > 0 for g in groups)
    return Outlook(gpus_now, scalable or _v1_autoscaler(_internal_kv_get("__autoscaling_status")),
                   groups_gpu if scalable else None)


def _v1_autoscaler(raw: bytes | None) -> bool:
    """Whether a v1 status (JSON) comes from an autoscaler with a config, not Ray's read-only one."""
    from ray.autoscaler._private.util import format_readonly_node_type

    report = json.loads(raw).get("autoscaler_report") if raw else None
    mapping = (report or {}).get("node_type_mapping") or {}
    return any(t != format_readonly_node_type(n) for n, t in mapping.items())


def capacity(cpu_per_fold: float, gpu_per_fold: float, use_gpu: bool) -> int:
    """Folds the resources present now hold at once (at least 1): the cap without an autoscaler."""
    res = ray.cluster_resources()
    n = int(res.get("CPU", 1) // cpu_per_fold)
    if use_gpu:
        n = min(n, int(res.get("GPU", 0) / gpu_per_fold + 1e-9))
    return max(1, n)


@dataclass
class ElasticPool:
    """FoldWorker actors that come and go with the work (the driver submits, waits, fits).

    ``actors`` are the ready ones, ``pending`` maps an actor's ``ping`` reference to the actor still being
    placed (or waiting for a node), ``busy`` maps a call's reference to (actor, its jobs).
    """

    factory: Any  # () -> new actor handle
    cap: Any  # () -> int: most actors at once
    packing: int = 1
    actors: list[Any] = field(default_factory=list)
    pending: dict[Any, Any] = field(default_factory=dict)
    busy: dict[Any, tuple[Any, list[Job]]] = field(default_factory=dict)
    waiting_since: float | None = None  # since when actors are pending and none is ready
    start_failures: int = 0  # actors in a row that died before their first ping

    @property
    def idle(self) -> list[Any]:
        used = {id(a) for a, _ in self.busy.values()}
        return [a for a in self.actors if id(a) not in used]

    @property
    def size(self) -> int:
        return len(self.actors) + len(self.pending)

    def submit_group(self, jobs: list[Job]) -> None:
        """One call on an idle ready actor for ``jobs`` (folds of one config; fold-batched when several)."""
        actor = self.idle[0]
        self.busy[actor.run_group.remote(jobs)] = (actor, jobs)

    def has_work(self, n_queued: int) -> bool:
        """Calls in flight, or queued units and actors that may yet take them."""
        return bool(self.busy) or (n_queued > 0 and self.size > 0)

    def fit(self, n_queued: int) -> None:
        """Grow or shrink to the work: queued units (in calls of ``packing``) plus the calls in flight."""
        want = min(self.cap(), math.ceil(n_queued / self.packing) + len(self.busy))
        while self.size < want:
            actor = self.factory()
            self.pending[actor.ping.remote()] = actor
        for ref in list(self.pending)[: max(0, self.size - want)]:
            ray.kill(self.pending.pop(ref))  # cancels its resource demand: the autoscaler stops asking
        for actor in self.idle[: max(0, self.size - want)]:
            self.actors.remove(actor)
            ray.kill(actor)
        if self.pending and not self.actors:
            self.waiting_since = self.waiting_since or time.monotonic()
        else:
            self.waiting_since = None

    def wait(self, timeout: float | None = None) -> list[tuple[Job, FoldRecord]]:
        """Block until a call finishes or an actor becomes ready; return the finished (job, outcome) pairs."""
        refs = list(self.busy) + list(self.pending)
        if not refs:
            return []
        if self.waiting_since is not None:  # nothing ready yet: bounded, never a silent hang
            left = GPU_WAIT_S - (time.monotonic() - self.waiting_since)
            timeout = left if timeout is None else min(timeout, left)
        ready, _ = ray.wait(refs, num_returns=1, timeout=max(0.0, timeout) if timeout is not None else None)
        waited = 0.0 if self.waiting_since is None else time.monotonic() - self.waiting_since
        if not ready and not self.actors and waited >= GPU_WAIT_S:
            raise RuntimeError(f"no fold worker could be placed within {GPU_WAIT_S:g} s (MER_GPU_WAIT_S): "
                               f"requested {self._shape()}; check the autoscaler (`ray status`)")
        out: list[tuple[Job, FoldRecord]] = []
        for ref in ready:
            if ref in self.pending:
                self._joined(ref, self.pending.pop(ref))
            else:
                out.extend(self._outcomes(ref))
        return out

    def _joined(self, ref: Any, actor: Any) -> None:
        """A pending actor answered its ping: it joins. One that died starting (its node lost, e.g. a
        reclaimed spot instance) is dropped and replaced by ``fit``; after ``MAX_START_FAILURES`` in a row
        (a broken node image, an import error) the sweep fails here rather than in every fold."""
        try:
            ray.get(ref)
        except ray.exceptions.RayError:
            self.start_failures += 1
            if self.start_failures >= MAX_START_FAILURES:
                raise
            return
        self.start_failures = 0
        self.actors.append(actor)

    def _outcomes(self, ref: Any) -> list[tuple[Job, FoldRecord]]:
        actor, jobs = self.busy.pop(ref)
        try:
            return list(zip(jobs, ray.get(ref), strict=True))
        except ray.exceptions.RayError as e:
            # The actor died under this call (kill -9, OOM killer, node lost): FoldWorker catches every
            # Python exception itself. Drop it; ``fit`` creates a replacement if there is still work.
            self.actors.remove(actor)
            ray.kill(actor, no_restart=True)
            return [(job, _died(job, e)) for job in jobs]

    def _shape(self) -> str:
        return "one FoldWorker actor" if not self.pending else f"{len(self.pending)} FoldWorker actors"

    def shutdown(self) -> None:
        """Release every actor (ready, busy or pending): the cluster may scale down."""
        for actor in [*self.actors, *self.pending.values()]:
            ray.kill(actor)
        self.actors.clear()
        self.pending.clear()
        self.busy.clear()


def start_pool(dataset_ref: Any, tracking_uri: str, *, cpu_per_fold: float,
               gpu_per_fold: float, max_concurrent: int | None, packing: int = 1, save_models: bool = False,
               say: Any = print) -> ElasticPool:
    """An empty elastic pool for the sweep's resources; ``fit`` creates its actors.

    ``say`` gets one line when the file asks for GPUs and none can come (then CPU, as before).
    """
    outlook = gpu_outlook()
    use_gpu = outlook.use_gpu(gpu_per_fold)
    if gpu_per_fold > 0 and not use_gpu:
        say(f"gpu_per_fold: {gpu_per_fold:g} asked, but this Ray cluster has no GPU and no autoscaler "
            "that could add one: training on CPU")
    actor_cls = ray.remote(FoldWorker).options(num_cpus=cpu_per_fold, num_gpus=gpu_per_fold if use_gpu else 0,
                                               max_restarts=0)
    threads, device = max(1, int(cpu_per_fold)), "cuda" if use_gpu else "cpu"

    def factory() -> Any:
        return actor_cls.remote(dataset_ref, tracking_uri, threads, device, save_models)

    def cap() -> int:
        limit = max_concurrent or 10**6
        return limit if outlook.autoscaler else min(limit, capacity(cpu_per_fold, gpu_per_fold, use_gpu))

    return ElasticPool(factory, cap, packing)
