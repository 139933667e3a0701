"""Does ``train.precision: bf16`` change the science? Pooled LOSO metrics, fp32 vs bf16, over seeds.

    python benchmarks/bench_bf16_metrics.py --folds 8 --epochs 10 --seeds 0 1 2

For each seed: the first ``--folds`` LOSO folds of synthme-casme2 (magnification 3, as the search spaces),
the paper's full model, trained once in fp32 and once in bf16 (same seed, same data, same order); pooled
accuracy / UF1 / UAR over those folds' predictions (the field's convention; a subset of the 26 folds, so
these are not the full-LOSO figures). The seed noise is the spread of the fp32 figures over seeds; a
bf16 - fp32 difference is a finding only if it is clearly outside that spread. CPU seconds of each
precision are printed too (1 intra-op thread). SynthME numbers, not CASME II / SAMM numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mer_model import train_fold
from mer_model.data import load_dataset
from mer_model.metrics import classification_metrics

ARM = dict(model="gts_gn", features="B", fusion_layer=1, lam=True, au_loss="aau")


def pooled(cfg: dict, folds: list, seed: int) -> tuple[dict[str, float], float]:
    """Pooled metrics over ``folds`` and the CPU seconds it took."""
    c = time.process_time()
    res = [train_fold(cfg, tr, te, seed) for tr, te in folds]
    cpu = time.process_time() - c
    y_true = np.concatenate([r.y_true for r in res])
    y_pred = np.concatenate([r.y_pred for r in res])
    m = classification_metrics(y_true, y_pred, cfg["num_classes"])
    return {k: float(m[k]) for k in ("accuracy", "uf1", "uar")}, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folds", type=int, default=8)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset("synthme-casme2", setup="objective", seed=0, magnification=3.0)
    folds = [(ds.subset(tr), ds.subset(te)) for _, tr, te in ds.loso_splits()[: args.folds]]
    base = {**ARM, "epochs": args.epochs, "num_classes": len(ds.class_names)}
    rows = []
    for seed in args.seeds:
        for prec in ("fp32", "bf16"):
            m, cpu = pooled({**base, "precision": prec}, folds, seed)
            rows.append({"seed": seed, "precision": prec, "cpu_s": cpu, "load1": os.getloadavg()[0], **m})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"folds": args.folds, "epochs": args.epochs, "rows": rows}, indent=1))
    print(f"\nsynthme-casme2 (magnification 3), first {args.folds} LOSO folds, {args.epochs} epochs, pooled "
          "metrics over those folds (not the full 26-fold LOSO). SynthME, not CASME II / SAMM.\n")
    print("| seed | fp32 UF1 | bf16 UF1 | fp32 acc | bf16 acc | CPU s fp32 / bf16 |")
    print("|---|---|---|---|---|---|")
    for seed in args.seeds:
        f, b = (next(r for r in rows if r["seed"] == seed and r["precision"] == q) for q in ("fp32", "bf16"))
        print(f"| {seed} | {f['uf1']:.3f} | {b['uf1']:.3f} | {f['accuracy']:.3f} | {b['accuracy']:.3f} | "
              f"{f['cpu_s'] / b['cpu_s']:.2f}x |")
    for key in ("uf1", "accuracy"):
        f = [r[key] for r in rows if r["precision"] == "fp32"]
        b = [r[key] for r in rows if r["precision"] == "bf16"]
        d = [y - x for x, y in zip(f, b, strict=True)]
        sd = statistics.stdev(f) if len(f) > 1 else float("nan")
        per_seed = ", ".join(f"{x:+.3f}" for x in d)
        print(f"\n{key}: fp32 mean {statistics.mean(f):.3f} (seed std {sd:.3f}), "
              f"bf16 mean {statistics.mean(b):.3f}; paired bf16 - fp32: mean {statistics.mean(d):+.3f}, "
              f"per seed {per_seed}")


if __name__ == "__main__":
    main()
