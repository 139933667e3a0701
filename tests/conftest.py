"""Shared test settings, and the shared `finished_sweep` fixture (one small real sweep per session)."""

import os
import socket
from pathlib import Path

import pytest

# Loopback Ray clusters in tests: with a token in ~/.ray/auth_token a second `ray start --address` fails
# unless both sides agree (stack-notes); tests make their own clusters, so auth is off for them.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Figures are written to files; never try to open a window.
os.environ.setdefault("MPLBACKEND", "Agg")
# Keep Ray from phoning home or printing its usage-stats banner in every test.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


# ------------------------------------------------------------------------------------------ torch fixtures


@pytest.fixture
def float64(monkeypatch):
    """Both training paths (train_fold and fold-batched) in float64: parameters (default dtype), training
    tensors and test inputs, so exactness can be checked to 1e-9."""
    import torch

    import mer_model.train as train_mod
    from mer_model.features import GMGraphFeatures

    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    orig_tensors, orig_forward = train_mod.training_tensors, GMGraphFeatures.forward

    def tensors64(train, dev):
        x, y, a, m = orig_tensors(train, dev)
        return x.double(), y, a.double(), None if m is None else m.double()

    monkeypatch.setattr(train_mod, "training_tensors", tensors64)
    monkeypatch.setattr(GMGraphFeatures, "forward", lambda self, x: orig_forward(self, x.double()))
    yield
    torch.set_default_dtype(prev)


# ---------------------------------------------------------------------------------------- shared helpers
# Imported by test modules as `from conftest import ...` (tests/ is on sys.path, as for fold_data.py).


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (every server in the tests binds loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procs_mentioning(text: str) -> list[int]:
    """PIDs (other than this one) whose command line contains ``text`` (a test's unique folder)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if text in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


@pytest.fixture
def one_thread():
    """One intra-op torch thread: these tiny models only lose from two threads on a shared 2-core runner,
    and exactness checks need the worker's float reductions (cpu_per_fold 1)."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


# --------------------------------------------------------------------------------------- shared fixtures
# A small real sweep (Ray, SQLite MLflow + Optuna, train_fold on SynthME; 3 subjects, 1 epoch) that tests
# of the readers of a sweep (report, resume checks, ...) can share instead of each running their own.
# Table IV(a): a baseline, a LAM + AAU arm (learned LAM, AAU weights) and an arm whose folds diverge (lr
# 1e30 -> NaN loss -> failed folds -> config incomplete). Optuna: 3 random trials over beta and fusion layer.
FINISHED_SWEEP_SPEC = {
    "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": 3, "n_clips": 30}},
    "protocol": {"seed": 0, "objective": "uf1", "retries": 0},
    "train": {"epochs": 1, "batch_size": 16},
    "grid": [
        {"name": "GCN+Type A", "table": "IV(a)", "model": "gcn", "features": "A", "lam": False,
         "au_loss": "none", "baseline": True},
        {"name": "GTS-GN+LAM+AAU", "table": "IV(a)", "model": "gts_gn", "features": "B", "lam": True,
         "au_loss": "aau"},
        {"name": "diverging", "table": "IV(a)", "model": "gcn", "features": "A", "lam": False,
         "au_loss": "none", "lr": 1.0e30},
    ],
    "search": {"name": "search", "sampler": "random", "seed": 0, "n_trials": 3, "concurrent_trials": 2,
               "base": {"model": "gts_gn", "features": "B", "lam": True, "au_loss": "aau"},
               "params": {"beta": {"low": 0.1, "high": 1.0, "step": 0.1},
                          "fusion_layer": {"choices": [1, 2]}}},
    "resources": {"cpu_per_fold": 1},
    "tracking": {"experiment": "finished-sweep"},
}


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory):
    """Run FINISHED_SWEEP_SPEC once per session; returns ``{"dir", "tracking_uri", "storage", "experiment",
    "exit_code", "output"}`` (exit code 1: the diverging arm is incomplete by design)."""
    import yaml
    from click.testing import CliRunner

    from orchestrator.cli import main

    d = tmp_path_factory.mktemp("finished-sweep")
    (d / "space.yaml").write_text(yaml.safe_dump(FINISHED_SWEEP_SPEC, sort_keys=False))
    uri, storage = f"sqlite:///{d / 'mer-runs' / 'mlflow.db'}", f"sqlite:///{d / 'mer-runs' / 'optuna.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)  # the landmark cache and Ray storage default to ./mer-runs
        for k in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE", "RAY_ADDRESS"):
            mp.delenv(k, raising=False)
        r = CliRunner().invoke(main, ["sweep", "space.yaml", "--num-cpus", "2", "--tracking-uri", uri,
                                      "--storage", storage])
    return {"dir": d, "tracking_uri": uri, "storage": storage, "experiment": "finished-sweep",
            "exit_code": r.exit_code, "output": r.output}


def _default_sigint() -> None:
    """In a started driver, before exec: SIGINT back to its default (see ``start_sweep``)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def start_sweep():
    """``start_sweep(cwd)``: ``mer-orch sweep space.yaml --num-cpus 2`` in ``cwd`` as a separate driver
    process (stdout and stderr merged, text), with the local-store defaults (no tracking / storage / Ray
    address from the environment). Every driver it started that is still running at teardown is killed,
    so a failing test never leaves one behind."""
    import subprocess
    import sys

    procs = []
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE", "RAY_ADDRESS")}

    def start(cwd):
        cmd = [sys.executable, "-m", "orchestrator.cli", "sweep", "space.yaml", "--num-cpus", "2"]
        # SIGINT at its default in the driver, as in a terminal: a suite started in the background by a
        # non-interactive shell (`pytest &`) inherits SIGINT ignored, and Python then never raises
        # KeyboardInterrupt, so a Ctrl-C test would see the sweep run to its end
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, preexec_fn=_default_sigint)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
