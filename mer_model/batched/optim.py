"""Optimisers over stacked parameters: K independent optimisers (one per fold) as one set of tensor ops.

Every parameter is stacked along a new leading fold dimension ``(K, *shape)``. The update is
element-wise, so one tensor op over the stack is mathematically K separate optimisers, provided the
per-fold scalars stay per fold: the learning rate and weight decay ``(K,)``, and the step count ``(K,)``
that drives Adam's bias correction. A fold that has no mini-batch at a step (its epoch has fewer batches
than another fold's, or it has fewer epochs) is *inactive*: nothing of its state moves, as if the step
never happened for it.

The formulas are those of ``torch.optim.Adam`` / ``AdamW`` / ``SGD(momentum=0.9)`` (single-tensor path,
no amsgrad, no nesterov), with the bias corrections computed in float64 as torch does in Python, so each
fold's trajectory matches a fold trained alone with the torch optimiser to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mer_model.config import OPTIMIZERS  # the names train.py's optimisers answer to, defined once


def _per_fold(v: Tensor, like: Tensor) -> Tensor:
    """``(K,)`` -> ``(K, 1, ..., 1)`` broadcastable against a stacked parameter ``like`` ``(K, *shape)``."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


class StackedOptimizer:
    """``kind`` in adam | adamw | sgd over stacked leaf tensors; ``lr`` and ``weight_decay`` ``(K,)``.

    Hyper-parameters besides lr / weight decay are torch's defaults (betas (0.9, 0.999), eps 1e-8; SGD
    momentum 0.9, dampening 0), as in ``mer_model.train._optimizer``.
    """

    def __init__(
        self,
        kind: str,
        params: Sequence[Tensor],
        lr: Tensor,
        weight_decay: Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        momentum: float = 0.9,
    ) -> None:
        if kind not in OPTIMIZERS:
            raise ValueError(f"StackedOptimizer: kind {kind!r}; allowed: {', '.join(OPTIMIZERS)}")
        self.kind, self.params = kind, list(params)
        k = self.params[0].shape[0]
        self.lr = lr.to(torch.float64).reshape(k)
        self.wd = weight_decay.to(torch.float64).reshape(k)
        self.betas, self.eps, self.momentum = betas, eps, momentum
        dev = self.params[0].device
        self.steps = torch.zeros(k, dtype=torch.float64, device=dev)  # per fold: its own Adam step count
        if kind == "sgd":
            self.buf = [torch.zeros_like(p) for p in self.params]
        else:
            self.exp_avg = [torch.zeros_like(p) for p in self.params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: Tensor) -> None:
        """One update for the folds where ``active`` ``(K,)`` bool is true; the others keep their state.

        Parameters whose ``grad`` is None are skipped, as torch's optimisers skip them.
        """
        act = active.to(self.steps.device)
        self.steps += act.to(torch.float64)
        steps = self.steps.clamp_min(1.0)  # inactive folds at step 0: any finite value, masked below
        dt = self.params[0].dtype
        lr, wd = self.lr, self.wd
        if self.kind == "sgd":
            for i, p in enumerate(self.params):
                if p.grad is None:
                    continue
                m = _per_fold(act, p)
                g = p.grad + _per_fold(wd.to(dt), p) * p  # SGD weight decay: added to the gradient
                # first step: buf = g (torch clones the gradient); 0.9 * 0 + g is the same
                self.buf[i] = torch.where(m, self.momentum * self.buf[i] + g, self.buf[i])
                p.sub_(torch.where(m, _per_fold(lr.to(dt), p) * self.buf[i], 0.0))
            return
        b1, b2 = self.betas
        bc1 = 1.0 - b1**steps  # float64, as torch's Python-float bias corrections
        bc2_sqrt = (1.0 - b2**steps).sqrt()
        step_size = (lr / bc1).to(dt)
        bc2_sqrt = bc2_sqrt.to(dt)
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            m = _per_fold(act, p)
            g = p.grad
            if self.kind == "adam":
                g = g + _per_fold(wd.to(dt), p) * p  # Adam: L2 term in the gradient
            else:
                decayed = p * (1.0 - _per_fold((lr * wd).to(dt), p))  # AdamW: decoupled decay first
                p.copy_(torch.where(m, decayed, p))
            ea, es = self.exp_avg[i], self.exp_avg_sq[i]
            ea.copy_(torch.where(m, torch.lerp(ea, g, 1.0 - b1), ea))
            es.copy_(torch.where(m, es * b2 + (1.0 - b2) * g * g, es))
            denom = es.sqrt() / _per_fold(bc2_sqrt, p) + self.eps
            p.copy_(torch.where(m, p - _per_fold(step_size, p) * (ea / denom), p))  # addcdiv_
