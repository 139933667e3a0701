"""The training step's speed changes of issue 17 keep the mathematics: the fused optimiser and the absence
of deterministic mode's NaN-fill give, in float64, the same fold as torch's per-parameter optimiser with
the fill on (to ~1e-9: only summation order differs). Float32 agreement over the 26 real folds is in
benchmarks/bench_throughput.py.
"""

import contextlib

import numpy as np
import pytest
import torch
from fold_data import make_split

import mer_model.train as train_mod
from mer_model import train_fold
from mer_model.train import deterministic

pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture: tests/conftest.py




@contextlib.contextmanager
def _with_fill(device):
    """Deterministic mode as before issue 17: every new tensor NaN-filled."""
    with deterministic(device):
        torch.utils.deterministic.fill_uninitialized_memory = True
        yield


def _reference_optimizer(cfg, params):
    """The optimiser before issue 17: torch's default (per-parameter loop on a CPU)."""
    kw = dict(lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(params, **kw)
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(params, **kw)
    return torch.optim.SGD(params, momentum=0.9, **kw)


CASES = {
    "ss_gn+sgd": dict(model="ss_gn", features="A", lam=False, au_loss="none", optimizer="sgd", lr=0.01),
    "gts_gn+LAM+AAU": dict(model="gts_gn", fusion_layer=2, lam=True, au_loss="aau"),
    "gts_gn+adamw": dict(model="gts_gn", fusion_layer=1, lam=True, au_loss="layer:3", optimizer="adamw"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fast_fold_equals_reference_fold(float64, monkeypatch, name):
    cfg = {**CASES[name], "epochs": 3, "batch_size": 8}
    train, test = make_split(21, 0, views=1), make_split(6, 1)
    fast = train_fold(cfg, train, test, seed=3)
    monkeypatch.setattr(train_mod, "_optimizer", _reference_optimizer)
    monkeypatch.setattr(train_mod, "deterministic", _with_fill)
    ref = train_fold(cfg, train, test, seed=3)
    np.testing.assert_allclose(fast.loss_curve, ref.loss_curve, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fast.probs, ref.probs, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fast.aau_weights, ref.aau_weights, rtol=1e-9, atol=1e-9)
    for k in ref.lam:
        np.testing.assert_allclose(fast.lam[k], ref.lam[k], rtol=1e-9, atol=1e-9)
    assert fast.y_pred.tolist() == ref.y_pred.tolist()
    assert fast.loss_curve[0] != fast.loss_curve[-1]  # it trained: the comparison is not of two inits


def test_deterministic_mode_restores_the_fill_setting():
    prev = torch.utils.deterministic.fill_uninitialized_memory
    with train_mod.deterministic(torch.device("cpu")):
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert torch.utils.deterministic.fill_uninitialized_memory == prev
