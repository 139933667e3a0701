"""``mer-orch services``: start the single-machine service set, or check that a sweep's services answer.

``mer-orch services up`` runs ``mlflow server`` (SQLite backend ``mer-runs/mlflow.db``, artifacts
``mer-runs/artifacts``, bound to 127.0.0.1 unless ``--host`` says otherwise) in the foreground until Ctrl-C,
after printing the ``export`` lines that point ``mer-orch sweep`` at it and the ``optuna-dashboard`` command
for the local study. ``mer-orch services check [SPEC]`` resolves the three services as a sweep would and
proves each one answers (``orchestrator.services.check_services``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from mer_model.errors import InputError
from orchestrator import services as svc

STARTUP_TIMEOUT = 180.0  # a fresh SQLite backend is migrated at first start: ~20 s on a busy 2-core machine


def _mlflow_argv() -> list[str]:
    exe = Path(sys.executable).with_name("mlflow")
    if exe.exists():  # the venv's own console script, next to this interpreter
        return [str(exe)]
    found = shutil.which("mlflow")
    return [found] if found else [sys.executable, "-m", "mlflow"]


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: may resolve to any interface


def _die_with_parent() -> None:
    """In the server's process, before exec: SIGTERM it when `services up` dies, even by kill -9 (Linux
    PR_SET_PDEATHSIG); without this a killed `services up` left `mlflow server` running on its port."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _check_bind(host: str, port: int) -> None:
    """A taken port is the common failure: say so now, not after the server's ~20 s start-up."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as err:
        why = os.strerror(err.errno) if err.errno else str(err)
        raise InputError(f"--host/--port {host}:{port}: cannot bind ({why}); allowed: a free port "
                         "on an interface of this machine") from None


def _wait_healthy(proc: subprocess.Popen, url: str, log_path: Path, where: str) -> None:
    """Until ``url``/health answers; InputError when the server exits or stays silent past the timeout."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise InputError(f"mlflow server on {where} exited with code {proc.returncode} "
                             f"(log {log_path}): {tail[0][:200]}")
        try:
            svc.check_tracking(url, timeout=2.0)
            return
        except InputError:
            if time.monotonic() > deadline:
                _stop(proc)
                raise InputError(f"mlflow server on {where} did not answer {url}/health within "
                                 f"{STARTUP_TIMEOUT:g} s (log {log_path})") from None
            time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server we started and the workers it forked: its own process group, nothing else."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.group()
def command() -> None:
    """Start / check the MLflow tracking server and the Optuna study storage."""


@command.command("up")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; anything but loopback exposes the UI to your network.")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where mlflow.db, artifacts/ and optuna.db live [default: the home, --home / $MER_HOME, "
                   "else mer-runs].")
@click.option("--backend-store-uri", default=None,
              help="MLflow backend store (default: sqlite:///<runs-dir>/mlflow.db; postgresql://... on a "
                   "cluster).")
@click.option("--artifacts-destination", default=None,
              help="Where the server keeps the artifacts it proxies (default: <runs-dir>/artifacts; s3://... "
                   "works).")
@click.option("--optuna-storage", default=None, envvar=svc.ENV_OPTUNA,
              help=f"Study storage to print the dashboard command for (default: ${svc.ENV_OPTUNA}, "
                   "else sqlite:///<runs-dir>/optuna.db).")
@click.option("--workers", type=click.IntRange(1, 16), default=1, show_default=True,
              help="MLflow server worker processes.")
def up(host: str, port: int, runs_dir: Path, backend_store_uri: str | None, artifacts_destination: str | None,
       optuna_storage: str | None, workers: int) -> None:
    """Run an MLflow tracking server for this machine until Ctrl-C, and print how to use it."""
    runs = (runs_dir or svc.C.home()).expanduser().resolve()
    if not _is_loopback(host):
        click.echo(f"warning: --host {host}: the MLflow server will be reachable from the network, with no "
                   "authentication: anyone who reaches port {port} can read, change and delete every run. "
                   "Use it only on a trusted network (default: 127.0.0.1).".replace("{port}", str(port)),
                   err=True)
    backend = backend_store_uri or f"sqlite:///{runs / 'mlflow.db'}"
    artifacts = artifacts_destination or str(runs / "artifacts")
    storage = svc.resolve_services(optuna_storage=optuna_storage, runs_dir=runs, env={}).optuna_storage
    svc.check_tracking(backend)  # a writable directory for SQLite; a reachable DB otherwise
    if "://" not in artifacts:
        svc.check_writable_dir(artifacts, "--artifacts-destination")
    _check_bind(host, port)
    # the address clients use: a wildcard bind is reached through loopback from this machine
    client_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{client_host}:{port}"
    log_path = runs / "mlflow-server.log"
    argv = [*_mlflow_argv(), "server", "--backend-store-uri", backend, "--artifacts-destination", artifacts,
            "--host", host, "--port", str(port), "--workers", str(workers)]
    with open(log_path, "ab") as log:
        # own session: Ctrl-C / SIGTERM to us reaches the server through _stop, and _stop can signal exactly
        # the processes the server forked
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)  # noqa: PLW1509 - only calls prctl
    # SIGTERM (e.g. from a test or a service manager) takes the same path as Ctrl-C
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        _wait_healthy(proc, url, log_path, f"{host}:{port}")
        click.echo(f"MLflow server: {url}  (backend {backend}, artifacts {artifacts}, log {log_path})")
        click.echo(f"Optuna storage: {storage}")
        click.echo("Point sweeps at them (this shell):")
        click.echo(f"  export {svc.ENV_TRACKING}={url}")
        click.echo(f"  export {svc.ENV_OPTUNA}={storage}")
        click.echo(f"Optuna dashboard (another shell): {svc.dashboard_command(storage)}")
        click.echo("Ctrl-C stops the server.", err=True)
        proc.wait()
        sys.exit(proc.returncode or 0)
    except KeyboardInterrupt:
        _stop(proc)


@command.command("check")
@click.argument("spec_file", required=False, type=click.Path(dir_okay=False))
@click.option("--tracking-uri", default=None, help="Over the spec's tracking.uri and $MLFLOW_TRACKING_URI.")
@click.option("--storage", "storage_url", default=None,
              help="Optuna storage, over the spec's storage.url and $MER_OPTUNA_STORAGE.")
@click.option("--ray-storage", default=None, help="Ray storage path or URI, over $MER_RAY_STORAGE.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=svc.DEFAULT_TIMEOUT, show_default=True,
              help="Seconds to wait for each network service.")
def check(spec_file: str | None, tracking_uri: str | None, storage_url: str | None, ray_storage: str | None,
          timeout: float) -> None:
    """Resolve the services a sweep of SPEC_FILE would use and prove each answers; exit 2 on the first that
    does not."""
    if spec_file:
        from orchestrator.spec import load_spec

        spec = load_spec(spec_file)
        tracking_uri = tracking_uri or spec.tracking.uri
        storage_url = storage_url or spec.storage.url
    s = svc.resolve_services(tracking_uri, storage_url, ray_storage)
    svc.check_services(s.tracking_uri, s.optuna_storage, timeout, ray_storage=s.ray_storage)
    for name, value, source in zip(("tracking", "optuna", "ray storage"),
                                   (s.tracking_uri, s.optuna_storage, s.ray_storage), s.sources, strict=True):
        click.echo(f"ok  {name:<12} {value}  ({source})")
