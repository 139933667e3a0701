"""A dying raylet's message to the driver, condensed to one line through Ray's own printer (issue 26).

The message is built as Ray 2.60's process watcher builds it (``report_raylet_error_logs``); the kill of a
real raylet is tests/test_rehearsal.py's."""

from __future__ import annotations

from ray._private import worker as ray_worker

from orchestrator.sweep import ray_messages

DUMP = [f"[2026-12-03 14:19:0{i},000 I 1 1] (raylet) node_manager.cc:535: [state-dump] NodeManager:\n"
        for i in range(3)]
DIED = ("Raylet is terminated. Termination is unexpected. Possible reasons include: (1) SIGKILL by the user "
        "or system OOM killer, (2) Invalid memory access from Raylet causing SIGSEGV or SIGBUS, (3) Other "
        "termination signals. Last 20 lines of the Raylet logs:\n    " + "    ".join(DUMP))


def test_raylet_death_is_one_line_through_rays_printer(capsys) -> None:
    ray_messages.install()
    ray_messages.install()  # idempotent: one wrapper, not two
    assert getattr(ray_worker.print_to_stdstream, "_mer_condensed", False)
    for _ in range(2):  # one node's death, delivered twice: one line
        ray_worker.print_to_stdstream({"lines": [DIED], "pid": "raylet", "is_err": False},
                                      ignore_prefix=False)
    out = capsys.readouterr().out
    assert "[state-dump]" not in out and len(out.strip().splitlines()) == 1, out
    assert "raylet was terminated (Ray's reason: unexpected)" in out and "retried" in out, out


def test_other_messages_pass_unchanged() -> None:
    other = {"lines": ["Some other error"], "pid": "raylet", "is_err": False}
    assert ray_messages.condense(other) is other
    worker_line = {"lines": [DIED], "pid": 1234, "is_err": True}  # a worker's own output, not Ray's error
    assert ray_messages.condense(worker_line) is worker_line
    graceful = ray_messages.condense({"lines": ["Raylet is terminated. Termination is graceful."],
                                      "pid": "raylet", "is_err": False})
    assert graceful["lines"] == [ray_messages.ONE_LINE.format(reason="graceful")]
