"""Graph layers of paper III-B: GCN (Eqs. 4-5), GCN with LAM (Eq. 6), TCN (Eq. 7), SS module (Eq. 8).

Tensors are laid out like ST-GCN / pyskl: ``(N, C, T, V)`` = batch, channels, frames (onset, apex,
offset), nodes. Forward passes avoid in-place ops on parameters and ``.item()`` so that the modules can
later run under ``torch.func.functional_call`` + ``vmap`` (fold-batched training).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F


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
        if not _plain_leaves(self):
            return self.forward_reference(x)  # swapped leaves (fold-batched template): their own ops
        return self.forward_rows(x)

    def forward_reference(self, x: Tensor) -> Tensor:
        """Eq. (8) through the leaf modules (Conv2d, BatchNorm2d) in the ``(N, C, T, V)`` layout."""
        y = self.relu(self.bn(self.gcn(x)))
        return self.relu(self.tcn(y) + self.residual(x))  # Eq. (8) + residual

    def forward_rows(self, x: Tensor) -> Tensor:
        """Eq. (8) with the same parameters as :meth:`forward_reference`, computed on rows of channels.

        Why: on a CPU the ``(N, C, T, V)`` layout runs every 1x1 and (3, 1) convolution through oneDNN and
        every BatchNorm over 42-element planes, at a fraction of the BLAS rate (profile in
        benchmarks/results/throughput.md). Here activations are ``(N, T, V, C)`` rows: each convolution is
        one GEMM over all N*T*V positions (the TCN by im2col along T, K = 3C), the graph product is a
        batched ``(V, V) @ (V, C)``, each BatchNorm normalises ``(N*T*V, C)`` rows. Same function; only the
        order of float additions differs. Input ``(N, C_in, T, V)`` of any strides; output
        ``(N, C_out, T, V)`` as a channels-last view (the next module's permute back is free).
        """
        rows = x.permute(0, 2, 3, 1)  # (N, T, V, C_in)
        g = self.gcn
        h = F.linear(rows, g.theta.weight.flatten(1), g.theta.bias)  # X theta, (N, T, V, C_out)
        h = _per_frame_graph(g.graph(), h)  # (L + A_L) X theta per frame, Eq. (6)
        h = torch.relu(_batch_norm_rows(self.bn, h))
        conv = self.tcn.conv
        w = conv.weight.permute(0, 2, 1, 3).flatten(1)  # (C, k * C): k-major, as the im2col columns below
        y = _batch_norm_rows(self.tcn.bn, F.linear(_frame_windows(h, conv.kernel_size[0]), w, conv.bias))
        if isinstance(self.residual, nn.Identity):
            res = rows
        else:
            rconv, rbn = self.residual[0], self.residual[1]
            res = _batch_norm_rows(rbn, F.linear(rows, rconv.weight.flatten(1), rconv.bias))
        return torch.relu(y + res).permute(0, 3, 1, 2)  # Eq. (8) + residual, (N, C_out, T, V) view


def _plain_leaves(m: SSModule) -> bool:
    """Whether every conv / BatchNorm of ``m`` is the stock module (not a fold-batching stand-in)."""
    leaves = [m.gcn.theta, m.bn, m.tcn.conv, m.tcn.bn, *getattr(m.residual, "children", lambda: [])()]
    return all(type(leaf) in (nn.Conv2d, nn.BatchNorm2d) for leaf in leaves)


def _per_frame_graph(graph: Tensor, h: Tensor) -> Tensor:
    """``graph (V, V) @ h[n, t] (V, C)`` for every sample and frame: ``(N, T, V, C)`` -> same.

    One ``bmm`` over N*T with the graph expanded (no copy); ``torch.matmul`` would fold this into an
    ``mm`` over transposed copies, twice as slow forward + backward at these sizes.
    """
    n, t, v, c = h.shape
    out = torch.bmm(graph.expand(n * t, v, v), h.reshape(n * t, v, c))
    return out.view(n, t, v, c)


def _frame_windows(h: Tensor, k: int) -> Tensor:
    """im2col along frames: ``(N, T, V, C)`` -> ``(N, T, V, k * C)``, zero-padded by k // 2 at both ends.

    Window j of output frame t is input frame ``t + j - k // 2``, so a ``(k, 1)`` convolution with
    ``padding=(k // 2, 0)`` is one product with its weight rearranged to ``(C_out, k * C_in)``.
    """
    t = h.shape[1]
    padded = F.pad(h, (0, 0, 0, 0, k // 2, k // 2))  # (N, T + 2 (k // 2), V, C)
    return torch.cat([padded[:, j : j + t] for j in range(k)], dim=-1)


def _batch_norm_rows(bn: nn.BatchNorm2d, h: Tensor) -> Tensor:
    """``bn`` applied to ``(..., C)`` rows: what ``bn`` does to the ``(N, C, T, V)`` layout, statistic for
    statistic (the same running-average rule as ``nn.BatchNorm2d.forward``, cumulative when momentum is
    None as under ``update_bn``), but over a ``(M, C)`` matrix, whose CPU kernel is vectorised over C."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch = bn.training or bn.running_mean is None
    track = not bn.training or bn.track_running_stats
    out = F.batch_norm(
        h.reshape(-1, h.shape[-1]),
        bn.running_mean if track else None,
        bn.running_var if track else None,
        bn.weight,
        bn.bias,
        use_batch,
        factor,
        bn.eps,
    )
    return out.view(h.shape)


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
