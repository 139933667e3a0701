"""Losses of paper III-D: AU loss per layer, the adaptive AU loss (Eq. 11) and the total loss (Eq. 12)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F


def aau_weights(w: Tensor) -> Tensor:
    """``W_r^2 / sum_r W_r^2`` (Eq. 11): positive, sums to 1, scale-free in W. ``(N_L,)`` -> ``(N_L,)``."""
    sq = w**2
    return sq / sq.sum()


def aau_loss(layer_losses: Tensor | Sequence[Tensor], w: Tensor) -> Tensor:
    """Eq. (11): ``L_AAU = sum_r W_r^2 L_r / sum_r W_r^2``.

    Args:
        layer_losses: the N_L per-layer AU losses L_r, a ``(N_L,)`` tensor or a sequence of scalars.
        w: ``(N_L,)`` learnable weights W_r.
    Returns:
        a scalar tensor.
    """
    losses = layer_losses if isinstance(layer_losses, Tensor) else torch.stack(list(layer_losses))
    if losses.shape != w.shape:
        raise ValueError(
            f"aau_loss: layer_losses has shape {tuple(losses.shape)}, w {tuple(w.shape)}; must match"
        )
    return (aau_weights(w) * losses).sum()  # Eq. (11)


def au_layer_loss(au_logits: Tensor, aus: Tensor) -> Tensor:
    """L_r: multi-label AU loss of one layer's AU head (PyTorch's MultiLabelSoftMarginLoss, mean over batch).

    ``au_logits`` ``(N, num_aus)``, ``aus`` ``(N, num_aus)`` multi-hot.
    """
    return F.multilabel_soft_margin_loss(au_logits, aus)


def _batch_mean(per_sample: Tensor, weight: Tensor) -> Tensor:
    """Mean of ``per_sample`` ``(N,)`` over the samples with weight 1 (0 when there are none)."""
    return (per_sample * weight).sum() / weight.sum().clamp_min(1.0)


def total_loss(
    logits: Tensor,
    labels: Tensor,
    au_logits: Sequence[Tensor] = (),
    aus: Tensor | None = None,
    aau_w: Tensor | None = None,
    beta: float | Tensor = 1.0,
    weight: Tensor | None = None,
) -> Tensor:
    """Eq. (12): ``L_T = L_ME + beta * L_AU``.

    ``L_ME`` is cross entropy on ``logits`` ``(N, C)`` vs ``labels`` ``(N,)``. ``L_AU`` is Eq. (11) over the
    AU heads when ``aau_w`` is given, the single layer's loss for one head (``layer:r``), absent for none.
    ``weight`` ``(N,)`` in {0, 1}: batch means over the weighted samples only (fold-batched training pads
    and idles folds this way; all-zero weight gives 0, hence zero gradients); None: the plain means.
    """
    loss_me = _batch_mean(F.cross_entropy(logits, labels, reduction="none"), weight) if weight is not None \
        else F.cross_entropy(logits, labels)
    if not au_logits:
        return loss_me
    assert aus is not None, "AU heads need AU labels"
    if weight is None:
        layer_losses = [au_layer_loss(a, aus) for a in au_logits]
    else:
        layer_losses = [_batch_mean(F.multilabel_soft_margin_loss(a, aus, reduction="none"), weight)
                        for a in au_logits]
    if aau_w is not None:
        loss_au = aau_loss(layer_losses, aau_w)  # Eq. (11)
    else:
        loss_au = torch.stack(layer_losses).sum()  # one layer: the plain AU loss
    return loss_me + beta * loss_au  # Eq. (12)
