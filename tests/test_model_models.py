"""Models: output shapes for every model / fusion layer / point set, LAM keys, gradients, parameter counts."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from mer_model import build_model
from mer_model.landmarks import REFERENCE_SHAPE
from mer_model.losses import total_loss
from mer_model.models import GTSGN, SSGN, VanillaGCN


def _landmarks(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor(REFERENCE_SHAPE, dtype=torch.float32)
    return base.expand(n, 3, 68, 2) + torch.randn(n, 3, 68, 2, generator=g)


ARMS = (
    [dict(model="gcn", features=f) for f in "AB"]
    + [dict(model="ss_gn", features=f) for f in "AB"]
    + [dict(model="gts_gn", features="B", fusion_layer=n) for n in (1, 2, 3, 4)]
)


@pytest.mark.parametrize("arm", ARMS, ids=lambda a: "-".join(str(v) for v in a.values()))
@pytest.mark.parametrize("points", [14, 31, 68])
def test_output_shapes(arm, points):
    au_loss = "layer:4" if arm.get("fusion_layer") == 4 else "aau"
    model = build_model({**arm, "points": points, "num_classes": 6, "num_aus": 9, "au_loss": au_loss})
    x = _landmarks(5)
    assert model(x).shape == (5, 6)
    logits, au = model(x, return_aux=True)
    assert logits.shape == (5, 6)
    expected_layers = [4] if au_loss == "layer:4" else list(range(arm.get("fusion_layer", 1), 5))
    assert model.au_layers == expected_layers
    assert [a.shape for a in au] == [(5, 9)] * len(expected_layers)
    for key, a_l in model.lam_matrices().items():
        v = 3 * points if arm["model"] == "gcn" else points
        assert a_l.shape == (v, v), key


def test_lam_keys_follow_the_contract():
    m = build_model(dict(model="gts_gn", fusion_layer=2, num_classes=3, num_aus=4))
    assert list(m.lam_matrices()) == [
        "layer1.xy",
        "layer1.dalpha",
        "layer2.xy",
        "layer2.dalpha",
        "layer3",
        "layer4",
    ]
    assert list(build_model(dict(model="ss_gn", num_classes=3, num_aus=4)).lam_matrices()) == [
        "layer1",
        "layer2",
        "layer3",
        "layer4",
    ]
    assert build_model(dict(model="ss_gn", lam=False, num_classes=3, num_aus=4)).lam_matrices() == {}


def test_build_model_types():
    assert isinstance(build_model(dict(model="gcn", features="A", num_classes=3, au_loss="none")), VanillaGCN)
    assert isinstance(build_model(dict(model="ss_gn", num_classes=3, au_loss="none")), SSGN)
    assert isinstance(build_model(dict(model="gts_gn", num_classes=3, au_loss="none")), GTSGN)


def test_gradients_reach_every_lam_and_the_aau_weights():
    torch.manual_seed(0)
    m = build_model(dict(model="gts_gn", fusion_layer=1, num_classes=3, num_aus=5, au_loss="aau"))
    logits, au = m(_landmarks(8), return_aux=True)
    aus = (torch.rand(8, 5) > 0.5).float()
    total_loss(logits, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), au, aus, m.aau_w, beta=1.0).backward()
    assert m.aau_w.grad is not None and torch.count_nonzero(m.aau_w.grad) == 4
    for key, a_l in m.lam_matrices().items():
        assert a_l.grad is not None and a_l.grad.abs().sum() > 0, key


def test_streams_fuse_by_addition_after_layer_n():
    # With fusion at layer 4 there are no shared layers: the classifier sees pool(xy stream + dalpha stream).
    m = build_model(dict(model="gts_gn", fusion_layer=4, num_classes=3, au_loss="none")).eval()
    x = _landmarks(2)
    f = m.features(x)
    a, b = m.xy_norm(f[:, :2]), m.dalpha_norm(f[:, 2:])
    for la, lb in zip(m.xy_layers, m.dalpha_layers, strict=True):
        a, b = la(a), lb(b)
    torch.testing.assert_close(m(x), m.fc((a + b).mean(dim=(2, 3))))
    assert len(m.shared_layers) == 0 and len(m.xy_layers) == 4


def _params(cfg):
    return sum(p.numel() for p in build_model({**cfg, "num_classes": 5, "au_loss": "none"}).parameters())


def test_ss_gn_type_a_parameter_count_within_one_percent_of_the_paper():
    # Paper Table III(b): SS-GN, 14 points, Type A, 5 classes: 163,710 parameters.
    # Hand count (docs/model.md): input BN 2*2*14 = 56; per SS module GCN theta C_in*C_out + C_out,
    # LAM 14*14 = 196, BN 2*C_out, TCN 3*C_out^2 + C_out, BN 2*C_out, residual 1x1 conv + BN if C_in != C_out;
    # layers 2->64: 13,316; 64->64: 16,964; 64->128: 66,884; 128->128: 66,500; FC 128*5 + 5 = 645.
    with_lam = _params(dict(model="ss_gn", features="A", lam=True))
    without = _params(dict(model="ss_gn", features="A", lam=False))
    assert with_lam == 56 + 13_316 + 16_964 + 66_884 + 66_500 + 645 == 164_365
    assert without == with_lam - 4 * 196
    for count in (with_lam, without):
        assert abs(count - 163_710) / 163_710 < 0.01


def test_gcn_parameter_count():
    # 4 Kipf layers on the 42-node graph: (2*64+64) + (64*64+64) + (64*128+128) + (128*128+128) = 29,184,
    # input BN 2*2*14 = 56, FC 645 -> 29,885 without LAM; LAM adds 4 * 42 * 42 = 7,056.
    assert _params(dict(model="gcn", features="A", lam=False)) == 29_885
    assert _params(dict(model="gcn", features="A", lam=True)) == 29_885 + 7_056


def test_au_heads_and_aau_weights_are_parameters():
    base = _params(dict(model="ss_gn", features="A"))
    m = build_model(dict(model="ss_gn", features="A", num_classes=5, num_aus=7, au_loss="aau"))
    heads = (64 * 7 + 7) * 2 + (128 * 7 + 7) * 2
    assert sum(p.numel() for p in m.parameters()) == base + heads + 4
    assert m.aau_w.tolist() == [1.0, 1.0, 1.0, 1.0]  # equal weights 1/N_L at the start


def test_import_mer_model_pulls_no_ray_optuna_mlflow_or_data():
    code = (
        "import sys, mer_model, mer_model.train, mer_model.metrics\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'optuna', 'mlflow'})\n"
        "assert not bad, bad\n"
        "assert 'mer_model.data' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_models_are_traceable_in_eval_mode():
    # no .item() / python control flow on tensor values in forward: torch.func can batch it later
    m = build_model(dict(model="gts_gn", fusion_layer=2, num_classes=3, au_loss="none")).eval()
    params = {k: v.detach() for k, v in m.named_parameters()}
    batched = {k: torch.stack([v, v * 1.0]) for k, v in params.items()}
    x = _landmarks(3)

    def f(p):
        return torch.func.functional_call(m, p, (x,))

    out = torch.vmap(f)(batched)
    torch.testing.assert_close(out[0], m(x))
    assert np.isfinite(out.numpy()).all()
