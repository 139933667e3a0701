"""The table ``gpu_check.py`` prints from its figures (kept apart from the measuring code)."""

from __future__ import annotations

from typing import Any

SECTIONS = ("env", "peak", "packing", "memory", "bf16", "sweep")


def _g(x: float) -> str:
    return f"{x / 1e12:.2f} TFLOP/s"


def table(fig: dict[str, Any]) -> str:
    env, pk, pa = fig.get("env", {}), fig.get("peak", {}), fig.get("packing", {})
    mem, bf, sw = fig.get("memory", {}), fig.get("bf16", {}), fig.get("sweep", {})
    dev = f"{fig['device']} {env.get('name', '')} (torch {env.get('torch')}, quick={fig['quick']})"
    rows = [("device", dev)]
    if "fp32_flops" in pk:
        rows.append(("mm peak here, fp32 (TF32 off) / bf16",
                     f"{_g(pk['fp32_flops'])} / {_g(pk['bf16_flops'])}"))
    if "ratio_wall" in pa:
        rows += [
            (f"packing: {pa['n_folds']} folds x {pa['epochs']} epochs, sequential / packed wall",
             f"{pa['seq_wall_s']:.1f} s / {pa['bat_wall_s']:.1f} s = **{pa['ratio_wall']:.2f}x** "
             "(target 15x)"),
            ("packing: predictions equal (y_pred) / largest probs difference",
             f"{pa['pred_agreement']:.1%} / {pa['max_probs_diff']:.1e}"),
            ("achieved training rate, sequential / packed (counted FLOPs / wall)",
             f"{_g(pa['seq_flops_per_s'])} / {_g(pa['bat_flops_per_s'])}"
             + (f" = {pa['seq_flops_per_s'] / pk['fp32_flops']:.2%} / "
                f"{pa['bat_flops_per_s'] / pk['fp32_flops']:.2%} of fp32 mm peak"
                if "fp32_flops" in pk else "")),
        ]
    if "seq" in mem:
        key = "cuda_peak_bytes" if mem["seq"].get("cuda_peak_bytes") is not None else "rss_peak_kib"
        scale = 2**20 if key == "cuda_peak_bytes" else 2**10
        rows.append((f"peak memory ({key}): one fold / packed group",
                     f"{mem['seq'][key] / scale:.0f} MiB / {mem['batched'][key] / scale:.0f} MiB"))
    if "ratio" in bf:
        rows.append(("one fold fp32 / bf16 wall",
                     f"{bf['fp32_s']:.2f} s / {bf['bf16_s']:.2f} s = {bf['ratio']:.2f}x"))
    if "rc" in sw:
        rows.append(("smoke sweep, gpu_per_fold 0.25", f"exit {sw['rc']} in {sw['wall_s']:.0f} s; "
                     f"{sw['n_gpu_processes_seen']} processes seen on the GPU"))
    for name in SECTIONS:
        s = fig.get(name, {})
        if "error" in s or "skipped" in s:
            rows.append((f"{name}: not measured", s.get("error") or s.get("skipped")))
    lines = ["| figure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    total = sum(fig.get(n, {}).get("section_s", 0.0) for n in SECTIONS)
    return "\n".join(lines) + f"\n\nsections took {total:.0f} s in all"
