"""Stand-in layers for fold-batched training (``mer_model.batched``): same parameters, same function.

``stacked_template(model)`` copies a model and swaps two kinds of leaf modules, keeping every parameter and
buffer name, so one stacked state dict of K folds fits the template and each fold's plain model alike:

- ``nn.BatchNorm{1,2}d`` -> :class:`MaskedBatchNorm`: batch statistics over the real samples of a padded
  batch only (folds have different batch sizes at the end of an epoch), running statistics updated only
  for folds that train at this step.
- ``nn.Conv2d`` with a ``(k, 1)`` kernel -> :class:`MatmulConv2d`: the same convolution as one matrix
  product over channels. Under ``vmap`` over K folds a ``conv2d`` becomes a K-group convolution, which
  oneDNN runs at a fraction of the CPU's matmul rate at these sizes (C <= 128, 3 x 14 positions); a batched
  matmul runs near it.

The model's own ``forward`` code is unchanged: only these leaves differ, and only in how they compute.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm


class MaskedBatchNorm(nn.Module):
    """BatchNorm (1d or 2d) whose batch statistics use only the samples where ``sample_mask`` is 1.

    Same parameter and buffer names as ``nn.BatchNorm{1,2}d`` (``weight``, ``bias``, ``running_mean``,
    ``running_var``, ``num_batches_tracked``). Two extra non-persistent buffers are per-call inputs that
    ``functional_call`` swaps in: ``sample_mask`` ``(N,)`` and ``update`` (bool scalar: whether this fold
    trains at this step; if not, its running statistics stay as they are). Training mode only: evaluation
    runs on each fold's plain model. Input ``(N, C, *)`` -> same.
    """

    def __init__(self, bn: _BatchNorm) -> None:
        super().__init__()
        if bn.momentum is None or not bn.affine or not bn.track_running_stats:
            raise ValueError("MaskedBatchNorm: needs affine BatchNorm, running stats, fixed momentum")
        self.eps, self.momentum = bn.eps, float(bn.momentum)
        self.weight = nn.Parameter(bn.weight.detach().clone())
        self.bias = nn.Parameter(bn.bias.detach().clone())
        self.register_buffer("running_mean", bn.running_mean.detach().clone())
        self.register_buffer("running_var", bn.running_var.detach().clone())
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked.detach().clone())
        self.register_buffer("sample_mask", torch.ones(1), persistent=False)
        self.register_buffer("update", torch.ones((), dtype=torch.bool), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)  # per channel, broadcast over batch and positions
        dims = [0, *range(2, x.dim())]
        m = self.sample_mask.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))  # (N, 1, ...)
        cnt = m.sum() * math.prod(x.shape[2:])  # real values per channel
        denom = cnt.clamp_min(1.0)
        mean = (x * m).sum(dims) / denom  # (C,)
        xc = x - mean.reshape(shape)
        var = (xc * xc * m).sum(dims) / denom  # biased: what BatchNorm normalises with
        scale = torch.rsqrt(var + self.eps) * self.weight
        y = xc * scale.reshape(shape) + self.bias.reshape(shape)
        with torch.no_grad():
            unbiased = var * cnt / (cnt - 1.0).clamp_min(1.0)  # BatchNorm keeps the unbiased running var
            mom = self.momentum
            new_mean = (1.0 - mom) * self.running_mean + mom * mean
            new_var = (1.0 - mom) * self.running_var + mom * unbiased
            self.running_mean.copy_(torch.where(self.update, new_mean, self.running_mean))
            self.running_var.copy_(torch.where(self.update, new_var, self.running_var))
            self.num_batches_tracked.add_(self.update.to(self.num_batches_tracked.dtype))
        return y


class MatmulConv2d(nn.Module):
    """``nn.Conv2d`` with a ``(k, 1)`` kernel, stride 1, padding ``(k // 2, 0)``, as one matrix product.

    ``(N, C_in, T, V)`` -> ``(N, C_out, T, V)``: the k windows along T (shifted slices of the padded
    input) become C_in * k rows, multiplied by the ``(C_out, C_in * k)`` weight in one GEMM over all
    N * T * V positions (im2col).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        kt, kv = conv.kernel_size
        if (
            kv != 1
            or conv.stride != (1, 1)
            or conv.dilation != (1, 1)
            or conv.groups != 1
            or conv.padding != (kt // 2, 0)
            or conv.bias is None
        ):
            raise ValueError(f"MatmulConv2d: unsupported {conv}")
        self.kt = kt
        self.weight = nn.Parameter(conv.weight.detach().clone())  # (C_out, C_in, k, 1)
        self.bias = nn.Parameter(conv.bias.detach().clone())  # (C_out,)

    def forward(self, x: Tensor) -> Tensor:
        n, c, t, v = x.shape
        c_out = self.weight.shape[0]
        if self.kt == 1:
            cols = x.transpose(0, 1).reshape(c, n * t * v)  # (C_in, N*T*V)
            w = self.weight.reshape(c_out, c)
        else:
            p = self.kt // 2
            xp = F.pad(x, (0, 0, p, p)).transpose(0, 1)  # (C_in, N, T + 2p, V)
            # k shifted windows stacked in (c, j) order: one copy; its backward is k slice adds, ~1.3x
            # faster under vmap than the backward of an ``unfold`` view (benchmarks/results/perf.md)
            cols = torch.stack([xp[:, :, j : j + t] for j in range(self.kt)], dim=1).reshape(c * self.kt, -1)
            w = self.weight.reshape(c_out, c * self.kt)  # (C_out, C_in*k), same (c, j) order
        y = (w @ cols).reshape(c_out, n, t, v).transpose(0, 1)  # (N, C_out, T, V)
        return y + self.bias.reshape(1, -1, 1, 1)


def stacked_template(model: nn.Module, masked: bool = True) -> tuple[nn.Module, list[str]]:
    """A training-mode copy of ``model`` with the stand-ins swapped in; and the MaskedBatchNorm names.

    ``masked=False`` keeps the plain BatchNorms (their fused kernel, under ``vmap`` with per-fold running
    statistics): for steps where every fold trains on a full, unpadded batch.
    """
    template = copy.deepcopy(model)
    for mod in list(template.modules()):
        for cname, child in list(mod.named_children()):
            if masked and isinstance(child, _BatchNorm):
                setattr(mod, cname, MaskedBatchNorm(child))
            elif isinstance(child, nn.Conv2d) and child.kernel_size[1] == 1:
                setattr(mod, cname, MatmulConv2d(child))
    names = [n for n, m in template.named_modules() if isinstance(m, MaskedBatchNorm)]
    return template.train(), names
