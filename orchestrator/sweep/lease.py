"""One driver per sweep: a lease the tracking store creates atomically, a registered model named after the
sweep id.

Two drivers of one sweep at once (a second terminal, a cron job) both trained every fold and wrote
duplicate fold runs, two Optuna trials at one point and an arms table missing a trial. The lease refuses
the second with one line (exit 2).

Why a registered model: MLflow has no compare-and-set on tags, but a registered model's name is unique in
every backend (a primary key in the SQL stores, local SQLite or the PostgreSQL behind a server), so
``create_registered_model`` succeeds for exactly one of two drivers that start at the same moment; the
other gets ``RESOURCE_ALREADY_EXISTS``. The lease is taken before the sweep run is looked up or created,
so the refused driver writes nothing. (The earlier lease, a tag written, waited on and read back, let both
drivers of a simultaneous start create their own sweep run and hold a lease each.) The model is named
:data:`PREFIX` + sweep id, shows in the MLflow UI's Models page while its sweep runs, and is deleted when
the driver ends.

The model's tag ``mer.driver`` = JSON ``{host, pid, token, beat}`` is renewed every :data:`BEAT_S`
seconds by a daemon thread of the driver. A lease counts as held while its ``beat`` is younger than
:data:`TTL_S` and, when it was taken on this host, while its pid is alive: so a driver killed with
``kill -9`` frees its sweep at once on the same machine, and after :data:`TTL_S` from any other machine.
Taking over such a stale lease is delete, create (again unique), then a read back after :data:`SETTLE_S`
(two takers that both saw it stale: the one whose create survives holds it).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from mer_model.errors import InputError

TAG = "mer.driver"
PREFIX = "mer-driver-lease."
TTL_S = 120.0  # a lease not renewed for this long is free (a driver killed on another machine)
BEAT_S = 20.0  # renewal period (well under TTL_S, so a slow store does not lose a live lease)
SETTLE_S = 0.5  # after taking over a stale lease, before reading it back


def _holder(raw: str | None) -> dict[str, Any] | None:
    try:
        h = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return None
    return h if isinstance(h, dict) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def held_by_other(h: dict[str, Any] | None, token: str, now: float | None = None) -> bool:
    """Is lease ``h`` held by a live driver other than the one holding ``token``?"""
    if h is None or h.get("token") == token:
        return False
    now = time.time() if now is None else now
    if now - float(h.get("beat", 0)) > TTL_S:
        return False
    if h.get("host") == socket.gethostname():
        return _pid_alive(int(h.get("pid", -1)))
    return True


def _code(err: Exception) -> str:
    return str(getattr(err, "error_code", ""))


@dataclass
class Lease:
    """The lease of one sweep; :meth:`acquire` takes it, :meth:`release` gives it back. ``client``: an
    MlflowClient (or ``outage.RetryingClient``) on ``tracking_uri``, made here when None."""

    tracking_uri: str
    sweep_id: str
    client: Any = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if self.client is None:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(self.tracking_uri)

    @property
    def name(self) -> str:
        return PREFIX + self.sweep_id

    def _value(self) -> str:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                           "beat": time.time()})

    def read(self) -> dict[str, Any] | None:
        """The holder written on the lease, or None when there is no lease."""
        from mlflow.exceptions import MlflowException

        try:
            return _holder(self.client.get_registered_model(self.name).tags.get(TAG)) or {}
        except MlflowException as err:
            if "RESOURCE_DOES_NOT_EXIST" in _code(err):
                return None
            raise

    def _create(self) -> bool:
        """Create the lease; False when it exists already (another driver created it first)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(
                self.name, tags={TAG: self._value()},
                description=f"mer-orch driver lease of sweep {self.sweep_id}; deleted when the driver ends")
            return True
        except MlflowException as err:
            if "RESOURCE_ALREADY_EXISTS" in _code(err):
                return False
            raise

    def _delete(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model(self.name)
        except MlflowException as err:
            if "RESOURCE_DOES_NOT_EXIST" not in _code(err):
                raise

    def _refuse(self, source: str, h: dict[str, Any]) -> InputError:
        return InputError(
            f"{source}: sweep {self.sweep_id} is being run by another driver (pid {h.get('pid')} on "
            f"{h.get('host')}, alive {time.time() - float(h.get('beat', 0)):.0f} s ago); allowed: one "
            "driver per sweep: wait for it, or stop it (a stopped driver frees it)")

    def acquire(self, source: str) -> None:
        """Take the lease or raise InputError naming the driver that holds it."""
        if not self._create():
            h = self.read()
            if h is not None and held_by_other(h, self.token):
                raise self._refuse(source, h)
            self._delete()  # stale: its driver is gone (dead pid here, or silent for TTL_S)
            if not self._create():
                h = self.read() or {}
                raise self._refuse(source, h)
            time.sleep(SETTLE_S)
            h = self.read()
            if h is None or h.get("token") != self.token:  # another taker deleted ours and holds its own
                raise self._refuse(source, h or {})
        self._thread = threading.Thread(target=self._beat, name="mer-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(BEAT_S):
            try:
                self.client.set_registered_model_tag(self.name, TAG, self._value())
            except Exception:  # noqa: BLE001 - a store hiccup; the next beat retries, TTL covers the gap
                pass

    def release(self) -> None:
        """Stop renewing and delete the lease (only if it is still ours)."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout=5)
        self._thread = None
        try:
            if (self.read() or {}).get("token") == self.token:
                self._delete()
        except Exception:  # noqa: BLE001 - store gone at exit: the lease goes stale (dead pid / TTL)
            pass
