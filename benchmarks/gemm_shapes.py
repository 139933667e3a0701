"""The model's own GEMMs: which matrix products one training step computes (a convolution counted as
its im2col GEMM), and how fast this device runs them bare as ``torch.matmul``. The ceiling that
``bench_throughput.py`` compares a fold's achieved FLOP rate with."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_GEMMS = {"aten::mm": "mm", "aten::addmm": "addmm", "aten::bmm": "bmm"}


def _conv_gemm(x: torch.Tensor, w: torch.Tensor, stride: list[int], padding: list[int],
               dilation: list[int]) -> tuple[int, int, int]:
    """A 2-d convolution as the GEMM it is (im2col): (M positions, K = C_in * kh * kw, N = C_out)."""
    n, cin, h, wd = x.shape
    cout, _, kh, kw = w.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return n * ho * wo, cin * kh * kw, cout


class _Recorder(TorchDispatchMode):
    """Counts (op, operand shapes) of every GEMM dispatched while active: mm / addmm / bmm as they are,
    each convolution (forward, and its input- and weight-gradient in backward) as its im2col GEMM."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[tuple[str, tuple[tuple[int, ...], ...]]] = Counter()

    def _add(self, op: str, a: tuple[int, ...], b: tuple[int, ...]) -> None:
        self.seen[(op, (tuple(a), tuple(b)))] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = func._schema.name
        if name in _GEMMS:
            mats = args[1:3] if name == "aten::addmm" else args[:2]  # addmm(bias, a, b)
            self._add(_GEMMS[name], tuple(mats[0].shape), tuple(mats[1].shape))
        elif name == "aten::convolution":
            m, k, n = _conv_gemm(args[0], args[1], args[3], args[4], args[5])
            self._add("conv", (m, k), (k, n))
        elif name == "aten::convolution_backward":
            m, k, n = _conv_gemm(args[1], args[2], args[4], args[5], args[6])
            mask = args[10]
            if mask[0]:
                self._add("conv grad input", (m, n), (n, k))
            if mask[1]:
                self._add("conv grad weight", (n, m), (m, k))
        return func(*args, **(kwargs or {}))


def record_gemm_shapes(cfg: dict[str, Any], batch: int = 32) -> list[dict[str, Any]]:
    """One forward + backward step of ``build_model(cfg)`` on a ``batch``: its GEMMs as
    ``[{"op", "a", "b", "count"}]`` (operand shapes ``a`` (.., M, K), ``b`` (.., K, N))."""
    from mer_model import build_model
    from mer_model.losses import total_loss

    model = build_model(cfg).train()
    g = torch.Generator().manual_seed(0)
    x = 100 + 10 * torch.randn(batch, 3, 68, 2, generator=g)
    y = torch.randint(0, cfg["num_classes"], (batch,), generator=g)
    a = (torch.rand(batch, cfg["num_aus"], generator=g) < 0.3).float()
    rec = _Recorder()
    with rec:
        logits, au = model(x, return_aux=True)
        total_loss(logits, y, au, a, getattr(model, "aau_w", None), cfg["beta"]).backward()
    return [{"op": op, "a": list(sh[0]), "b": list(sh[1]), "count": n} for (op, sh), n in rec.seen.items()]


def _flops(shape_a: list[int], shape_b: list[int]) -> float:
    *batch, m, k = shape_a
    n = shape_b[-1]
    return 2.0 * m * k * n * (batch[0] if batch else 1)


def gemm_rate(shapes: list[dict[str, Any]], device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of the recorded GEMMs run bare (contiguous random operands, each shape as often as one step
    issues it), best of ``repeats`` passes, in process CPU time on a CPU (wall time on a GPU)."""
    ops = [(torch.randn(*s["a"], device=device), torch.randn(*s["b"], device=device), s["count"])
           for s in shapes]
    flops = sum(_flops(s["a"], s["b"]) * s["count"] for s in shapes)
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    best = float("inf")
    for _ in range(repeats + 1):  # the first pass warms up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = clock()
        for a, b, n in ops:
            for _ in range(n):
                torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, clock() - t)
    return flops / best
