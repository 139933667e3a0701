"""``train.precision: bf16``: autocast of the training forward; weights, optimiser, evaluation stay fp32."""

import numpy as np
import pytest
import torch
from fold_data import make_split

from mer_model import train_fold
from mer_model.batched import train_folds_batched
from mer_model.errors import InputError

CFG = dict(model="gts_gn", fusion_layer=1, lam=True, au_loss="aau", epochs=3, batch_size=8)
TRAIN, TEST = make_split(24, 0, every_class=True), make_split(6, 1)


pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture: tests/conftest.py


def test_bf16_fold_is_autocast_training_and_repeatable(monkeypatch):
    seen = []
    orig = torch.nn.functional.linear

    def spy(x, w, b=None):
        out = orig(x, w, b)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.functional, "linear", spy)
    bf = train_fold({**CFG, "precision": "bf16"}, TRAIN, TEST, seed=0)
    n_bf16 = seen.count(torch.bfloat16)
    seen.clear()
    fp = train_fold(CFG, TRAIN, TEST, seed=0)
    assert n_bf16 > 0 and torch.bfloat16 not in seen  # bf16 products only when asked for
    assert np.all(np.isfinite(bf.loss_curve)) and bf.probs.dtype == np.float64
    assert all(v.dtype == np.float32 for v in bf.lam.values())  # master weights stay fp32
    assert bf.loss_curve != fp.loss_curve  # a different rounding, so a different trajectory ...
    np.testing.assert_allclose(bf.loss_curve[0], fp.loss_curve[0], rtol=0.05)  # ... of the same function
    again = train_fold({**CFG, "precision": "bf16"}, TRAIN, TEST, seed=0)
    assert again.loss_curve == bf.loss_curve and np.array_equal(again.probs, bf.probs)


def test_packing_refuses_bf16_with_one_line():
    folds = [(TRAIN, TEST), (make_split(20, 2, every_class=True), make_split(5, 3))]
    for cfgs in ([{**CFG, "precision": "bf16"}, CFG], {**CFG, "precision": "bf16"}):
        with pytest.raises(InputError, match="precision: fold 0 has 'bf16'; allowed: 'fp32'") as e:
            train_folds_batched(cfgs, folds, [0, 1])
        assert "\n" not in str(e.value)
