"""Ray's error messages to the driver, as the sweep's terminal shows them.

Ray publishes some errors to every driver, which prints them from a background thread
(``ray._private.worker.listen_error_messages`` -> ``print_to_stdstream``). One of them is long and says
nothing the sweep does not: when a node's raylet dies (a lost spot instance, ``kill -9``, the OOM killer),
the node's process watcher sends "Raylet is terminated ..." followed by the last 20 lines of that raylet's
log, mostly its periodic ``[state-dump]`` of internal counters. The sweep already says what the loss means
for it (``retry <arm>/<subject>: worker died: ...``), so that message becomes one line saying where the
full text is, once per ``REPEAT_S`` seconds however often Ray delivers it (the rehearsal saw one death
delivered twice); every other message passes to Ray's printer unchanged.

The hook is Ray's module-level printer, looked up at each call; Ray is pinned (``pyproject.toml``) and
tests/test_rehearsal.py kills a raylet for real, so a Ray that prints otherwise fails there. Should the
name be gone, nothing is replaced and Ray prints as it always did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

RAYLET_DIED = "Raylet is terminated"
REPEAT_S = 30.0
ONE_LINE = ("Ray: a node's raylet was terminated (Ray's reason: {reason}); its folds are retried on the "
            "nodes left. Ray's last lines of that raylet's log: raylet.out in the node's Ray session logs.")


def condense(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (Ray's ``{"lines", "pid", "is_err"}`` record), with a raylet-death message cut to one line."""
    lines = [str(x) for x in data.get("lines") or []]
    if data.get("pid") != "raylet" or not lines or not lines[0].startswith(RAYLET_DIED):
        return data
    head = lines[0].split("\n", 1)[0]  # "Raylet is terminated. Termination is unexpected. Possible ..."
    reason = head.split("Termination is ", 1)[1].split(".")[0] if "Termination is " in head else "unknown"
    return {**data, "lines": [ONE_LINE.format(reason=reason)]}


def install() -> None:
    """Route Ray's driver-side error printer through :func:`condense` (once per process)."""
    from ray._private import worker as ray_worker

    original: Callable[..., Any] | None = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_mer_condensed", False):
        return

    last: dict[str, float] = {}  # one line -> when it was printed: Ray delivered one node's death twice

    def printer(data: dict[str, Any], ignore_prefix: bool) -> None:
        short = condense(data)
        if short is not data:
            line, now = short["lines"][0], time.monotonic()
            if now - last.get(line, -REPEAT_S) < REPEAT_S:
                return
            last[line] = now
        original(short, ignore_prefix)

    printer._mer_condensed = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = printer
