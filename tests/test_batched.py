"""Fold-batched training is the same training as train_fold, fold by fold.

The sharp checks run both paths in float64 (a test harness below): there the only differences left are
summation order, so fold k of ``train_folds_batched`` must equal ``train_fold`` on fold k to ~1e-9 in loss
curve, predictions (a function of every weight and BatchNorm statistic), LAM matrices and AAU weights.
In float32 Adam amplifies rounding (a gradient near zero has sign noise, and Adam steps by ~lr whatever
the size), so the float32 test only checks agreement to a loose tolerance on the real data path.
"""

import numpy as np
import pytest
import torch
from fold_data import make_split

from mer_model import train_fold
from mer_model.batched import train_folds_batched
from mer_model.errors import InputError


def _split(n, seed, classes=3, num_aus=4, views=0):
    return make_split(n, seed, classes, num_aus, views, every_class=True)


# Unequal training sets, batch 8: 20 -> batches 8, 8, 4 (padded); 13 -> 8, 5 (2 steps, idle at the 3rd);
# 17 -> 8, 9 (a trailing batch of one joins the previous: the step's padded width is 9). One fold with
# augment views (its training set is 2 x 9 = 18 samples).
FOLDS = [(_split(20, 0), _split(4, 10)), (_split(13, 1), _split(5, 11)), (_split(17, 2), _split(3, 12)),
         (_split(9, 3, views=1), _split(4, 13))]
SEEDS = [0, 1, 2, 5]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py




def _assert_same(b, s, tol):
    assert len(b.loss_curve) == len(s.loss_curve) == s.epochs == b.epochs
    np.testing.assert_allclose(b.loss_curve, s.loss_curve, rtol=tol, atol=tol)
    np.testing.assert_allclose(b.probs, s.probs, rtol=tol, atol=tol)
    assert b.aau_layers == s.aau_layers
    np.testing.assert_allclose(b.aau_weights, s.aau_weights, rtol=tol, atol=tol)
    assert len(b.aau_weight_curve) == len(s.aau_weight_curve) == s.epochs + 1
    np.testing.assert_allclose(b.aau_weight_curve, s.aau_weight_curve, rtol=tol, atol=tol)
    assert list(b.lam) == list(s.lam)
    for k in s.lam:
        np.testing.assert_allclose(b.lam[k], s.lam[k], rtol=tol, atol=tol)
    assert (b.seed, b.n_train, b.n_test) == (s.seed, s.n_train, s.n_test)
    assert b.y_true.tolist() == s.y_true.tolist()


CASES = {
    "ss_gn+sgd": dict(model="ss_gn", features="A", lam=False, au_loss="none", optimizer="sgd", lr=0.01),
    "gts_gn+LAM+AAU": dict(model="gts_gn", fusion_layer=2, lam=True, au_loss="aau"),
    "gcn+LAM+AU(2)+adamw": dict(model="gcn", features="B", lam=True, au_loss="layer:2", optimizer="adamw"),
    # options not in the paper (issue 16): onset-relative input with the onset kept, aligned, and the
    # uncertainty weighting's own learnable tensor
    "gts_gn+delta_shape+procrustes+uncertainty": dict(model="gts_gn", fusion_layer=1, lam=True, au_loss="aau",
                                                      input="onset_delta_shape", align="procrustes",
                                                      aau_weighting="uncertainty"),
    "ss_gn+delta+frozen": dict(model="ss_gn", features="B", lam=False, au_loss="aau", input="onset_delta",
                               aau_weighting="frozen"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_batched_fold_equals_the_fold_trained_alone(float64, name):
    cfg = {**CASES[name], "epochs": 2, "batch_size": 8}
    alone = [train_fold(cfg, tr, te, seed=s) for (tr, te), s in zip(FOLDS, SEEDS, strict=True)]
    together = train_folds_batched(cfg, FOLDS, SEEDS)
    for b, s in zip(together, alone, strict=True):
        _assert_same(b, s, tol=1e-9)
    # the folds really are different trainings (own data, own seed): a mix-up could not pass the above
    assert together[0].loss_curve != together[1].loss_curve


def test_configs_differing_in_training_keys_share_a_group(float64):
    """Same architecture, different beta / lr / weight decay / epochs / batch size per fold."""
    base = dict(model="gts_gn", fusion_layer=3, lam=True, au_loss="aau")
    cfgs = [
        {**base, "beta": 1.0, "epochs": 2, "batch_size": 8},
        {**base, "beta": 0.3, "epochs": 3, "batch_size": 6, "lr": 3e-3},
        {**base, "beta": 0.0, "epochs": 1, "batch_size": 8, "weight_decay": 0.0},
    ]
    folds = FOLDS[:3]
    alone = [train_fold(c, tr, te, seed=7) for c, (tr, te) in zip(cfgs, folds, strict=True)]
    together = train_folds_batched(cfgs, folds, 7)
    for b, s in zip(together, alone, strict=True):
        _assert_same(b, s, tol=1e-9)
    assert [len(r.loss_curve) for r in together] == [2, 3, 1]


def test_float32_real_data_path_agrees():
    """The default float32 path on SynthME LOSO folds of unequal size: agreement to rounding amplified by
    Adam over a few steps (see the module docstring); a wrong batch, seed or statistic is off by far more."""
    from mer_model.data import load_dataset

    ds = load_dataset("synthme-tiny", setup="objective", seed=0)
    folds = [(ds.subset(tr), ds.subset(te)) for _, tr, te in ds.loso_splits()[:3]]
    assert len({len(tr.labels) for tr, _ in folds}) == 3
    cfg = dict(model="gts_gn", fusion_layer=2, lam=True, au_loss="aau", epochs=1, batch_size=16)
    together = train_folds_batched(cfg, folds, [3, 4, 5])
    for b, (tr, te), seed in zip(together, folds, [3, 4, 5], strict=True):
        _assert_same(b, train_fold(cfg, tr, te, seed=seed), tol=2e-3)


def test_caller_rng_untouched_and_repeatable():
    cfg = dict(model="ss_gn", features="A", lam=True, au_loss="none", epochs=1, batch_size=8)
    state = torch.get_rng_state()
    a = train_folds_batched(cfg, FOLDS[:2], 3)
    assert torch.equal(state, torch.get_rng_state())
    b = train_folds_batched(cfg, FOLDS[:2], 3)
    assert [r.probs.tolist() for r in a] == [r.probs.tolist() for r in b]
    assert a[0].train_seconds > 0


def test_folds_that_cannot_share_a_model_are_refused():
    cfgs = [dict(model="ss_gn", features="A", epochs=1), dict(model="ss_gn", features="B", epochs=1)]
    with pytest.raises(InputError, match=r"^config: features: fold 1 has 'B', fold 0 'A'; allowed"):
        train_folds_batched(cfgs, FOLDS[:2], 0)
    with pytest.raises(InputError, match="2 folds, 3 configs"):
        train_folds_batched([cfgs[0]] * 3, FOLDS[:2], 0)
    with pytest.raises(InputError, match="empty"):
        train_folds_batched(cfgs[0], [], 0)
