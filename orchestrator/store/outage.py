"""Riding out an outage of a shared tracking store (the ``mlflow server``, or the PostgreSQL behind it).

MLflow's own retry of one HTTP request is 7 retries with exponential backoff: a call to a server that is
down blocks, silently, for about 246 s (measured, MLflow 3.17) and then raises. Here instead:

- MLflow's per-request retry is shortened to a few seconds (:func:`configure_mlflow_http`), so that
- every client call of a sweep (driver and fold workers) goes through :class:`RetryingClient`, which
  retries a call that failed because the store did not answer (connection refused / reset, timeout, an
  HTTP 5xx such as the server's answer while its database restarts) with backoff, for at most
  :func:`window` seconds (``$MER_TRACKING_RETRY_S``, default 120) counted from the outage's start; then it
  raises :class:`StoreUnavailable`, one line;
- an :class:`Outage` says one line when the store stops answering and one when it answers again; in the
  driver a :class:`HealthWatch` thread probes the server and its database so the user hears about an outage
  even while every MLflow call is in a worker.

Only remote stores (``http(s)://``, network databases) are wrapped: a local SQLite file that refuses a
write (read-only, full disk) fails at once, as before.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from mer_model.errors import InputError

ENV_WINDOW = "MER_TRACKING_RETRY_S"
DEFAULT_WINDOW = 120.0
HEALTH_PERIOD_S = 5.0
PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"  # what HealthWatch asks the server
# One HTTP request: 2 quick retries (about 2 s), each attempt at most 30 s; the outage window above is what
# bounds an outage. setdefault: a user's own MLFLOW_HTTP_REQUEST_* values win.
_MLFLOW_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                # "View run ... at: http://..." after every terminated run, against a server only
                "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
_TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


_reporter: list[Callable[[str], None]] = []  # where an Outage without its own ``say`` reports (the driver)


def report_to(say: Callable[[str], None] | None) -> None:
    """Send this process's outage lines to ``say`` (the driver's progress display); None: silence."""
    _reporter[:] = [say] if say is not None else []


class Reporting:
    """:func:`report_to` ``say`` until :meth:`release` (the driver holds one for the sweep's length)."""

    def __init__(self, say: Callable[[str], None]):
        report_to(say)

    def release(self) -> None:
        report_to(None)


class StoreUnavailable(InputError):
    """The tracking store did not answer for the whole window: one line, the sweep can be rerun."""


def window() -> float:
    """Seconds an outage is ridden out (``$MER_TRACKING_RETRY_S``, default 120)."""
    try:
        return max(0.0, float(os.environ.get(ENV_WINDOW, DEFAULT_WINDOW)))
    except ValueError:
        raise InputError(f"${ENV_WINDOW}={os.environ[ENV_WINDOW]!r}: expected a number of seconds, "
                         "e.g. 120") from None


def configure_mlflow_http() -> None:
    """Shorten MLflow's silent per-request retry (read by MLflow at every request) in this process."""
    for k, v in _MLFLOW_HTTP.items():
        os.environ.setdefault(k, v)


def is_remote(uri: str) -> bool:
    """A store reached over the network (an outage is possible), not a local file."""
    scheme = urlsplit(uri).scheme.split("+")[0]
    return scheme in ("http", "https", "postgresql", "mysql", "mssql")


def is_transient(err: BaseException) -> bool:
    """Did ``err`` come from a store that did not answer (as opposed to a refused or wrong request)?"""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(err, requests.exceptions.RequestException | ConnectionError | TimeoutError):
        return True
    if type(err).__name__ == "StorageInternalError":  # Optuna's RDB storage: a commit that failed
        return any(type(e).__name__ == "OperationalError" for e in _causes(err))
    if isinstance(err, MlflowException):
        text = str(err)
        if text.startswith("API request to") and ("failed with exception" in text or "timeout" in text):
            return True  # connection refused / reset / timed out, after MLflow's own short retry
        return err.error_code in _TRANSIENT_CODES
    return type(err).__name__ == "OperationalError"  # SQLAlchemy: the database went away


def _causes(err: BaseException) -> list[BaseException]:
    out, e = [], err.__cause__ or err.__context__
    while e is not None and len(out) < 10:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


class Outage:
    """The state of one store's outage, shared by every caller in a process: the first failure opens it
    (one line through ``say``), the first success after it closes it (one line)."""

    def __init__(self, what: str, say: Callable[[str], None] | None = None, limit: float | None = None):
        self.what, self._say = what, say
        self.limit = window() if limit is None else limit
        self.since: float | None = None
        self._lock = threading.Lock()

    def say(self, msg: str) -> None:
        for say in ([self._say] if self._say is not None else _reporter):
            say(msg)

    def failed(self, err: BaseException) -> float:
        """Record a failure; returns the seconds left of the window (<= 0: give up)."""
        with self._lock:
            now = time.monotonic()
            if self.since is None:
                self.since = now
                why = " ".join(str(err).split())[:160]
                self.say(f"{self.what} unreachable ({why}); retrying for up to {self.limit:g} s "
                         "(folds keep training)")
            return self.limit - (now - self.since)

    def ok(self) -> None:
        with self._lock:
            if self.since is not None:
                self.say(f"{self.what} answers again (down {time.monotonic() - self.since:.0f} s)")
                self.since = None

    def give_up(self, err: BaseException) -> StoreUnavailable:
        why = " ".join(str(err).split())[:160]
        return StoreUnavailable(f"{self.what}: no answer for {self.limit:g} s ({why}); stopped. Rerun the "
                                "same command once it is back: finished folds are kept, the rest rerun")


def call(outage: Outage, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, retried with backoff (1, 2, 4 ... 10 s) while the store does not answer."""
    delay = 1.0
    while True:
        try:
            out = fn(*args, **kwargs)
        except Exception as err:
            if not is_transient(err):
                raise
            left = outage.failed(err)
            if left <= 0:
                raise outage.give_up(err) from None
            time.sleep(min(delay, left))
            delay = min(delay * 2, 10.0)
            continue
        outage.ok()
        return out


class RetryingClient:
    """An ``MlflowClient`` whose every method call goes through :func:`call` (attributes pass through)."""

    def __init__(self, client: Any, outage: Outage):
        self._client, self.outage = client, outage

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        return lambda *a, **kw: call(self.outage, attr, *a, **kw)


def tracking_client(uri: str, say: Callable[[str], None] | None = None, what: str | None = None) -> Any:
    """An MlflowClient on ``uri``; for a remote store a :class:`RetryingClient` (MLflow's own retry
    shortened first), reporting through ``say``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    if not is_remote(uri):
        return client
    configure_mlflow_http()
    return RetryingClient(client, Outage(what or f"MLflow tracking store {uri}", say))


class HealthWatch:
    """A daemon thread probing the server and its backend store (:data:`PROBE`) every
    :data:`HEALTH_PERIOD_S` s while a sweep runs, so an outage is announced even while the driver only
    waits for workers; it shares the client's :class:`Outage`, so the user reads one line per outage
    whoever noticed it first."""

    def __init__(self, uri: str, outage: Outage):
        # not /health, which answers while the database behind the server is down: a one-row search
        # reads the backend store (HTTP 500 while its PostgreSQL restarts)
        self.url, self.outage = uri.rstrip("/") + PROBE, outage
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mer-health", daemon=True)

    @classmethod
    def start_for(cls, client: Any, uri: str) -> HealthWatch | None:
        """A running watch for an http(s) store reached through a :class:`RetryingClient`, else None."""
        if not isinstance(client, RetryingClient) or urlsplit(uri).scheme not in ("http", "https"):
            return None
        watch = cls(uri, client.outage)
        watch._thread.start()
        return watch

    def _run(self) -> None:
        while not self._stop.wait(HEALTH_PERIOD_S):
            try:
                with urllib.request.urlopen(self.url, timeout=HEALTH_PERIOD_S) as resp:
                    resp.read()
                self.outage.ok()
            except OSError as err:  # refused, reset, timed out, HTTP error
                self.outage.failed(err)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=HEALTH_PERIOD_S + 1)

    release = stop  # sweep.driver.run_sweep releases it with the driver lease


def retrying_rdb_storage(url: str) -> Any:
    """An Optuna ``RDBStorage`` on a network database whose every public call rides out the database's
    outage (a PostgreSQL restart cut the driver's connections: the next ``get_trial`` raised
    ``StorageInternalError``); a failed commit is rolled back, so the call is retried whole."""
    import optuna

    outage = Outage(f"Optuna storage {url.split('@')[-1]}")

    class RetryingRDBStorage(optuna.storages.RDBStorage):
        pass

    for name in dir(optuna.storages.RDBStorage):
        fn = getattr(optuna.storages.RDBStorage, name)
        if not name.startswith("_") and callable(fn) and name not in ("remove_session", "upgrade"):
            setattr(RetryingRDBStorage, name, _retried(fn, outage))
    return RetryingRDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def _retried(fn: Callable[..., Any], outage: Outage) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return call(outage, fn, self, *args, **kwargs)

    method.__name__ = fn.__name__
    return method
