"""Where the paper is underspecified (issue 16): the choices that are ours, listed for the models a sweep ran.

Each statement was checked against the paper's text (Wei et al.; the section or table is named in it) and
against our code (the module is named); what the paper does say comes first, then our choice. Only the
items that concern the sweep's arms are listed: the vanilla GCN when a ``gcn`` arm ran, the SS module when
an ``ss_gn`` / ``gts_gn`` arm ran, each point set that was used, and Table VII's "AU loss" layer when a
Table VII arm with ``au_loss: layer:r`` ran.
"""

from __future__ import annotations

import pandas as pd

from mer_model.config import MODEL_DEFAULTS
from mer_model.landmarks import node_names, point_set

GCN = (
    "**Vanilla GCN baseline** (`gcn` arms). The paper takes \"the vanilla GCN [38]\" (Kipf and Welling) as "
    "the baseline that \"directly processes the whole GM-Graph\" (Sec. IV-C), with input size 42*2 and "
    "39,760 parameters (Table III(b)) and four layers of Table II's widths (Sec. IV-A); it gives no "
    "construction of that graph's edges or of the layer. Ours (`mer_model.models.VanillaGCN`): one "
    "Kipf-style graph over the 3 x V-node GM-Graph (3 x 14 = 42 nodes for 14 points) with the spatial "
    "edges inside each frame and temporal self-edges joining each node to itself in the next frame; input "
    "BatchNorm, four layers relu((L + A_L) H θ) with L of Eq. (5), no TCN, no residual, global pooling, FC."
)
SS = (
    "**SS module's BatchNorm and residual** (`ss_gn` / `gts_gn` arms). The paper defines the SS module as "
    "TCN(GCN'(·)) (Eq. 8): GCN' with LAM on each frame (Eq. 6), then a kernel-3 TCN across the three frames "
    "(Eq. 7, Sec. IV-A); it names BatchNorm only for the two input streams of GTS-GN (Sec. III-C) and gives "
    "no normalisation, activation or residual inside the module. Ours (`mer_model.layers.SSModule`, an "
    "ST-GCN block): relu(TCN(relu(BN(GCN'(x)))) + residual(x)), the TCN a kernel-3 convolution followed by "
    "BatchNorm, the residual the identity when the width is unchanged and a 1x1 convolution + BatchNorm "
    "otherwise; SS-GN's input BatchNorm is ours too."
)
POINTS_31 = (
    "**The 31-point set**. The paper: \"all landmark points of mouth, nose and eyebrows regions\" "
    "(Sec. IV-D, Fig. 8), 31 points. dlib has 10 brow, 9 nose and 20 mouth points (39): the paper's count "
    "fits only without the 8 inner-lip points, so ours (`mer_model.landmarks`) are dlib 17-35 and the outer "
    "lips 48-59."
)
# Table VI (the paper: GTS-GN (layer 1) with the AU loss on one layer r) and Table VII's layer-1 "AU loss"
# cell, CASME II / SAMM as printed: ACC %, F1
_VI = {1: "CASME II 73.31 / 0.712, SAMM 75.18 / 0.743", 3: "CASME II 73.31 / 0.727, SAMM 75.18 / 0.729",
       4: "CASME II 72.91 / 0.708, SAMM 75.18 / 0.724"}


def points_14() -> str:
    """The 14-point guess, its dlib indices read from ``mer_model.landmarks`` (never restated by hand)."""
    pts = ", ".join(f"{i} ({n})" for i, n in zip(point_set(14).indices, node_names(14), strict=True))
    return (
        "**The 14-point set**. The paper chooses landmarks \"around the mouth, eyebrows and nose\" and "
        "leaves out the eye region (Sec. III-A); Fig. 2 shows the points, but the text names no dlib "
        f"indices. Ours (`mer_model.landmarks`), dlib-68 indices (0-based): {pts}."
    )


def table_vii_au_loss(layers: list[str]) -> str:
    """Table VII's "AU loss" column: which layer the single AU loss constrains is our reading."""
    ours = ", ".join(f"`{v}`" for v in layers)
    vi = "; ".join(f"AU loss {r}: {v}" for r, v in _VI.items())
    return (
        "**The layer of Table VII's \"AU loss\" column**. The paper does not say which layer that single AU "
        "loss constrains. Its GTS-GN (layer 1) row (CASME II 73.31 / 0.728, SAMM 75.18 / 0.743; ACC % / F1) "
        "equals no row of Table VI, which puts the AU loss of the same model on one layer r: it is closest "
        "to \"AU loss 3\" on CASME II, matches \"AU loss 1\" on SAMM and is further from \"AU loss 4\" "
        f"(Table VI: {vi}). Ours: au_loss {ours} in this sweep's Table VII arms, our reading."
    )


def _column(configs: pd.DataFrame, key: str) -> pd.Series:
    """``param.<key>`` as text, the model default where a run did not log it."""
    col = configs.get(f"param.{key}", pd.Series(index=configs.index, dtype=object))
    return col.fillna(str(MODEL_DEFAULTS[key])).astype(str)


def underspecified(configs: pd.DataFrame) -> list[str]:
    """The guess statements (Markdown, one per item) that concern the config runs ``configs``
    (``runs.configs``: ``table`` and ``param.*`` columns); empty when there are no runs."""
    if configs.empty:
        return []
    models, points = set(_column(configs, "model")), set(_column(configs, "points"))
    out = [GCN] if "gcn" in models else []
    if models & {"ss_gn", "gts_gn"}:
        out.append(SS)
    if "14" in points:
        out.append(points_14())
    if "31" in points:
        out.append(POINTS_31)
    au = _column(configs, "au_loss")[configs["table"].astype(str) == "VII"]
    layers = sorted({v for v in au if v.startswith("layer:")})
    if layers:
        out.append(table_vii_au_loss(layers))
    return out
