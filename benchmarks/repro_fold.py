"""One LOSO fold of one arm of a search-space file, trained as the sweep trains it: prints the dataset's
content hash, the torch kernel set and threads, and the fold's final training loss and accuracy.

Why: to find what changes results between two machines or settings (docs/reproducibility.md), compare
this line under each, e.g.

    python benchmarks/repro_fold.py search_spaces/smoke.yaml --arm 0 --threads 1
    MKL_CBWR=COMPATIBLE python benchmarks/repro_fold.py search_spaces/smoke.yaml --arm 0
    ATEN_CPU_CAPABILITY=default python benchmarks/repro_fold.py search_spaces/smoke.yaml --arm 0
"""

from __future__ import annotations

import argparse
import json

import torch

from mer_model import train_fold
from orchestrator.spec import load_spec
from orchestrator.spec.plan import grid_configs
from orchestrator.sweep.inputs import load_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--arm", type=int, default=0, help="index of the grid arm in the file")
    ap.add_argument("--fold", type=int, default=0, help="index of the left-out subject (sorted)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the sweep uses cpu_per_fold)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    spec = load_spec(a.spec)
    ds = load_data(spec)
    plan = grid_configs(spec)[a.arm]
    config = {**plan.config, "num_classes": ds.num_classes, "num_aus": len(ds.au_names)}
    subject, train, test = ds.loso_splits()[a.fold]
    res = train_fold(config, ds.subset(train), ds.subset(test), spec.protocol.seed, "cpu")
    print(json.dumps({
        "arm": plan.arm, "subject": subject, "threads": torch.get_num_threads(),
        "torch_capability": torch.backends.cpu.get_cpu_capability(), "data_hash": ds.content_hash(),
        "final_loss": res.loss_curve[-1], "accuracy": float((res.y_true == res.y_pred).mean()),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
