"""Losses of paper III-D: AU loss per layer, the adaptive AU loss (Eq. 11) and the total loss (Eq. 12).

``aau_weighting`` chooses how the AAU layers' losses are combined: ``learned`` is the paper's Eq. (11); the
others are NOT in the paper (issue 16; docs/model.md says what the weights can and cannot mean):
``frozen`` (W fixed at its initial ones: Eq. 11 = Eq. 9 averaged, 1/N_L each), ``sum`` (Eq. 9 as written)
and ``uncertainty`` (homoscedastic-uncertainty weighting, Kendall, Gal & Cipolla, CVPR 2018, in the form
``sum_r exp(-s_r) L_r + s_r``: unlike Eq. 11 it has an interior optimum, ``exp(-s_r) = 1 / L_r``).
"""

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


def combine_au_losses(losses: Tensor, weighting: str = "learned", param: Tensor | None = None) -> Tensor:
    """``L_AU`` from the per-layer AU losses ``(N_L,)``.

    ``param`` is the weighting's learnable ``(N_L,)`` tensor: W_r for ``learned`` (Eq. 11), the
    log-variances s_r for ``uncertainty``; None otherwise. ``learned`` without W is one ``layer:r`` loss.
    """
    if weighting == "uncertainty":
        assert param is not None, "uncertainty weighting needs its log-variances"
        return (torch.exp(-param) * losses + param).sum()  # Kendall et al. 2018 (ours, not the paper's)
    if weighting == "frozen":
        return losses.mean()  # Eq. (11) with W_r = 1 for all r: Eq. (9) / N_L
    if weighting == "learned" and param is not None:
        return aau_loss(losses, param)  # Eq. (11)
    return losses.sum()  # Eq. (9); for a single layer its plain AU loss


def au_layer_shares(weighting: str, param: Tensor | None, n_layers: int) -> Tensor:
    """Each AAU layer's share of ``L_AU`` ``(N_L,)``, summing to 1 (Table VIII reports these).

    ``learned``: W_r^2 / sum W^2 (Eq. 11); ``uncertainty``: exp(-s_r) / sum exp(-s); ``frozen`` and
    ``sum``: 1/N_L (``sum`` weighs each layer 1, i.e. N_L times the scale of ``frozen``); one ``layer:r``
    loss without W: ``[1.]``.
    """
    if weighting == "uncertainty" and param is not None:
        return torch.softmax(-param, dim=-1)
    if weighting == "learned" and param is not None:
        return aau_weights(param)
    return torch.full((n_layers,), 1.0 / max(n_layers, 1))


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
    aau_weighting: str = "learned",
    au_mask: Tensor | None = None,
) -> Tensor:
    """Eq. (12): ``L_T = L_ME + beta * L_AU``.

    ``L_ME`` is cross entropy on ``logits`` ``(N, C)`` vs ``labels`` ``(N,)``. ``L_AU`` combines the AU
    heads' losses by ``aau_weighting`` (:func:`combine_au_losses`; ``aau_w`` is its learnable tensor: Eq. 11's
    W by default), the single layer's loss for one head (``layer:r``), absent for none.
    ``weight`` ``(N,)`` in {0, 1}: batch means over the weighted samples only (fold-batched training pads
    and idles folds this way; all-zero weight gives 0, hence zero gradients); None: the plain means.
    ``au_mask`` ``(N,)`` in {0, 1}: the samples whose ``aus`` row is an annotation (SMIC has none). Each
    ``L_r`` is the mean over those samples only (a mask, never zeros taken as targets), and a batch without
    any adds no AU term at all, so the AAU weights learn from labelled clips only; an unlabelled sample's
    gradient is its classification loss's. None: every sample is labelled.
    """
    loss_me = _batch_mean(F.cross_entropy(logits, labels, reduction="none"), weight) if weight is not None \
        else F.cross_entropy(logits, labels)
    if not au_logits:
        return loss_me
    assert aus is not None, "AU heads need AU labels"
    if weight is None and au_mask is None:
        layer_losses = [au_layer_loss(a, aus) for a in au_logits]
    else:
        w_au = au_weight(weight, au_mask)
        layer_losses = [_batch_mean(F.multilabel_soft_margin_loss(a, aus, reduction="none"), w_au)
                        for a in au_logits]
    loss_au = combine_au_losses(torch.stack(layer_losses), aau_weighting, aau_w)  # Eq. (11) by default
    if au_mask is not None:  # no labelled sample: no AU term (uncertainty's "+ s_r" would still pull on s_r)
        loss_au = loss_au * (w_au.sum() > 0).to(loss_au.dtype)
    return loss_me + beta * loss_au  # Eq. (12)


def au_weight(weight: Tensor | None, au_mask: Tensor | None) -> Tensor:
    """The per-sample weight ``(N,)`` of the AU losses: the batch weight times the AU-label mask."""
    if au_mask is None:
        assert weight is not None
        return weight
    m = au_mask.to(torch.get_default_dtype() if weight is None else weight.dtype)
    return m if weight is None else weight * m
