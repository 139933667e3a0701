"""Graph layers of paper III-B: GCN (Eqs. 4-5), GCN with LAM (Eq. 6), TCN (Eq. 7), SS module (Eq. 8).

Tensors are laid out like ST-GCN / pyskl: ``(N, C, T, V)`` = batch, channels, frames (onset, apex,
offset), nodes. Forward passes avoid in-place ops on parameters and ``.item()`` so that the modules can
later run under ``torch.func.functional_call`` + ``vmap`` (fold-batched training).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


def normalized_adjacency(adjacency: np.ndarray | Tensor) -> Tensor:
    """Eqs. (4)-(5): ``L = I + D^-1/2 A D^-1/2`` with D the degree matrix of A.

    An isolated node (degree 0) keeps only its self term (its D^-1/2 is taken as 0, not inf).
    """
    a = torch.tensor(np.array(adjacency, dtype=np.float32))  # a copy: point sets are read-only
    deg = a.sum(dim=1)  # D = sum_j A_ij
    d_inv_sqrt = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
    return torch.eye(a.shape[0]) + d_inv_sqrt[:, None] * a * d_inv_sqrt[None, :]  # Eq. (4)/(5)


class GraphConv(nn.Module):
    """GCN' of one frame, applied to every frame: ``Y^f = (L + A_L) X^f theta`` (Eq. 6; Eq. 5 without LAM).

    ``theta`` is a 1x1 convolution (a per-node linear map C_in -> C_out, shared over frames and nodes);
    ``A_L`` (V, V) is the learnable adjacency (LAM), initialised to zero so training starts from the fixed
    facial graph L. Input ``(N, C_in, T, V)`` -> output ``(N, C_out, T, V)``.
    """

    def __init__(self, in_channels: int, out_channels: int, adjacency: np.ndarray, lam: bool = True) -> None:
        super().__init__()
        self.register_buffer("L", normalized_adjacency(adjacency))  # fixed, Eq. (5)
        v = self.L.shape[0]
        self.A_L = nn.Parameter(torch.zeros(v, v)) if lam else None  # LAM, Eq. (6)
        self.theta = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def graph(self) -> Tensor:
        """(V, V) effective propagation matrix ``L + A_L``."""
        return self.L if self.A_L is None else self.L + self.A_L

    def forward(self, x: Tensor) -> Tensor:
        x = self.theta(x)  # X theta: (N, C_out, T, V)
        return torch.einsum("nctw,vw->nctv", x, self.graph())  # (L + A_L) X theta, Eq. (6)


class TemporalConv(nn.Module):
    """TCN of Eq. (7): a kernel-3 convolution over the frames of each node, then BatchNorm.

    ``F_n = [Y_n^1, Y_n^2, Y_n^3] W``; padding 1 keeps T = 3 so blocks stack. ``(N, C, T, V)`` -> same.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, (kernel_size, 1), padding=(kernel_size // 2, 0))  # Eq. (7)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class SSModule(nn.Module):
    """Separate-Structure module (Eq. 8): GCN' per frame, then TCN across frames, as an ST-GCN block.

    ``relu(TCN(relu(BN(GCN'(x)))) + residual(x))`` where the residual is the identity when the shape is
    unchanged and a 1x1 conv + BN otherwise. ``(N, C_in, T, V)`` -> ``(N, C_out, T, V)``.
    """

    def __init__(self, in_channels: int, out_channels: int, adjacency: np.ndarray, lam: bool = True) -> None:
        super().__init__()
        self.gcn = GraphConv(in_channels, out_channels, adjacency, lam)  # Eq. (6)
        self.bn = nn.BatchNorm2d(out_channels)
        self.tcn = TemporalConv(out_channels)  # Eq. (7)
        if in_channels == out_channels:
            self.residual: nn.Module = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1), nn.BatchNorm2d(out_channels)
            )
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.bn(self.gcn(x)))
        return self.relu(self.tcn(y) + self.residual(x))  # Eq. (8) + residual


class InputNorm(nn.Module):
    """BatchNorm over every (channel, node) pair of the input, as ST-GCN's ``data_bn``.

    GTS-GN gives each stream its own (paper III-C: coordinates and (D, alpha) have different
    distributions). ``(N, C, T, V)`` -> same.
    """

    def __init__(self, channels: int, num_nodes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(channels * num_nodes)

    def forward(self, x: Tensor) -> Tensor:
        n, c, t, v = x.shape
        y = self.bn(x.permute(0, 1, 3, 2).reshape(n, c * v, t))
        return y.reshape(n, c, v, t).permute(0, 1, 3, 2)
