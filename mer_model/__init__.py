"""GTS-GN for micro-expression recognition from facial landmarks (Wei et al.), in plain PyTorch.

Public API: ``build_model(config)``, ``train_fold(config, train, test, seed, device) -> FoldResult``,
``classification_metrics(y_true, y_pred, num_classes)``. Imports nothing from Ray, Optuna or MLflow, and
not ``mer_model.data`` (import that explicitly).
"""

from mer_model.metrics import classification_metrics
from mer_model.models import build_model
from mer_model.train import FoldResult, train_fold

__all__ = ["FoldResult", "build_model", "classification_metrics", "train_fold"]
