"""train_fold: determinism, overfitting a tiny batch, augment views, FoldResult round trip."""

import json

import numpy as np
import pytest
import torch
from fold_data import Split, make_split

from mer_model import FoldResult, classification_metrics, train_fold
from mer_model.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


FAST = dict(model="gts_gn", fusion_layer=2, epochs=2, batch_size=8)


def _comparable(r):
    d = r.to_dict()
    d.pop("train_seconds")
    return d


def test_same_seed_same_result_and_other_seed_differs():
    train, test = make_split(20, 0), make_split(5, 1)
    a, b = train_fold(FAST, train, test, seed=7), train_fold(FAST, train, test, seed=7)
    assert _comparable(a) == _comparable(b)
    c = train_fold(FAST, train, test, seed=8)
    assert c.loss_curve != a.loss_curve


def test_caller_rng_is_untouched():
    state = torch.get_rng_state()
    train_fold(FAST, make_split(10, 0), make_split(3, 1), seed=1)
    assert torch.equal(state, torch.get_rng_state())


def test_fold_result_fields_and_json_round_trip():
    train, test = make_split(12, 0, classes=3, num_aus=4), make_split(5, 1)
    r = train_fold(FAST, train, test, seed=0)
    assert r.y_true.tolist() == test.labels.tolist()
    assert r.probs.shape == (5, 3) and np.allclose(r.probs.sum(1), 1.0)
    assert r.y_pred.tolist() == r.probs.argmax(1).tolist()
    assert r.aau_layers == [2, 3, 4] and len(r.aau_weights) == 3
    assert all(w > 0 for w in r.aau_weights) and sum(r.aau_weights) == pytest.approx(1.0)
    assert list(r.lam) == ["layer1.xy", "layer1.dalpha", "layer2.xy", "layer2.dalpha", "layer3", "layer4"]
    assert all(v.shape == (14, 14) for v in r.lam.values())
    assert len(r.loss_curve) == 2 and (r.epochs, r.seed, r.n_train, r.n_test) == (2, 0, 12, 5)
    back = FoldResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert _comparable(back) == _comparable(r)
    assert back.probs.dtype == np.float64 and back.lam["layer3"].shape == (14, 14)


def test_layer_and_none_au_loss_weights():
    train, test = make_split(10, 0), make_split(3, 1)
    one = train_fold({**FAST, "au_loss": "layer:3"}, train, test, seed=0)
    assert (one.aau_layers, one.aau_weights) == ([3], [1.0])
    none = train_fold({**FAST, "au_loss": "none", "lam": False}, train, test, seed=0)
    assert (none.aau_layers, none.aau_weights, none.lam) == ([], [], {})


def test_augment_views_are_extra_training_samples_and_test_augment_is_ignored():
    train, test = make_split(10, 0, views=2), make_split(4, 1, views=1)
    r = train_fold(FAST, train, test, seed=3)
    # the same samples given explicitly as plain training clips (clips, then views) train identically
    flat = Split(
        np.concatenate([train.landmarks, train.augment.reshape(-1, 3, 68, 2)]),
        np.concatenate([train.labels, np.repeat(train.labels, 2)]),
        np.concatenate([train.aus, np.repeat(train.aus, 2, axis=0)]),
    )
    r_flat = train_fold(FAST, flat, test, seed=3)
    assert r.loss_curve == r_flat.loss_curve and np.array_equal(r.probs, r_flat.probs)
    test_garbage = Split(test.landmarks, test.labels, test.aus, np.full_like(test.augment, np.nan))
    assert _comparable(train_fold(FAST, train, test_garbage, seed=3)) == _comparable(r)
    no_views = train_fold(FAST, Split(train.landmarks, train.labels, train.aus), test, seed=3)
    assert no_views.loss_curve != r.loss_curve


def test_overfits_a_tiny_batch():
    tiny = make_split(12, 5, classes=4)
    tiny.labels = np.array([0, 1, 2, 3] * 3)  # labels unrelated to the landmarks: only memorisation fits them
    cfg = dict(
        model="ss_gn", features="A", au_loss="none", epochs=40, batch_size=12, lr=1e-2, weight_decay=0.0
    )
    r = train_fold(cfg, tiny, tiny, seed=0)
    assert r.loss_curve[-1] < 0.1 * r.loss_curve[0]
    assert classification_metrics(r.y_true, r.y_pred, 4)["accuracy"] == 1.0


def test_learns_a_separable_signal():
    train, test = make_split(48, 0), make_split(12, 1)
    # 10 epochs = 30 steps: too few for BatchNorm's running averages; train_fold recomputes them (update_bn)
    cfg = dict(model="ss_gn", features="A", au_loss="none", epochs=10, batch_size=16)
    r = train_fold(cfg, train, test, 0)
    assert classification_metrics(r.y_true, r.y_pred, 3)["accuracy"] >= 0.9


def test_sizes_are_checked_against_the_data():
    train, test = make_split(6, 0, classes=3), make_split(3, 1)
    with pytest.raises(
        InputError, match="config: num_classes: got 2; allowed: more than the largest label 2"
    ):
        train_fold({**FAST, "num_classes": 2}, train, test, seed=0)
    with pytest.raises(InputError, match=r"config: num_aus: got 3; allowed: 4 \(the dataset's AU columns\)"):
        train_fold({**FAST, "num_aus": 3}, train, test, seed=0)
    with pytest.raises(InputError, match="train: landmarks: got 1 training samples; allowed: at least 2"):
        train_fold(FAST, make_split(1, 0), test, seed=0)


def test_test_clips_never_influence_each_other():
    # BatchNorm statistics come from the training set only (update_bn on train, then eval mode): changing one
    # test clip must leave every other test clip's prediction bit-identical
    train, test = make_split(10, 0), make_split(4, 1)
    other = Split(test.landmarks.copy(), test.labels, test.aus)
    other.landmarks[0] += 5.0
    a, b = train_fold(FAST, train, test, seed=2), train_fold(FAST, train, other, seed=2)
    assert np.array_equal(a.probs[1:], b.probs[1:]) and not np.array_equal(a.probs[0], b.probs[0])
