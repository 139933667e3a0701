"""What the paper's augmentation costs: CPU time of one LOSO fold with K crop-size views vs none.

    python benchmarks/bench_augment.py                 # K = 3 (search_spaces' n_augment), 3 epochs, ABAB x 2
    python benchmarks/bench_augment.py --views 1 3 --epochs 5

Both arms train the same fold (synthme-casme2, magnification 3, GTS-GN+LAM+AAU, one thread) for the same
epochs; only the training set differs (each clip plus K re-detected views). Timed in CPU seconds of this
process (``time.process_time``), alternating the arms (A B A B ...) so drift on a shared machine hits both:
the figure is the ratio, not the seconds. Writes benchmarks/results/augment_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch


def _fold_seconds(n_augment: int, epochs: int) -> float:
    from mer_model.data import load_dataset
    from mer_model.train import train_fold

    knobs = {"n_augment": n_augment} if n_augment else {}
    ds = load_dataset("synthme-casme2", setup="objective", seed=0, magnification=3.0, **knobs)
    _, tr, te = next(iter(ds.loso_splits()))
    t0 = time.process_time()
    train_fold({"epochs": epochs}, ds.subset(tr), ds.subset(te), seed=0)
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, nargs="+", default=[3])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/augment_cost.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    _fold_seconds(0, 1)  # warm-up: imports, first-call kernels
    times: dict[int, list[float]] = {k: [] for k in (0, *args.views)}
    for _ in range(args.repeats):
        for k in times:
            times[k].append(_fold_seconds(k, args.epochs))
    base = min(times[0])
    out = {"command": f"python benchmarks/bench_augment.py --views {' '.join(map(str, args.views))} "
                      f"--epochs {args.epochs} --repeats {args.repeats}",
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, 1 thread",
           "cpu_seconds": {str(k): v for k, v in times.items()},
           "ratio_vs_no_views": {str(k): min(v) / base for k, v in times.items()}}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for k, r in out["ratio_vs_no_views"].items():
        print(f"n_augment {k}: {r:.2f}x the CPU time of no views (min of {args.repeats})")


if __name__ == "__main__":
    main()
