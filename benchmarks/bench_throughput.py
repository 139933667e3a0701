"""Training throughput of one LOSO fold against this CPU's GEMM rate, before and after issue 17's changes.

    python benchmarks/bench_throughput.py                      # 1 thread, fold 0 x 5 epochs, ABAB x 2
    python benchmarks/bench_throughput.py --exact-folds 26     # + predictions of all 26 folds, both trees
    python benchmarks/bench_throughput.py --quick              # a 2-minute smoke run

Every figure is a ratio inside this one command. Each variant runs in its own fresh subprocess, and the
variants alternate (A B C D A B C D ...), so that a shared box's load hits all of them alike; each
subprocess keeps the best of 3 timed runs:

- ``before``: the model and trainer at ``--baseline-ref`` (default: the commit before issue 17), extracted
  with ``git archive`` into a temporary directory and put first on that subprocess's ``PYTHONPATH``;
- ``+nofill``, ``after``: this tree with the issue's changes switched on one after another (no NaN-fill
  of new tensors under deterministic mode; then the fused optimiser), by putting torch's per-parameter
  optimiser back with a patch in the ``+nofill`` subprocess; ``after, bf16``: this tree with
  ``precision: bf16``. What each change bought is the ratio of neighbouring rungs. (A third change,
  the SS modules computed on rows of channels with every convolution as one GEMM, was exact but 0.9-1.0x
  in CPU time here and was dropped: BENCHMARKS.md.)

In each subprocess: ``train_fold`` of fold 0 of synthme-casme2 (the paper's full model: GTS-GN, fusion 1,
LAM, AAU) with ``--threads`` intra-op threads, timed in process CPU seconds (with one thread, what the run
takes on an idle core; wall seconds are printed beside), then the **GEMM rate on the model's own GEMM
shapes in the same process**: every GEMM shape that one training step computes, each convolution as
its im2col GEMM (recorded once by a dispatch mode), run bare with random operands, FLOPs / CPU seconds.
Achieved rate = counted training FLOPs (``FlopCounterMode``, 45 MFLOP per sample-step) / CPU seconds.
One epoch under ``torch.profiler`` gives the per-op profile, grouped into categories.

Exactness (``--exact-folds N``): ``before`` and ``after`` train folds 0..N-1 with the same seeds in float32;
the agreement of their predictions (the fraction of equal ``y_pred``, the largest ``probs`` difference) is
the float32 rounding of a different summation order amplified by training. The float64 proof (to 1e-9)
is ``tests/test_model_fastpath.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASELINE_REF = "4164888"  # main before issue 17
VARIANTS = ("before", "+nofill", "after", "after, bf16")
ARM = dict(model="gts_gn", features="B", fusion_layer=1, lam=True, au_loss="aau")  # the paper's full model
CATEGORIES = {  # profiler op -> category (first match of a prefix)
    "gemm": ("aten::mm", "aten::addmm", "aten::bmm", "aten::mkldnn_convolution",
             "aten::convolution_backward"),
    "batchnorm": ("aten::native_batch_norm",),
    "optimizer": ("Optimizer.", "aten::_fused_", "aten::lerp_", "aten::addcmul_", "aten::addcdiv_",
                  "aten::sqrt", "aten::_foreach"),
    "fill (NaN guard)": ("aten::fill_",),
    "copy / layout": ("aten::copy_", "aten::cat", "aten::constant_pad_nd", "aten::_to_copy", "aten::clone"),
    "relu": ("aten::threshold_backward", "aten::clamp_min", "aten::relu"),
}


def baseline_tree(ref: str, dest: Path) -> Path:
    """``mer_model`` at ``ref`` (git archive) under ``dest``; returns ``dest`` (a PYTHONPATH entry)."""
    git = ["git", "archive", ref, "mer_model"]
    blob = subprocess.run(git, cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _run_worker(variant: str, args: argparse.Namespace, base: Path, shapes: Path, mode: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(base)] * (variant == "before") + [str(ROOT), str(ROOT / "benchmarks")]))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant, "--mode", mode,
           "--shapes", str(shapes), "--threads", str(args.threads), "--epochs", str(args.epochs),
           "--exact-folds", str(args.exact_folds), "--device", args.device]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"worker {variant} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def driver(args: argparse.Namespace) -> dict[str, Any]:
    """ABAB... rounds of every variant, then the exactness pass; returns the figures."""
    import torch
    from bench_batched import flops_per_sample
    from gemm_shapes import record_gemm_shapes

    from mer_model.config import validate_config

    cfg = validate_config({**ARM, "num_classes": 6, "num_aus": 12})
    out: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
                   f"{torch.__version__}", "threads": args.threads, "epochs": args.epochs,
        "baseline_ref": args.baseline_ref, "flops_per_sample_step": flops_per_sample(cfg), "rounds": [],
    }
    with tempfile.TemporaryDirectory() as d:
        shapes = Path(d) / "shapes.json"
        shapes.write_text(json.dumps(record_gemm_shapes(cfg)))
        base = baseline_tree(args.baseline_ref, Path(d) / "base")
        for _ in range(args.repeats):
            for v in VARIANTS:
                r = _run_worker(v, args, base, shapes, "speed")
                r["load1"] = os.getloadavg()[0]
                out["rounds"].append({"variant": v, **r})
        if args.exact_folds:
            out["exact"] = {v: _run_worker(v, args, base, shapes, "exact") for v in ("before", "after")}
    return out


def _apply_variant(variant: str) -> None:
    """``+nofill``: put torch's default (per-parameter loop) optimiser back, as before issue 17."""
    if variant != "+nofill":
        return
    import torch

    import mer_model.train as train_mod

    def unfused(cfg: dict, params: Any) -> torch.optim.Optimizer:
        kw = dict(lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg["optimizer"]](params, **kw)

    train_mod._optimizer = unfused


def worker(args: argparse.Namespace) -> None:
    """One variant in this fresh process: speed + profile + GEMM rate, or predictions of N folds."""
    import torch
    from bench_batched import load_folds
    from gemm_shapes import gemm_rate

    from mer_model import train_fold

    torch.set_num_threads(args.threads)
    _apply_variant(args.worker)
    arm = {**ARM, "precision": "bf16"} if args.worker.endswith("bf16") else ARM
    dev = torch.device(args.device)
    if args.mode == "exact":
        _, folds = load_folds("synthme-casme2", args.exact_folds)
        cfg = {**ARM, "epochs": args.epochs}
        res = [train_fold(cfg, tr, te, k, dev) for k, (tr, te) in enumerate(folds)]
        print(json.dumps({"y_pred": [r.y_pred.tolist() for r in res],
                          "probs": [r.probs.tolist() for r in res]}))
        return
    _, folds = load_folds("synthme-casme2", 1)
    tr, te = folds[0]
    train_fold({**arm, "epochs": 1}, tr, te, 0, dev)  # warm-up: oneDNN primitives, allocator
    shapes = json.loads(Path(args.shapes).read_text())
    g0 = gemm_rate(shapes, dev)
    runs = []
    for _ in range(3):  # best of 3: the run least disturbed by other processes on a shared box
        w, c = time.perf_counter(), time.process_time()
        r = train_fold({**arm, "epochs": args.epochs}, tr, te, 0, dev)
        runs.append((time.process_time() - c, time.perf_counter() - w))
    cpu, wall = min(runs)
    g1 = gemm_rate(shapes, dev)
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "gemm_flops_per_s": (g0 + g1) / 2,
                      "n_train": len(tr.labels), "steps": args.epochs * -(-len(tr.labels) // 32),
                      "profile_ms_per_step": _profile(arm, tr, te, dev), "probs0": r.probs[0].tolist()}))


def _profile(arm: dict, tr: Any, te: Any, dev: Any) -> dict[str, float]:
    """Self CPU ms per optimiser step of one epoch of ``train_fold``, by category (``CATEGORIES``)."""
    from torch.profiler import ProfilerActivity, profile

    from mer_model import train_fold

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_fold({**arm, "epochs": 1}, tr, te, 0, dev)
    steps = -(-len(tr.labels) // 32)
    cats: dict[str, float] = {k: 0.0 for k in (*CATEGORIES, "other")}
    for e in prof.key_averages():
        cat = next((k for k, pre in CATEGORIES.items() if e.key.startswith(pre)), "other")
        if e.key.startswith(("Optimizer.", "autograd::", "ProfilerStep")):
            continue  # wrappers: their children are counted already
        cats[cat] += e.self_cpu_time_total / 1e3 / steps
    cats["total"] = sum(cats.values())
    return cats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2, help="ABAB rounds of every variant")
    p.add_argument("--exact-folds", type=int, default=0, help="folds whose predictions both trees compare")
    p.add_argument("--baseline-ref", default=BASELINE_REF)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="2 epochs, 1 round, 3 exact folds")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--mode", default="speed", help=argparse.SUPPRESS)
    p.add_argument("--shapes", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if args.quick:
        args.epochs, args.repeats, args.exact_folds = 2, 1, args.exact_folds or 3
    from throughput_report import report

    fig = driver(args)
    if args.json:
        args.json.write_text(json.dumps(fig, indent=1))
    print(report(fig))


if __name__ == "__main__":
    main()
