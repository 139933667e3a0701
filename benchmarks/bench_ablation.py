"""The whole ablation on this machine, from a measured part of it: wall time and configs per hour.

    python benchmarks/bench_ablation.py                                   # one arm: 26 folds x 60 epochs
    python benchmarks/bench_ablation.py --arms "GTS-GN+LAM+AAU" "GCN" --json out.json

The whole of ``search_spaces/ablation.yaml`` (33 arms x 26 LOSO folds x 60 epochs) runs for hours on a
2-core CPU. This runs the chosen arms of that very file through the real command (``python -m
orchestrator.cli sweep``: a fresh process, local Ray, actor pool, MLflow logging of every fold), exactly
as the file sets them (dataset, epochs, resources), timed from launch to exit. It also trains one fold of
the first chosen arm in this process (``train_fold``, the file's ``cpu_per_fold`` threads) as the pure
training cost of a fold.

Projection to the whole file: every arm's training FLOPs are counted (``FlopCounterMode``, as in
``bench_batched.py``); the measured sweep's seconds per counted FLOP, after its fixed start-up, scale to
the file's total; one start-up is added back. For a cluster of GPUs the same per-fold orchestration
overhead measured here (sweep seconds per fold beyond the in-process training, times the parallel
workers) is added to a per-GPU training rate, which is measured with ``--device cuda`` on a GPU and
otherwise assumed (stated in the output).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_batched import arm_flops  # noqa: E402


def _one_fold_seconds(spec: Any, ds: Any, plan: Any, threads: int) -> float:
    """One fold of ``plan`` trained in this process, scaled to the mean training-set size of the folds."""
    from mer_model import train_fold

    splits = ds.loso_splits()
    _, tr, te = splits[0]
    mean_train = sum(len(t) for _, t, _ in splits) / len(splits)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t = time.perf_counter()
        train_fold(plan.config, ds.subset(tr), ds.subset(te), spec.protocol.seed, "cpu")
        return (time.perf_counter() - t) * mean_train / len(tr)  # steps scale with the training set
    finally:
        torch.set_num_threads(prev)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", type=Path, default=ROOT / "search_spaces" / "ablation.yaml")
    p.add_argument("--arms", nargs="+", default=["GTS-GN+LAM+AAU"], help="arm names of the file to run")
    p.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the local Ray")
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--gpu-tflops", type=float, default=None,
                   help="sustained fold-batched training rate of one GPU (TFLOP/s); default: 5%% and 23%% "
                   "of a T4's 8.1 TFLOP/s FP32 peak, assumed (bench_batched.py --device cuda measures it)")
    p.add_argument("--fold-overhead-s", type=float, default=0.5,
                   help="orchestration per fold on a GPU cluster (Ray call, MLflow run), assumed; the one "
                   "measured here is printed beside it")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    from orchestrator.spec import expand_grid, load_spec
    from orchestrator.sweep.inputs import load_data

    raw = yaml.safe_load(args.spec.read_text())
    spec = load_spec(args.spec)
    ds = load_data(spec)
    splits = ds.loso_splits()
    per_arm = arm_flops(spec, ds, [(ds.subset(tr), None) for _, tr, _ in splits])
    flops = {plan.arm: f for plan, _, f in per_arm}
    n_folds, n_arms, cpu_per_fold = len(splits), len(per_arm), float(spec.resources.cpu_per_fold)
    names = set(args.arms)
    missing = names - set(flops)
    if missing:
        sys.exit(f"--arms: {sorted(missing)} not in {args.spec} (expected arm names such as "
                 f"{next(iter(flops))!r})")
    # the chosen arms exactly as the file has them (named rows; product rows are expanded by name)
    rows = [a for a in expand_grid(spec) if a.name in names]
    raw["grid"] = [{"name": a.name, "table": a.table, **a.overrides} for a in rows]
    raw["tracking"] = {"experiment": f"bench-ablation-{int(time.time())}"}
    raw.pop("storage", None)

    with tempfile.TemporaryDirectory() as d:
        sub = Path(d) / "part.yaml"
        sub.write_text(yaml.safe_dump(raw, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE",
                                                                "RAY_ADDRESS")}
        load0 = os.getloadavg()[0]
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", str(sub), "--num-cpus",
                              str(args.cpus)], cwd=d, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if res.returncode != 0:
            sys.exit(f"sweep failed (exit {res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        # start-up: the same command on a spec whose folds train for 1 epoch on 2 subjects
        tiny = {**raw, "dataset": {**raw["dataset"], "name": "synthme-tiny", "knobs": {"n_subjects": 2,
                                                                                      "n_clips": 20}},
                "train": {**raw.get("train", {}), "epochs": 1}, "tracking": {"experiment": "startup"}}
        sub2 = Path(d) / "startup.yaml"
        sub2.write_text(yaml.safe_dump(tiny, sort_keys=False))
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", str(sub2), "--num-cpus",
                        str(args.cpus)], cwd=d, env=env, capture_output=True, text=True, check=True)
        startup = time.perf_counter() - t
    load1 = os.getloadavg()[0]

    workers = max(1, int(args.cpus // cpu_per_fold))
    first = next(plan for plan, _, _ in per_arm if plan.arm == rows[0].name)
    fold_s = _one_fold_seconds(spec, ds, first, int(cpu_per_fold))
    n_units = n_folds * len(rows)
    part_flops = sum(flops[a.name] for a in rows)
    per_flop = (wall - startup) / part_flops
    total_s = startup + per_flop * sum(flops.values())
    mean_fold_s = fold_s * part_flops / flops[rows[0].name] / len(rows)  # in-process, scaled by FLOPs
    overhead_per_fold = (wall - startup) * workers / n_units - mean_fold_s
    gpu_rates = ([args.gpu_tflops * 1e12] if args.gpu_tflops else [0.05 * 8.1e12, 0.23 * 8.1e12])
    gpu = []
    for rate in gpu_rates:
        arm_s = [f / rate + args.fold_overhead_s * n_folds for f in flops.values()]
        t_gpu = startup + max(sum(arm_s) / args.gpus, max(arm_s))
        gpu.append({"rate_tflops": rate / 1e12, "total_s": t_gpu, "configs_per_hour": 3600 * n_arms / t_gpu})
    fig: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "spec": str(args.spec), "arms_run": [a.name for a in rows], "n_folds": n_folds, "n_arms": n_arms,
        "cpus": args.cpus, "workers": workers, "load_avg": [load0, load1],
        "sweep_wall_s": wall, "startup_s": startup, "one_fold_in_process_s": fold_s,
        "orchestration_s_per_fold": overhead_per_fold, "gpu_fold_overhead_s_assumed": args.fold_overhead_s,
        "flops_run": part_flops,
        "flops_total": sum(flops.values()), "projected_total_s": total_s,
        "configs_per_hour": 3600 * n_arms / total_s, "gpu": gpu, "gpus": args.gpus,
    }
    if args.json:
        args.json.write_text(json.dumps(fig, indent=1))
    h = 3600
    print(f"Machine: {fig['machine']}; load average {load0:.1f} -> {load1:.1f}\n")
    print(f"Measured: `mer-orch sweep` of {len(rows)} arm(s) of {args.spec.name} "
          f"({', '.join(fig['arms_run'])}), {n_units} folds as the file sets them, "
          f"{workers} workers x {cpu_per_fold:g} CPU: "
          f"**{wall:.0f} s** wall ({startup:.0f} s of it fixed start-up, measured on a 1-epoch sweep).")
    print(f"One fold of {rows[0].name} in-process (`train_fold`, {int(cpu_per_fold)} thread, scaled to the "
          f"mean training-set size): {fold_s:.1f} s; orchestration beyond training: "
          f"{overhead_per_fold:.2f} s per fold.\n")
    print("| where | whole file: total wall | configs / hour |")
    print("|---|---|---|")
    print(f"| this machine, projected from the measured arm(s) by counted FLOPs "
          f"({sum(flops.values()) / 1e12:.0f} TFLOP, {n_arms} arms x {n_folds} folds) | "
          f"{total_s / h:.1f} h | {fig['configs_per_hour']:.2f} |")
    for g in gpu:
        label = "measured rate" if args.gpu_tflops else "assumed rate"
        print(f"| {args.gpus} GPUs, one fold-batched group per GPU, {g['rate_tflops']:.2f} TFLOP/s per GPU "
              f"({label}) + {args.fold_overhead_s:.2f} s orchestration per fold (assumed) + start-up | "
              f"{g['total_s'] / 60:.1f} min | {g['configs_per_hour']:.0f} |")


if __name__ == "__main__":
    main()
