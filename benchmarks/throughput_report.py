"""Markdown tables of ``bench_throughput.py``'s figures (kept apart: the measuring script stays short)."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np


def _by_variant(rounds: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rounds:
        out.setdefault(r["variant"], []).append(r)
    return out


def speed_table(fig: dict[str, Any]) -> str:
    """Per variant: CPU ms per step, achieved vs same-process GEMM rate, speed-up vs ``before`` per round."""
    groups = _by_variant(fig["rounds"])
    base = groups["before"]
    fps = fig["flops_per_sample_step"]
    lines = [
        "| variant | CPU ms / step (best) | wall ms / step (best) | achieved GFLOP/s | GEMM GFLOP/s, model's "
        "shapes, same process | achieved / GEMM | speed-up vs before (per round: CPU time) | 1-min load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v, rs in groups.items():
        best = min(rs, key=lambda r: r["cpu_s"])
        achieved = fps * best["n_train"] * fig["epochs"] / best["cpu_s"]
        ups = [b["cpu_s"] / r["cpu_s"] for b, r in zip(base, rs, strict=True)]
        loads = ", ".join(f"{r['load1']:.1f}" for r in rs)
        lines.append(
            f"| {v} | {1e3 * best['cpu_s'] / best['steps']:.1f} | "
            f"{1e3 * best['wall_s'] / best['steps']:.1f} | "
            f"{achieved / 1e9:.1f} | {best['gemm_flops_per_s'] / 1e9:.1f} | "
            f"**{achieved / best['gemm_flops_per_s']:.0%}** | {statistics.median(ups):.2f}x "
            f"({', '.join(f'{u:.2f}' for u in ups)}) | {loads} |"
        )
    return "\n".join(lines)


def profile_table(fig: dict[str, Any]) -> str:
    """Self CPU ms per step by op category, each variant's best round (one profiled epoch)."""
    groups = _by_variant(fig["rounds"])
    profs = {v: min(rs, key=lambda r: r["cpu_s"])["profile_ms_per_step"] for v, rs in groups.items()}
    cats = list(next(iter(profs.values())))
    lines = ["| op category | " + " | ".join(profs) + " |", "|---|" + "---|" * len(profs)]
    for c in cats:
        lines.append(f"| {c} | " + " | ".join(f"{p[c]:.1f}" for p in profs.values()) + " |")
    return "\n".join(lines)


def exact_lines(exact: dict[str, Any]) -> str:
    """Agreement of ``before`` and ``after`` predictions on the same folds and seeds (float32)."""
    a, b = exact["before"], exact["after"]
    same = [np.mean(np.array(x) == np.array(y)) for x, y in zip(a["y_pred"], b["y_pred"], strict=True)]
    n = sum(len(x) for x in a["y_pred"])
    pairs = list(zip(a["y_pred"], b["y_pred"], strict=True))
    agree = int(sum(np.sum(np.array(x) == np.array(y)) for x, y in pairs))
    probs = zip(a["probs"], b["probs"], strict=True)
    dp = max(float(np.abs(np.array(x) - np.array(y)).max()) for x, y in probs)
    return (f"Predictions, before vs after, {len(same)} LOSO folds (float32, same seeds): {agree}/{n} equal "
            f"`y_pred` ({agree / n:.1%}); folds with every prediction equal: {sum(s == 1 for s in same)}; "
            f"largest |probs difference| {dp:.2e}.")


def report(fig: dict[str, Any]) -> str:
    parts = [
        f"## Training throughput, one LOSO fold (synthme-casme2 fold 0, GTS-GN+LAM+AAU), {fig['machine']}, "
        f"{fig['threads']} intra-op thread(s), {fig['epochs']} epochs per timed run, baseline "
        f"`{fig['baseline_ref']}`",
        f"Counted training FLOPs: {fig['flops_per_sample_step'] / 1e6:.1f} MFLOP per sample-step.",
        speed_table(fig),
        "Per-op profile (self CPU ms per optimiser step, one epoch):",
        profile_table(fig),
    ]
    if "exact" in fig:
        parts.append(exact_lines(fig["exact"]))
    return "\n\n".join(parts)
