"""The GPU smoke sweep of ``gpu_check.py``: ``mer-orch sweep`` with ``gpu_per_fold: 0.25`` on one GPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
NEEDS = ("ray", "mlflow", "optuna", "pydantic", "click")


def _gpu_pids() -> set[str]:
    """PIDs holding GPU memory now, per ``nvidia-smi`` (empty where it shows none, e.g. some sandboxes)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line.strip() for line in out.splitlines() if line.strip()}


def _spec(d: Path, epochs: int, quick: bool) -> Path:
    raw = yaml.safe_load((ROOT / "search_spaces" / "smoke.yaml").read_text())
    raw["train"] = {**raw.get("train", {}), "epochs": epochs}
    raw["resources"] = {**raw.get("resources", {}), "cpu_per_fold": 1, "gpu_per_fold": 0.25}
    raw["tracking"] = {"experiment": "gpu-check"}
    if quick:
        raw["dataset"] = {**raw["dataset"], "knobs": {"n_subjects": 2, "n_clips": 20}}
        raw["grid"] = raw["grid"][:1]
    raw.pop("search", None), raw.pop("storage", None)
    (d / "s.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return d / "s.yaml"


def smoke_sweep(device: torch.device, epochs: int, quick: bool) -> dict[str, Any]:
    """Run the sweep in a fresh process; sample nvidia-smi while it runs; exit code, time, GPU pids."""
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        return {"skipped": f"packages missing here: {', '.join(missing)} (carry them as wheels)"}
    with tempfile.TemporaryDirectory() as t:
        d = Path(t)
        spec = _spec(d, epochs, quick)
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE",
                                                                 "RAY_ADDRESS")}
        env.update(RAY_TMPDIR=str(d / "ray"), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
                   RAY_USAGE_STATS_ENABLED="0")
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "orchestrator.cli", "sweep", str(spec), "--num-cpus", "4"]
        proc = subprocess.Popen(cmd, cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        pids: set[str] = set()
        while proc.poll() is None and time.perf_counter() - t0 < 240:
            if device.type == "cuda":
                pids |= _gpu_pids()
            time.sleep(0.5)
        if proc.poll() is None:
            proc.kill()  # our own child, by its handle
        out = proc.communicate()[0]
        return {"rc": proc.returncode, "wall_s": time.perf_counter() - t0, "gpu_pids_seen": sorted(pids),
                "n_gpu_processes_seen": len(pids), "tail": out[-1500:]}
