"""Shared services: resolution (given > environment > mer-runs defaults), fast one-line failures instead of
hangs, and `mer-orch services up` running a real `mlflow server` on a free loopback port."""

from __future__ import annotations

import http.server
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import free_port, procs_mentioning

from mer_model.errors import InputError
from orchestrator import services as svc
from orchestrator.cli import main


def one_line_error(fn, *args, **kwargs) -> tuple[str, float]:  # noqa: ANN001
    t0 = time.monotonic()
    with pytest.raises(InputError) as err:
        fn(*args, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg, time.monotonic() - t0


# ----------------------------------------------------------------------------------------------- resolve


def test_resolve_given_beats_env_beats_defaults(tmp_path: Path) -> None:
    env = {svc.ENV_TRACKING: "http://10.0.0.5:5000", svc.ENV_OPTUNA: "journal:/shared/o.log"}
    s = svc.resolve_services(None, "sqlite:///x.db", None, runs_dir=tmp_path / "runs", env=env)
    assert s.tracking_uri == "http://10.0.0.5:5000"
    assert s.optuna_storage == "sqlite:///x.db"
    assert s.ray_storage == str((tmp_path / "runs" / "ray").resolve())
    assert s.sources == ("env", "given", "default")
    # defaults are absolute, so Ray workers with another working directory write to the same files
    d = svc.resolve_services(runs_dir="relative-runs", env={})
    assert d.tracking_uri == f"sqlite:///{Path('relative-runs').resolve() / 'mlflow.db'}"
    assert d.optuna_storage.endswith("/relative-runs/optuna.db") and Path(d.ray_storage).is_absolute()
    assert svc.resolve_services(env={}).env()[svc.ENV_RAY] == str(Path("mer-runs/ray").resolve())


def test_journal_storage_values() -> None:
    assert svc.journal_path("journal:///abs/o.log") == Path("/abs/o.log")
    assert svc.journal_path("journal:rel/o.log") == Path("rel/o.log")
    assert svc.journal_path("/shared/o.log") == Path("/shared/o.log")
    assert svc.journal_path("postgresql://u@h/db") is None
    assert "--storage-class JournalFileStorage" in svc.dashboard_command("journal:/s/o.log")


# ------------------------------------------------------------------------------------------------ checks


def test_local_services_are_created_and_opened(tmp_path: Path) -> None:
    runs = tmp_path / "a" / "b"
    s = svc.resolve_services(runs_dir=runs, env={})
    svc.check_services(s.tracking_uri, s.optuna_storage, ray_storage=s.ray_storage)
    assert (runs / "ray").is_dir()
    tables = {r[0] for r in sqlite3.connect(runs / "optuna.db").execute("select name from sqlite_master")}
    assert {"studies", "trials"} <= tables  # a real Optuna RDB schema, ready for the driver
    svc.check_services(s.tracking_uri, f"journal:{tmp_path / 'j' / 'study.log'}")
    assert (tmp_path / "j").is_dir()


def test_refused_tracking_server_fails_at_once_naming_the_variable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    msg, took = one_line_error(svc.check_services, url, f"sqlite:///{tmp_path}/o.db", timeout=5)
    assert took < 2.0
    assert url in msg and svc.ENV_TRACKING in msg and "mer-orch services up" in msg


def test_silent_tracking_server_fails_within_the_timeout_instead_of_hanging() -> None:
    # accepts TCP connections (kernel backlog) but never answers: what a wedged server looks like
    with socket.create_server(("127.0.0.1", 0), backlog=8) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        msg, took = one_line_error(svc.check_tracking, url, timeout=1.0)
    assert took < 3.0
    assert url in msg


@pytest.fixture
def http_503() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_unhealthy_tracking_server_reports_its_status(http_503: str) -> None:
    msg, _ = one_line_error(svc.check_tracking, http_503, timeout=2)
    assert f"GET {http_503}/health answered HTTP 503; expected 200 OK" in msg


def test_unwritable_locations_are_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    msg, _ = one_line_error(svc.check_services, f"sqlite:///{blocker}/sub/mlflow.db", "sqlite:///:memory:")
    assert str(blocker / "sub") in msg and svc.ENV_TRACKING in msg
    msg, _ = one_line_error(svc.check_ray_storage, str(blocker / "ray"))
    assert str(blocker / "ray") in msg and svc.ENV_RAY in msg


def test_optuna_storage_that_is_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "optuna.db"
    bad.write_bytes(b"this is not an sqlite file" * 100)
    msg, _ = one_line_error(svc.check_services, f"sqlite:///{tmp_path}/m.db", f"sqlite:///{bad}")
    assert msg.startswith(f"Optuna storage sqlite:///{bad} ({svc.ENV_OPTUNA}): cannot open")


def test_unsupported_tracking_scheme() -> None:
    msg, _ = one_line_error(svc.check_tracking, "ftp://host/x")
    assert "unsupported scheme 'ftp'" in msg and "http(s)://host:port" in msg


def test_cli_check_prints_sources_and_exits_2_on_failure(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(svc.ENV_RAY, str(tmp_path / "shared-ray"))
    monkeypatch.delenv(svc.ENV_TRACKING, raising=False)
    monkeypatch.delenv(svc.ENV_OPTUNA, raising=False)
    ok = CliRunner().invoke(main, ["services", "check", "--storage", f"journal:{tmp_path}/o.log"])
    assert ok.exit_code == 0, ok.output
    lines = ok.stdout.splitlines()
    assert lines[0].startswith("ok  tracking") and lines[0].endswith("(default)")
    assert lines[1].endswith("(given)") and lines[2].endswith("(env)")
    assert (tmp_path / "shared-ray").is_dir()

    port = free_port()
    bad = CliRunner().invoke(main, ["services", "check", "--tracking-uri", f"http://127.0.0.1:{port}"])
    assert bad.exit_code == 2
    assert bad.stdout == "" and len(bad.stderr.strip().splitlines()) == 1
    assert f"http://127.0.0.1:{port}" in bad.stderr


# --------------------------------------------------------------------------------- mer-orch services up

UP = [sys.executable, "-m", "orchestrator.cli", "services", "up"]





def _other_ipv4() -> str | None:
    """A non-loopback address of this machine, to prove the server is not reachable through it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


@pytest.mark.slow
def test_services_up_serves_mlflow_on_loopback_and_stops_cleanly(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    runs, port = tmp_path / "mer-runs", free_port()
    out = tmp_path / "up.out"
    with open(out, "w") as fh:
        proc = subprocess.Popen([*UP, "--port", str(port), "--runs-dir", str(runs)], stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "export MLFLOW_TRACKING_URI=" not in out.read_text():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.5)
        text = out.read_text()
        url = f"http://127.0.0.1:{port}"
        assert f"export {svc.ENV_TRACKING}={url}" in text
        assert f"export {svc.ENV_OPTUNA}=sqlite:///{runs / 'optuna.db'}" in text
        assert f"optuna-dashboard --host 127.0.0.1 --port 8080 'sqlite:///{runs / 'optuna.db'}'" in text
        svc.check_tracking(url, timeout=5)

        # a direct client write through the server: run in its SQLite store, artifact proxied into runs/
        client = MlflowClient(url)
        exp = client.create_experiment("direct-write")
        run = client.create_run(exp, tags={"mer.kind": "probe"})
        client.log_metric(run.info.run_id, "uf1", 0.5)
        client.log_text(run.info.run_id, "hello", "probe/hello.txt")
        client.set_terminated(run.info.run_id)
        db = sqlite3.connect(runs / "mlflow.db")
        assert db.execute("select value from metrics where key='uf1'").fetchall() == [(0.5,)]
        stored = list((runs / "artifacts").rglob("hello.txt"))
        assert len(stored) == 1 and stored[0].read_text() == "hello"
        assert client.get_run(run.info.run_id).info.artifact_uri.startswith("mlflow-artifacts:")

        other = _other_ipv4()  # bound to 127.0.0.1 by default: not reachable from the network
        if other is not None:
            with pytest.raises(OSError):
                socket.create_connection((other, port), timeout=2).close()

        # a second `up` on the same port fails at once with one line, exit 2, and starts nothing
        clash = CliRunner().invoke(main, ["services", "up", "--port", str(port), "--runs-dir",
                                          str(tmp_path / "other")])
        assert clash.exit_code == 2
        assert clash.stderr.strip() == (f"--host/--port 127.0.0.1:{port}: cannot bind (Address already in "
                                        "use); allowed: a free port on an interface of this machine")
        assert not (tmp_path / "other" / "mlflow-server.log").exists()
    finally:
        proc.terminate()  # SIGTERM to `mer-orch services up` only; it stops the server it started
        proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while procs_mentioning(str(runs)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert procs_mentioning(str(runs)) == []  # no orphaned mlflow / uvicorn workers
    with socket.create_server(("127.0.0.1", port)):
        pass  # the port is free again
    assert os.path.exists(runs / "mlflow-server.log")


# ------------------------------------------------------------------------------ start-up check of a sweep

TINY_SPEC = """\
dataset: {name: synthme-tiny, knobs: {n_subjects: 2, n_clips: 20}}
train: {epochs: 1}
grid:
  - {name: "GCN+Type A", model: gcn, features: A, lam: false, au_loss: none}
tracking: {uri: "%s"}
"""


def test_check_reads_the_spec_files_tracking_uri(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    spec = tmp_path / "space.yaml"
    spec.write_text(TINY_SPEC % url)
    res = CliRunner().invoke(main, ["services", "check", str(spec), "--storage", f"journal:{tmp_path}/o.log"])
    assert res.exit_code == 2
    assert res.stderr.startswith(f"MLflow tracking URI {url} ({svc.ENV_TRACKING}): no MLflow server answers")


def test_sweep_with_a_dead_server_stops_before_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.chdir(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "space.yaml").write_text(TINY_SPEC % url)
    t0 = time.monotonic()
    res = CliRunner().invoke(main, ["sweep", "space.yaml", "--num-cpus", "1",
                                    "--storage", f"journal:{tmp_path}/o.log"])
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and url in res.stderr
    assert time.monotonic() - t0 < 60  # no hang, no retries against the dead server (generous: shared CI)
    assert not ray.is_initialized()
    assert not (tmp_path / "mer-runs" / "mlflow.db").exists()
