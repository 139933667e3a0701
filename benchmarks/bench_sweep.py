"""``mer-orch sweep`` wall time against a plain in-process loop over the same (config, fold) trainings.

    python benchmarks/bench_sweep.py [--epochs 5] [--subjects 6] [--cpus 2]

Baseline: one Python process, torch with all ``--cpus`` threads, ``train_fold`` called for every
(config, fold) in turn, nothing logged. Sweep: the real command (``python -m orchestrator.cli sweep``, a
fresh process: imports, local ``ray.init``, actor pool, MLflow logging of every fold with LAM arrays and
heatmaps, config/sweep tables) on the same spec, timed from launch to exit. Both in one command on the
same machine, in ABBA order (loop, sweep, sweep, loop) with the load average printed beside each, because
the machine may be shared; the ratio of the sums sweep / loop is the figure (target <= 1.1). A near-empty
sweep (1 epoch, tiny folds) against its own loop shows the fixed start-up cost.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def spec(epochs: int, subjects: int, clips: int, name: str) -> dict:
    return {
        "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": subjects, "n_clips": clips}},
        "protocol": {"seed": 0},
        "train": {"epochs": epochs, "batch_size": 16},
        "grid": [
            {"name": "GCN+Type A", "table": "IV(a)", "model": "gcn", "features": "A", "lam": False,
             "au_loss": "none"},
            {"name": "GTS-GN+LAM+AAU", "table": "V", "model": "gts_gn", "lam": True, "au_loss": "aau"},
        ],
        "resources": {"cpu_per_fold": 1},
        "tracking": {"experiment": name},
    }


def plain_loop(doc: dict, path: Path, cpus: int) -> tuple[float, int]:
    import torch

    from mer_model import train_fold
    from orchestrator.spec import load_spec
    from orchestrator.spec.plan import grid_configs
    from orchestrator.sweep.inputs import load_data

    torch.set_num_threads(cpus)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    s = load_spec(path)
    t0 = time.perf_counter()
    ds = load_data(s)
    n = 0
    for plan in grid_configs(s):
        for _subj, tr, te in ds.loso_splits():
            train_fold(plan.config, ds.subset(tr), ds.subset(te), s.protocol.seed, "cpu")
            n += 1
    return time.perf_counter() - t0, n


def sweep(doc: dict, cwd: Path, cpus: int) -> float:
    (cwd / "space.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE",
                                                            "RAY_ADDRESS")}
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "orchestrator.cli", "sweep", "space.yaml", "--num-cpus", str(cpus)]
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"sweep failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--subjects", type=int, default=6)
    ap.add_argument("--clips", type=int, default=60)
    ap.add_argument("--cpus", type=int, default=2)
    a = ap.parse_args()
    doc = spec(a.epochs, a.subjects, a.clips, "bench")
    loops, sweeps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        # ABBA order (loop, sweep, sweep, loop): a slow drift of the machine's load hits both sides alike
        for i, kind in enumerate(("loop", "sweep", "sweep", "loop")):
            run_dir = d / f"{kind}{i}"
            run_dir.mkdir()
            load0 = os.getloadavg()[0]
            if kind == "loop":
                t, n = plain_loop(doc, run_dir / "space.yaml", a.cpus)
                loops.append(t)
            else:
                t = sweep(doc, run_dir, a.cpus)
                sweeps.append(t)
            print(f"{kind:5s} {t:8.1f} s   (1-min load average {load0:.1f} -> {os.getloadavg()[0]:.1f})",
                  flush=True)
        empty = spec(1, 3, 15, "bench-empty")
        (d / "empty").mkdir()
        t_empty = sweep(empty, d / "empty", a.cpus)
        t_empty_loop, n_empty = plain_loop(empty, d / "empty" / "loop.yaml", a.cpus)
    print(f"units: {n} (2 configs x {a.subjects} LOSO folds, {a.epochs} epochs, synthme-tiny "
          f"{a.clips} clips), {a.cpus} CPUs")
    print(f"plain in-process loop: {sum(loops) / 2:8.1f} s (mean of 2)")
    print(f"mer-orch sweep:        {sum(sweeps) / 2:8.1f} s (mean of 2)   ratio sweep/loop = "
          f"{sum(sweeps) / sum(loops):.2f}")
    fixed = t_empty - t_empty_loop
    print(f"near-empty sweep ({n_empty} units of 1 epoch, 3 subjects x 15 clips): {t_empty:.1f} s "
          f"vs its loop {t_empty_loop:.1f} s -> start-up + per-unit overhead {fixed:.1f} s")


if __name__ == "__main__":
    main()
