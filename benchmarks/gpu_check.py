"""Every GPU figure of the project in one run (under 8 minutes on one GPU): ``benchmarks/gpu_check.sh``.

    python benchmarks/gpu_check.py --device cuda --json benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --device cpu --quick     # the dry path, to test the script without a GPU

Sections (each timed; the table and the JSON say which ran and which were skipped, and why):

1. ``env``: torch, device name, bf16 support, which optional packages import (the device image has torch,
   numpy, scipy, scikit-learn, pyyaml; Ray, MLflow, Optuna, pydantic must be carried as wheels);
2. ``peak``: the device's own fp32 (TF32 off) and bf16 ``torch.mm`` rate on large squares;
3. ``packing``: 26 LOSO folds of synthme-casme2 trained one after another (``train_fold``) and packed in
   one group (``train_folds_batched``), alternated (``bench_batched.speed``): the ratio is the 15x target
   of packing; predictions compared; achieved FLOP rate of both (counted FLOPs / wall) against ``peak``;
4. ``memory``: peak GPU memory of one fold and of the packed group (``bench_batched.memory``, fresh
   processes, ``torch.cuda.max_memory_allocated``);
5. ``bf16``: one fold fp32 vs ``precision: bf16``, alternated, wall ratio;
6. ``sweep``: ``mer-orch sweep`` of smoke.yaml (2 epochs) with ``gpu_per_fold: 0.25``, when Ray / MLflow /
   Optuna / pydantic import; every fold must finish, and ``nvidia-smi`` is sampled during the run for
   the worker processes holding GPU memory (a fold run records no device tag yet).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_batched import ARM, flops_per_sample, load_folds, memory, speed  # noqa: E402
from gpu_sweep import smoke_sweep  # noqa: E402

from mer_model import train_fold  # noqa: E402
from mer_model.config import validate_config  # noqa: E402

OPTIONAL = ("ray", "mlflow", "optuna", "pydantic", "click")


def env(device: torch.device) -> dict[str, Any]:
    out: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                           "packages": {m: importlib.util.find_spec(m) is not None for m in OPTIONAL}}
    if device.type == "cuda":
        out.update(name=torch.cuda.get_device_name(device), bf16=torch.cuda.is_bf16_supported(),
                   memory_gib=torch.cuda.get_device_properties(device).total_memory / 2**30)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak(device: torch.device, n: int, repeats: int = 10) -> dict[str, float]:
    """fp32 (TF32 off: the model trains in true fp32) and bf16 mm FLOP/s, mean of ``repeats`` after 3."""
    torch.backends.cuda.matmul.allow_tf32 = False
    out = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, device=device, dtype=dt), torch.randn(n, n, device=device, dtype=dt)
        for _ in range(3):
            a @ b
        _sync(device)
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
        out[f"{name}_flops"] = 2 * n**3 * repeats / (time.perf_counter() - t)
    return out


def packing(device: torch.device, n_folds: int, epochs: int, repeats: int) -> dict[str, Any]:
    ds, folds = load_folds("synthme-casme2", n_folds)
    cfg = {**ARM, "epochs": epochs}
    fig = speed(cfg, folds, device, repeats)
    per_sample = flops_per_sample(validate_config({**ARM, "num_classes": len(ds.class_names),
                                                   "num_aus": ds.aus.shape[1]}))
    total = per_sample * epochs * sum(len(tr.labels) for tr, _ in folds)
    fig.update(n_folds=len(folds), epochs=epochs, flops=total, seq_flops_per_s=total / fig["seq_wall_s"],
               bat_flops_per_s=total / fig["bat_wall_s"])
    return fig


def bf16_ratio(device: torch.device, epochs: int, repeats: int) -> dict[str, Any]:
    _, folds = load_folds("synthme-casme2", 1)
    tr, te = folds[0]
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for prec in times:  # warm-up
        train_fold({**ARM, "epochs": 1, "precision": prec}, tr, te, 0, device)
    for _ in range(repeats):
        for prec in times:
            _sync(device)
            t = time.perf_counter()
            train_fold({**ARM, "epochs": epochs, "precision": prec}, tr, te, 0, device)
            _sync(device)
            times[prec].append(time.perf_counter() - t)
    return {**{f"{k}_s": min(v) for k, v in times.items()}, "ratio": min(times["fp32"]) / min(times["bf16"])}


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    q = args.quick
    steps = [
        ("env", lambda: env(device)),
        ("peak", lambda: peak(device, 512 if q else 8192)),
        ("packing", lambda: packing(device, 3 if q else 26, 1 if q else args.epochs, 1 if q else 2)),
        ("memory", lambda: memory(argparse.Namespace(device=args.device, dataset="synthme-casme2",
                                                     threads=1, folds=3 if q else None))),
        ("bf16", lambda: bf16_ratio(device, 1 if q else args.epochs, 1 if q else 3)),
        ("sweep", lambda: smoke_sweep(device, epochs=1 if q else 2, quick=q)),
    ]
    out: dict[str, Any] = {"device": args.device, "quick": q, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for name, fn in steps:
        t = time.perf_counter()
        try:
            out[name] = fn()
        except Exception as e:  # noqa: BLE001 - one failing section must not lose the others' figures
            out[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
        out[name]["section_s"] = time.perf_counter() - t
        print(f"[gpu_check] {name}: {out[name]['section_s']:.1f} s", file=sys.stderr, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--epochs", type=int, default=5, help="epochs per fold in the packing and bf16 sections")
    p.add_argument("--quick", action="store_true", help="tiny sizes: the dry path on a CPU")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("MER_THREADS", "1")))
    fig = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(fig, indent=1, default=str))
    from gpu_report import table

    print(table(fig))


if __name__ == "__main__":
    main()
