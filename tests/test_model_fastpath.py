"""The fast training path (issue 17) is the reference model's mathematics, only faster.

``SSModule.forward_rows`` (rows of channels, convolutions as GEMMs) against ``forward_reference`` (the
Conv2d / BatchNorm2d modules), and a whole ``train_fold`` with the fast path + fused optimiser against
the reference path + torch's per-parameter optimiser: in float64 only summation order differs, so they
must agree to ~1e-9 (float32 agreement over the 26 real folds is in benchmarks/bench_throughput.py).
"""

import copy

import numpy as np
import pytest
import torch
from fold_data import make_split
from torch.optim.swa_utils import update_bn

import mer_model.train as train_mod
from mer_model import train_fold
from mer_model.features import GMGraphFeatures
from mer_model.landmarks import point_set
from mer_model.layers import SSModule


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core box two threads wait on each other for most of a step."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture
def float64(monkeypatch):
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    orig_tensors, orig_forward = train_mod._training_tensors, GMGraphFeatures.forward

    def tensors64(train, dev):
        x, y, a = orig_tensors(train, dev)
        return x.double(), y, a.double()

    monkeypatch.setattr(train_mod, "_training_tensors", tensors64)
    monkeypatch.setattr(GMGraphFeatures, "forward", lambda self, x: orig_forward(self, x.double()))
    yield
    torch.set_default_dtype(prev)


@pytest.mark.parametrize(("cin", "cout"), [(2, 64), (64, 64), (64, 128)])
def test_rows_path_equals_reference_module(float64, cin, cout):
    torch.manual_seed(cin + cout)
    ref = SSModule(cin, cout, point_set(14).adjacency)
    with torch.no_grad():
        ref.gcn.A_L.normal_(0, 0.1)  # a learned graph, not the zero init
    fast = copy.deepcopy(ref)
    x = torch.randn(6, cin, 3, 14, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    a, b = ref.forward_reference(x), fast.forward_rows(x2)
    assert b.shape == a.shape == (6, cout, 3, 14)
    torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    (a.sin().sum()).backward()
    (b.sin().sum()).backward()
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-10, atol=1e-12)
    for (name, p), q in zip(ref.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-10, atol=1e-12, msg=name)
    for (name, r), s in zip(ref.named_buffers(), fast.buffers(), strict=True):
        torch.testing.assert_close(s, r, rtol=1e-12, atol=1e-12, msg=name)  # running stats, batch count
    # update_bn (cumulative average, momentum None) and eval mode go through the same helper
    update_bn([x.detach()[:3], x.detach()[3:]], ref)
    update_bn([x.detach()[:3], x.detach()[3:]], fast)
    ref.eval(), fast.eval()
    torch.testing.assert_close(fast.forward_rows(x), ref.forward_reference(x), rtol=1e-12, atol=1e-12)


def test_forward_picks_the_rows_path_only_for_stock_leaves():
    m = SSModule(4, 8, point_set(14).adjacency)
    calls = []
    m.forward_rows = lambda x: calls.append("rows") or x  # type: ignore[method-assign]
    m.forward_reference = lambda x: calls.append("ref") or x  # type: ignore[method-assign]
    m(torch.zeros(2, 4, 3, 14))
    m.tcn.conv = torch.nn.Conv2d(8, 8, (3, 1), padding=(1, 0)).to(torch.float64)  # still stock
    m(torch.zeros(2, 4, 3, 14))
    m.bn = torch.nn.Identity()  # a stand-in leaf: the module's own ops must run
    m(torch.zeros(2, 4, 3, 14))
    assert calls == ["rows", "rows", "ref"]


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
    monkeypatch.setattr(SSModule, "forward", SSModule.forward_reference)
    monkeypatch.setattr(train_mod, "_optimizer", _reference_optimizer)
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
    with train_mod._deterministic(torch.device("cpu")):
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert torch.utils.deterministic.fill_uninitialized_memory == prev
