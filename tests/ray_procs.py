"""Processes of test clusters: find exactly the ones a test started (by private directory or process
group) and stop only those (never `ray stop`, which would stop every Ray instance on the machine)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import free_port, procs_mentioning  # noqa: F401 - re-exported with the helpers below


def procs_in_groups(pgids: set[int]) -> list[int]:
    """PIDs whose process group is one of ``pgids`` (the groups this module started)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) in pgids and fields[0] != "Z":  # after "pid (comm)": state, ppid, pgrp
                out.append(int(d.name))
    return out


def stop_all(started: list[tuple[subprocess.Popen, str]], grace: float = 5.0) -> None:
    """SIGTERM each process group we started (``ray start --block`` then stops its own raylet / GCS; the
    server its workers), give them ``grace`` seconds, then SIGKILL whatever is still in those groups or
    mentions one of our private directories (Ray's graceful stop can take 30 s on a loaded machine, and a
    test cluster has nothing worth a graceful stop). Nothing else on the machine is touched."""
    groups = {proc.pid for proc, _ in started}  # start_new_session: each is its own group leader
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    markers = {m for _, m in started}

    def leftovers() -> list[int]:
        return sorted({pid for m in markers for pid in procs_mentioning(m)} | set(procs_in_groups(groups)))

    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and (any(p.poll() is None for p, _ in started) or leftovers()):
        time.sleep(0.25)
    for pid in leftovers():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for proc, _ in started:
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10  # SIGKILL is delivered asynchronously
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_for(cond, what: str, timeout: float, logs: list[Path], started: list) -> None:  # noqa: ANN001
    """Poll ``cond``; fail with the logs' tails on timeout or as soon as a process we started has exited."""
    deadline = time.monotonic() + timeout
    while not cond():
        dead = [p.args[:3] for p, _ in started if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            why = f"exited: {dead}" if dead else f"after {timeout:g} s"
            fail_with_logs(f"{what} not ready ({why})", logs)
        time.sleep(0.5)


def fail_with_logs(message: str, logs: list[Path]) -> None:
    tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())
    pytest.fail(f"{message}\n{tails}")
