"""The console entry's fast exit (``orchestrator.cli.run``): the exit code, the output, the ``atexit``
handlers and the threads of a normal exit are all kept; only the interpreter's module teardown is skipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_exit_code_and_one_line_error_survive(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("experiment: x\nno_such_key: 1\n")
    code = "import sys; from orchestrator.cli import run; sys.argv = ['mer-orch', 'sweep', 'bad.yaml']; run()"
    r = _run(code, tmp_path)
    assert r.returncode == 2, r
    assert r.stderr.startswith("bad.yaml: ") and r.stderr.count("\n") == 1, r.stderr


def test_atexit_threads_and_buffered_output_are_not_lost(tmp_path: Path) -> None:
    """An idle executor thread (which a naive join would wait on forever), a non-daemon thread still
    writing, an ``atexit`` handler and buffered stdout (a pipe, not a terminal) all finish before the exit."""
    code = """
import atexit, concurrent.futures, sys, threading, time
from orchestrator.cli import run
ex = concurrent.futures.ThreadPoolExecutor(1)
ex.submit(lambda: None).result()  # left idle, never shut down
def late():
    time.sleep(0.5)
    print("thread finished")
threading.Thread(target=late).start()
atexit.register(lambda: print("atexit ran"))
print("buffered before exit")
sys.argv = ["mer-orch", "--version"]
run()
print("never printed: run() exits")
"""
    r = _run(code, tmp_path)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0] == "buffered before exit" and lines[1].startswith("mer-orch, version"), lines
    assert lines[2:] == ["thread finished", "atexit ran"], lines  # a normal exit's order: threads, atexit


def test_console_script_points_at_the_fast_exit() -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mer-orch"] == "orchestrator.cli:run"
