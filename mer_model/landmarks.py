"""dlib-68 point sets used as GM-Graph nodes, their pre-defined adjacency and designated neighbours.

dlib's 68 points (0-based): jaw 0-16, right brow 17-21, left brow 22-26, nose bridge 27-30, lower nose
31-35, right eye 36-41, left eye 42-47, outer lips 48-59, inner lips 60-67 ("right"/"left" are the
subject's; in the image the subject's right side is on the left).

Three node sets (the paper's Fig. 2a with its 14 points is not in the text; see docs/model.md):

- 14: eyebrows, nose and mouth only (paper III-A leaves the eyes out: blinks, and eye changes echo in the
  brows). Brows: outer end, peak, inner end of each (17, 19, 21, 22, 24, 26: AU2 / AU1 / AU4); nose: nasion
  27 (AU4, AU9 wrinkles), tip 30, alae 31 and 35 (AU9, AU10); mouth: corners 48 and 54 (AU12, AU14, AU15),
  upper lip top 51 (AU10), lower lip bottom 57 (AU16, AU17).
- 31: every eyebrow (10), nose (9) and outer-lip (12) point.
- 68: all points.

The adjacency follows the face's structure: chains along each brow, the nose bridge, the nostril line and
the lip contours; the inner brow ends meet across the glabella and at the nasion; the nose joins the mouth
along the nasolabial folds (ala -> mouth corner) and the philtrum (nose -> upper lip).

Each node also has a *designated neighbour* j for the Type B features D and alpha (Eq. 1). It is the graph
neighbour whose direction n_i - n_j on a reference frontal face lies farthest from the +-pi branch cut of
atan2 (the smallest |alpha|), so that small movements do not wrap alpha from +pi to -pi.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

# One real frontal face: dlib's 68-point predictor on scikit-image's astronaut photograph (pixels).
# Used to orient designated neighbours and as the target of the optional onset rotation alignment
# (features.align_rotation): a fixed geometric choice, no statistics of any dataset.
REFERENCE_SHAPE = np.array(
    [
        [179, 104],
        [180, 116],
        [181, 127],
        [182, 139],
        [185, 150],
        [191, 160],
        [200, 168],
        [209, 176],
        [220, 178],
        [232, 177],
        [243, 171],
        [253, 163],
        [260, 154],
        [265, 143],
        [268, 131],
        [270, 120],
        [272, 108],
        [186, 94],
        [192, 88],
        [200, 87],
        [208, 89],
        [216, 92],
        [236, 93],
        [244, 91],
        [252, 91],
        [260, 92],
        [265, 99],
        [226, 102],
        [225, 111],
        [225, 119],
        [225, 127],
        [214, 131],
        [219, 133],
        [224, 134],
        [229, 133],
        [234, 132],
        [195, 101],
        [200, 98],
        [207, 98],
        [212, 104],
        [206, 104],
        [199, 104],
        [237, 106],
        [243, 100],
        [250, 100],
        [255, 105],
        [250, 107],
        [244, 107],
        [201, 139],
        [209, 139],
        [218, 139],
        [224, 141],
        [230, 140],
        [238, 140],
        [246, 141],
        [238, 151],
        [229, 155],
        [222, 156],
        [216, 155],
        [208, 150],
        [204, 141],
        [218, 143],
        [223, 144],
        [230, 143],
        [243, 142],
        [229, 150],
        [223, 151],
        [217, 150],
    ],
    dtype=np.float64,
)

# Outer eye corners: the onset frame's inter-ocular distance scales every sample (features.py).
EYE_CORNERS = (36, 45)


# Human names of dlib's 68 points, for figure axes (Fig. 5). "R" / "L" are the subject's right / left, as in
# the module docstring; "in" / "out" mean towards / away from the face's midline.
LANDMARK_NAMES: tuple[str, ...] = (
    ("R jaw top", *(f"R jaw {k}" for k in range(2, 9)), "chin", *(f"L jaw {k}" for k in range(8, 1, -1)),
     "L jaw top")
    + ("R brow out", "R brow out-mid", "R brow peak", "R brow in-mid", "R brow in")
    + ("L brow in", "L brow in-mid", "L brow peak", "L brow out-mid", "L brow out")
    + ("nasion", "nose bridge", "nose ridge", "nose tip")
    + ("R ala", "R nostril", "nose base", "L nostril", "L ala")
    + ("R eye out", "R eye top-out", "R eye top-in", "R eye in", "R eye low-in", "R eye low-out")
    + ("L eye in", "L eye top-in", "L eye top-out", "L eye out", "L eye low-out", "L eye low-in")
    + ("R mouth corner", "R upper lip out", "R lip peak", "upper lip top", "L lip peak", "L upper lip out",
       "L mouth corner", "L lower lip out", "L lower lip in", "lower lip bottom", "R lower lip in",
       "R lower lip out")
    + ("R inner corner", "R inner upper", "inner upper mid", "L inner upper", "L inner corner",
       "L inner lower", "inner lower mid", "R inner lower")
)

def _chain(*idx: int) -> list[tuple[int, int]]:
    return list(zip(idx[:-1], idx[1:], strict=True))


def _loop(*idx: int) -> list[tuple[int, int]]:
    return _chain(*idx, idx[0])


_EDGES_14 = (
    _chain(17, 19, 21)
    + _chain(22, 24, 26)  # brows
    + [(21, 22), (21, 27), (22, 27)]  # glabella / nasion
    + [(27, 30), (30, 31), (30, 35)]  # bridge, tip to alae
    + _loop(48, 51, 54, 57)  # lips
    + [(31, 48), (35, 54), (30, 51)]  # nasolabial folds, philtrum
)

_EDGES_31 = (
    _chain(*range(17, 22))
    + _chain(*range(22, 27))  # brows
    + [(21, 22), (21, 27), (22, 27)]  # glabella / nasion
    + _chain(27, 28, 29, 30)
    + _chain(*range(31, 36))
    + [(30, 31), (30, 33), (30, 35)]  # nose
    + _loop(*range(48, 60))  # outer lips
    + [(31, 48), (35, 54), (33, 51)]  # nasolabial folds, philtrum
)

_EDGES_68 = (
    _EDGES_31
    + _chain(*range(0, 17))
    + [(0, 17), (16, 26)]  # jaw, temples
    + _loop(*range(36, 42))
    + _loop(*range(42, 48))  # eyes
    + [(39, 27), (42, 27), (17, 36), (21, 39), (22, 42), (26, 45)]  # eyes to nasion and brows
    + _loop(*range(60, 68))
    + [(48, 60), (54, 64), (51, 62), (57, 66)]  # inner lips to outer lips
    + [(4, 48), (12, 54), (8, 57)]  # jaw to mouth
)

_INDICES = {
    14: (17, 19, 21, 22, 24, 26, 27, 30, 31, 35, 48, 51, 54, 57),
    31: tuple(range(17, 36)) + tuple(range(48, 60)),
    68: tuple(range(68)),
}
_EDGES = {14: _EDGES_14, 31: _EDGES_31, 68: _EDGES_68}


@dataclass(frozen=True)
class PointSet:
    """A GM-Graph node set.

    Attributes:
        indices: (V,) dlib-68 index of each node, in node order.
        edges: undirected edges as pairs of *dlib* indices.
        adjacency: (V, V) symmetric 0/1 matrix A in node order, zero diagonal.
        neighbour: (V,) node-order index of each node's designated neighbour (Eq. 1).
    """

    indices: tuple[int, ...]
    edges: tuple[tuple[int, int], ...]
    adjacency: np.ndarray
    neighbour: tuple[int, ...]

    @property
    def num_nodes(self) -> int:
        return len(self.indices)


@cache
def point_set(points: int) -> PointSet:
    """The 14-, 31- or 68-node set with its adjacency and designated neighbours."""
    if points not in _INDICES:
        raise ValueError(f"points: got {points!r}; allowed: {', '.join(map(str, _INDICES))}")
    indices = _INDICES[points]
    pos = {d: k for k, d in enumerate(indices)}
    v = len(indices)
    adj = np.zeros((v, v), dtype=np.float32)
    for a, b in _EDGES[points]:
        adj[pos[a], pos[b]] = adj[pos[b], pos[a]] = 1.0
    neighbour = []
    for k, d in enumerate(indices):
        nbrs = np.flatnonzero(adj[k])
        assert len(nbrs) > 0, f"node {d} has no neighbour"

        def cut_distance(j: int, d: int = d) -> float:
            dx, dy = REFERENCE_SHAPE[d] - REFERENCE_SHAPE[indices[j]]
            return abs(math.atan2(dy, dx))

        neighbour.append(int(min(nbrs, key=cut_distance)))
    adj.setflags(write=False)
    return PointSet(tuple(indices), tuple(_EDGES[points]), adj, tuple(neighbour))


def node_names(points: int) -> tuple[str, ...]:
    """(V,) human names of the nodes of the 14-, 31- or 68-point set, in node order (figure labels)."""
    return tuple(LANDMARK_NAMES[d] for d in point_set(points).indices)


def gm_graph_adjacency(points: int, frames: int = 3) -> np.ndarray:
    """(frames*V, frames*V) adjacency of the whole GM-Graph (paper Fig. 2b), node t*V + v.

    The spatial graph of each frame on the block diagonal plus temporal edges joining each node to itself
    in the next frame (onset-apex, apex-offset). The vanilla GCN baseline runs on this graph.
    """
    a = point_set(points).adjacency
    v = a.shape[0]
    big = np.kron(np.eye(frames, dtype=np.float32), a)
    for t in range(frames - 1):
        idx = np.arange(v)
        big[t * v + idx, (t + 1) * v + idx] = 1.0
        big[(t + 1) * v + idx, t * v + idx] = 1.0
    return big
