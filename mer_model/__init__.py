"""GTS-GN for micro-expression recognition from facial landmarks (Wei et al.), in plain PyTorch.

Public API: ``build_model(config)``, ``train_fold(config, train, test, seed, device) -> FoldResult``,
``classification_metrics(y_true, y_pred, num_classes)``. Imports nothing from Ray, Optuna or MLflow, and
not ``mer_model.data`` (import that explicitly).

The names are resolved lazily (PEP 562) so that ``mer_model.config`` / ``mer_model.errors`` can be used
(for example by ``mer-orch`` to reject a bad search-space file) without paying for ``import torch``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mer_model.metrics import classification_metrics
    from mer_model.models import build_model
    from mer_model.train import FoldResult, train_fold

_EXPORTS = {
    "FoldResult": "mer_model.train",
    "train_fold": "mer_model.train",
    "build_model": "mer_model.models",
    "classification_metrics": "mer_model.metrics",
}

__all__ = ["FoldResult", "build_model", "classification_metrics", "train_fold"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mer_model' has no attribute {name!r}")
