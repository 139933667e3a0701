"""Issue 15 on a local Ray: the sweep's own Ray listens on 127.0.0.1 only (checked with ``ss -ltnp`` on the
processes it started, token authentication left on), and the elastic pool grows for queued work, never
beyond what a cluster without autoscaler holds, releases idle actors when the queue runs dry, and says once
that it trains on CPU when the file asks for GPUs that no one can provide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

pytestmark = pytest.mark.slow

# Run in a fresh interpreter: init_ray must start its own Ray, whatever this test process holds.
LOOPBACK_PROBE = r"""
import json, os, re, subprocess
from pathlib import Path
import ray
from orchestrator.sweep.executor import init_ray

def descendants(root):
    kids = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d.name))
            except (OSError, IndexError):
                pass
    out, todo = set(), [root]
    while todo:
        p = todo.pop(); out.add(p); todo += kids.get(p, [])
    return out

init_ray(None, 1)
node_ip = ray.get(ray.remote(lambda: ray.util.get_node_ip_address()).remote())
mine = descendants(os.getpid())
listen = []
for line in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines():
    if mine & {int(p) for p in re.findall(r"pid=(\d+)", line)}:
        listen.append([",".join(re.findall(r'"([^"]+)"', line)), line.split()[3]])
after = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
from ray._raylet import AuthenticationMode, get_authentication_mode
token = get_authentication_mode() == AuthenticationMode.TOKEN
ray.shutdown()
print(json.dumps({"node_ip": node_ip, "listen": listen, "env_after": after, "token_auth": token}))
"""


def test_local_sweep_ray_listens_on_loopback_only() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE",
                                                            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    res = subprocess.run([sys.executable, "-c", LOOPBACK_PROBE], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["node_ip"] == "127.0.0.1"
    names = {n for n, _ in out["listen"]}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), out["listen"]
    exposed = [(n, a) for n, a in out["listen"] if not (a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")))]
    assert exposed == [], exposed
    assert out["env_after"] is None  # the switch is not left behind for a later ray.init(address=...)
    assert out["token_auth"]  # Ray's default for a local cluster, kept (its notice is silenced: issue 14)


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A tracking DB created here first, as the sweep's driver does: actors opening a new SQLite store at
    once race on its schema migration (stack notes)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()
    return uri


def test_elastic_pool_grows_to_the_resources_and_releases_idle_actors(local_ray, store: str) -> None:
    from orchestrator.sweep.pool import start_pool

    said: list[str] = []
    pool = start_pool(ray.put(None), store, cpu_per_fold=1,
                      gpu_per_fold=0.5, max_concurrent=None, say=said.append)
    assert len(said) == 1 and "training on CPU" in said[0]  # asked for GPUs, none here, no autoscaler
    pool.fit(10)  # ten queued folds, two CPUs, no autoscaler: two actors, not ten pending ones
    assert pool.size == 2
    deadline = time.monotonic() + 240
    while len(pool.actors) < 2 and time.monotonic() < deadline:
        pool.wait(timeout=5)
    assert len(pool.actors) == 2 and not pool.pending
    first = pool.actors[0]
    pool.fit(1)  # the queue ran down to one fold: one idle actor goes
    assert pool.size == 1
    pool.fit(0)  # dry: every idle actor goes, so an autoscaler may take its node down
    assert pool.size == 0 and not pool.has_work(0)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(first.ping.remote(), timeout=60)


def test_max_concurrent_caps_the_pool(local_ray, store: str) -> None:
    from orchestrator.sweep.pool import start_pool

    pool = start_pool(ray.put(None), store, cpu_per_fold=1,
                      gpu_per_fold=0, max_concurrent=1, say=pytest.fail)  # no GPU asked: nothing to say
    pool.fit(5)
    assert pool.size == 1
    pool.shutdown()
    assert pool.size == 0


def test_without_a_display_the_cpu_note_still_reaches_the_user(caplog: pytest.LogCaptureFixture) -> None:
    from orchestrator.sweep.progress import NullProgress

    with caplog.at_level("WARNING", logger="orchestrator"):
        NullProgress().note("gpu_per_fold: 1 asked, but ...: training on CPU")
    assert [r.getMessage() for r in caplog.records] == ["gpu_per_fold: 1 asked, but ...: training on CPU"]
