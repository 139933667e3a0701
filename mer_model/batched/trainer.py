"""Fold-batched training: K folds trained together in one process as one stacked model (issue 7).

``train_folds_batched(config, folds, seeds, device) -> list[FoldResult]`` gives, fold by fold, the training
that ``train_fold(config_k, train_k, test_k, seed_k, device)`` gives alone, to float rounding:

- **same initial weights**: fold k's model is built under ``torch.manual_seed(seed_k)`` exactly as
  ``train_fold`` builds it; the K models are stacked with ``torch.func.stack_module_state``;
- **same mini-batches in the same order**: each fold draws its own shuffles from its own
  ``torch.Generator().manual_seed(seed_k)`` through ``mer_model.train.shuffled_batches``; at step s fold k
  gets its own s-th batch. Batches are padded to the largest batch of the step, with a per-fold sample mask;
- **same forward and loss**: one ``vmap`` of ``functional_call`` over the stack runs the model's own
  ``forward``, in a copy where every BatchNorm is a :class:`MaskedBatchNorm` (batch statistics over the
  real samples only, running statistics per fold), and the loss of Eq. (12) is a masked mean;
- **own optimiser state**: :class:`mer_model.batched.optim.StackedOptimizer`, element-wise per fold with a
  per-fold step count, lr and weight decay; a fold without a batch at a step (its epoch is shorter, or it
  has fewer epochs) is frozen for that step (weights, moments, running stats);
- **own AAU weights, LAM matrices, BatchNorm statistics**: they are stacked parameters / buffers like all
  others;
- **same evaluation**: after training, each fold's slice is loaded back into its own plain model, whose
  BatchNorm statistics are recomputed on its training set (``update_bn``) and which predicts its
  left-out subject, exactly as ``train_fold`` does.

"Same architecture": folds can be packed together when their configs agree on every key of
``ARCH_KEYS`` (what ``build_model`` builds, plus the optimiser kind), so that their parameters have the
same names and shapes and one forward serves all. The keys of ``PER_FOLD_KEYS`` (epochs, batch size, lr,
weight decay, beta) may differ between folds: e.g. the LOSO folds of several arms that differ only in beta.

Why: one GTS-GN fold is ~185k parameters and a few hundred clips; trained alone it is bound by per-op
overhead (Python dispatch, kernel launches), not arithmetic. Stacking K folds makes each op K times larger
for about the same overhead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from mer_model import train as fold  # the fold steps train_fold takes, shared (module attributes on purpose)
from mer_model.batched.layers import stacked_template
from mer_model.batched.optim import StackedOptimizer
from mer_model.config import validate_config
from mer_model.errors import InputError
from mer_model.losses import au_layer_shares, total_loss
from mer_model.models import build_model
from mer_model.train import FoldData, FoldResult

# What must agree for folds to share one stacked model (see the module docstring).
ARCH_KEYS = ("model", "features", "points", "lam", "fusion_layer", "au_loss", "num_classes", "num_aus",
             "optimizer", "input", "align", "aau_weighting")
# What may differ from fold to fold inside one packed group.
PER_FOLD_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "beta")


def _check_group(cfgs: list[dict[str, Any]]) -> None:
    bf16 = next((i for i, c in enumerate(cfgs) if c["precision"] != "fp32"), None)
    if bf16 is not None:  # vmapped BatchNorm refuses autocast's bf16 activations (fp32 weights)
        raise InputError(
            f"config: precision: fold {bf16} has {cfgs[bf16]['precision']!r}; allowed: 'fp32' for packed "
            "(fold-batched) training; train bf16 folds alone (resources.packing: 1)"
        )
    for i, c in enumerate(cfgs[1:], start=1):
        for key in ARCH_KEYS:
            if c[key] != cfgs[0][key]:
                raise InputError(
                    f"config: {key}: fold {i} has {c[key]!r}, fold 0 {cfgs[0][key]!r}; allowed: one value "
                    f"per packed group (folds packed together must share {', '.join(ARCH_KEYS)})"
                )


def _padded(tensors: list[Tensor]) -> Tensor:
    """K tensors ``(M_k, *rest)`` -> ``(K, max M_k, *rest)``, zero-padded (padding is never indexed)."""
    out = tensors[0].new_zeros((len(tensors), max(len(t) for t in tensors), *tensors[0].shape[1:]))
    for k, t in enumerate(tensors):
        out[k, : len(t)] = t
    return out


def _step_batches(
    parts: list[list[Tensor] | None], sizes: list[int]
) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """One epoch's steps for all folds: per step ``(idx (K, B), bn_mask (K, B), loss_w (K, B), active (K,))``.

    ``parts[k]`` is fold k's list of index batches this epoch (None: fold k has finished its epochs).
    A fold with no batch at a step gets real samples ``0..B-1 (mod M_k)`` with a full BatchNorm mask (so its
    forward stays finite) and zero loss weight and ``active = False`` (so nothing of it changes).
    """
    n_steps = max(len(p) for p in parts if p is not None)
    out = []
    for s in range(n_steps):
        b = max(len(p[s]) for p in parts if p is not None and s < len(p))
        idx = torch.zeros(len(parts), b, dtype=torch.long)
        bn_mask = torch.ones(len(parts), b)
        loss_w = torch.zeros(len(parts), b)
        active = torch.zeros(len(parts), dtype=torch.bool)
        for k, p in enumerate(parts):
            if p is None or s >= len(p):
                idx[k] = torch.arange(b) % sizes[k]
                continue
            n = len(p[s])
            idx[k, :n], idx[k, n:] = p[s], p[s][0]
            bn_mask[k, n:] = 0.0
            loss_w[k, :n] = 1.0
            active[k] = True
        out.append((idx, bn_mask, loss_w, active))
    return out


def train_folds_batched(
    config: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    folds: Sequence[tuple[FoldData, FoldData]],
    seeds: int | Sequence[int] = 0,
    device: str | torch.device = "cpu",
) -> list[FoldResult]:
    """Train K folds together; fold k's result is ``train_fold(config_k, *folds[k], seeds[k], device)``'s.

    Args:
        config: one flat config for all folds, or one per fold (same ``ARCH_KEYS``; ``PER_FOLD_KEYS`` free).
        folds: K ``(train, test)`` pairs (e.g. the LOSO folds); training sets may differ in size.
        seeds: one seed for all folds or one per fold.
        device: torch device for the whole group.
    Returns:
        K ``FoldResult``s in the order of ``folds``; ``train_seconds`` is the group's wall time / K.
    Raises:
        InputError: configs that cannot share one stacked model, a bad config, or too few samples.
    """
    t0 = time.perf_counter()
    dev = torch.device(device)
    cfgs, seed_list = _group_configs(config, folds, seeds)
    data = [fold.training_tensors(tr, dev) for tr, _ in folds]
    sizes = [len(x) for x, *_ in data]
    n_au = [fold.check_au_supervision(c, tr) for c, (tr, _) in zip(cfgs, folds, strict=True)]
    # a fold whose clips are all labelled gets a mask of ones: multiplying by 1 keeps its losses exact
    data = [(x, y, a, torch.ones(len(x), device=dev, dtype=x.dtype) if m is None else m.to(x.dtype))
            for x, y, a, m in data]
    if min(sizes) < 2:
        k = sizes.index(min(sizes))
        raise InputError(f"train: landmarks: fold {k} has {sizes[k]} training samples; allowed: at least 2")
    with fold.deterministic(dev):
        models = []
        for cfg, seed in zip(cfgs, seed_list, strict=True):
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                torch.manual_seed(seed)  # the very init train_fold makes for this seed
                models.append(build_model(cfg).to(dev))
        stack = _Stack(models, cfgs, dev)
        curves = stack.train(data, sizes, seed_list)
        results = [
            fold.finish_fold(model, data[k][0], test, batch_size=cfgs[k]["batch_size"], curve=curves[k],
                             epochs=cfgs[k]["epochs"], seed=seed_list[k], n_train=len(folds[k][0].labels))
            for k, ((_, test), model) in enumerate(zip(folds, stack.unstacked(), strict=True))
        ]
    seconds = (time.perf_counter() - t0) / len(folds)
    for r, w_curve in zip(results, stack.w_curves, strict=True):
        r.train_seconds = seconds  # the group's wall time, shared equally
        r.aau_weight_curve = w_curve
    for r, n in zip(results, n_au, strict=True):
        r.n_au_train = n
    return results


def _group_configs(
    config: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    folds: Sequence[tuple[FoldData, FoldData]],
    seeds: int | Sequence[int],
) -> tuple[list[dict[str, Any]], list[int]]:
    """One validated config (sizes from the data) and one seed per fold; refuses groups that cannot share a
    stacked model."""
    k_folds = len(folds)
    if k_folds == 0:
        raise InputError("folds: got an empty list; allowed: at least one (train, test) pair")
    configs = [config] * k_folds if isinstance(config, Mapping) else list(config)
    seed_list = [int(seeds)] * k_folds if isinstance(seeds, int | np.integer) else [int(s) for s in seeds]
    if len(configs) != k_folds or len(seed_list) != k_folds:
        raise InputError(
            f"train_folds_batched: got {k_folds} folds, {len(configs)} configs, {len(seed_list)} seeds; "
            "allowed: one config / seed, or one per fold"
        )
    cfgs = [fold.resolve_sizes(validate_config(c), tr, te)
            for c, (tr, te) in zip(configs, folds, strict=True)]
    _check_group(cfgs)
    return cfgs, seed_list


class _Stack:
    """K models of one architecture as one stacked model (``torch.func``), with its optimiser and the two
    vmapped losses (masked: some fold is padded or idle at the step; full: every fold has a whole batch)."""

    def __init__(self, models: list[torch.nn.Module], cfgs: list[dict[str, Any]], dev: torch.device):
        self.models, self.cfgs, self.dev = models, cfgs, dev
        self.weighting = cfgs[0]["aau_weighting"]  # one per group (ARCH_KEYS)
        self.n_au_layers = len(models[0].au_layers)
        self.template, self.bn_names = stacked_template(models[0])
        self.full, _ = stacked_template(models[0], masked=False)
        self.params, all_buffers = stack_module_state(models)  # (K, ...) leaves; params require grad
        self.bn_buf = {n: b for n, b in all_buffers.items() if n.rsplit(".", 1)[0] in self.bn_names}
        lr, wd, self.betas = (torch.tensor([float(c[key]) for c in cfgs], device=dev)
                              for key in ("lr", "weight_decay", "beta"))  # (K,) each
        self.names = list(self.params)
        self.opt = StackedOptimizer(cfgs[0]["optimizer"], [self.params[n] for n in self.names], lr, wd)
        self.loss_masked, self.loss_full = vmap(self._fold_loss), vmap(self._fold_loss_full)

    def _fold_loss(self, p, b, x, y, a, m, bn_mask, loss_w, active, beta):  # noqa: ANN001, ANN202
        """One fold's slice of the stack: Eq. (12) over its real samples, BatchNorm over them only; ``m``
        its AU-label mask (the AU losses over the labelled samples only)."""
        extra = {f"{n}.sample_mask": bn_mask for n in self.bn_names}
        extra.update({f"{n}.update": active for n in self.bn_names})
        logits, au = functional_call(self.template, {**p, **b, **extra}, (x,), {"return_aux": True})
        return total_loss(logits, y, au, a, p.get("aau_w"), beta, weight=loss_w, aau_weighting=self.weighting,
                          au_mask=m)

    def _fold_loss_full(self, p, b, x, y, a, m, beta):  # noqa: ANN001, ANN202
        logits, au = functional_call(self.full, {**p, **b}, (x,), {"return_aux": True})
        return total_loss(logits, y, au, a, p.get("aau_w"), beta, weight=torch.ones_like(y, dtype=x.dtype),
                          aau_weighting=self.weighting, au_mask=m)

    def train(self, data: list[tuple[Tensor, Tensor, Tensor, Tensor]], sizes: list[int],
              seeds: list[int]) -> list[list[float]]:
        """Every fold's epochs, fold k shuffling with its own generator; returns each fold's loss curve."""
        k_folds, dev, cfgs = len(sizes), self.dev, self.cfgs
        x_all, y_all, a_all, m_all = (_padded([d[i] for d in data]) for i in range(4))  # (K, M, ...)
        rows = torch.arange(k_folds, device=dev)[:, None]
        gens = [torch.Generator().manual_seed(s) for s in seeds]  # fold k's own shuffles
        curves: list[list[float]] = [[] for _ in range(k_folds)]
        self.w_curves = [[self._shares(k)] for k in range(k_folds)]  # AAU weights at init, then per epoch
        for epoch in range(max(c["epochs"] for c in cfgs)):
            parts = [
                fold.shuffled_batches(sizes[k], cfgs[k]["batch_size"], gens[k])
                if epoch < cfgs[k]["epochs"] else None
                for k in range(k_folds)
            ]
            total = torch.zeros(k_folds, device=dev)
            for idx, bn_mask, loss_w, active in _step_batches(parts, sizes):
                idx, bn_mask, loss_w, act = idx.to(dev), bn_mask.to(dev), loss_w.to(dev), active.to(dev)
                total = total + self._step(x_all[rows, idx], y_all[rows, idx], a_all[rows, idx],
                                           m_all[rows, idx], bn_mask, loss_w, act,
                                           whole=bool(active.all()) and bool(bn_mask.all()))
            for k, t in enumerate(total.cpu().tolist()):  # one sync per epoch
                if epoch < cfgs[k]["epochs"]:
                    curves[k].append(t / sizes[k])
                    self.w_curves[k].append(self._shares(k))
        return curves

    def _shares(self, k: int) -> list[float]:
        """Fold k's AAU layer weights now (``losses.au_layer_shares`` of its slice of the stack)."""
        w = self.params.get("aau_w")
        with torch.no_grad():
            shares = au_layer_shares(self.weighting, None if w is None else w[k], self.n_au_layers)
        return [float(v) for v in shares.cpu().tolist()]

    def _step(self, xb: Tensor, yb: Tensor, ab: Tensor, mb: Tensor, bn_mask: Tensor, loss_w: Tensor,
              act: Tensor, whole: bool) -> Tensor:
        """One optimiser step of every active fold; returns each fold's summed loss over its real samples."""
        if whole:
            losses = self.loss_full(self.params, self.bn_buf, xb, yb, ab, mb, self.betas)  # (K,)
        else:
            losses = self.loss_masked(self.params, self.bn_buf, xb, yb, ab, mb, bn_mask, loss_w, act,
                                      self.betas)
        self.opt.zero_grad()
        losses.sum().backward()  # folds are independent: d(sum)/d(theta_k) = dL_k/d(theta_k)
        self.opt.step(act)
        return losses.detach() * loss_w.sum(1)

    def unstacked(self) -> list[torch.nn.Module]:
        """Each fold's slice loaded back into its own plain model (graphs and point indices are shared)."""
        for k, model in enumerate(self.models):
            state = {n: self.params[n][k].detach() for n in self.names}
            state |= {n: b[k] for n, b in self.bn_buf.items()}
            model.load_state_dict(state, strict=False)
        return self.models
