"""cluster/gpu.yaml and cluster/local.yaml checked offline with the schema and defaults that ship with Ray.

Nothing here reaches AWS: AMIs, instance types, quotas and IAM are not checked (stack-notes). What is checked:
Ray's own ``prepare_config`` + ``validate_config`` accept the files as written and reject typical broken edits
with Ray's own message; the shell commands parse; and the properties the README promises hold (CPU head, GPU
workers from 0, CPU torch on the head only, every node pointed at the same services).
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from orchestrator import services
from orchestrator.store.reuse import TAG_INDEX_SQL

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
GPU = CLUSTER / "gpu.yaml"
LOCAL = CLUSTER / "local.yaml"


def ray_check(config: dict) -> dict:
    """What `ray up` does to a config before launching anything: fill Ray's defaults, validate the schema."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def load_edited(path: Path, old: str, new: str) -> dict:
    """The file as a user would break it: a textual edit of the YAML, then parsed."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}: the test no longer edits what it means to"
    return yaml.safe_load(text.replace(old, new, 1))


@pytest.mark.parametrize("path", [GPU, LOCAL], ids=["gpu", "local"])
def test_config_passes_rays_own_validation(path: Path) -> None:
    prepared = ray_check(yaml.safe_load(path.read_text()))
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_gpu_head_is_cpu_only_and_gpu_workers_autoscale_from_zero() -> None:
    cfg = ray_check(yaml.safe_load(GPU.read_text()))
    assert cfg["provider"]["type"] == "aws"
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))  # AWS GPU families are g*/p*
    workers = [t for name, t in types.items() if name != cfg["head_node_type"]]
    assert workers and all(w["resources"]["GPU"] >= 1 for w in workers)
    assert all(w["min_workers"] == 0 for w in workers)
    assert 1 <= sum(w["max_workers"] for w in workers) <= cfg["max_workers"] <= 16
    # `ray down` must not leave stopped instances billing for their volumes
    assert cfg["provider"]["cache_stopped_nodes"] is False


def test_gpu_spot_option_is_documented_and_valid_when_enabled() -> None:
    text = GPU.read_text()
    enabled = re.sub(r"# (InstanceMarketOptions:)\n\s*#\s+(MarketType: spot)\n\s*#\s+(SpotOptions: .*)\n",
                     r"InstanceMarketOptions:\n        \2\n        \3\n", text)
    assert enabled != text, "the commented spot block is gone from gpu.yaml"
    cfg = ray_check(yaml.safe_load(enabled))
    market = cfg["available_node_types"]["gpu_worker"]["node_config"]["InstanceMarketOptions"]
    assert market["MarketType"] == "spot"


@pytest.mark.parametrize("path", [GPU, LOCAL], ids=["gpu", "local"])
def test_project_installed_on_every_node_with_the_right_torch(path: Path) -> None:
    cfg = ray_check(yaml.safe_load(path.read_text()))
    assert cfg["file_mounts"]["~/mer-orch"] == "."  # this checkout, run from the repository root
    if path == GPU:  # Ray's token for every node (RAY_AUTH_MODE=token in ~/mer-env.sh)
        assert cfg["file_mounts"] == {"~/mer-orch": ".", "~/.ray/auth_token": "~/.ray/auth_token"}
    assert ".gitignore" in cfg["rsync_filter"]  # .venv and mer-runs stay behind
    every = " ; ".join(cfg["setup_commands"])
    head = every + " ; " + " ; ".join(cfg["head_setup_commands"])
    worker = every + " ; " + " ; ".join(cfg["worker_setup_commands"])
    for cmds in (head, worker):
        assert re.search(r"""-e ["']?(~|\$HOME)/mer-orch""", cmds)
        assert "ray[default]==2.60.0" in cmds  # same Ray as pyproject's ray[tune]; dashboard / job server
        assert "--python 3.11." in cmds  # one exact Python patch everywhere: Ray refuses mixed patches
    cpu_index = "download.pytorch.org/whl/cpu"
    if path == GPU:
        assert cpu_index in head and "torch==2.13.0" in head
        assert cpu_index not in worker  # GPU workers take PyPI's torch 2.13.0, the CUDA build
        assert "torch.cuda.is_available()" in worker
    else:
        # own machines: CPU build only where there is no NVIDIA driver
        assert re.search(r"nvidia-smi[^;]*\|\|[^;]*" + re.escape(cpu_index), every)


@pytest.mark.parametrize("path", [GPU, LOCAL], ids=["gpu", "local"])
def test_every_node_points_at_the_same_services(path: Path) -> None:
    cfg = yaml.safe_load(path.read_text())
    names = (services.ENV_TRACKING, services.ENV_OPTUNA, services.ENV_RAY)
    for role in ("head_setup_commands", "worker_setup_commands"):
        env_file = " ".join(c for c in cfg[role] if "mer-env.sh" in c)
        assert all(f"export {n}=" in env_file for n in names), role
        if path == GPU:  # token authentication on every node and for the driver (sources mer-env.sh)
            assert "export RAY_AUTH_MODE=token" in env_file, role
    assert "$RAY_HEAD_IP" in " ".join(cfg["worker_setup_commands"])  # workers reach the head's services
    # the environment is loaded before `ray start`, so Ray worker processes inherit it
    for role in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in cfg[role] if "ray start" in c]
        assert start and all("source ~/mer-env.sh" in c for c in start), role
    mlflow = " ".join(cfg["head_start_ray_commands"])
    assert "mlflow server" in mlflow and "--artifacts-destination" in mlflow and "/health" in mlflow
    if path == GPU:  # the tag index of local stores, on the head's PostgreSQL, after MLflow's schema exists
        cmds = cfg["head_start_ray_commands"]
        index = next(i for i, c in enumerate(cmds) if TAG_INDEX_SQL in c)
        assert index > next(i for i, c in enumerate(cmds) if "/health" in c), cmds


@pytest.mark.parametrize("path", [GPU, LOCAL], ids=["gpu", "local"])
def test_shell_commands_parse(path: Path) -> None:
    cfg = yaml.safe_load(path.read_text())
    keys = [k for k in cfg if k.endswith("_commands")]
    assert len(keys) >= 5
    for key in keys:
        for cmd in cfg[key]:
            res = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
            assert res.returncode == 0, f"{path.name} {key}: {cmd!r}: {res.stderr}"


# ------------------------------------------------------------------------------------- broken edits


def test_fractional_gpu_resource_fails_with_rays_message() -> None:
    cfg = load_edited(GPU, 'resources: {"CPU": 4, "GPU": 1}', 'resources: {"CPU": 4, "GPU": 0.5}')
    with pytest.raises(jsonschema.ValidationError) as err:
        ray_check(cfg)
    assert err.value.message == "0.5 is not of type 'integer'"
    assert list(err.value.absolute_path) == ["available_node_types", "gpu_worker", "resources", "GPU"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("max_workers: 4\nupscaling", "max_worker: 4\nupscaling",
         "Additional properties are not allowed ('max_worker' was unexpected)"),
        ("    min_workers: 0\n", "    min_worker: 0\n",
         "Additional properties are not allowed ('min_worker' was unexpected)"),
    ],
    ids=["top-level", "node-type"],
)
def test_unknown_key_fails_with_rays_message(old: str, new: str, message: str) -> None:
    with pytest.raises(jsonschema.ValidationError) as err:
        ray_check(load_edited(GPU, old, new))
    assert err.value.message == message


def test_wrong_head_type_fails_with_rays_message() -> None:
    cfg = load_edited(GPU, "head_node_type: head", "head_node_type: ray.head.default")
    with pytest.raises(ValueError, match=r"^`head_node_type` must be one of `available_node_types`\.$"):
        ray_check(cfg)


def test_local_provider_rejects_node_types_with_rays_message() -> None:
    import click

    cfg = load_edited(LOCAL, "file_mounts:", "available_node_types: {gpu: {resources: {}, node_config: {}}}\n"
                      "file_mounts:")
    with pytest.raises(click.ClickException, match="available_node_types is not supported for on-premise"):
        ray_check(cfg)


def test_gpu_head_installs_the_postgresql_driver_its_urls_need() -> None:
    """SQLAlchemy 2.x maps ``postgresql://`` to psycopg 3: the recipe installed psycopg2 and `mlflow server`
    stopped with "No module named 'psycopg'". The head installs the project's ``cluster`` extra, and every
    PostgreSQL URL of the recipe resolves, with the installed SQLAlchemy, to a driver that extra provides."""
    import tomllib

    from sqlalchemy.engine import make_url

    cfg = yaml.safe_load(GPU.read_text())
    head = " ".join(cfg["head_setup_commands"])
    assert "psycopg2" not in head
    assert re.search(r"mer-orch\[[^\]]*\bcluster\b", head)
    extra = tomllib.loads((CLUSTER.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("psycopg[binary]") for d in extra["cluster"])
    text = " ".join(c for k in cfg if k.endswith("_commands") for c in cfg[k])
    urls = re.findall(r"postgresql[+\w]*://[^\s'\\]+", text)
    assert len(urls) >= 3  # the MLflow backend store and the Optuna storage of head and workers
    for url in urls:
        assert make_url(url.replace("%s", "h")).get_dialect().driver == "psycopg", url


def test_gpu_mlflow_server_runs_and_stops_as_one_process_group() -> None:
    """`mlflow server` forks uvicorn and huey workers that outlive a signal to its PID alone: the recipe
    starts it as a session leader whose PID is the group id, and stops that group."""
    cmds = yaml.safe_load(GPU.read_text())["head_start_ray_commands"]
    start = next(c for c in cmds if "mlflow server" in c)
    assert "setsid bash -c 'echo $$ > ~/mlflow.pid && exec " in start
    assert "kill -TERM -- -$(cat ~/mlflow.pid)" in start
