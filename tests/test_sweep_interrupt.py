"""Ctrl-C (SIGINT) and SIGTERM to a running ``mer-orch sweep`` driver: one line, exit 130 / 143, no Ray
process of the run left behind, and the same command then finishes the sweep without redoing kept folds."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
import yaml
from test_sweep_resume import _n_complete_folds

pytestmark = pytest.mark.slow

SPEC = {
    "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": 3, "n_clips": 30}},
    "protocol": {"seed": 3},
    "train": {"epochs": 2, "batch_size": 16},
    "grid": [
        {"name": "GCN", "table": "III", "model": "gcn", "features": "A", "lam": False, "au_loss": "none"},
        {"name": "SS-GN", "table": "III", "model": "ss_gn", "features": "A", "lam": False, "au_loss": "none"},
        {"name": "GTS-GN+LAM+AAU", "table": "V"},
    ],
    "resources": {"cpu_per_fold": 1},
    "tracking": {"experiment": "t-interrupt"},
}


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (the driver's local Ray: GCS, raylet, workers, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            children.setdefault(int(fields[1]), []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_one_line_exit_code_no_ray_left_and_rerun_finishes(tmp_path: Path, start_sweep, sig: int,
                                                                     code: int) -> None:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    db = tmp_path / "mer-runs" / "mlflow.db"
    proc = start_sweep(tmp_path)
    deadline = time.monotonic() + 300
    ray_procs: set[int] = set()
    sent = False
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        ray_procs |= _descendants(proc.pid)
        if _n_complete_folds(db) >= 1:
            ray_procs |= _descendants(proc.pid)
            proc.send_signal(sig)
            sent = True
            break
    out, _ = proc.communicate(timeout=120)
    assert sent, f"the sweep ended before the test saw a complete fold in {db}: no signal was sent\n{out}"
    assert proc.returncode == code, f"signal {sig} sent after the first complete fold, yet:\n{out}"
    lines = [ln for ln in out.splitlines() if ln.strip()]
    said = [ln for ln in lines if ln.startswith("interrupted:")]
    assert len(said) == 1 and lines[-1] == said[0], out  # one line, the last thing said
    assert "Traceback" not in out, out
    # quiet: no MLflow / alembic INFO lines, no Ray token notice, no C++ stack dump
    for noise in ("INFO", "Token authentication", "*** SIG", "PC: @", "Downloading artifacts"):
        assert noise not in out, (noise, out)
    kept = int(re.match(r"interrupted: (\d+) units finished and kept; run the same command to resume$",
                        said[0]).group(1))
    assert 1 <= kept < 9
    assert ray_procs, "the driver never started its local Ray"
    end = time.monotonic() + 30
    while any(_alive(p) for p in ray_procs) and time.monotonic() < end:
        time.sleep(0.2)
    assert not [p for p in ray_procs if _alive(p)], "Ray processes of the run outlived the driver"

    proc2 = start_sweep(tmp_path)
    out2, _ = proc2.communicate(timeout=400)
    assert proc2.returncode == 0, out2
    trained = int(re.search(r"(\d+) folds trained by this run", " ".join(out2.split())).group(1))
    assert trained <= 9 - kept  # the kept folds are not trained again


# In a fresh interpreter: Ray caches the authentication mode per process, so a token-mode start inside the
# test process would break every later in-process sweep of the suite (whose clusters run with auth off).
AUTH_PROBE = r"""
import logging, ray
from orchestrator.sweep.executor import init_ray
from ray._raylet import AuthenticationMode, get_authentication_mode

records = []
logging.getLogger().addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: records.append(r)})())
init_ray(None, 1)
token = get_authentication_mode() == AuthenticationMode.TOKEN
ray.shutdown()
print("TOKEN" if token else "OFF", sum("Token authentication" in r.getMessage() for r in records))
"""


def test_local_ray_keeps_token_authentication_without_its_notice() -> None:
    """The notice is gone because the mode is set explicitly (token), not because authentication is off."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    res = subprocess.run([sys.executable, "-c", AUTH_PROBE], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split()[-2:] == ["TOKEN", "0"], (res.stdout, res.stderr[-2000:])
    assert "Token authentication" not in res.stderr


def test_sigterm_inside_ray_wait_is_the_same_interrupt(tmp_path: Path, monkeypatch) -> None:
    """A SIGTERM handler's exception raised inside Ray's C++ ``ray.wait`` reaches Python as a SystemError
    caused by it (seen on the recipe sweep under load: a traceback instead of the one line). The driver's
    own run_sweep is replaced to raise exactly that; the CLI must say one line and exit 143."""
    from click.testing import CliRunner

    from orchestrator.cli import main
    from orchestrator.commands import sweep as cmd
    from orchestrator.sweep import driver

    def wait_interrupted(*args, **kwargs):  # noqa: ANN002, ANN003
        try:
            raise cmd._Terminated()
        except cmd._Terminated as e:
            raise SystemError("<cyfunction CoreWorker.wait> returned a result with an exception set") from e

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(driver, "run_sweep", wait_interrupted)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(SPEC))
    r = CliRunner().invoke(main, ["sweep", "s.yaml"])
    assert r.exit_code == 143, r.output
    assert r.stderr.strip().startswith("interrupted: 0 units finished and kept")
    assert "Traceback" not in r.output
    # any other SystemError is not an interrupt: it is not swallowed
    monkeypatch.setattr(driver, "run_sweep", lambda *a, **k: (_ for _ in ()).throw(SystemError("bug")))
    r = CliRunner().invoke(main, ["sweep", "s.yaml"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemError)


def test_a_signal_whose_exception_python_drops_still_stops_the_sweep(monkeypatch) -> None:
    """SIGTERM landing while a weakref callback runs (once in the suite: a ThreadPoolExecutor's): Python
    prints the handler's exception and drops it, so the sweep ran on and exited 0. The check the block
    yields, which the sweep loop calls every turn, raises it again."""
    import os
    import sys
    import weakref

    from orchestrator.commands import sweep as cmd

    dropped: list = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)  # where "Exception ignored in" goes

    class Owner:
        pass

    def callback(_: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs here, inside the callback: its exception goes nowhere

    with cmd._signals_raise() as stop:
        stop()  # nothing came yet: no-op
        owner = Owner()
        ref = weakref.ref(owner, callback)
        del owner  # the callback runs now
        assert ref() is None
        assert [type(d.exc_value) for d in dropped] == [cmd._Terminated]  # Python dropped it
        with pytest.raises(cmd._Terminated):
            stop()
    assert signal.getsignal(signal.SIGTERM) is not None  # the old handler is back
