"""The cluster recipe's shared services, rehearsed on loopback with real faults (issue 26).

The topology of cluster/gpu.yaml, on one machine: a real PostgreSQL (``initdb`` into a private folder,
127.0.0.1 only) holding MLflow's backend store and the Optuna storage, a real ``mlflow server`` over it with
proxied artifacts, a two-node Ray (``ray start --head`` + ``ray start --address``), and ``mer-orch sweep
--address`` drivers with exactly the recipe's environment (``MLFLOW_TRACKING_URI=http://...``,
``MER_OPTUNA_STORAGE=postgresql+psycopg://...``). One grid arm and a two-trial Optuna search, 3 subjects,
1 epoch.

Each fault is its own experiment (``--no-reuse``, so nothing is linked from another one), injected while
the sweep trains, then the same command is run again. After each: every unit has exactly one complete fold
run, the sweep's tables are identical to the uninterrupted run's, no Optuna trial is left RUNNING, and the
driver said what happened in one line (no traceback, no silent hang). Only processes this module started
are signalled, by process group or PID.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pg_server
import pytest
import yaml
from ray_procs import fail_with_logs, free_port, procs_in_groups, stop_all, wait_for

from orchestrator.store.reuse import TAG_INDEX_SQL

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(pg_server.pg_bin("initdb") is None, reason="PostgreSQL not installed "
                                 "(.ci/run installs Debian's postgresql)")]

BIN = Path(sys.executable).parent
N_SUBJECTS = 3
DRIVER_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # as in tests/test_multinode.py
SPEC = {
    "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": N_SUBJECTS, "n_clips": 10 * N_SUBJECTS}},
    "protocol": {"seed": 0, "retries": 1},
    "train": {"epochs": 1, "batch_size": 16},
    "grid": [{"name": "GCN+Type A", "table": "IV(a)", "model": "gcn", "features": "A", "lam": False,
              "au_loss": "none"}],
    "search": {"name": "s", "sampler": "random", "seed": 3, "n_trials": 2, "concurrent_trials": 1,
               "base": {"model": "gcn", "features": "A", "lam": False, "au_loss": "none"},
               "params": {"lr": {"choices": [0.01, 0.003]}}},
    "resources": {"cpu_per_fold": 1},
}
N_UNITS = 3 * N_SUBJECTS  # (1 grid arm + 2 trials) x 3 subjects, one seed


@dataclass
class Stack:
    pg: pg_server.Postgres
    mlflow_port: int
    artifacts: Path
    address: str
    ray_tmp: str
    logs: list[Path]
    started: list[tuple[subprocess.Popen, str]]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def optuna_storage(self) -> str:
        return self.pg.url("optuna")

    def launch(self, name: str, argv: list[str], env: dict[str, str], marker: str) -> subprocess.Popen:
        log = Path(self.ray_tmp) / f"{name}.log"
        with open(log, "a") as fh:
            p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.started.append((p, marker))
        self.procs[name] = p
        if log not in self.logs:
            self.logs.append(log)
        return p

    def start_mlflow(self) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no huey job consumers
        self.launch("mlflow", [str(BIN / "mlflow"), "server", "--backend-store-uri", self.pg.url("mlflow"),
                               "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1",
                               "--port", str(self.mlflow_port), "--workers", "1"], env, str(self.artifacts))
        wait_for(self.mlflow_up, "mlflow server", 240, self.logs, self.live())
        import psycopg  # the recipe's next head command: the tag index, once MLflow's tables exist

        with psycopg.connect(self.pg.url("mlflow", "postgresql"), autocommit=True) as con:
            con.execute(TAG_INDEX_SQL)

    def mlflow_up(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(self.tracking_uri + "/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def kill_group(self, name: str) -> None:
        """kill -9 of every process of one thing we started (the server and the workers it forked)."""
        p = self.procs[name]
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
        deadline = time.monotonic() + 30
        while procs_in_groups({p.pid}) and time.monotonic() < deadline:
            time.sleep(0.2)

    def live(self) -> list[tuple[subprocess.Popen, str]]:
        """Started processes still meant to run (wait_for fails as soon as one of these exits)."""
        return [(p, m) for p, m in self.started if p in self.procs.values()]


def _ray_env() -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def _start_worker_node(st: Stack) -> None:
    st.launch("ray-worker", [str(BIN / "ray"), "start", f"--address={st.address}",
                             f"--dashboard-agent-listen-port={free_port()}", "--block", "--num-cpus=1",
                             f"--temp-dir={st.ray_tmp}", "--disable-usage-stats"], _ray_env(), st.ray_tmp)
    probe = ("import sys, time, ray\nray.init(address=sys.argv[1], log_to_driver=False, "
             "configure_logging=False)\nd = time.monotonic() + 180\n"
             "while sum(n['Alive'] for n in ray.nodes()) < 2:\n"
             "    assert time.monotonic() < d, 'no second node'\n    time.sleep(0.5)\n")
    res = subprocess.run([sys.executable, "-c", probe, st.address], capture_output=True, text=True,
                         env={**_ray_env(), **DRIVER_LOOPBACK}, timeout=240)
    if res.returncode != 0:
        fail_with_logs(f"second Ray node not ready: {res.stderr[-500:]}", st.logs)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    ray_tmp = tempfile.mkdtemp(prefix="mer-rh-", dir="/tmp")  # short: Ray's socket paths
    pg = pg_server.start(("mlflow", "optuna"), free_port())
    gcs = free_port()
    st = Stack(pg, free_port(), Path(ray_tmp) / "artifacts", f"127.0.0.1:{gcs}", ray_tmp, [pg.root / "log"],
               [])
    try:
        st.launch("ray-head", [str(BIN / "ray"), "start", "--head", f"--port={gcs}",
                               "--include-dashboard=false",
                               f"--dashboard-agent-listen-port={free_port()}", "--block", "--num-cpus=1",
                               f"--temp-dir={ray_tmp}", "--disable-usage-stats"], _ray_env(), ray_tmp)
        st.start_mlflow()  # migrates the PostgreSQL schema (~20 s) while the Ray head starts
        wait_for(lambda: "Ray runtime started" in (Path(ray_tmp) / "ray-head.log").read_text(), "Ray head",
                 180, st.logs, st.live())
        _start_worker_node(st)
        yield st
    finally:
        stop_all(st.started)
        pg_server.stop(pg)
        shutil.rmtree(ray_tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ drivers


def _workdir(st: Stack, experiment: str) -> Path:
    d = Path(st.ray_tmp) / experiment
    d.mkdir(exist_ok=True)
    (d / "space.yaml").write_text(yaml.safe_dump({**SPEC, "tracking": {"experiment": experiment}},
                                                 sort_keys=False))
    return d


def start_driver(st: Stack, experiment: str) -> subprocess.Popen:
    """``mer-orch sweep space.yaml --address ... --no-reuse`` with the recipe's environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env |= {"MLFLOW_TRACKING_URI": st.tracking_uri, "MER_OPTUNA_STORAGE": st.optuna_storage,
            "RAY_AUTH_MODE": "token", "MER_TRACKING_RETRY_S": "120", **DRIVER_LOOPBACK}
    return subprocess.Popen([str(BIN / "mer-orch"), "sweep", "space.yaml", "--address", st.address,
                             "--no-reuse"], cwd=_workdir(st, experiment), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 400) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"driver silent past {timeout} s:\n{out[-3000:]}")
    return proc.returncode, out


def run_driver(st: Stack, experiment: str) -> tuple[int, str]:
    return finish(start_driver(st, experiment))


def wait_complete_folds(st: Stack, experiment: str, n: int, timeout: float = 300) -> None:
    """Until ``n`` fold runs of ``experiment`` are complete (the fault then lands mid-sweep)."""
    deadline = time.monotonic() + timeout
    while len(_fold_runs(st, experiment, complete_only=True)) < n:
        assert time.monotonic() < deadline, f"fewer than {n} complete folds after {timeout} s"
        time.sleep(0.5)


# ------------------------------------------------------------------------------------------------- checks


def _client(st: Stack):  # noqa: ANN202
    from mlflow.tracking import MlflowClient

    return MlflowClient(st.tracking_uri)


def _fold_runs(st: Stack, experiment: str, complete_only: bool = False) -> list:
    from orchestrator.store.contract import run_filter, search_runs

    c = _client(st)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = search_runs(c, exp.experiment_id, run_filter("fold"))
    return [r for r in runs if not complete_only or (r.info.status == "FINISHED"
                                                     and r.data.tags.get("mer.status") == "complete")]


def tables(st: Stack, experiment: str) -> dict[str, list[dict[str, str]]]:
    """The sweep run's tables (arms.csv), and each config run's pooled metrics, by arm."""
    from orchestrator.store.contract import run_filter, search_runs

    c = _client(st)
    exp = c.get_experiment_by_name(experiment)
    (sweep,) = search_runs(c, exp.experiment_id, run_filter("sweep"))
    with tempfile.TemporaryDirectory() as tmp:
        arms = Path(c.download_artifacts(sweep.info.run_id, "tables/arms.csv", tmp)).read_text()
    rows = list(csv.DictReader(io.StringIO(arms)))
    for r in rows:
        r.pop("config_hash")  # hashes the config (the same) and the data (the same); kept out to read
    return {"arms": rows}


def check_sweep(st: Stack, experiment: str, baseline: dict) -> None:
    """Every unit exactly once, tables as the uninterrupted run's, no Optuna trial left RUNNING."""
    import optuna

    runs = _fold_runs(st, experiment)
    done = [r for r in runs if r.info.status == "FINISHED" and r.data.tags.get("mer.status") == "complete"]
    keys = Counter(tuple(r.data.tags[k] for k in ("mer.arm", "mer.seed", "mer.subject")) for r in done)
    assert len(keys) == N_UNITS and set(keys.values()) == {1}, keys
    left = [(r.data.tags.get("mer.arm"), r.info.status) for r in runs if r not in done]
    assert left == []  # no partial or orphaned fold run either
    assert tables(st, experiment) == baseline
    studies = [s for s in optuna.get_all_study_summaries(st.optuna_storage)
               if s.study_name.startswith(experiment + "-")]
    assert len(studies) == 1
    trials = optuna.load_study(study_name=studies[0].study_name, storage=st.optuna_storage).trials
    assert [t.state.name for t in trials if t.state.name == "RUNNING"] == []
    assert sum(t.state.name == "COMPLETE" for t in trials) >= 2


_SAID = ("unreachable", "answers again", "another driver", "retry", "died", "lost", "node")


def record(fault: str, out: str, t_fault: float) -> None:
    """With ``MER_REHEARSAL_TABLE=<file>``: one JSON line per fault (what the driver said about it, the
    seconds from the fault to a complete sweep) for BENCHMARKS.md's fault table. Units lost and duplicated
    are 0 by ``check_sweep``'s assertions, which ran before this."""
    path = os.environ.get("MER_REHEARSAL_TABLE")
    if not path:
        return
    said = [ln.strip() for ln in out.splitlines() if any(w in ln.lower() for w in _SAID)
            and not ln.lstrip().startswith(("│", "┃", "sweep "))]
    with open(path, "a") as f:
        f.write(json.dumps({"fault": fault, "said": said, "recover_s": round(time.monotonic() - t_fault, 1),
                            "lost": 0, "duplicated": 0}) + "\n")


def no_traceback(out: str) -> None:
    assert "Traceback" not in out and "View run" not in out, out[-3000:]


# ------------------------------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def baseline(stack: Stack) -> dict:
    rc, out = run_driver(stack, "rh-base")
    assert rc == 0, out[-3000:]
    no_traceback(out)
    nodes = {r.data.tags["mer.node"].rsplit("/", 1)[1] for r in _fold_runs(stack, "rh-base")}
    assert len(nodes) == 2, nodes  # folds trained on both Ray nodes
    return tables(stack, "rh-base")


def test_uninterrupted_sweep_and_its_rerun(stack: Stack, baseline: dict) -> None:
    check_sweep(stack, "rh-base", baseline)
    rc, out = run_driver(stack, "rh-base")  # the same command again: nothing trained, same tables
    assert rc == 0 and "0 folds trained by this run" in out, out[-3000:]
    check_sweep(stack, "rh-base", baseline)


def test_mlflow_server_killed_mid_sweep_and_restarted(stack: Stack, baseline: dict) -> None:
    proc = start_driver(stack, "rh-mlflow")
    wait_complete_folds(stack, "rh-mlflow", 2)
    stack.kill_group("mlflow")  # kill -9 of the server and every worker it forked: the port is free
    time.sleep(15)
    t0 = time.monotonic()
    stack.start_mlflow()
    rc, out = finish(proc)
    recovered = time.monotonic() - t0
    assert rc == 0, out[-3000:]
    no_traceback(out)
    assert "unreachable" in out and "retrying for up to 120 s" in out and "answers again" in out, out[-3000:]
    assert recovered < 300
    check_sweep(stack, "rh-mlflow", baseline)
    record("kill -9 of the mlflow server, restarted 15 s later", out, t0 - 15)
    rc, out = run_driver(stack, "rh-mlflow")
    assert rc == 0 and "0 folds trained by this run" in out, out[-3000:]
    check_sweep(stack, "rh-mlflow", baseline)


def test_postgresql_restarted_mid_sweep(stack: Stack, baseline: dict) -> None:
    proc = start_driver(stack, "rh-pg")
    wait_complete_folds(stack, "rh-pg", 2)
    # a restart with 8 s of downtime, so the sweep surely meets it: every connection of the server and
    # of the driver (Optuna storage) is cut, and new ones are refused meanwhile
    t0 = time.monotonic()
    stack.pg.pg_ctl("stop", "-m", "fast")
    time.sleep(8)
    stack.pg.pg_ctl("start")
    rc, out = finish(proc)
    assert rc == 0, out[-3000:]
    no_traceback(out)
    assert "unreachable" in out and "answers again" in out, out[-3000:]
    check_sweep(stack, "rh-pg", baseline)
    record("PostgreSQL stopped, restarted 8 s later", out, t0)
    rc, out = run_driver(stack, "rh-pg")
    assert rc == 0 and "0 folds trained by this run" in out, out[-3000:]
    check_sweep(stack, "rh-pg", baseline)


def test_driver_killed_mid_sweep_then_the_same_command(stack: Stack, baseline: dict) -> None:
    proc = start_driver(stack, "rh-driver")
    wait_complete_folds(stack, "rh-driver", 4)  # inside the search: a trial is RUNNING
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    rc, out = run_driver(stack, "rh-driver")
    assert rc == 0, out[-3000:]
    no_traceback(out)
    check_sweep(stack, "rh-driver", baseline)
    record("kill -9 of the driver, then the same command", out, t0)


def test_two_drivers_started_at_the_same_moment(stack: Stack, baseline: dict) -> None:
    t0 = time.monotonic()
    a, b = start_driver(stack, "rh-two"), start_driver(stack, "rh-two")
    (rc_a, out_a), (rc_b, out_b) = finish(a), finish(b)
    assert sorted([rc_a, rc_b]) == [0, 2], (out_a[-2000:], out_b[-2000:])
    refused = (out_a if rc_a == 2 else out_b).strip().splitlines()
    assert len(refused) == 1 and "is being run by another driver" in refused[0], refused
    no_traceback(out_a + out_b)
    check_sweep(stack, "rh-two", baseline)
    record("two drivers of one sweep started at the same moment", "\n".join(refused), t0)
    rc, out = run_driver(stack, "rh-two")
    assert rc == 0 and "0 folds trained by this run" in out, out[-3000:]


def test_worker_raylet_killed_mid_sweep(stack: Stack, baseline: dict) -> None:
    """Last: the worker node is gone afterwards (a lost spot instance); the head trains the rest."""
    proc = start_driver(stack, "rh-raylet")
    wait_complete_folds(stack, "rh-raylet", 2)
    worker = stack.procs["ray-worker"]
    raylets = [p for p in procs_in_groups({worker.pid})
               if b"/raylet" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0]]
    assert len(raylets) == 1, raylets
    del stack.procs["ray-worker"]  # expected to die now
    t0 = time.monotonic()
    os.kill(raylets[0], signal.SIGKILL)
    rc, out = finish(proc)
    assert rc == 0, out[-3000:]
    no_traceback(out)
    assert "[state-dump]" not in out, out[-3000:]  # Ray's 20-line raylet log tail, condensed to one line
    check_sweep(stack, "rh-raylet", baseline)
    record("kill -9 of the worker node's raylet (a lost spot instance)", out, t0)
    rc, out = run_driver(stack, "rh-raylet")
    assert rc == 0 and "0 folds trained by this run" in out, out[-3000:]
