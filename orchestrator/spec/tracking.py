"""The ``tracking`` and ``storage`` sections: where results go (the MLflow store, the Optuna storage)."""

from __future__ import annotations

from orchestrator.spec.section import Section


class TrackingSpec(Section):
    uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else sqlite:///<abs>/mer-runs/mlflow.db
    experiment: str | None = None  # default: the spec file's stem
    # log each fold's final model (weights, resolved config, class / AU names) for `mer-orch predict`
    save_models: bool = False


class StorageSpec(Section):
    url: str | None = None  # default: $MER_OPTUNA_STORAGE, else sqlite:///<abs>/mer-runs/optuna.db
