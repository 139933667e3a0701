"""The helpers behind benchmarks/bench_throughput.py and benchmarks/gpu_check.py, checked on a CPU."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_batched import flops_per_sample  # noqa: E402
from gemm_shapes import _flops, gemm_rate, record_gemm_shapes  # noqa: E402
from gpu_check import env, peak  # noqa: E402
from gpu_report import table  # noqa: E402

from mer_model.config import validate_config  # noqa: E402


def test_recorded_gemms_are_the_counted_training_flops():
    """Every FLOP that FlopCounterMode counts in a step is in a recorded GEMM (convolutions as im2col)."""
    cfg = validate_config({"model": "gts_gn", "num_classes": 5, "num_aus": 6})
    shapes = record_gemm_shapes(cfg, batch=8)
    recorded = sum(_flops(s["a"], s["b"]) * s["count"] for s in shapes)
    assert recorded == flops_per_sample(cfg, batch=8) * 8
    assert {s["op"] for s in shapes} >= {"addmm", "bmm", "conv", "conv grad input", "conv grad weight"}
    assert gemm_rate(shapes[:2], torch.device("cpu"), repeats=1) > 0


def test_gpu_check_sections_run_on_a_cpu():
    e = env(torch.device("cpu"))
    assert e["torch"] == torch.__version__ and e["packages"]["click"] is True
    pk = peak(torch.device("cpu"), n=64, repeats=2)
    assert pk["fp32_flops"] > 0 and pk["bf16_flops"] > 0
    fig = {"device": "cpu", "quick": True, "env": {**e, "section_s": 0.1}, "peak": {**pk, "section_s": 0.2},
           "sweep": {"skipped": "packages missing here: ray", "section_s": 0.0}}
    out = table(fig)
    assert "mm peak here" in out and "sweep: not measured | packages missing here: ray" in out
