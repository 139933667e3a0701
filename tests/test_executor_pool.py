"""How many folds a sweep runs at once (``executor.pool_size``), on a real local Ray with and without
(logical) GPUs: a file written for a GPU cluster (``gpu_per_fold: 0.25``) must use every CPU of a
CPU-only machine, not fall back to one worker."""

from __future__ import annotations

import ray

from orchestrator.executor import pool_size


def test_pool_size_on_cpu_only_and_gpu_clusters() -> None:
    ray.init(num_cpus=4, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        assert pool_size(1, 0.25, None, 100) == 4  # no GPUs: gpu_per_fold is ignored, CPUs decide
        assert pool_size(2, 0.25, None, 100) == 2
        assert pool_size(1, 0.0, 3, 100) == 3  # --max-concurrent
        assert pool_size(1, 0.25, None, 2) == 2  # never more actors than units
    finally:
        ray.shutdown()
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)  # logical GPU
    try:
        assert pool_size(1, 0.5, None, 100) == 2  # two folds per GPU
        assert pool_size(1, 0.25, None, 100) == 4
        assert pool_size(1, 0.0, None, 100) == 4
    finally:
        ray.shutdown()
