"""Fold-batched training (``train_folds_batched``) against sequential ``train_fold``, the hardware and the
paper's ablation: one command, Markdown on stdout (and JSON with ``--json``).

    python benchmarks/bench_batched.py                      # 2-core CPU: all 26 folds, 2 epochs each
    python benchmarks/bench_batched.py --device cuda        # on a GPU (the 15x target check)
    python benchmarks/bench_batched.py --epochs 60 --repeats 2

Sections:
1. speed: the same 26 LOSO folds of ``synthme-casme2`` (same config, seeds, epochs) trained one after
   another by ``train_fold`` and together by ``train_folds_batched``, in this process; ratio of wall and
   of process CPU time (CPU time is less sensitive to other processes sharing the cores); the two paths'
   predictions are compared too. Then ``torch.profiler`` over one epoch of each path splits the time per
   fold into matrix products and the rest, which bounds what fold-batching can gain on this device.
2. FLOPs: training FLOPs per fold counted by ``torch.utils.flop_counter.FlopCounterMode`` over one
   forward + backward step (matmuls and convolutions; element-wise ops are not counted), per sample x
   training samples x epochs; achieved FLOP/s of both paths against a large ``torch.mm`` measured here.
3. peak memory per fold (``train_fold``) and per packed group (``train_folds_batched`` of all folds): CPU,
   in a fresh subprocess, after imports and data loading: the kernel's peak-RSS mark is reset
   (``/proc/self/clear_refs``), then peak RSS (VmHWM) after training minus RSS before it (falls back to
   ``ru_maxrss`` where /proc is not writable); CUDA, ``torch.cuda.max_memory_allocated``.
4. projection of ``search_spaces/ablation.yaml`` on synthme-casme2: per arm, counted FLOPs / the FLOP rate
   the fold-batched run reached in section 1 (whole run, overheads included), summed; and for 8 GPUs
   from the GPU's FP32 peak at an assumed fraction (stated in the output; measured when run with
   ``--device cuda``) plus a per-fold orchestration overhead.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mer_model import build_model, train_fold
from mer_model.batched import train_folds_batched
from mer_model.config import validate_config
from mer_model.losses import total_loss

ROOT = Path(__file__).resolve().parents[1]
ARM = dict(model="gts_gn", features="B", fusion_layer=1, lam=True, au_loss="aau")  # the paper's full model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_folds(dataset: str, n_folds: int | None) -> tuple[Any, list[tuple[Any, Any]]]:
    from mer_model.data import load_dataset

    ds = load_dataset(dataset, setup="objective", seed=0)
    splits = ds.loso_splits()[: n_folds or None]
    return ds, [(ds.subset(tr), ds.subset(te)) for _, tr, te in splits]


def matmul_flops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """This machine's FP32 ``torch.mm`` rate (FLOP/s), best of ``repeats`` on n x n matrices."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def flops_per_sample(cfg: dict[str, Any], batch: int = 32) -> float:
    """Training FLOPs of one sample: one forward + backward step of a ``batch``, counted, / batch."""
    model = build_model(cfg).train()
    g = torch.Generator().manual_seed(0)
    x = 100 + 10 * torch.randn(batch, 3, 68, 2, generator=g)
    y = torch.randint(0, cfg["num_classes"], (batch,), generator=g)
    a = (torch.rand(batch, cfg["num_aus"], generator=g) < 0.3).float()
    counter = FlopCounterMode(display=False)
    with counter:
        logits, au = model(x, return_aux=True)
        total_loss(logits, y, au, a, getattr(model, "aau_w", None), cfg["beta"]).backward()
    return counter.get_total_flops() / batch


def timed(fn, device: torch.device) -> tuple[Any, float, float]:
    _sync(device)
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t, time.process_time() - c


def speed(cfg: dict[str, Any], folds: list, device: torch.device, repeats: int) -> dict[str, Any]:
    """Sequential train_fold over every fold vs train_folds_batched of all of them; alternated repeats."""
    seeds = list(range(len(folds)))
    seq_w, seq_c, bat_w, bat_c = [], [], [], []
    seq = bat = None
    for _ in range(repeats):
        seq, w, c = timed(
            lambda: [train_fold(cfg, tr, te, s, device) for (tr, te), s in zip(folds, seeds, strict=True)],
            device,
        )
        seq_w.append(w), seq_c.append(c)
        bat, w, c = timed(lambda: train_folds_batched(cfg, folds, seeds, device), device)
        bat_w.append(w), bat_c.append(c)
    assert seq is not None and bat is not None
    probs_diff = max(float(np.abs(a.probs - b.probs).max()) for a, b in zip(seq, bat, strict=True))
    agree = float(np.mean([np.mean(a.y_pred == b.y_pred) for a, b in zip(seq, bat, strict=True)]))
    return {
        "seq_wall_s": min(seq_w),
        "seq_cpu_s": min(seq_c),
        "bat_wall_s": min(bat_w),
        "bat_cpu_s": min(bat_c),
        "all_seq_wall_s": seq_w,
        "all_bat_wall_s": bat_w,
        "ratio_wall": min(seq_w) / min(bat_w),
        "ratio_cpu": min(seq_c) / min(bat_c),
        "max_probs_diff": probs_diff,
        "pred_agreement": agree,
    }


GEMM_OPS = frozenset(
    {"aten::mm", "aten::bmm", "aten::addmm", "aten::mkldnn_convolution", "aten::convolution_backward"}
)


def gemm_ceiling(cfg: dict[str, Any], folds: list, device: torch.device) -> dict[str, Any]:
    """Where the time of one epoch goes, per fold: matrix products vs everything else, in both paths.

    ``torch.profiler`` over one epoch of ``train_fold`` (fold 0) and of ``train_folds_batched`` (all
    folds); an op's self time is its duration on the calling thread, so the sums are wall-clock shares.
    ``ceiling`` = sequential time per fold / the batched path's matrix-product time per fold: the speed-up
    fold-batching would reach if every element-wise op, BatchNorm, copy and Python line were free and the
    batched GEMMs ran at the rate measured here for this model's shapes.
    """
    from torch.profiler import ProfilerActivity, profile

    one = {**cfg, "epochs": 1}
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    out: dict[str, Any] = {}
    for name, run, k in (
        ("seq", lambda: train_fold(one, *folds[0], 0, device), 1),
        ("bat", lambda: train_folds_batched(one, folds, list(range(len(folds))), device), len(folds)),
    ):
        run()  # warm-up: first-call allocations and oneDNN primitive creation
        with profile(activities=acts) as prof:
            run()
        ev = prof.key_averages()
        if device.type == "cuda":
            total = sum(e.self_device_time_total for e in ev)
            gemm = sum(e.self_device_time_total for e in ev if e.key in GEMM_OPS or "gemm" in e.key.lower())
        else:
            total = sum(e.self_cpu_time_total for e in ev)
            gemm = sum(e.self_cpu_time_total for e in ev if e.key in GEMM_OPS)
        out[f"{name}_total_ms_per_fold"] = total / 1e3 / k
        out[f"{name}_gemm_ms_per_fold"] = gemm / 1e3 / k
    out["ceiling"] = out["seq_total_ms_per_fold"] / out["bat_gemm_ms_per_fold"]
    return out


def memory_child(args: argparse.Namespace) -> None:
    """Fresh process: peak RSS (or CUDA peak) of one fold (seq) or one packed group (batched)."""
    device = torch.device(args.device)
    _, folds = load_folds(args.dataset, args.folds)
    cfg = {**ARM, "epochs": 1}
    # The data loading's own peak would mask training's in ru_maxrss (a high-water mark): reset the
    # kernel's high-water mark (VmHWM) first, and take the current RSS as the baseline.
    reset = _reset_peak_rss()
    before = _proc_status_kib("VmRSS") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if args.memory_child == "seq":
        train_fold(cfg, *folds[0], 0, device)
    else:
        train_folds_batched(cfg, folds, 0, device)
    _sync(device)
    after = _proc_status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cuda = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    print(json.dumps({"rss_before_kib": before, "rss_peak_kib": after, "cuda_peak_bytes": cuda}))


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to /proc/self/clear_refs resets the peak RSS (VmHWM) to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for mode in ("seq", "batched"):
        cmd = [
            sys.executable,
            __file__,
            "--memory-child",
            mode,
            "--device",
            args.device,
            "--dataset",
            args.dataset,
            "--threads",
            str(args.threads),
        ]
        if args.folds:
            cmd += ["--folds", str(args.folds)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


FLOP_KEYS = ("model", "features", "points", "lam", "fusion_layer", "au_loss")  # what sets a model's FLOPs


def arm_flops(spec: Any, ds: Any, folds: list) -> list[tuple[Any, int, float]]:
    """Every grid arm of ``spec``: (plan, epochs, counted training FLOPs over all ``folds``, augment views
    included). Arms that build the same model share one count."""
    from orchestrator.spec.plan import grid_configs

    n_train = sum(len(tr.labels) * (1 + (0 if tr.augment is None else tr.augment.shape[1]))
                  for tr, _ in folds)
    sizes = {"num_classes": len(ds.class_names), "num_aus": ds.aus.shape[1]}
    cache: dict[str, float] = {}
    out = []
    for plan in grid_configs(spec):
        cfg = validate_config({**plan.config, **sizes})
        key = json.dumps({k: cfg[k] for k in FLOP_KEYS})
        if key not in cache:
            cache[key] = flops_per_sample(cfg)
        out.append((plan, cfg["epochs"], cache[key] * n_train * cfg["epochs"]))
    return out


def project_ablation(
    spec_path: Path,
    ds: Any,
    folds: list,
    rate_bat: float,
    rate_seq: float,
    gpu_rates: dict[str, float],
    fold_overhead_s: float,
    gpus: int,
) -> dict[str, Any]:
    """Per-arm counted FLOPs -> projected time here (batched, sequential) and on ``gpus`` GPUs, for each
    sustained per-GPU FLOP rate of ``gpu_rates`` (label -> FLOP/s)."""
    from orchestrator.spec import load_spec

    rows = [
        {"arm": plan.arm, "table": plan.table, "epochs": epochs, "gflop": flops / 1e9,
         "bat_s": flops / rate_bat, "seq_s": flops / rate_seq}
        for plan, epochs, flops in arm_flops(load_spec(spec_path), ds, folds)
    ]
    n_units = len(rows) * len(folds)
    bat_total = sum(r["bat_s"] for r in rows)
    seq_total = sum(r["seq_s"] for r in rows)
    # GPUs: one packed group (all folds of an arm) per GPU at a time, arms spread over the GPUs
    gpu = {}
    for label, rate in gpu_rates.items():
        arm_s = [r["gflop"] * 1e9 / rate + fold_overhead_s * len(folds) for r in rows]
        total = max(sum(arm_s) / gpus, max(arm_s))
        gpu[label] = {"rate": rate, "total_s": total, "configs_per_hour": 3600 * len(rows) / total}
    return {
        "arms": rows,
        "n_arms": len(rows),
        "n_units": n_units,
        "flops_total": sum(r["gflop"] for r in rows),
        "bat_total_s": bat_total,
        "seq_total_s": seq_total,
        "gpu": gpu,
        "configs_per_hour_bat": 3600 * len(rows) / bat_total,
        "configs_per_hour_seq": 3600 * len(rows) / seq_total,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dataset", default="synthme-casme2")
    p.add_argument("--folds", type=int, default=None, help="first N LOSO folds (default: all)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of every fold in section 1 (both paths)")
    p.add_argument("--repeats", type=int, default=1, help="alternated seq/batched repeats; best is kept")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (both paths)")
    p.add_argument("--spec", default=str(ROOT / "search_spaces" / "ablation.yaml"))
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--gpu-peak-tflops", type=float, default=8.1, help="FP32 peak of one GPU (T4: 8.1)")
    p.add_argument(
        "--gpu-fraction",
        type=float,
        default=None,
        help="fraction of the GPU peak fold-batched training reaches (default: the fraction of "
        "this device's measured matmul rate it reached in section 1)",
    )
    p.add_argument(
        "--fold-overhead-s",
        type=float,
        default=0.5,
        help="orchestration cost per fold on the cluster (Ray task, MLflow child run)",
    )
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    p.add_argument("--memory-child", choices=("seq", "batched"), help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args)
        return

    device = torch.device(args.device)
    ds, folds = load_folds(args.dataset, args.folds)
    cfg = validate_config(
        {**ARM, "epochs": args.epochs, "num_classes": len(ds.class_names), "num_aus": ds.aus.shape[1]}
    )
    peak = matmul_flops(device)
    fps = flops_per_sample(cfg)
    n_train = sum(len(tr.labels) for tr, _ in folds)
    work = fps * n_train * args.epochs
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = _load()
    sp = speed(cfg, folds, device, args.repeats)
    ceiling = gemm_ceiling(cfg, folds, device)
    rate_bat = work / sp["bat_wall_s"]  # everything included: build, stack, train, evaluate
    rate_seq = work / sp["seq_wall_s"]
    mem = memory(args)
    if device.type == "cuda" and args.gpu_fraction is None:
        gpu_rates = {"measured on this GPU in section 1": rate_bat}
    else:
        # No GPU here: the sustained rate is an assumption, shown for several fractions of the FP32 peak
        fractions = [args.gpu_fraction] if args.gpu_fraction is not None else [0.05, 0.15, rate_bat / peak]
        gpu_rates = {
            f"{fr:.0%} of {args.gpu_peak_tflops} TFLOP/s (assumed)": args.gpu_peak_tflops * 1e12 * fr
            for fr in fractions
        }
    proj = project_ablation(
        Path(args.spec), ds, folds, rate_bat, rate_seq, gpu_rates, args.fold_overhead_s, args.gpus
    )
    fig = {
        "started": started,
        "load_avg_start": load0,
        "load_avg_end": _load(),
        "device": str(device),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "folds": len(folds),
        "epochs": args.epochs,
        "n_train_total": n_train,
        "flops_per_sample": fps,
        "flops_per_fold_60ep": fps * n_train / len(folds) * 60,
        "work_flops": work,
        "matmul_flops": peak,
        "speed": sp,
        "gemm_ceiling": ceiling,
        "rate_bat": rate_bat,
        "rate_seq": rate_seq,
        "memory": mem,
        "projection": proj,
        "args": vars(args),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))
    print(report(fig))


def _load() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def report(f: dict[str, Any]) -> str:
    sp, mem, pr, peak = f["speed"], f["memory"], f["projection"], f["matmul_flops"]
    ce = f["gemm_ceiling"]
    rs, rb = f["rate_seq"], f["rate_bat"]
    gib, mib = 1024**3, 1024
    lines = [
        f"Run {f['started']} on {f['device']} ({f['machine']}); 1-min load average "
        f"{f['load_avg_start']:.1f} at start, {f['load_avg_end']:.1f} at end.",
        "",
        f"### 1. Speed: {f['folds']} LOSO folds x {f['epochs']} epochs, gts_gn + LAM + AAU, batch 32, Adam",
        "",
        "| path | wall s | CPU s | achieved GFLOP/s (wall) | of matmul rate |",
        "|---|---|---|---|---|",
        f"| sequential `train_fold` | {sp['seq_wall_s']:.1f} | {sp['seq_cpu_s']:.1f} | {rs / 1e9:.1f} "
        f"| {rs / peak:.0%} |",
        f"| `train_folds_batched` (one group) | {sp['bat_wall_s']:.1f} | {sp['bat_cpu_s']:.1f} | "
        f"{rb / 1e9:.1f} | {rb / peak:.0%} |",
        "",
        f"**Ratio sequential / batched: {sp['ratio_wall']:.2f}x wall, {sp['ratio_cpu']:.2f}x CPU time.** "
        f"Measured matmul rate (2048 x 2048 `torch.mm`, same threads): {peak / 1e9:.1f} GFLOP/s. "
        f"Predictions of the two paths: max |probs diff| {sp['max_probs_diff']:.2e}, "
        f"y_pred agreement {sp['pred_agreement']:.1%}.",
        "",
        "#### Where one epoch's time goes (`torch.profiler`, per fold, after a warm-up epoch)",
        "",
        "| path | profiled ms per fold | of it matrix products (mm/bmm/conv) |",
        "|---|---|---|",
        f"| sequential `train_fold` | {ce['seq_total_ms_per_fold']:.0f} | {ce['seq_gemm_ms_per_fold']:.0f} "
        f"({ce['seq_gemm_ms_per_fold'] / ce['seq_total_ms_per_fold']:.0%}) |",
        f"| `train_folds_batched` | {ce['bat_total_ms_per_fold']:.0f} | {ce['bat_gemm_ms_per_fold']:.0f} "
        f"({ce['bat_gemm_ms_per_fold'] / ce['bat_total_ms_per_fold']:.0%}) |",
        "",
        f"**Ceiling of fold-batching here: {ce['ceiling']:.2f}x** (sequential time per fold / the batched "
        "path's matrix-product time per fold: the speed-up if everything but the GEMMs were free).",
        "",
        "### 2. FLOPs",
        "",
        f"Counted training FLOPs (forward + backward, matmul/conv): {f['flops_per_sample'] / 1e6:.1f} MFLOP "
        f"per sample-step; {f['flops_per_fold_60ep'] / 1e9:.0f} GFLOP per fold at 60 epochs "
        f"({f['n_train_total'] / f['folds']:.0f} training clips per fold on average); this run's work: "
        f"{f['work_flops'] / 1e9:.0f} GFLOP.",
        "",
        "### 3. Peak memory (fresh subprocess, 1 epoch)",
        "",
        "| what | RSS before training MiB | peak RSS MiB | delta MiB | CUDA peak GiB |",
        "|---|---|---|---|---|",
    ]
    for name, key in (("one fold (`train_fold`)", "seq"), (f"packed group of {f['folds']} folds", "batched")):
        m = mem[key]
        cuda = "-" if m["cuda_peak_bytes"] is None else f"{m['cuda_peak_bytes'] / gib:.2f}"
        lines.append(
            f"| {name} | {m['rss_before_kib'] / mib:.0f} | {m['rss_peak_kib'] / mib:.0f} | "
            f"{(m['rss_peak_kib'] - m['rss_before_kib']) / mib:.0f} | {cuda} |"
        )
    lines += [
        "",
        f"### 4. Projection: `{Path(f['args']['spec']).name}`, {pr['n_arms']} arms x {f['folds']} folds "
        f"= {pr['n_units']} fold trainings, {pr['flops_total'] / 1e3:.1f} TFLOP",
        "",
        "| where | total wall | configs / hour |",
        "|---|---|---|",
        f"| this machine, sequential `train_fold` | {pr['seq_total_s'] / 3600:.1f} h | "
        f"{pr['configs_per_hour_seq']:.2f} |",
        f"| this machine, fold-batched (one group per arm) | {pr['bat_total_s'] / 3600:.1f} h | "
        f"{pr['configs_per_hour_bat']:.2f} |",
    ]
    for label, g in pr["gpu"].items():
        lines.append(
            f"| {f['args']['gpus']} GPUs, fold-batched, one group per GPU, {label} | "
            f"{g['total_s'] / 60:.1f} min | {g['configs_per_hour']:.0f} |"
        )
    lines += [
        "",
        f"Assumptions: every arm runs at the FLOP rate measured in section 1 for the full model (batched "
        f"{rb / 1e9:.1f}, sequential {rs / 1e9:.1f} GFLOP/s; whole-run rates, model build, stacking and "
        f"evaluation included); FLOPs counted per arm. GPUs: the sustained per-GPU rate in each row (the "
        f"fraction {rb / peak:.0%} is what fold-batched training reached of this device's matmul rate), "
        f"{f['args']['fold_overhead_s']} s orchestration per fold (Ray task, MLflow child run), arms "
        "spread evenly over the GPUs, data already on every node.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
