"""Config validation: defaults, and every invalid config raises ValueError (InputError) with its message."""

import pytest

from mer_model import build_model
from mer_model.config import DEFAULTS, au_layers, validate_config
from mer_model.errors import InputError


def test_defaults_are_the_full_model_with_documented_training():
    cfg = validate_config({})
    assert cfg == DEFAULTS
    assert (cfg["model"], cfg["features"], cfg["points"], cfg["lam"], cfg["fusion_layer"]) == (
        "gts_gn",
        "B",
        14,
        True,
        1,
    )
    assert (cfg["au_loss"], cfg["beta"]) == ("aau", 1.0)
    assert cfg["precision"] == "fp32"  # bf16 autocast is opt-in
    assert (cfg["optimizer"], cfg["lr"], cfg["weight_decay"], cfg["batch_size"], cfg["epochs"]) == (
        "adam",
        1e-3,
        1e-4,
        32,
        60,
    )


def test_au_layers():
    assert au_layers(validate_config(dict(fusion_layer=2))) == [2, 3, 4]  # N_L = 5 - n
    assert au_layers(validate_config(dict(model="ss_gn", features="A"))) == [1, 2, 3, 4]
    assert au_layers(validate_config(dict(au_loss="layer:3"))) == [3]
    assert au_layers(validate_config(dict(au_loss="none"))) == []


INVALID = [
    ({"modle": "gcn"},
     "config: unknown key 'modle'; allowed keys: aau_weighting, align, au_loss, batch_size, beta,"),
    ({"model": "resnet"}, "config: model: got 'resnet'; allowed: gcn, ss_gn, gts_gn"),
    ({"features": "C"}, "config: features: got 'C'; allowed: 'A' (x, y) or 'B' (x, y, D, alpha)"),
    ({"points": 15}, "config: points: got 15; allowed: 14, 31, 68"),
    ({"points": "14"}, "config: points: got '14'; allowed: 14, 31, 68"),
    ({"lam": 1}, "config: lam: got 1; allowed: true or false"),
    ({"fusion_layer": 5}, "config: fusion_layer: got 5; allowed: an integer 1..4"),
    ({"fusion_layer": 0}, "config: fusion_layer: got 0; allowed: an integer 1..4"),
    (
        {"au_loss": "layer:5"},
        "config: au_loss: got 'layer:5'; allowed: 'none', 'layer:1'..'layer:4' or 'aau'",
    ),
    ({"au_loss": "all"}, "config: au_loss: got 'all'; allowed: 'none', 'layer:1'..'layer:4' or 'aau'"),
    ({"beta": -0.1}, "config: beta: got -0.1; allowed: a finite number >= 0"),
    ({"beta": float("nan")}, "config: beta: got nan; allowed: a finite number >= 0"),
    ({"beta": True}, "config: beta: got True; allowed: a finite number >= 0"),
    ({"num_classes": 1}, "config: num_classes: got 1; allowed: null or an integer >= 2"),
    ({"num_aus": 0}, "config: num_aus: got 0; allowed: null or an integer >= 1"),
    ({"epochs": 0}, "config: epochs: got 0; allowed: an integer >= 1"),
    ({"batch_size": 2.5}, "config: batch_size: got 2.5; allowed: an integer >= 1"),
    ({"lr": 0}, "config: lr: got 0; allowed: a finite number > 0"),
    ({"weight_decay": -1e-4}, "config: weight_decay: got -0.0001; allowed: a finite number >= 0"),
    ({"optimizer": "rmsprop"}, "config: optimizer: got 'rmsprop'; allowed: adam, adamw, sgd"),
    ({"precision": "fp16"}, "config: precision: got 'fp16'; allowed: fp32, bf16"),
    (
        {"model": "gts_gn", "features": "A"},
        "config: features: got 'A'; allowed: 'B' for model gts_gn (its second stream is (D, alpha))",
    ),
    (
        {"model": "gts_gn", "fusion_layer": 4, "au_loss": "aau"},
        "config: au_loss: 'aau' with fusion_layer 4 leaves N_L = 1 fused layer, where Eq. (11) is undefined; "
        "allowed: fusion_layer 1..3 with 'aau', or au_loss 'layer:4' / 'none'",
    ),
    (
        {"model": "gts_gn", "fusion_layer": 3, "au_loss": "layer:2"},
        "config: au_loss: got 'layer:2'; allowed: 'layer:r' with r >= fusion_layer (3): "
        "AU losses constrain fused features",
    ),
]


@pytest.mark.parametrize(("override", "message"), INVALID, ids=[str(o) for o, _ in INVALID])
def test_invalid_config_raises_one_line_value_error(override, message):
    with pytest.raises(ValueError) as err:
        build_model({"num_classes": 5, "num_aus": 4, **override})
    assert isinstance(err.value, InputError)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_build_model_needs_sizes():
    with pytest.raises(InputError, match="config: num_classes: got None; allowed: an integer >= 2"):
        build_model({"au_loss": "none"})
    with pytest.raises(InputError, match="config: num_aus: got None; allowed: an integer >= 1 when au_loss"):
        build_model({"num_classes": 3})


def test_not_a_mapping():
    with pytest.raises(InputError, match="config: expected a mapping of keys to values, got list"):
        validate_config([("model", "gcn")])


def test_fusion_layer_is_ignored_by_one_stream_models_and_training_keys_by_build_model():
    m = build_model(
        dict(
            model="ss_gn",
            features="A",
            fusion_layer=4,
            au_loss="aau",
            num_classes=3,
            num_aus=2,
            epochs=5,
            lr=0.1,
        )
    )
    assert m.au_layers == [1, 2, 3, 4]


def test_typed_configs_are_accepted_where_a_flat_dict_is():
    """ModelConfig / TrainConfig (or a tuple of them) go through the same single validation as the dict."""
    from mer_model.config import ModelConfig, TrainConfig

    model, train = ModelConfig(model="ss_gn", features="A", num_classes=5, num_aus=4), TrainConfig(epochs=3)
    flat = {"model": "ss_gn", "features": "A", "num_classes": 5, "num_aus": 4, "epochs": 3}
    assert validate_config((model, train)) == validate_config(flat)
    assert validate_config(model)["epochs"] == DEFAULTS["epochs"]
    a, b = build_model(model), build_model(flat)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    with pytest.raises(ValueError):  # frozen, and the combination rules hold for typed configs too
        ModelConfig(model="gts_gn", features="A")
    with pytest.raises(InputError, match="config: epochs: got 0; allowed: an integer >= 1"):
        validate_config((model, {"epochs": 0}))
