"""Issue 15: `mer-orch sweep` on an autoscaling cluster whose GPU workers do not exist yet.

Ray's own fake multi-node autoscaler (``provider: fake_multinode``, ``RAY_FAKE_CLUSTER=1``; what Ray uses to
test its autoscaler) runs here as a separate `ray start --head` process with no GPU and a GPU worker type
with ``min_workers: 0``. A separate driver process runs `mer-orch sweep --address` with a file asking
``gpu_per_fold: 1``. The pool's pending GPU actors are demand; the autoscaler launches worker nodes; folds
land on them (MLflow ``mer.node`` = worker node ids, ``mer.gpu_ids`` = a logical GPU); after the sweep the
pool released its actors and the autoscaler takes the idle workers down.

Loopback only: every node gets 127.0.0.1 (head ``--node-ip-address``, worker nodes started by the monitor
inherit ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), the driver keeps 127.0.0.1 (the same variable stops
``resolve_ip_for_localhost``), and the test checks with ``ss -ltnp`` that every listening socket of the
processes it started is on 127.0.0.1. Token authentication stays on (``RAY_AUTH_MODE=token``). Teardown
kills only the processes of this test's private Ray temp dir and process group (never `ray stop`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ray_procs import free_port, procs_in_groups, procs_mentioning, stop_all, wait_for

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
N_SUBJECTS = 4
HEAD_NODE_ID = "f" * 51 + "00000"  # the fake provider's fixed id for the head node
WORKER_TYPE = "gpu.worker"


def fake_cluster_config(gcs_port: int) -> dict:
    """The whole autoscaler config (the wheel lacks fake_multi_node/example.yaml): a CPU head, GPU workers
    from 0 to 2. ``use_node_id_as_ip``: every fake node has the same IP, so the autoscaler must tell them
    apart by id (else it never sees them up, nor idle); no node updaters (nothing to ssh into)."""
    return {
        "cluster_name": "mer-fake-gpu", "max_workers": 2, "idle_timeout_minutes": 0.1, "upscaling_speed": 1.0,
        "provider": {"type": "fake_multinode", "gcs_address": f"127.0.0.1:{gcs_port}",
                     "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True},
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            WORKER_TYPE: {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0,
                          "max_workers": 2},
        },
        "head_node_type": "ray.head.default",
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


def listeners(marker: str) -> list[tuple[str, str]]:
    """(process name, local address) of every listening TCP socket of processes mentioning ``marker``."""
    pids = set(procs_mentioning(marker))
    out = []
    for line in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines():
        if pids & {int(p) for p in re.findall(r"pid=(\d+)", line)}:
            out.append((",".join(re.findall(r'"([^"]+)"', line)), line.split()[3]))
    return out


def raylets(marker: str) -> int:
    return sum("/raylet " in " " + Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(
        errors="replace") for p in procs_mentioning(marker) if Path(f"/proc/{p}").exists())


@dataclass
class Fake:
    address: str
    ray_tmp: str
    env: dict[str, str]
    monitor_log: Path


@pytest.fixture(scope="module")
def fake() -> Iterator[Fake]:
    ray_tmp = tempfile.mkdtemp(prefix="mer-as-", dir="/tmp")  # short: Ray's socket paths must stay short
    port = free_port()
    cfg = Path(ray_tmp) / "autoscaler.json"
    cfg.write_text(json.dumps(fake_cluster_config(port)))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    log = Path(ray_tmp) / "head.log"
    started: list[tuple[subprocess.Popen, str]] = []
    try:
        with open(log, "w") as fh:
            argv = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                    f"--port={port}", "--num-cpus=1", "--num-gpus=0", "--include-dashboard=false",
                    f"--temp-dir={ray_tmp}", "--disable-usage-stats", f"--autoscaling-config={cfg}"]
            p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        started.append((p, ray_tmp))
        wait_for(lambda: "Ray runtime started" in log.read_text(), "Ray head", 240, [log], started)
        monitor_log = Path(ray_tmp) / "session_latest" / "logs" / "monitor.log"
        yield Fake(f"127.0.0.1:{port}", ray_tmp, env, monitor_log)
    finally:
        stop_all(started)
        left = procs_mentioning(ray_tmp) + procs_in_groups({p.pid for p, _ in started})
        shutil.rmtree(ray_tmp, ignore_errors=True)
        assert left == [], f"processes left behind: {left}"


@dataclass
class Sweep:
    returncode: int
    output: str
    tracking_uri: str
    listening: set[tuple[str, str]]
    max_raylets: int


@pytest.fixture(scope="module")
def sweep(fake: Fake, tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    work = tmp_path_factory.mktemp("driver")
    spec = {
        "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": N_SUBJECTS, "n_clips": 10 * N_SUBJECTS}},
        "protocol": {"seed": 0, "retries": 0},
        "train": {"epochs": 1, "batch_size": 16},
        "grid": [{"name": "GCN+Type A", "table": "IV(a)", "model": "gcn", "features": "A", "lam": False,
                  "au_loss": "none"}],
        "resources": {"cpu_per_fold": 1, "gpu_per_fold": 1},
        "tracking": {"experiment": "autoscale"},
    }
    (work / "space.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    env = {**fake.env, "MLFLOW_TRACKING_URI": uri, "MER_OPTUNA_STORAGE": f"sqlite:///{work / 'optuna.db'}"}
    for k in ("RAY_FAKE_CLUSTER", "AUTOSCALER_UPDATE_INTERVAL_S", "RAY_TMPDIR"):
        env.pop(k)
    seen: set[tuple[str, str]] = set()
    most = 0
    with open(work / "sweep.log", "w") as fh:
        p = subprocess.Popen([str(BIN / "mer-orch"), "sweep", "space.yaml", "--address", fake.address],
                             cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while p.poll() is None and time.monotonic() < deadline:
            seen |= set(listeners(fake.ray_tmp))  # the worker nodes' processes live only while they work
            most = max(most, raylets(fake.ray_tmp))
            time.sleep(1)
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)
    return Sweep(p.returncode, (work / "sweep.log").read_text(), uri, seen, most)


def fold_runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("autoscale")
    assert exp is not None
    return client.search_runs([exp.experiment_id], "tags.`mer.kind` = 'fold'")


def test_autoscaler_launches_gpu_workers_and_folds_run_on_them(fake: Fake, sweep: Sweep) -> None:
    assert sweep.returncode == 0, sweep.output[-4000:]
    assert "training on CPU" not in sweep.output
    runs = fold_runs(sweep.tracking_uri)
    assert len(runs) == N_SUBJECTS
    assert {r.data.tags["mer.status"] for r in runs} == {"complete"}
    node_ids = {r.data.tags["mer.node"].rsplit("/", 1)[1] for r in runs}
    assert {r.data.tags["mer.node"].split("/")[1] for r in runs} == {"127.0.0.1"}  # node addresses: loopback
    assert HEAD_NODE_ID not in node_ids and node_ids, node_ids  # never on the CPU head
    assert all(n.startswith("f" * 51) for n in node_ids), node_ids  # nodes the fake provider launched
    assert {r.data.tags["mer.gpu_ids"] for r in runs} == {"0"}  # one logical GPU per worker node
    assert sweep.max_raylets >= 2  # head + at least one launched worker node
    launched = fake.monitor_log.read_text()
    assert re.search(rf"Launching \d+ nodes, type {re.escape(WORKER_TYPE)}", launched)


def test_workers_are_released_after_the_sweep(fake: Fake, sweep: Sweep) -> None:
    assert sweep.returncode == 0, sweep.output[-4000:]
    deadline = time.monotonic() + 180  # idle_timeout_minutes 0.1 plus autoscaler rounds on a loaded box
    while raylets(fake.ray_tmp) > 1 and time.monotonic() < deadline:
        time.sleep(1)
    assert raylets(fake.ray_tmp) == 1, "worker nodes still up 180 s after the sweep"
    assert re.search(r"Removing \d+ nodes of type gpu\.worker \(idle\)", fake.monitor_log.read_text())


def test_everything_started_listens_on_loopback_only(fake: Fake, sweep: Sweep) -> None:
    assert sweep.returncode == 0, sweep.output[-4000:]
    names = {n for n, _ in sweep.listening}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), sweep.listening
    assert {a for _, a in sweep.listening if not re.match(r"(\[::ffff:)?127\.0\.0\.1\]?:\d+$", a)} == set()
