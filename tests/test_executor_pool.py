"""How many folds a sweep runs at once without an autoscaler (``pool.capacity``) and whether it asks for
GPUs (``pool.Outlook.use_gpu``), on a real local Ray with and without (logical) GPUs: a file written for a
GPU cluster (``gpu_per_fold: 0.25``) must use every CPU of a CPU-only machine, not fall back to one worker."""

from __future__ import annotations

import ray

from orchestrator.sweep.pool import Outlook, capacity, gpu_outlook


def test_capacity_on_cpu_only_and_gpu_clusters() -> None:
    ray.init(num_cpus=4, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        outlook = gpu_outlook()
        assert outlook.gpus_now == 0 and not outlook.autoscaler  # a local Ray's read-only autoscaler
        assert not outlook.use_gpu(0.25)  # no GPUs, none can come: CPUs decide
        assert capacity(1, 0.25, use_gpu=False) == 4
        assert capacity(2, 0.25, use_gpu=False) == 2
    finally:
        ray.shutdown()
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)  # logical GPU
    try:
        assert gpu_outlook().use_gpu(0.5)
        assert capacity(1, 0.5, use_gpu=True) == 2  # two folds per GPU
        assert capacity(1, 0.25, use_gpu=True) == 4
        assert capacity(1, 0.0, use_gpu=False) == 4
    finally:
        ray.shutdown()


def test_an_autoscaler_may_bring_gpus_unless_its_node_types_have_none() -> None:
    assert Outlook(0, autoscaler=True, autoscaler_gpus=None).use_gpu(1)  # v1: node types not known
    assert not Outlook(0, autoscaler=True, autoscaler_gpus=False).use_gpu(1)  # v2: no GPU node group
    assert not Outlook(0, autoscaler=False, autoscaler_gpus=None).use_gpu(1)  # a laptop
    assert not Outlook(2, autoscaler=False, autoscaler_gpus=None).use_gpu(0)  # the file asks for none
