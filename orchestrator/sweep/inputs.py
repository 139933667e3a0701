"""What a sweep needs before its driver starts: the services it writes to, resolved and checked, and its
dataset, loaded once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mer_model.errors import InputError
from orchestrator.spec import SweepSpec
from orchestrator.store import contract as C
from orchestrator.store.contract import sqlite_path


@dataclass
class Services:
    tracking_uri: str
    storage_url: str
    artifact_root: Path | None


def resolve(spec: SweepSpec, tracking_uri: str | None, storage_url: str | None) -> Services:
    """Tracking URI / Optuna storage: CLI option > spec > environment > ./mer-runs/ defaults (absolute)."""
    from orchestrator.services import resolve_services

    svc = resolve_services(tracking_uri or spec.tracking.uri, storage_url or spec.storage.url)
    db = sqlite_path(svc.tracking_uri)
    return Services(svc.tracking_uri, svc.optuna_storage, None if db is None else db.parent / "artifacts")


def load_data(spec: SweepSpec) -> Any:
    """The dataset, loaded (and its landmark cache built) once, in the driver; several datasets: their
    union (``mer_model.data.combine``), subjects prefixed by each dataset's label."""
    from mer_model.data import load_dataset
    from mer_model.data.combine import combine

    parts = [load_dataset(d.name, setup=d.setup, root=d.root, seed=d.seed, magnification=d.magnification,
                          cache_dir=d.cache_dir or C.cache_dir(), **d.knobs) for d in spec.datasets]
    if len(parts) == 1:
        return parts[0]
    try:
        return combine(parts, [d.short for d in spec.datasets])
    except InputError as e:
        raise InputError(f"{spec.source}: {e}") from None


def check_services(svc: Services, needs_storage: bool) -> None:
    """The issue-5 hook: prove the tracking store and (for a ``search``) the Optuna storage answer before
    Ray starts. A grid-only sweep never touches the Optuna storage, so it creates no Optuna database."""
    from orchestrator.services import check_services, check_tracking

    if needs_storage:
        check_services(svc.tracking_uri, svc.storage_url)
    else:
        check_tracking(svc.tracking_uri)
