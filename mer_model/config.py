"""Validation of the flat config dict that travels from a search-space arm to the trainer.

One dict holds the model keys (what to build) and the training keys (how to train it). Every key has a
default, so ``validate_config({})`` is the paper's full model (GTS-GN, fusion at layer 1, LAM, AAU loss,
beta = 1) with the documented training defaults. Bad input raises :class:`InputError` (a ``ValueError``)
with one line naming the key and what is allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from mer_model.errors import InputError

MODELS = ("gcn", "ss_gn", "gts_gn")
FEATURES = ("A", "B")
POINTS = (14, 31, 68)
OPTIMIZERS = ("adam", "adamw", "sgd")

MODEL_DEFAULTS: dict[str, Any] = {
    "model": "gts_gn",
    "features": "B",
    "points": 14,
    "lam": True,
    "fusion_layer": 1,
    "au_loss": "aau",
    "beta": 1.0,  # the paper's ablation value (section IV-A)
    "num_classes": None,  # None: train_fold takes it from the dataset
    "num_aus": None,  # None: train_fold takes it from the dataset
}

# Ours (the paper gives no optimiser, learning rate, weight decay, batch size or epoch count). Fixed in
# advance for every fold: the final epoch's model is evaluated; nothing is picked on the
# left-out subject.
TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 60,
    "batch_size": 32,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "optimizer": "adam",
}

DEFAULTS: dict[str, Any] = {**MODEL_DEFAULTS, **TRAINING_DEFAULTS}

_AU_LOSS_RE = re.compile(r"^layer:([1-4])$")


def _fail(key: str, value: Any, allowed: str) -> InputError:
    return InputError(f"config: {key}: got {value!r}; allowed: {allowed}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_au_loss(au_loss: str) -> tuple[str, int | None]:
    """``"none"`` -> ("none", None); ``"layer:3"`` -> ("layer", 3); ``"aau"`` -> ("aau", None)."""
    if au_loss in ("none", "aau"):
        return au_loss, None
    m = _AU_LOSS_RE.match(au_loss)
    assert m is not None, au_loss  # validate_config refused anything else
    return "layer", int(m.group(1))


def au_layers(cfg: Mapping[str, Any]) -> list[int]:
    """1-based layers that carry an AU loss for a validated config.

    AU losses constrain fused features only (paper III-D): for ``gts_gn`` with fusion layer n the AAU layers
    are n..4 (N_L = 5 - n); the one-stream models have no fusion, so all four layers count.
    """
    mode, r = parse_au_loss(cfg["au_loss"])
    if mode == "none":
        return []
    if mode == "layer":
        return [r]  # type: ignore[list-item]
    first = cfg["fusion_layer"] if cfg["model"] == "gts_gn" else 1
    return list(range(first, 5))


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a flat config dict and return a new dict with every default filled in.

    Raises:
        InputError: unknown key, wrong type or out-of-range value; the message names the key and the
            allowed values, e.g. ``config: points: got 7; allowed: 14, 31, 68``.
    """
    if not isinstance(config, Mapping):
        raise InputError(f"config: expected a mapping of keys to values, got {type(config).__name__}")
    unknown = sorted(set(config) - set(DEFAULTS), key=str)
    if unknown:
        raise InputError(f"config: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(DEFAULTS))}")
    cfg = {**DEFAULTS, **config}

    if cfg["model"] not in MODELS:
        raise _fail("model", cfg["model"], ", ".join(MODELS))
    if cfg["features"] not in FEATURES:
        raise _fail("features", cfg["features"], "'A' (x, y) or 'B' (x, y, D, alpha)")
    if not _is_int(cfg["points"]) or cfg["points"] not in POINTS:
        raise _fail("points", cfg["points"], ", ".join(map(str, POINTS)))
    if not isinstance(cfg["lam"], bool):
        raise _fail("lam", cfg["lam"], "true or false")
    if not _is_int(cfg["fusion_layer"]) or not 1 <= cfg["fusion_layer"] <= 4:
        raise _fail("fusion_layer", cfg["fusion_layer"], "an integer 1..4")
    if not isinstance(cfg["au_loss"], str) or not (
        cfg["au_loss"] in ("none", "aau") or _AU_LOSS_RE.match(cfg["au_loss"])
    ):
        raise _fail("au_loss", cfg["au_loss"], "'none', 'layer:1'..'layer:4' or 'aau'")
    if not _is_number(cfg["beta"]) or cfg["beta"] < 0:
        raise _fail("beta", cfg["beta"], "a finite number >= 0")
    for key, low in (("num_classes", 2), ("num_aus", 1)):
        if cfg[key] is not None and (not _is_int(cfg[key]) or cfg[key] < low):
            raise _fail(key, cfg[key], f"null or an integer >= {low}")
    for key in ("epochs", "batch_size"):
        if not _is_int(cfg[key]) or cfg[key] < 1:
            raise _fail(key, cfg[key], "an integer >= 1")
    if not _is_number(cfg["lr"]) or cfg["lr"] <= 0:
        raise _fail("lr", cfg["lr"], "a finite number > 0")
    if not _is_number(cfg["weight_decay"]) or cfg["weight_decay"] < 0:
        raise _fail("weight_decay", cfg["weight_decay"], "a finite number >= 0")
    if cfg["optimizer"] not in OPTIMIZERS:
        raise _fail("optimizer", cfg["optimizer"], ", ".join(OPTIMIZERS))

    # Combinations.
    if cfg["model"] == "gts_gn" and cfg["features"] != "B":
        raise _fail("features", cfg["features"], "'B' for model gts_gn (its second stream is (D, alpha))")
    mode, r = parse_au_loss(cfg["au_loss"])
    if cfg["model"] == "gts_gn" and mode == "aau" and cfg["fusion_layer"] == 4:
        raise InputError(
            "config: au_loss: 'aau' with fusion_layer 4 leaves N_L = 1 fused layer, where Eq. (11) is "
            "undefined; allowed: fusion_layer 1..3 with 'aau', or au_loss 'layer:4' / 'none'"
        )
    if cfg["model"] == "gts_gn" and mode == "layer" and r < cfg["fusion_layer"]:  # type: ignore[operator]
        raise _fail(
            "au_loss",
            cfg["au_loss"],
            f"'layer:r' with r >= fusion_layer ({cfg['fusion_layer']}): AU losses constrain fused features",
        )
    return cfg
