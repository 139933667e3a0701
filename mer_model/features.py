"""GM-Graph node features (paper III-A): per-sample normalisation, Type A (x, y), Type B (x, y, D, alpha).

Two options here are NOT in the paper (issue 16; docs/model.md "Beyond the paper"), both off by default:
``align="procrustes"`` rotates each clip so its onset best matches a fixed frontal face, and
``input="onset_delta"`` feeds each frame's features minus the onset's (``"onset_delta_shape"`` also keeps
the onset's own features as extra channels).

Everything here is a pure function of one sample's own landmarks (and fixed constants): no statistics from
other samples or subjects enter, so nothing can leak across LOSO folds.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mer_model.landmarks import EYE_CORNERS, REFERENCE_SHAPE, point_set


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


def align_rotation(xy: Tensor) -> Tensor:
    """Rotate each normalised sample so its onset best matches a fixed frontal face (not in the paper).

    Orthogonal Procrustes in 2-D, rotation only (``normalise`` already removed translation and scale): the
    angle minimising ``sum_i |R(theta) p_i - q_i|^2`` over the 68 onset points p (centred) and the reference
    q (``landmarks.REFERENCE_SHAPE``, centred) is ``theta = atan2(sum p x q, sum p . q)``; the same rotation
    turns all three frames about the onset centroid, so the movement between frames is kept (rotated).

    Args:
        xy: (N, T, 68, 2) output of :func:`normalise` (onset centroid at the origin).
    Returns:
        (N, T, 68, 2), the per-clip head roll removed.
    """
    ref = torch.as_tensor(REFERENCE_SHAPE, dtype=xy.dtype, device=xy.device)
    ref = ref - ref.mean(dim=0)  # (68, 2)
    p = xy[:, 0]  # (N, 68, 2), centred by normalise
    cross = (p[..., 0] * ref[:, 1] - p[..., 1] * ref[:, 0]).sum(dim=1)  # (N,)
    dot = (p * ref).sum(dim=(1, 2))  # (N,)
    theta = torch.atan2(cross, dot)
    c, s = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # (N, 2, 2): row p -> p R
    return xy @ rot[:, None]


def onset_relative(feats: Tensor, angle: int | None = None, keep_onset: bool = False) -> Tensor:
    """Each frame's features minus the onset frame's (not in the paper).

    Args:
        feats: (N, T, V, C) per-frame node features, frame 0 the onset.
        angle: channel index holding an angle (alpha of Eq. 1), whose difference is wrapped to (-pi, pi];
            None when there is none.
        keep_onset: also append the onset's own features, repeated over frames, as C more channels.
    Returns:
        (N, T, V, C) or (N, T, V, 2C): the onset frame's delta is zero; the subject's face shape and head
        pose cancel out of the delta channels, only the movement is left.
    """
    onset = feats[:, :1]
    delta = feats - onset
    if angle is not None:  # atan2(sin, cos): a turn across +-pi is a small movement, not ~2 pi
        d = delta[..., angle]
        delta = torch.cat([delta[..., :angle], torch.atan2(torch.sin(d), torch.cos(d))[..., None],
                           delta[..., angle + 1:]], dim=-1)
    if keep_onset:
        delta = torch.cat([delta, onset.expand_as(feats)], dim=-1)
    return delta


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

    Input ``(N, T=3, 68, 2)``; output ``(N, C, T=3, V)``, V the number of nodes of the point set. The paper's
    input (``input="absolute"``) has C = 2 for Type A ``(x, y)`` and C = 4 for Type B ``(x, y, D, alpha)``.
    Channels come in two groups, coordinates then (D, alpha), each ``[features]`` or, for
    ``onset_delta_shape``, ``[delta, onset]``: Type B gives ``(dx, dy, x0, y0, dD, dalpha, D0, alpha0)``,
    so GTS-GN's two streams are always the first and the second half.
    """

    def __init__(self, points: int = 14, features: str = "A", input: str = "absolute",
                 align: str = "none") -> None:
        super().__init__()
        ps = point_set(points)
        self.features, self.input, self.align = features, input, align
        self.register_buffer("index", torch.tensor(ps.indices, dtype=torch.long), persistent=False)
        self.register_buffer("neighbour", torch.tensor(ps.neighbour, dtype=torch.long), persistent=False)

    @property
    def out_channels(self) -> int:
        return (2 if self.features == "A" else 4) * (2 if self.input == "onset_delta_shape" else 1)

    def _represent(self, feats: Tensor, angle: int | None) -> Tensor:
        """One channel group as the configured input: as it is, or onset-relative (+ the onset's)."""
        if self.input == "absolute":
            return feats
        return onset_relative(feats, angle, keep_onset=self.input == "onset_delta_shape")

    def forward(self, landmarks: Tensor) -> Tensor:
        xy = normalise(landmarks)  # (N, T, 68, 2)
        if self.align == "procrustes":
            xy = align_rotation(xy)
        xy = xy[:, :, self.index]  # (N, T, V, 2)
        groups = [self._represent(xy, None)]
        if self.features == "B":
            dist, alpha = distance_angle(xy, self.neighbour)  # (N, T, V) each
            groups.append(self._represent(torch.stack([dist, alpha], dim=-1), angle=1))
        return torch.cat(groups, dim=-1).permute(0, 3, 1, 2).contiguous()  # (N, C, T, V)
