"""GM-Graph node features: Eq. (1) and per-sample normalisation on hand-computed cases; point sets."""

import math

import numpy as np
import pytest
import torch

from mer_model.features import GMGraphFeatures, distance_angle, normalise
from mer_model.landmarks import REFERENCE_SHAPE, gm_graph_adjacency, point_set


def test_eq1_distance_and_angle_hand_computed():
    # node 0 = (1, 2), node 1 = (4, 6), node 2 = (4, 2); designated neighbours 0->1, 1->2, 2->0
    xy = torch.tensor([[1.0, 2.0], [4.0, 6.0], [4.0, 2.0]])
    dist, alpha = distance_angle(xy, torch.tensor([1, 2, 0]))
    # 0->1: dx = -3, dy = -4: D = 9 + 16 = 25; atan2(-4, -3) = -(pi - atan(4/3)) = -2.214297
    # 1->2: dx = 0, dy = 4: D = 16; the paper's arctan(4/0) is undefined, atan2 gives +pi/2
    # 2->0: dx = 3, dy = 0: D = 9; angle 0
    assert dist.tolist() == pytest.approx([25.0, 16.0, 9.0])
    assert alpha.tolist() == pytest.approx([-2.214297, math.pi / 2, 0.0], abs=1e-6)


def test_eq1_coincident_points_are_finite():
    xy = torch.tensor([[2.0, 2.0], [2.0, 2.0]])
    dist, alpha = distance_angle(xy, torch.tensor([1, 0]))
    assert dist.tolist() == [0.0, 0.0] and alpha.tolist() == [0.0, 0.0]


def _face(onset_value=(10.0, 20.0)):
    """One sample: every onset point at (10, 20) except the outer eye corners 36 = (7, 20), 45 = (13, 20)."""
    lm = np.zeros((1, 3, 68, 2), dtype=np.float32)
    lm[:] = onset_value
    lm[0, 0, 36] = (7.0, 20.0)
    lm[0, 0, 45] = (13.0, 20.0)
    return lm


def test_normalise_centres_on_onset_centroid_and_scales_by_interocular_distance():
    lm = _face()
    lm[0, 1, 17] = (16.0, 23.0)  # apex: point 17 moved
    out = normalise(torch.from_numpy(lm))
    # onset centroid: x = (66 * 10 + 7 + 13) / 68 = 10, y = 20; inter-ocular distance |13 - 7| = 6
    assert out[0, 1, 17].tolist() == pytest.approx([1.0, 0.5])  # ((16-10)/6, (23-20)/6)
    assert out[0, 0, 36].tolist() == pytest.approx([-0.5, 0.0])
    assert out[0, 2, 0].tolist() == pytest.approx([0.0, 0.0])


def test_normalisation_uses_only_the_sample_itself():
    rng = np.random.default_rng(0)
    base = (REFERENCE_SHAPE + rng.normal(0, 1, (2, 3, 68, 2))).astype(np.float32)
    other = base.copy()
    other[1] = other[1] * 3.0 + 100.0  # a very different second sample (another subject)
    f = GMGraphFeatures(14, "B")
    a, b = f(torch.from_numpy(base)), f(torch.from_numpy(other))
    torch.testing.assert_close(a[0], b[0])
    # and the features of a sample do not change under its own translation + scale
    torch.testing.assert_close(b[1], a[1], atol=1e-4, rtol=1e-4)


def test_type_b_channels_are_xy_then_eq1_on_normalised_coordinates():
    lm = torch.from_numpy((REFERENCE_SHAPE[None, None] + np.zeros((1, 3, 1, 1))).astype(np.float32))
    fa, fb = GMGraphFeatures(14, "A")(lm), GMGraphFeatures(14, "B")(lm)
    assert fa.shape == (1, 2, 3, 14) and fb.shape == (1, 4, 3, 14)
    torch.testing.assert_close(fb[:, :2], fa)
    ps = point_set(14)
    xy = fa[0, :, 0].T  # (V, 2) onset
    i, j = 9, ps.neighbour[9]  # node 9 = dlib 35 (left ala)
    dx, dy = (xy[i] - xy[j]).tolist()
    assert fb[0, 2, 0, i].item() == pytest.approx(dx * dx + dy * dy, rel=1e-5)
    assert fb[0, 3, 0, i].item() == pytest.approx(math.atan2(dy, dx), abs=1e-5)


@pytest.mark.parametrize("points", [14, 31, 68])
def test_point_sets_are_connected_symmetric_graphs(points):
    ps = point_set(points)
    a = ps.adjacency
    assert a.shape == (points, points) and len(set(ps.indices)) == points
    assert (a == a.T).all() and (np.diag(a) == 0).all()
    # connected: the face is one graph
    reach = np.eye(points, dtype=bool)[0]
    for _ in range(points):
        reach = reach | (a[reach].sum(0) > 0)
    assert reach.all()
    # each designated neighbour is a graph neighbour, and on the reference face its direction stays at least
    # 15 degrees away from atan2's +-pi cut
    for k, j in enumerate(ps.neighbour):
        assert a[k, j] == 1
        dx, dy = REFERENCE_SHAPE[ps.indices[k]] - REFERENCE_SHAPE[ps.indices[j]]
        assert abs(math.atan2(dy, dx)) < math.radians(165), (ps.indices[k], ps.indices[j])


def test_14_points_are_brows_nose_mouth_without_eyes_or_jaw():
    idx = set(point_set(14).indices)
    assert idx <= set(range(17, 36)) | set(range(48, 68))
    assert len(idx & set(range(17, 27))) == 6 and len(idx & set(range(27, 36))) == 4
    assert len(idx & set(range(48, 68))) == 4


def test_gm_graph_is_three_frames_with_temporal_edges():
    big = gm_graph_adjacency(14)
    a = point_set(14).adjacency
    assert big.shape == (42, 42)
    np.testing.assert_array_equal(big[14:28, 14:28], a)
    # node 5 in onset <-> apex <-> offset, and no onset <-> offset shortcut
    assert big[5, 19] == big[19, 33] == 1 and big[5, 33] == 0
    assert big.sum() == 3 * a.sum() + 2 * 2 * 14
