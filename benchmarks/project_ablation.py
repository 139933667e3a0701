"""The whole ``search_spaces/ablation.yaml`` on this machine, projected from measured training rates, with
and without reuse of identical configs.

    python benchmarks/project_ablation.py --throughput /tmp/throughput.json --startup-s 30

Inputs are measurements, not assumptions: ``--throughput`` is ``bench_throughput.py --json`` (the
before / after CPU-time rates of one fold on one thread: what a 1-CPU worker reaches on an idle core),
``--startup-s`` the fixed start-up of a sweep (``bench_startup.py``). Every arm's training FLOPs are
counted (``bench_batched.arm_flops``); the file's ``cpu_per_fold`` sets the number of parallel workers
on this machine's cores. "With reuse": arms whose flat config, dataset and seed are identical (same
``config_hash``) train once, as `mer-orch sweep` does since issue 14 (orchestrator/store/reuse.py); both
figures are given.
Orchestration per fold (Ray call, MLflow logging: under 5% of a fold, BENCHMARKS.md) is not added.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_batched import arm_flops  # noqa: E402


def rates(throughput: dict) -> dict[str, float]:
    """Best CPU-time FLOP rate of each variant (counted FLOPs of the timed epochs / CPU seconds)."""
    out: dict[str, float] = {}
    for r in throughput["rounds"]:
        rate = throughput["flops_per_sample_step"] * r["n_train"] * throughput["epochs"] / r["cpu_s"]
        out[r["variant"]] = max(out.get(r["variant"], 0.0), rate)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", type=Path, default=ROOT / "search_spaces" / "ablation.yaml")
    p.add_argument("--throughput", type=Path, required=True, help="bench_throughput.py --json output")
    p.add_argument("--startup-s", type=float, required=True)
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    from orchestrator.spec import load_spec
    from orchestrator.sweep.inputs import load_data

    spec = load_spec(args.spec)
    ds = load_data(spec)
    per_arm = arm_flops(spec, ds, [(ds.subset(tr), None) for _, tr, _ in ds.loso_splits()])
    n_seeds = len(spec.protocol.seed_list)  # every (arm, subject) trains once per seed (arm_flops: one)
    total = n_seeds * sum(f for _, _, f in per_arm)
    distinct = {plan.config_hash: n_seeds * f for plan, _, f in per_arm}
    workers = max(1, int(args.cores // float(spec.resources.cpu_per_fold)))
    print(f"{args.spec.name}: {len(per_arm)} arms ({len(distinct)} distinct configs) x {n_seeds} seeds, "
          f"{total / 1e12:.0f} TFLOP counted ({sum(distinct.values()) / 1e12:.0f} TFLOP distinct); "
          f"{workers} workers x {spec.resources.cpu_per_fold} CPU; start-up {args.startup_s:.0f} s\n")
    print("| training rate (1 core, CPU time) | GFLOP/s | every arm | with reuse of identical configs |")
    print("|---|---|---|---|")
    for variant, rate in rates(json.loads(args.throughput.read_text())).items():
        hours = [(args.startup_s + f / (rate * workers)) / 3600 for f in (total, sum(distinct.values()))]
        print(f"| {variant} | {rate / 1e9:.1f} | {hours[0]:.1f} h | {hours[1]:.1f} h |")


if __name__ == "__main__":
    main()
