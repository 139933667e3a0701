"""One driver per sweep: a lease held in the tracking store, as a tag of the sweep run.

Two drivers of one sweep at once (a second terminal, a cron job) both trained every fold and wrote
duplicate fold runs, two Optuna trials at one point and an arms table missing a trial. The lease refuses
the second with one line (exit 2).

A lease is the tag ``mer.driver`` = JSON ``{host, pid, token, beat}``, renewed every :data:`BEAT_S`
seconds by a daemon thread of the driver. It counts as held while its ``beat`` is younger than
:data:`TTL_S` and, when it was taken on this host, while its pid is alive: so a driver killed with
``kill -9`` frees its sweep at once on the same machine, and after :data:`TTL_S` from any other machine.

MLflow has no compare-and-set, so taking the lease is write, wait :data:`SETTLE_S`, read back: of two
drivers starting together the last writer wins and the other refuses. Two starts whose read and write are
more than :data:`SETTLE_S` apart always see each other.
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
TTL_S = 120.0  # a lease not renewed for this long is free (a driver killed on another machine)
BEAT_S = 20.0  # renewal period (well under TTL_S, so a slow store does not lose a live lease)
SETTLE_S = 0.5  # between writing the lease and reading it back


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


@dataclass
class Lease:
    """The lease of one sweep run; :meth:`acquire` takes it, :meth:`release` gives it back."""

    tracking_uri: str
    run_id: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _value(self) -> str:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                           "beat": time.time()})

    def _read(self, client: Any) -> dict[str, Any] | None:
        return _holder(client.get_run(self.run_id).data.tags.get(TAG))

    def acquire(self, source: str, sweep_id: str) -> None:
        """Take the lease or raise InputError naming the driver that holds it."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.tracking_uri)
        for attempt in (0, 1):
            h = self._read(client)
            if held_by_other(h, self.token):
                raise InputError(
                    f"{source}: sweep {sweep_id} is being run by another driver (pid {h.get('pid')} on "
                    f"{h.get('host')}, alive {time.time() - float(h.get('beat', 0)):.0f} s ago); allowed: "
                    f"one driver per sweep: wait for it, or stop it (a stopped driver frees it)")
            if attempt == 0:
                client.set_tag(self.run_id, TAG, self._value())
                time.sleep(SETTLE_S)
        self._thread = threading.Thread(target=self._beat, name="mer-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.tracking_uri)
        while not self._stop.wait(BEAT_S):
            try:
                client.set_tag(self.run_id, TAG, self._value())
            except Exception:  # noqa: BLE001 - a store hiccup; the next beat retries, TTL covers the gap
                pass

    def release(self) -> None:
        """Stop renewing and clear the tag (only if it is still ours)."""
        from mlflow.tracking import MlflowClient

        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout=5)
        self._thread = None
        from mlflow.exceptions import MlflowException

        client = MlflowClient(self.tracking_uri)
        try:
            if (self._read(client) or {}).get("token") == self.token:
                client.set_tag(self.run_id, TAG, "")
        except MlflowException:  # the run was deleted (a refused sweep cleans up after itself): no lease
            pass
