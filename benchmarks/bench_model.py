"""Inference latency / throughput of ss_gn and gts_gn, and one LOSO fold's training time, on this machine.

    python benchmarks/bench_model.py            # full run (a few minutes on 2 CPU cores)
    python benchmarks/bench_model.py --quick    # fewer repeats, 5-epoch fold

Baselines: the vanilla GCN measured in the same process (the paper's Table III(b) has GCN 3.8 ms vs SS-GN
5.0 ms per sample on a GTX 1050) and the paper's absolute 5.0 ms/sample. Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from types import SimpleNamespace

import numpy as np
import torch

from mer_model import build_model, train_fold
from mer_model.landmarks import REFERENCE_SHAPE

PAPER_MS = {"gcn": 3.8, "ss_gn": 5.0}  # Table III(b), GTX 1050, seconds x 1000

ARMS = {
    "gcn (Type A)": dict(model="gcn", features="A"),
    "ss_gn (Type A)": dict(model="ss_gn", features="A"),
    "gts_gn (fusion 1)": dict(model="gts_gn", features="B", fusion_layer=1),
}


def _landmarks(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.tensor(REFERENCE_SHAPE, dtype=torch.float32).expand(n, 3, 68, 2) + torch.randn(
        n, 3, 68, 2, generator=g
    )


def _time(fn, repeats: int) -> tuple[float, float]:
    """(median wall seconds, mean process CPU seconds) of ``fn()`` over ``repeats`` runs after 3 warm-ups.

    CPU time is reported beside wall time because on a shared machine other processes inflate the wall
    clock; with one intra-op thread, CPU time is what the run would take on an idle core.
    """
    for _ in range(3):
        fn()
    times = []
    c0 = time.process_time()
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), (time.process_time() - c0) / repeats


def inference(repeats: int, big_batch: int) -> list[dict]:
    rows = []
    for name, arm in ARMS.items():
        model = build_model({**arm, "num_classes": 5, "au_loss": "none"}).eval()
        one, many = _landmarks(1), _landmarks(big_batch)
        with torch.inference_mode():
            t1, c1 = _time(lambda m=model, x=one: m(x), repeats)
            tb, cb = _time(lambda m=model, x=many: m(x), max(3, repeats // 10))
        rows.append(
            dict(
                name=name,
                params=sum(p.numel() for p in model.parameters()),
                ms1=t1 * 1e3,
                cpu1=c1 * 1e3,
                cpub=cb * 1e3 / big_batch,
                msb=tb * 1e3 / big_batch,
                tput=big_batch / tb,
            )
        )
    return rows


def fold_time(epochs: int, n_train: int = 230, n_test: int = 10) -> list[dict]:
    rng = np.random.default_rng(0)

    def split(n):
        lm = (REFERENCE_SHAPE + rng.normal(0, 1, (n, 3, 68, 2))).astype(np.float32)
        return SimpleNamespace(
            landmarks=lm,
            labels=rng.integers(0, 5, n),
            aus=(rng.random((n, 12)) < 0.3).astype(np.float32),
            augment=None,
        )

    train, test = split(n_train), split(n_test)
    rows = []
    for name, arm in ARMS.items():
        if name.startswith("gcn"):
            continue
        cfg = {**arm, "epochs": epochs, "au_loss": "aau" if arm["model"] == "gts_gn" else "none"}
        c0 = time.process_time()
        r = train_fold(cfg, train, test, seed=0)
        cpu = time.process_time() - c0
        rows.append(
            dict(
                name=name,
                au=cfg["au_loss"],
                seconds=r.train_seconds,
                cpu=cpu,
                steps=epochs * -(-n_train // 32),
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and a 5-epoch fold")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--batch", type=int, default=256, help="large inference batch")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 30 if args.quick else 200
    epochs = 5 if args.quick else 60

    load0 = os.getloadavg()[0]
    inf = inference(repeats, args.batch)
    gcn = inf[0]
    print(
        f"## mer_model on {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op threads, {os.cpu_count()} CPUs, no GPU; "
        f"1-min load average at start {load0:.1f}\n"
    )
    print(
        f"Inference, eval mode, median of {repeats} runs (batch 1) / {max(3, repeats // 10)} runs "
        f"(batch {args.batch}); landmarks in, logits out (feature step included).\n"
    )
    print(
        "| model | params (5 classes) | ms/sample, batch 1 (wall) | CPU ms/sample, batch 1 | "
        "wall vs paper's 5.0 ms | CPU vs in-process gcn, batch 1 | "
        f"ms/sample, batch {args.batch} (wall) | CPU ms/sample, batch {args.batch} | "
        f"samples/s, batch {args.batch} (wall) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in inf:
        print(
            f"| {r['name']} | {r['params']:,} | {r['ms1']:.2f} | {r['cpu1']:.2f} | "
            f"{r['ms1'] / PAPER_MS['ss_gn']:.2f}x | {r['cpu1'] / gcn['cpu1']:.2f}x | {r['msb']:.3f} | "
            f"{r['cpub']:.3f} | {r['tput']:,.0f} |"
        )
    print(f"\nPaper (GTX 1050): SS-GN / GCN = {PAPER_MS['ss_gn'] / PAPER_MS['gcn']:.2f}x.\n")

    print(
        f"One LOSO fold's training: 230 synthetic training clips, 10 test clips, {epochs} epochs, "
        "batch 32, Adam (train_fold defaults).\n"
    )
    print("| model | AU loss | optimiser steps | wall seconds | CPU seconds | CPU ms/step |")
    print("|---|---|---|---|---|---|")
    for r in fold_time(epochs):
        print(
            f"| {r['name']} | {r['au']} | {r['steps']} | {r['seconds']:.1f} | {r['cpu']:.1f} | "
            f"{1e3 * r['cpu'] / r['steps']:.0f} |"
        )


if __name__ == "__main__":
    main()
