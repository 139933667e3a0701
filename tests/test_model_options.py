"""Options that are not in the paper (issue 16): onset-relative input, onset Procrustes alignment and the
AAU weighting controls. Each must do what it promises (invariances, per-sample purity, the weights it
claims) and leave the paper's model untouched at its defaults."""

import math

import numpy as np
import pytest
import torch
from fold_data import make_split

from mer_model import train_fold
from mer_model.config import INPUTS, paper_free, validate_config
from mer_model.features import GMGraphFeatures
from mer_model.landmarks import EYE_CORNERS, REFERENCE_SHAPE
from mer_model.losses import combine_au_losses
from mer_model.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _clips(n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = np.broadcast_to(REFERENCE_SHAPE, (n, 3, 68, 2)) + rng.normal(0, 2.0, (n, 3, 68, 2))
    return torch.tensor(x, dtype=torch.float64)


def _rotate(x, theta):
    c, s = math.cos(theta), math.sin(theta)
    return x @ torch.tensor([[c, s], [-s, c]], dtype=x.dtype)


def _feats(x, features="A", input="absolute", align="none"):
    return GMGraphFeatures(14, features, input, align).double()(x)


def test_onset_delta_cancels_the_face_shape_absolute_does_not():
    """A static per-clip shape offset (the same in all three frames, eye corners kept) is the subject's
    face: onset-relative coordinates drop it exactly; the paper's absolute coordinates carry it."""
    x = _clips()
    shape = torch.randn(6, 1, 68, 2, dtype=x.dtype) * 3.0
    shape[:, :, list(EYE_CORNERS)] = shape[:, :, [EYE_CORNERS[0]]]  # same shift of both corners: scale kept
    moved = x + shape
    torch.testing.assert_close(_feats(moved, input="onset_delta"), _feats(x, input="onset_delta"))
    assert (_feats(moved) - _feats(x)).abs().max() > 0.01


@pytest.mark.parametrize("input", INPUTS)
@pytest.mark.parametrize("features", ["A", "B"])
def test_every_input_ignores_where_the_face_is_and_its_size(input, features):
    x = _clips()
    moved = x * 1.7 + torch.tensor([40.0, -25.0], dtype=x.dtype)
    torch.testing.assert_close(_feats(moved, features, input), _feats(x, features, input))


def test_procrustes_removes_head_roll():
    """Rolling a whole clip (all frames) changes the paper's features, not the aligned ones."""
    x = _clips()
    rolled = _rotate(x - x[:, :1].mean(2, keepdim=True), 0.3)
    torch.testing.assert_close(_feats(rolled, "B", align="procrustes"), _feats(x, "B", align="procrustes"))
    assert (_feats(rolled, "B") - _feats(x, "B")).abs().max() > 0.01


@pytest.mark.parametrize(("input", "align"), [(i, a) for i in INPUTS for a in ("none", "procrustes")])
def test_features_of_a_clip_depend_on_that_clip_only(input, align):
    x = _clips()
    other = x.clone()
    other[1:] = _clips(5, seed=9)
    a, b = _feats(x, "B", input, align), _feats(other, "B", input, align)
    torch.testing.assert_close(a[0], b[0])
    assert (a[1:] - b[1:]).abs().max() > 0.01


def test_onset_delta_layout_and_angle_wrap():
    """Onset frame of the delta is zero; the onset's own features ride along as the second half of each
    group; an angle crossing +-pi is a small change, not ~2 pi."""
    x = _clips()
    f = _feats(x, "B", "onset_delta_shape")  # (N, 8, 3, V): dx dy x0 y0 dD dalpha D0 alpha0
    assert f.shape[1] == 8
    assert f[:, [0, 1, 4, 5], 0].abs().max() == 0
    torch.testing.assert_close(f[:, [2, 3, 6, 7]], _feats(x, "B")[:, :, :1].expand(-1, -1, 3, -1))
    assert f[:, 5].abs().max() <= math.pi
    # a neighbour pair placed across the -x axis: alpha near +pi at onset, near -pi at the apex
    y = x.clone()
    v = GMGraphFeatures(14, "B")
    i, j = int(v.index[0]), int(v.index[v.neighbour[0]])
    y[:, :, i] = y[:, :, j] + torch.tensor([-5.0, 0.0], dtype=y.dtype)
    y[:, 0, i, 1] += 0.01
    y[:, 1, i, 1] -= 0.01
    d_alpha = _feats(y, "B", "onset_delta")[:, 3, 1, 0]
    assert d_alpha.abs().max() < 0.1


@pytest.mark.parametrize("input", INPUTS)
def test_models_build_and_run_on_every_input(input):
    x = _clips().float()
    for cfg in ({"model": "gts_gn"}, {"model": "ss_gn", "features": "A", "au_loss": "none"},
                {"model": "gcn", "features": "B", "au_loss": "none"}):
        m = build_model({**cfg, "input": input, "align": "procrustes", "num_classes": 3, "num_aus": 4}).eval()
        assert m(x).shape == (6, 3)


def test_paper_configs_keep_their_hash_form():
    """At their defaults the new keys are not part of what config ids hash; off their default they are."""
    paper = validate_config({})
    assert not {"input", "align", "aau_weighting"} & set(paper_free(paper))
    assert paper_free(validate_config({"input": "onset_delta"}))["input"] == "onset_delta"


# ------------------------------------------------------------------------------------------ AAU weighting

def _fold(weighting, epochs=4):
    cfg = {"model": "gts_gn", "au_loss": "aau", "aau_weighting": weighting, "epochs": epochs, "batch_size": 8,
           "lr": 0.01}
    return train_fold(cfg, make_split(24, 0), make_split(6, 1), seed=0)


def test_frozen_weights_stay_equal_learned_ones_move():
    frozen, learned = _fold("frozen"), _fold("learned")
    assert len(frozen.aau_weight_curve) == len(learned.aau_weight_curve) == 5  # init + 4 epochs
    for row in frozen.aau_weight_curve:
        assert row == [0.25] * 4  # Eq. (9) averaged: 1/N_L, N_L = 4 layers for fusion at layer 1
    assert learned.aau_weight_curve[0] == pytest.approx([0.25] * 4)
    assert learned.aau_weight_curve[-1] == pytest.approx(learned.aau_weights)
    assert max(abs(w - 0.25) for w in learned.aau_weights) > 1e-4
    model = build_model({"aau_weighting": "frozen", "num_classes": 3, "num_aus": 4})
    assert model.aau_w is None  # nothing to train: the weights cannot move


def test_sum_is_eq9_and_frozen_its_average():
    losses = torch.tensor([0.5, 0.2, 0.9])
    assert combine_au_losses(losses, "sum") == pytest.approx(1.6)
    assert combine_au_losses(losses, "frozen") == pytest.approx(1.6 / 3)
    assert combine_au_losses(losses, "learned", torch.ones(3)) == pytest.approx(1.6 / 3)


def test_uncertainty_weighting_has_an_interior_optimum():
    """d/ds [exp(-s) L + s] = 0 at s = log L: the weight of each layer settles at 1 / L_r, unlike Eq. (11)
    whose gradient never vanishes on the simplex while the layer losses differ."""
    losses = torch.tensor([0.5, 0.2, 0.9])
    s = losses.log().clone().requires_grad_(True)
    combine_au_losses(losses, "uncertainty", s).backward()
    assert s.grad.abs().max() < 1e-6
    w = torch.ones(3, requires_grad=True)
    combine_au_losses(losses, "learned", w).backward()
    assert w.grad.abs().max() > 0.01
    fold = _fold("uncertainty")
    assert sum(fold.aau_weights) == pytest.approx(1.0)
    assert fold.aau_weight_curve[0] == pytest.approx([0.25] * 4)
