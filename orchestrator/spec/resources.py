"""The ``resources`` section: what one fold asks of the Ray pool, and how many folds one worker packs."""

from __future__ import annotations

from pydantic import Field

from orchestrator.spec.section import Section


class ResourcesSpec(Section):
    gpu_per_fold: float = Field(0.0, ge=0, le=8)  # fraction of a GPU per fold (0: CPU-only)
    cpu_per_fold: float = Field(1.0, gt=0)  # CPUs per fold; also torch's thread count in the worker
    packing: int = Field(1, ge=1)  # folds trained together by one worker (fold-batched; 1 = off)
