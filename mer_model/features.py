"""GM-Graph node features (paper III-A): per-sample normalisation, Type A (x, y), Type B (x, y, D, alpha).

Everything here is a pure function of one sample's own landmarks: no statistics from other samples or
subjects enter, so nothing can leak across LOSO folds.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mer_model.landmarks import EYE_CORNERS, point_set


def normalise(landmarks: Tensor, eps: float = 1e-6) -> Tensor:
    """Centre and scale each sample by its own onset frame.

    Args:
        landmarks: (N, T=3, 68, 2) raw detector coordinates (pixels), frame 0 the onset.
    Returns:
        (N, T, 68, 2): ``(p - c) / s`` with c the onset's centroid of all 68 points and s the onset's
        distance between the outer eye corners (36, 45). Translation and scale of the face box drop out;
        the movement between frames is kept, in inter-ocular units.
    """
    onset = landmarks[:, 0]  # (N, 68, 2)
    centre = onset.mean(dim=1)  # (N, 2)
    scale = (onset[:, EYE_CORNERS[0]] - onset[:, EYE_CORNERS[1]]).norm(dim=-1)  # (N,)
    # clamp: a degenerate (all-equal) detection must give finite features, not NaN
    scale = scale.clamp_min(eps)
    return (landmarks - centre[:, None, None, :]) / scale[:, None, None, None]


def distance_angle(xy: Tensor, neighbour: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. (1): squared distance D and angle alpha from each node n_i to its designated neighbour n_j.

    Args:
        xy: (..., V, 2) node coordinates.
        neighbour: (V,) long, index j of each node's designated neighbour.
    Returns:
        D, alpha: each (..., V). ``alpha = atan2(y_i - y_j, x_i - x_j)`` in (-pi, pi]: the paper's
        ``arctan(dy / dx)`` is undefined at dx = 0 and folds opposite directions together; atan2 is
        defined everywhere except coincident points (where it gives 0) and keeps the direction.
    """
    d = xy - xy[..., neighbour, :]  # (..., V, 2): n_i - n_j
    dist = d[..., 0] ** 2 + d[..., 1] ** 2  # Eq. (1), D
    alpha = torch.atan2(d[..., 1], d[..., 0])  # Eq. (1), alpha (atan2 instead of arctan, see docstring)
    return dist, alpha


class GMGraphFeatures(nn.Module):
    """Raw dlib-68 landmarks -> GM-Graph node features (parameter-free).

    Input ``(N, T=3, 68, 2)``; output ``(N, C, T=3, V)`` with C = 2 for Type A ``(x, y)`` and C = 4 for
    Type B ``(x, y, D, alpha)``, V the number of nodes of the point set.
    """

    def __init__(self, points: int = 14, features: str = "A") -> None:
        super().__init__()
        ps = point_set(points)
        self.features = features
        self.register_buffer("index", torch.tensor(ps.indices, dtype=torch.long), persistent=False)
        self.register_buffer("neighbour", torch.tensor(ps.neighbour, dtype=torch.long), persistent=False)

    @property
    def out_channels(self) -> int:
        return 2 if self.features == "A" else 4

    def forward(self, landmarks: Tensor) -> Tensor:
        xy = normalise(landmarks)[:, :, self.index]  # (N, T, V, 2)
        if self.features == "B":
            dist, alpha = distance_angle(xy, self.neighbour)  # (N, T, V) each
            feats = torch.cat([xy, dist[..., None], alpha[..., None]], dim=-1)  # (N, T, V, 4)
        else:
            feats = xy
        return feats.permute(0, 3, 1, 2).contiguous()  # (N, C, T, V)
