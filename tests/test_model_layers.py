"""Graph layers: Eq. (4) normalised adjacency, Eq. (6) LAM propagation, Eq. (7) TCN, hand-computed."""

import numpy as np
import pytest
import torch

from mer_model.layers import GraphConv, InputNorm, SSModule, TemporalConv, normalized_adjacency

PATH3 = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=np.float32)


def test_eq4_normalized_adjacency_on_a_path_graph():
    # degrees (1, 2, 1): off-diagonal entries 1 / sqrt(1 * 2) = 0.7071068; L = I + D^-1/2 A D^-1/2
    expected = [[1.0, 0.7071068, 0.0], [0.7071068, 1.0, 0.7071068], [0.0, 0.7071068, 1.0]]
    np.testing.assert_allclose(normalized_adjacency(PATH3).numpy(), expected, atol=1e-6)


def test_eq4_isolated_node_keeps_only_its_self_loop():
    a = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=np.float32)
    # nodes 0-1 both degree 1 -> 1/sqrt(1*1) = 1; node 2 isolated -> just I
    np.testing.assert_allclose(normalized_adjacency(a).numpy(), [[1, 1, 0], [1, 1, 0], [0, 0, 1]])


def test_eq6_lam_propagation_hand_computed():
    g = GraphConv(1, 1, np.array([[0, 1], [1, 0]], dtype=np.float32), lam=True)
    with torch.no_grad():
        g.theta.weight.fill_(2.0)
        g.theta.bias.zero_()
        g.A_L.copy_(torch.tensor([[0.0, 0.5], [0.0, 0.0]]))
    x = torch.tensor([3.0, 4.0]).reshape(1, 1, 1, 2)  # (N, C, T, V)
    # L = [[1, 1], [1, 1]]; L + A_L = [[1, 1.5], [1, 1]]; X theta = (6, 8)
    # Y = (1*6 + 1.5*8, 1*6 + 1*8) = (18, 14)
    assert g(x).flatten().tolist() == pytest.approx([18.0, 14.0])


def test_lam_starts_at_zero_and_can_be_switched_off():
    with_lam, without = GraphConv(2, 4, PATH3, lam=True), GraphConv(2, 4, PATH3, lam=False)
    assert torch.count_nonzero(with_lam.A_L) == 0 and without.A_L is None
    assert sum(p.numel() for p in with_lam.parameters()) - sum(p.numel() for p in without.parameters()) == 9


def test_eq7_tcn_kernel_three_over_onset_apex_offset():
    t = TemporalConv(1)
    with torch.no_grad():
        t.conv.weight.copy_(torch.tensor([1.0, 10.0, 100.0]).reshape(1, 1, 3, 1))
        t.conv.bias.zero_()
    x = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 1, 3, 1)  # one node over the three frames
    # zero padding 1: frames (0, 1, 2, 3, 0); out[t] = 1*x[t-1] + 10*x[t] + 100*x[t+1]
    assert t.conv(x).flatten().tolist() == pytest.approx([210.0, 321.0, 32.0])


def test_gradient_reaches_lam():
    g = GraphConv(2, 3, PATH3, lam=True)
    g(torch.randn(4, 2, 3, 3)).pow(2).sum().backward()
    assert g.A_L.grad is not None and torch.count_nonzero(g.A_L.grad) == 9


def test_ss_module_shapes_and_residual_kind():
    same, wider = SSModule(8, 8, PATH3), SSModule(8, 16, PATH3)
    x = torch.randn(5, 8, 3, 3)
    assert same(x).shape == (5, 8, 3, 3) and wider(x).shape == (5, 16, 3, 3)
    assert isinstance(same.residual, torch.nn.Identity)
    assert isinstance(wider.residual, torch.nn.Sequential)
    assert (wider(x) >= 0).all()  # ends with ReLU


def test_ss_module_mixes_frames_only_through_the_kernel3_tcn():
    # GCN' is per frame (Eq. 6) and the TCN kernel covers t-1..t+1 (Eq. 7): the offset frame reaches the
    # apex output but not the onset output.
    m = SSModule(2, 4, PATH3).eval()
    x = torch.randn(1, 2, 3, 3)
    y = x.clone()
    y[:, :, 2] += 1.0  # change the offset frame only
    out_x, out_y = m(x), m(y)
    torch.testing.assert_close(out_x[:, :, 0], out_y[:, :, 0])  # onset output: frames 0..1 only
    assert not torch.allclose(out_x[:, :, 1], out_y[:, :, 1])  # apex output sees the offset


def test_input_norm_normalises_each_channel_node_pair():
    n = InputNorm(2, 3)
    x = torch.randn(64, 2, 3, 3) * torch.tensor([1.0, 50.0]).reshape(1, 2, 1, 1) + 7.0
    y = n(x)
    per_pair = y.permute(1, 3, 0, 2).reshape(6, -1)
    torch.testing.assert_close(per_pair.mean(1), torch.zeros(6), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_pair.std(1, unbiased=False), torch.ones(6), atol=1e-3, rtol=0)
