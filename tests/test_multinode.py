"""Multi-node proof on one machine: a real two-node Ray cluster (`ray start --head` and
`ray start --address` as separate processes, one logical GPU each), a real `mlflow server` subprocess on a
free loopback port, and `mer-orch sweep --address` run by a separate driver process against both.

The search-space file asks for one GPU per fold, so each node holds exactly one fold actor: the GPU scheduling
path is what spreads the folds, and the MLflow ``mer.node`` tags (hostname / IP / Ray node id) prove they ran
on both nodes. Teardown signals only the process groups this module started, then checks that no process
mentioning its private Ray temp dir or server dir is left (never `ray stop`, which would stop every Ray
cluster on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ray_procs import fail_with_logs, free_port, procs_in_groups, procs_mentioning, stop_all, wait_for

from orchestrator import services as svc

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
N_SUBJECTS = 4


# The drivers connect through 127.0.0.1 as given: without this Ray rewrites it into the machine's
# interface address (resolve_ip_for_localhost; stack notes)
DRIVER_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

NODES_PROBE = """
import json, sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)
deadline = time.monotonic() + 180
while sum(n["Resources"].get("GPU", 0) for n in ray.nodes() if n["Alive"]) != 2:
    if time.monotonic() > deadline:
        sys.exit("fewer than 2 GPU nodes after 180 s")
    time.sleep(0.5)
print(json.dumps([n["NodeID"] for n in ray.nodes() if n["Alive"]]))
"""


@dataclass
class Cluster:
    address: str
    node_ids: set[str]
    tracking_uri: str
    server_dir: Path


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # short private dirs: Ray's unix socket paths must stay under ~107 characters
    ray_tmp = tempfile.mkdtemp(prefix="mer-mn-", dir="/tmp")
    server_dir = Path(tempfile.mkdtemp(prefix="mer-mlflow-", dir="/tmp"))
    gcs_port, mlflow_port = free_port(), free_port()
    # token authentication on, as on a real cluster: both nodes and the drivers read ~/.ray/auth_token
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    # Not loopback-only, a limit of Ray 2.60's `ray start`: it rewrites --node-ip-address=127.0.0.1 into the
    # machine's interface address (checked: mer.node showed it) and its GCS / raylet listen on every
    # interface; RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which keeps 127.0.0.1, refuses `ray start --address`.
    # The fake-autoscaler test (tests/test_autoscale.py) is the loopback-only multi-node cluster.
    common = ["--block", "--num-cpus=1", "--num-gpus=1", f"--temp-dir={ray_tmp}", "--disable-usage-stats"]
    logs = [Path(ray_tmp) / "head.log", Path(ray_tmp) / "worker.log", server_dir / "server.log"]
    started: list[tuple[subprocess.Popen, str]] = []

    def launch(argv: list[str], log: Path, marker: str) -> subprocess.Popen:
        with open(log, "w") as fh:
            p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        started.append((p, marker))
        return p

    try:
        # the MLflow server boots (schema migration, ~20 s) while Ray starts
        launch([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{server_dir / 'mlflow.db'}",
                "--artifacts-destination", str(server_dir / "artifacts"), "--host", "127.0.0.1",
                "--port", str(mlflow_port), "--workers", "1"], logs[2], str(server_dir))
        launch([str(BIN / "ray"), "start", "--head", f"--port={gcs_port}", "--include-dashboard=false",
                f"--dashboard-agent-listen-port={free_port()}", *common], logs[0], ray_tmp)
        wait_for(lambda: "Ray runtime started" in logs[0].read_text(), "Ray head", 180, logs, started)
        address = f"127.0.0.1:{gcs_port}"
        launch([str(BIN / "ray"), "start", f"--address={address}",
                f"--dashboard-agent-listen-port={free_port()}", *common], logs[1], ray_tmp)

        # wait for both nodes from a separate driver process: ray.init here could clash with a Ray that
        # another test of this session left initialised in the pytest process
        probe = subprocess.run([sys.executable, "-c", NODES_PROBE, address], capture_output=True, text=True,
                               env={**env, **DRIVER_LOOPBACK}, timeout=240)
        if probe.returncode != 0:
            fail_with_logs(f"second Ray node not ready: {probe.stderr.strip()[-500:]}", logs)
        node_ids = set(json.loads(probe.stdout.strip().splitlines()[-1]))
        tracking_uri = f"http://127.0.0.1:{mlflow_port}"

        def server_up() -> bool:
            try:
                svc.check_tracking(tracking_uri, timeout=2)
                return True
            except ValueError:
                return False

        wait_for(server_up, "mlflow server", 240, logs, started)
        yield Cluster(address, node_ids, tracking_uri, server_dir)
    finally:
        stop_all(started)
        left = procs_mentioning(ray_tmp) + procs_mentioning(str(server_dir))
        left += procs_in_groups({p.pid for p, _ in started})
        shutil.rmtree(ray_tmp, ignore_errors=True)
        shutil.rmtree(server_dir, ignore_errors=True)
        assert left == [], f"processes left behind: {left}"


@dataclass
class SweepRun:
    returncode: int
    output: str
    workdir: Path
    experiment: str


@pytest.fixture(scope="module")
def sweep(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> SweepRun:
    """`mer-orch sweep FILE --address ...` from a separate driver process, tracking to the server."""
    work = tmp_path_factory.mktemp("driver")
    spec = {
        "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": N_SUBJECTS, "n_clips": 10 * N_SUBJECTS}},
        "protocol": {"seed": 0, "retries": 0},
        "train": {"epochs": 1, "batch_size": 16},
        "grid": [{"name": "GCN+Type A", "table": "IV(a)", "model": "gcn", "features": "A", "lam": False,
                  "au_loss": "none"}],
        "resources": {"cpu_per_fold": 1, "gpu_per_fold": 1},  # one fold actor per node
        "tracking": {"experiment": "multinode"},
    }
    (work / "space.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in (svc.ENV_TRACKING, svc.ENV_OPTUNA, "RAY_ADDRESS")}
    env[svc.ENV_TRACKING] = cluster.tracking_uri  # as cluster/gpu.yaml sets it on every node
    env |= {"RAY_AUTH_MODE": "token", **DRIVER_LOOPBACK}
    res = subprocess.run([str(BIN / "mer-orch"), "sweep", "space.yaml", "--address", cluster.address],
                         cwd=work, env=env, capture_output=True, text=True, timeout=420)
    return SweepRun(res.returncode, res.stdout + res.stderr, work, "multinode")


def fold_runs(cluster: Cluster, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(cluster.tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'fold'")


def test_folds_ran_on_both_nodes_of_a_two_node_cluster(cluster: Cluster, sweep: SweepRun) -> None:
    assert sweep.returncode == 0, sweep.output[-4000:]
    runs = fold_runs(cluster, sweep.experiment)
    assert len(runs) == N_SUBJECTS
    assert {r.data.tags["mer.status"] for r in runs} == {"complete"}
    nodes = [r.data.tags["mer.node"] for r in runs]
    # hostname / IP / Ray node id prefix: both nodes share hostname and IP here, the node id tells them apart
    ran_on = {n.rsplit("/", 1)[1] for n in nodes}
    assert len(ran_on) == 2, nodes
    assert {next(i for i in cluster.node_ids if i.startswith(p)) for p in ran_on} == cluster.node_ids


def test_sweep_logged_through_the_mlflow_server(cluster: Cluster, sweep: SweepRun) -> None:
    assert sweep.returncode == 0, sweep.output[-4000:]
    # everything is in the server's store and artifact root; the driver's directory got no tracking DB
    db = sqlite3.connect(cluster.server_dir / "mlflow.db")
    q = "select value, count(*) from tags where key = 'mer.kind' group by value"
    kinds = dict(db.execute(q).fetchall())
    assert kinds == {"sweep": 1, "config": 1, "fold": N_SUBJECTS}
    assert not (sweep.workdir / "mer-runs" / "mlflow.db").exists()
    stored = {p.name for p in (cluster.server_dir / "artifacts").rglob("*") if p.is_file()}
    assert {"predictions.csv", "confusion.csv", "arms.csv"} <= stored
    for run in fold_runs(cluster, sweep.experiment):
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # uploaded through the server's proxy
        assert {"accuracy", "uf1", "uar"} <= set(run.data.metrics)


def test_report_reads_the_sweep_through_the_mlflow_server(cluster: Cluster, sweep: SweepRun,
                                                           tmp_path: Path) -> None:
    """`mer-orch report` against the http server (runs over REST, artifacts through the server's proxy)
    gives the config run's pooled metrics and the folds' confusion matrix."""
    import csv

    from mlflow.tracking import MlflowClient

    assert sweep.returncode == 0, sweep.output[-4000:]
    out = tmp_path / "report"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE")}
    cmd = [sys.executable, "-m", "orchestrator.cli", "report", "--experiment", sweep.experiment,
           "--tracking-uri", cluster.tracking_uri, "--out", str(out)]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert not (tmp_path / "mer-runs").exists()  # nothing read or written locally
    client = MlflowClient(cluster.tracking_uri)
    exp = client.get_experiment_by_name(sweep.experiment)
    (config,) = client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'config'")
    (row,) = list(csv.DictReader((out / "tables" / "table_IV_a.csv").open()))
    assert row["status"] == "complete" and int(row["n_folds_complete"]) == N_SUBJECTS
    for m in ("accuracy", "uf1", "uar"):
        assert float(row[m]) == config.data.metrics[m]
    assert any(p.name.startswith("confusion_") and p.suffix == ".png" for p in (out / "figures").iterdir())
    assert "multinode" in (out / "report.md").read_text()
