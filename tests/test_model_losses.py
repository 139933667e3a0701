"""AAU loss (Eq. 11) and total loss (Eq. 12) on hand-computed cases."""

import math

import pytest
import torch

from mer_model.losses import aau_loss, aau_weights, au_layer_loss, total_loss


def test_eq11_hand_computed():
    # L_r = (1, 2, 4), W = (1, 2, 1): W^2 = (1, 4, 1), sum 6 -> (1*1 + 4*2 + 1*4) / 6 = 13/6
    loss = aau_loss(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 2.0, 1.0]))
    assert loss.item() == pytest.approx(13 / 6)
    assert aau_weights(torch.tensor([1.0, 2.0, 1.0])).tolist() == pytest.approx([1 / 6, 4 / 6, 1 / 6])


def test_eq11_accepts_a_sequence_of_scalars_and_is_scale_free_in_w():
    losses = [torch.tensor(3.0), torch.tensor(5.0)]
    # W = (-3, 4) and (0.3, 0.4): W^2 proportional -> weights (9/25, 16/25); 3*0.36 + 5*0.64 = 4.28
    assert aau_loss(losses, torch.tensor([-3.0, 4.0])).item() == pytest.approx(4.28)
    assert aau_loss(losses, torch.tensor([0.3, 0.4])).item() == pytest.approx(4.28)


def test_aau_weights_positive_and_sum_to_one():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        w = torch.randn(4, generator=g) * 10
        p = aau_weights(w)
        assert (p > 0).all() and p.sum().item() == pytest.approx(1.0)


def test_eq11_gradient_moves_weight_towards_smaller_loss():
    w = torch.ones(2, requires_grad=True)
    aau_loss(torch.tensor([1.0, 3.0]), w).backward()
    # dL/dW_r = 2 W_r (L_r - L_AAU) / sum W^2 = (1 - 2) and (3 - 2): gradient descent grows W_1, shrinks W_2
    assert w.grad.tolist() == pytest.approx([-1.0, 1.0])


def test_aau_loss_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="must match"):
        aau_loss(torch.tensor([1.0, 2.0]), torch.ones(3))


def test_au_layer_loss_is_multilabel_soft_margin():
    logits, target = torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]])
    # mean over AUs of -[y log s(x) + (1-y) log(1 - s(x))]: (log 2 + log(1 + e^2)) / 2
    expected = (math.log(2) + math.log(1 + math.e**2)) / 2
    assert au_layer_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_eq12_total_loss():
    logits = torch.tensor([[0.0, 0.0]])
    labels = torch.tensor([1])
    au = (torch.tensor([[0.0]]), torch.tensor([[0.0]]))
    aus = torch.tensor([[1.0]])
    # L_ME = log 2; each L_r = log 2; AAU with any W = log 2; total = log 2 + 0.5 log 2
    w = torch.tensor([1.0, 3.0])
    assert total_loss(logits, labels, au, aus, w, beta=0.5).item() == pytest.approx(1.5 * math.log(2))
    assert total_loss(logits, labels).item() == pytest.approx(math.log(2))  # au_loss none
    one = total_loss(logits, labels, au[:1], aus, None, beta=2.0)  # layer:r -> L_ME + beta * L_r
    assert one.item() == pytest.approx(3 * math.log(2))
