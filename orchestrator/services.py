"""Where a sweep's shared services live (MLflow tracking, Optuna storage, Ray storage); are they reachable.

Resolution order for each of the three, first hit wins:

1. the value given by the caller (the search-space file's field, or a CLI option);
2. the environment: ``MLFLOW_TRACKING_URI``, ``MER_OPTUNA_STORAGE``, ``MER_RAY_STORAGE``
   (``cluster/gpu.yaml`` and ``cluster/local.yaml`` set these on every node);
3. the embedded single-machine defaults under ``./mer-runs/`` (docs/architecture.md, "Local state"):
   ``sqlite:///<abs>/mer-runs/mlflow.db``, ``sqlite:///<abs>/mer-runs/optuna.db``, ``<abs>/mer-runs/ray``.

Optuna storage values: an RDB URL (``sqlite:///...``, ``postgresql://...``, ``mysql://...``) or a journal
file, written ``journal:<path>`` (or a bare filesystem path). Journal files are the shared-filesystem choice
without a database server; PostgreSQL is the multi-node choice (stack-notes, Optuna 5.0).

``check_services`` runs before Ray starts so that an unreachable server is a one-line ``InputError`` within
``timeout`` seconds instead of a sweep that hangs in its first fold. Every network probe runs in a daemon
thread with a deadline: a server, database driver or object store that never answers cannot block the caller.
"""

from __future__ import annotations

import os
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from mer_model.errors import InputError
from orchestrator.store import contract as C
from orchestrator.store.contract import sqlite_path, sqlite_uri

ENV_TRACKING = "MLFLOW_TRACKING_URI"
ENV_OPTUNA = "MER_OPTUNA_STORAGE"
ENV_RAY = "MER_RAY_STORAGE"
DEFAULT_RUNS_DIR = C.DEFAULT_RUNS_DIR
DEFAULT_TIMEOUT = 5.0

_T = TypeVar("_T")


@dataclass(frozen=True)
class Services:
    """The three locations a sweep writes to; ``sources`` says where each came from: given | env | default."""

    tracking_uri: str
    optuna_storage: str
    ray_storage: str
    sources: tuple[str, str, str] = ("default", "default", "default")

    def env(self) -> dict[str, str]:
        """Environment that points another process (a Ray worker, ``mlflow ui``) at the same services."""
        return {ENV_TRACKING: self.tracking_uri, ENV_OPTUNA: self.optuna_storage, ENV_RAY: self.ray_storage}


def _pick(given: str | None, env: Mapping[str, str], key: str, default: str) -> tuple[str, str]:
    if given:
        return given, "given"
    if env.get(key):
        return env[key], "env"
    return default, "default"


def resolve_services(
    tracking_uri: str | None = None,
    optuna_storage: str | None = None,
    ray_storage: str | None = None,
    *,
    runs_dir: Path | str | None = None,
    env: Mapping[str, str] | None = None,
) -> Services:
    """Resolve the three service locations: given value > environment variable > ``runs_dir`` default
    (None: the home, ``contract.home()``: ``$MER_HOME`` / ``--home``, else ``./mer-runs``).

    Defaults are absolute (resolved against the current directory now) so that Ray workers, whose working
    directory differs from the driver's, write to the same files.
    """
    env = os.environ if env is None else env
    runs = Path(runs_dir if runs_dir is not None else C.home()).expanduser().resolve()
    t, ts = _pick(tracking_uri, env, ENV_TRACKING, sqlite_uri(runs / "mlflow.db"))
    o, os_ = _pick(optuna_storage, env, ENV_OPTUNA, sqlite_uri(runs / "optuna.db"))
    r, rs = _pick(ray_storage, env, ENV_RAY, str(runs / "ray"))
    return Services(t, o, r, (ts, os_, rs))


# ------------------------------------------------------------------------------------------- optuna storage


def journal_path(storage: str) -> Path | None:
    """The journal file of an Optuna storage value, or None when it is an RDB URL."""
    if storage.startswith("journal:"):
        rest = storage[len("journal:") :]
        # journal:///abs/path and journal:rel/path are both accepted
        return Path(rest[2:] if rest.startswith("//") else rest).expanduser()
    if "://" in storage:
        return None
    return Path(storage).expanduser()


def open_optuna_storage(storage: str) -> Any:
    """Open an Optuna storage object (``OptunaSearch`` wants an object, not a URL: stack-notes).

    Returns ``optuna.storages.JournalStorage`` for a journal file, ``RDBStorage`` for an RDB URL (created
    with its tables on first use).
    """
    import optuna

    path = journal_path(storage)
    if path is not None:
        from optuna.storages.journal import JournalFileBackend

        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    db = sqlite_path(storage)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    from orchestrator.store.outage import is_remote, retrying_rdb_storage

    if is_remote(storage):  # a database server: its restart is ridden out (orchestrator/store/outage.py)
        return retrying_rdb_storage(storage)
    return optuna.storages.RDBStorage(storage)


def dashboard_command(storage: str, *, host: str = "127.0.0.1", port: int = 8080) -> str:
    """The ``optuna-dashboard`` command line that serves ``storage``."""
    path = journal_path(storage)
    if path is not None:
        return f"optuna-dashboard --storage-class JournalFileStorage --host {host} --port {port} {path}"
    return f"optuna-dashboard --host {host} --port {port} '{storage}'"


# --------------------------------------------------------------------------------------------------- checks


def _with_deadline(fn: Callable[[], _T], timeout: float, what: str) -> _T:
    """Run ``fn`` in a daemon thread; InputError naming ``what`` unless it returns within ``timeout`` s."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    thread = threading.Thread(target=target, name=f"check {what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise InputError(f"{what}: no answer within {timeout:g} s; is the server up and reachable from here?")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _one_line(err: BaseException) -> str:
    text = str(getattr(err, "reason", None) or err) or type(err).__name__
    return " ".join(text.split())[:300]


def check_writable_dir(path: Path | str, what: str) -> Path:
    """Create ``path`` if needed and prove a file can be written there; InputError naming ``what`` if not."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".mer-write-check-"):
            pass
    except OSError as err:
        raise InputError(f"{what}: directory {path} is not writable ({_one_line(err)})") from None
    return path


def check_writable_file(path: Path, what: str) -> None:
    """An existing store file (SQLite DB, Optuna journal) must be writable: a read-only ``mlflow.db`` was
    found only after training, with a 243-line traceback. A missing file is created later (its folder is
    checked by :func:`check_writable_dir`)."""
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{what}: file {path} is not writable (read-only); allowed: a file this user can "
                         "write")


def check_artifact_location(location: str, what: str = "MLflow artifact folder") -> None:
    """The experiment's artifact folder, when local (``file://`` or a path), must be writable before any
    fold trains: otherwise every fold trained, then failed to log its run."""
    scheme = urlsplit(location).scheme
    if scheme in ("", "file"):
        from urllib.request import url2pathname

        check_writable_dir(Path(url2pathname(urlsplit(location).path) if scheme else location), what)


def check_tracking(tracking_uri: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """MLflow tracking: GET ``<server>/health`` for http(s); writable directory for SQLite / file stores;
    a database connection for other SQL URLs."""
    what = f"MLflow tracking URI {tracking_uri} ({ENV_TRACKING})"
    scheme = urlsplit(tracking_uri).scheme
    if scheme in ("http", "https"):
        url = tracking_uri.rstrip("/") + "/health"

        def probe() -> None:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    if resp.status != 200:
                        raise InputError(f"{what}: GET {url} answered HTTP {resp.status}; expected 200 OK")
            except urllib.error.HTTPError as err:
                raise InputError(f"{what}: GET {url} answered HTTP {err.code}; expected 200 OK") from None
            except (urllib.error.URLError, OSError) as err:
                raise InputError(
                    f"{what}: no MLflow server answers ({_one_line(err)}); start one with "
                    "`mer-orch services up` or point the URI at a running server"
                ) from None

        _with_deadline(probe, timeout, what)
    elif scheme == "sqlite":
        db = sqlite_path(tracking_uri) or Path("mlflow.db")
        check_writable_dir(db.parent, what)
        check_writable_file(db, what)
    elif scheme in ("", "file"):
        check_writable_dir(Path(urlsplit(tracking_uri).path if scheme else tracking_uri), what)
    elif scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        _check_sql(tracking_uri, timeout, what)
    else:
        raise InputError(
            f"{what}: unsupported scheme {scheme!r}; expected http(s)://host:port, sqlite:///path, "
            "postgresql://..., mysql://... or a directory"
        )


def _check_sql(url: str, timeout: float, what: str) -> None:
    def probe() -> None:
        import sqlalchemy

        try:
            engine = sqlalchemy.create_engine(url)
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT 1"))
            engine.dispose()
        except Exception as err:  # driver missing, auth, DNS, refused: all one line for the user
            raise InputError(f"{what}: cannot connect ({_one_line(err)})") from None

    _with_deadline(probe, timeout, what)


def check_optuna_storage(storage: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Optuna: open the RDB or journal storage and read its study list."""
    what = f"Optuna storage {storage} ({ENV_OPTUNA})"
    path = journal_path(storage) or sqlite_path(storage)
    if path is not None:
        check_writable_dir(path.parent, what)
        check_writable_file(path, what)

    def probe() -> None:
        try:
            open_optuna_storage(storage).get_all_studies()
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"{what}: cannot open ({_one_line(err)})") from None

    if path is not None or sqlite_path(storage) is not None:
        # a local file cannot hang on a network, and creating a fresh SQLite schema can take longer than a
        # network timeout on a busy machine: no deadline here
        probe()
    else:
        _with_deadline(probe, timeout, what)


def check_ray_storage(ray_storage: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Ray storage: a writable directory, or an object-store URI (``s3://``, ``gs://``) that can be listed."""
    what = f"Ray storage {ray_storage} ({ENV_RAY})"
    scheme = urlsplit(ray_storage).scheme
    if scheme in ("", "file"):
        check_writable_dir(Path(urlsplit(ray_storage).path if scheme else ray_storage), what)
        return

    def probe() -> None:
        import pyarrow.fs

        try:
            fs, path = pyarrow.fs.FileSystem.from_uri(ray_storage)
            fs.get_file_info(path)
        except Exception as err:
            raise InputError(f"{what}: cannot reach ({_one_line(err)})") from None

    _with_deadline(probe, timeout, what)


def check_services(
    tracking_uri: str,
    storage_url: str,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    ray_storage: str | None = None,
) -> None:
    """Prove, within about ``timeout`` seconds per service, that a sweep can write where it is told to.

    Raises ``InputError`` (one line naming the service, its environment variable and the problem) on the first
    service that is unreachable, unwritable or of an unsupported kind. Returns None when all answer.
    Typical use, before ``ray.init``::

        svc = resolve_services(cli_uri or spec.tracking.uri, cli_storage or spec.storage.url)
        check_services(svc.tracking_uri, svc.optuna_storage, ray_storage=svc.ray_storage)
    """
    check_tracking(tracking_uri, timeout)
    check_optuna_storage(storage_url, timeout)
    if ray_storage is not None:
        check_ray_storage(ray_storage, timeout)
