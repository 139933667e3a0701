"""The reproducibility record of a sweep: ``environment.json`` on the sweep run (issue 12).

What can change a result although the spec did not change: the code (project version, git commit, local
edits), the libraries, the machine (CPU model and its vector instructions, which select the BLAS kernels;
GPU, driver, CUDA), the thread counts (they change the summation order of float reductions), torch's
determinism settings, and the data (a content hash of the loaded dataset,
:meth:`mer_model.data.LandmarkDataset.content_hash`). The record holds no file-system path (a report that
prints it must not leak one); a resumed sweep whose record differs warns (terminal, tag, report).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from orchestrator.store import contract as C

# Distribution names whose versions enter the record (dlib installs as dlib or as the dlib-bin wheel).
PACKAGES = (
    "torch",
    "ray",
    "optuna",
    "mlflow",
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    ("dlib", "dlib-bin"),
)
# environment variables that change kernels, threads or float results (docs/reproducibility.md)
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_CBWR",
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
    "CUBLAS_WORKSPACE_CONFIG",
)
VOLATILE = ("recorded_at",)  # keys that differ between any two records and mean nothing
ARTIFACT = C.ENVIRONMENT_JSON
CHANGED_TAG = C.ENVIRONMENT_CHANGED


def _version(names: str | tuple[str, ...]) -> str | None:
    for name in (names,) if isinstance(names, str) else names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def package_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that compute or record results (None: not installed)."""
    return {(p if isinstance(p, str) else p[0]): _version(p) for p in PACKAGES}


def _git(root: Path, *args: str) -> str | None:
    if shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_state() -> dict[str, Any]:
    """Project version, and the git commit + dirty flag when the code runs from a checkout (else None).

    Dirty = a tracked file differs from the commit (untracked files, e.g. ``mer-runs/``, are ignored).
    """
    root = Path(__file__).resolve().parents[2]  # orchestrator/store/environment.py -> the checkout
    commit = _git(root, "rev-parse", "HEAD") if (root / ".git").exists() else None
    dirty = None
    if commit is not None:
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status)
    return {"version": _version("mer-orch"), "git_commit": commit, "git_dirty": dirty}


def cpu_state() -> dict[str, Any]:
    """CPU model, logical core count and the vector instruction set torch dispatches its kernels to."""
    model = platform.processor() or None
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = found.group(1).strip() if found else model
    except OSError:
        pass
    import torch

    return {
        "model": model,
        "logical_cores": os.cpu_count(),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),  # e.g. AVX512: selects the kernels
        "blas": ", ".join(re.findall(r"BLAS_INFO=(\w+)", torch.__config__.show())) or None,
    }


def gpu_state() -> dict[str, Any] | None:
    """GPU model(s), driver and CUDA version when torch sees a GPU; None on a CPU-only machine."""
    import torch

    if not torch.cuda.is_available():
        return None
    driver = None
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            driver = (
                out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
            )
        except (OSError, subprocess.TimeoutExpired):
            driver = None
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "models": names,
        "driver": driver,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def torch_state() -> dict[str, Any]:
    """Thread counts and determinism settings of this process (the driver; each fold run records the
    threads of the worker that trained it as ``mer.threads``). ``train_fold`` itself switches
    deterministic algorithms on around every fold."""
    import torch

    return {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
    }


def collect_environment(dataset: Any = None, *, threads_per_fold: int | None = None,
                        data_hash: str | None = None) -> dict[str, Any]:
    """The whole record (JSON-safe). ``dataset``: the loaded ``LandmarkDataset`` (its content hash, name,
    size); ``threads_per_fold``: torch threads each fold worker is given (``resources.cpu_per_fold``);
    ``data_hash``: the dataset's ``content_hash()`` when the caller has it already (hashed once per sweep)."""
    env: dict[str, Any] = {
        "recorded_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "project": code_state(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "os": platform.platform(),
        "cpu": cpu_state(),
        "gpu": gpu_state(),
        "torch": {**torch_state(), "threads_per_fold": threads_per_fold},
    }
    if dataset is not None:  # a duck-typed dataset without content_hash records None, not a crash
        hasher = getattr(dataset, "content_hash", None)
        if data_hash is None and hasher is not None:
            data_hash = hasher()
        env["dataset"] = {"name": dataset.name, "setup": dataset.setup, "clips": len(dataset),
                          "content_hash": data_hash}
    return env


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every entry (dotted keys) that differs, except :data:`VOLATILE` ones."""
    a, b = _flatten(old), _flatten(new)
    keys = sorted((set(a) | set(b)) - set(VOLATILE))
    return [f"{k}: {a.get(k)} -> {b.get(k)}" for k in keys if a.get(k) != b.get(k)]


def summary_lines(env: dict[str, Any]) -> list[str]:
    """The record as short Markdown lines for the report header (no paths: the record holds none)."""
    p, cpu, t = (v if isinstance(v := env.get(k), dict) else {} for k in ("project", "cpu", "torch"))
    commit = p.get("git_commit")
    code = f"mer-orch {p.get('version')}" + (
        f", commit `{commit[:12]}`" + (" **with local changes (dirty)**" if p.get("git_dirty") else "")
        if commit else ", not run from a git checkout"
    )  # fmt: skip
    packages = env.get("packages") if isinstance(env.get("packages"), dict) else {}
    pk = ", ".join(f"{k} {v}" for k, v in packages.items() if v)
    gpu = env.get("gpu") if isinstance(env.get("gpu"), dict) else None
    gpu_txt = (f"{', '.join(gpu['models'])} (driver {gpu.get('driver')}, CUDA {gpu.get('cuda')})"
               if gpu else "none")  # fmt: skip
    lines = [
        f"code: {code}; recorded {env.get('recorded_at')}",
        f"Python {env.get('python')}; {pk}",
        f"OS: {env.get('os')}; CPU: {cpu.get('model')} ({cpu.get('logical_cores')} logical cores, torch "
        f"kernels {cpu.get('torch_capability')}, BLAS {cpu.get('blas')}); GPU: {gpu_txt}",
        f"torch threads per fold: {t.get('threads_per_fold')} (driver {t.get('threads')}); deterministic "
        "algorithms on during training (train_fold)",
    ]
    if isinstance(env.get("dataset"), dict):
        d = env["dataset"]
        lines.append(
            f"dataset {d['name']} ({d['setup']}, {d['clips']} clips): content hash `{d['content_hash']}`"
        )
    return lines


def _read_record(client: Any, run_id: str) -> dict[str, Any] | None:
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return json.loads(Path(client.download_artifacts(run_id, ARTIFACT, tmp)).read_text())
    except Exception:  # noqa: BLE001 - no record yet (a new sweep) or an unreadable one: write ours
        return None


def record_sweep(client: Any, sweep_run_id: str, env: dict[str, Any]) -> list[str]:
    """Store ``env`` as the sweep run's ``environment.json``; on a resumed sweep keep the first record and
    compare. A differing environment is stored beside it (``environment/resume-<time>.json``), tagged
    ``mer.environment_changed`` (the differing keys) for the report, warned about on stderr, and returned
    as ``key: old -> new`` lines (empty when nothing differs)."""
    old = _read_record(client, sweep_run_id)
    with tempfile.TemporaryDirectory() as tmp:
        if old is None:
            (Path(tmp) / ARTIFACT).write_text(json.dumps(env, indent=2, sort_keys=True))
            client.log_artifact(sweep_run_id, str(Path(tmp) / ARTIFACT))
            return []
        diff = differences(old, env)
        if not diff:
            return []
        name = f"resume-{env['recorded_at'].replace(':', '')}.json"
        (Path(tmp) / name).write_text(json.dumps(env, indent=2, sort_keys=True))
        client.log_artifact(sweep_run_id, str(Path(tmp) / name), "environment")
    keys = ", ".join(d.split(":", 1)[0] for d in diff)
    client.set_tag(sweep_run_id, CHANGED_TAG, keys[:4900])  # MLflow tag values are capped at 5000 chars
    print(
        "warning: this sweep was started in another environment; results of the folds run now may differ "
        "from the earlier ones:\n  " + "\n  ".join(diff),
        file=sys.stderr,
    )
    return diff
