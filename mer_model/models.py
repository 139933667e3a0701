"""The graph models of the paper: VanillaGCN (baseline), SS-GN (III-B) and GTS-GN (III-C), and build_model.

Every model takes raw landmarks ``(N, T=3, 68, 2)`` (onset, apex, offset) and returns class logits
``(N, num_classes)``; ``forward(x, return_aux=True)`` also returns the AU-head logits of the layers that
carry an AU loss (paper III-D), in the order of ``model.au_layers``. Layer widths follow Table II:
in -> 64 -> 64 -> 128 -> 128 -> FC.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mer_model.config import au_layers as config_au_layers
from mer_model.config import parse_au_loss, validate_config
from mer_model.errors import InputError
from mer_model.features import GMGraphFeatures
from mer_model.landmarks import PointSet, gm_graph_adjacency, point_set
from mer_model.layers import GraphConv, InputNorm, SSModule
from mer_model.losses import au_layer_shares

LAYER_CHANNELS = (64, 64, 128, 128)  # Table II, layers 1..4


def _pool(x: Tensor) -> Tensor:
    """Global average over frames and nodes: ``(N, C, T, V)`` -> ``(N, C)``."""
    return x.mean(dim=(2, 3))


class _GraphModel(nn.Module):
    """Shared tail of all models: classifier, AU heads on chosen layers, AAU weights W_r."""

    def __init__(self, num_classes: int, num_aus: int | None, au_layers: list[int],
                 aau_weighting: str | None) -> None:
        super().__init__()
        self.au_layers = list(au_layers)
        self.fc = nn.Linear(LAYER_CHANNELS[-1], num_classes)
        if self.au_layers and not num_aus:
            raise InputError("config: num_aus: got None; allowed: an integer >= 1 when au_loss is not 'none'")
        # AU loss at layer r: pooled layer-r features -> Linear(C_r, num_aus) -> MultiLabelSoftMarginLoss
        self.au_heads = nn.ModuleDict(
            {f"layer{r}": nn.Linear(LAYER_CHANNELS[r - 1], num_aus) for r in self.au_layers}  # type: ignore[arg-type]
        )
        # How the AAU layers' losses combine (losses.combine_au_losses); None: no AAU (one layer:r or none).
        # aau_w is the weighting's learnable tensor, one entry per AAU layer: W_r of Eq. (11) for "learned"
        # (ones = equal weights 1/N_L at the start; trained by the model's optimiser like every other
        # parameter, weight decay included: Eq. 11 is scale-free), the log-variances s_r (zeros) for
        # "uncertainty"; "frozen" and "sum" have none.
        self.aau_weighting = aau_weighting or "learned"
        n = len(self.au_layers)
        init = {"learned": torch.ones, "uncertainty": torch.zeros}.get(aau_weighting or "")
        self.aau_w = nn.Parameter(init(n)) if init is not None else None

    def aau_weights(self) -> Tensor:
        """Each AU layer's share of the AU loss (``losses.au_layer_shares``): ``W_r^2 / sum W^2`` (Eq. 11)
        for the paper's AAU loss; ``[1.]`` for one ``layer:r`` loss, empty for none."""
        return au_layer_shares(self.aau_weighting, self.aau_w, len(self.au_layers))

    def lam_matrices(self) -> dict[str, Tensor]:
        """Learned ``A_L`` per graph layer, keyed as in the FoldResult contract (empty without LAM)."""
        return {k: g.A_L for k, g in self._graph_convs() if g.A_L is not None}

    def _graph_convs(self) -> list[tuple[str, GraphConv]]:
        raise NotImplementedError

    def _layers(self, x: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        """Features ``(N, C, T, V)`` -> (last layer output, {r: layer-r output}) ."""
        raise NotImplementedError

    def forward(
        self, landmarks: Tensor, return_aux: bool = False
    ) -> Tensor | tuple[Tensor, tuple[Tensor, ...]]:
        """``(N, T=3, 68, 2)`` -> logits ``(N, num_classes)`` [, AU logits ``(N, num_aus)`` per AU layer]."""
        out, per_layer = self._layers(landmarks)
        logits = self.fc(_pool(out))
        if not return_aux:
            return logits
        au = tuple(self.au_heads[f"layer{r}"](_pool(per_layer[r])) for r in self.au_layers)
        return logits, au


class _OneStream(_GraphModel):
    """One stream of Type A or B node features: input BatchNorm, then four graph layers of Table II widths
    (``_layer`` says which kind), global pool, FC."""

    def __init__(
        self,
        num_classes: int,
        points: int = 14,
        features: str = "A",
        lam: bool = True,
        num_aus: int | None = None,
        au_layers: list[int] | None = None,
        aau_weighting: str | None = None,
        input: str = "absolute",
        align: str = "none",
    ) -> None:
        super().__init__(num_classes, num_aus, au_layers or [], aau_weighting)
        ps = point_set(points)
        self.features = GMGraphFeatures(points, features, input, align)
        self.input_norm = InputNorm(self.features.out_channels, ps.num_nodes)
        chans = (self.features.out_channels, *LAYER_CHANNELS)
        graph = self._graph(ps, points)
        self.layers = nn.ModuleList(self._layer(chans[i], chans[i + 1], graph, lam)
                                    for i in range(len(chans) - 1))

    def _graph(self, ps: PointSet, points: int) -> np.ndarray:
        """The adjacency every layer convolves over."""
        raise NotImplementedError

    def _layer(self, c_in: int, c_out: int, graph: np.ndarray, lam: bool) -> nn.Module:
        raise NotImplementedError


class SSGN(_OneStream):
    """SS-GN: input BatchNorm, four stacked SS modules (Eq. 8), global pool, FC."""

    def _graph(self, ps: PointSet, points: int) -> np.ndarray:
        return ps.adjacency  # one frame's V x V graph; the TCN joins the frames

    def _layer(self, c_in: int, c_out: int, graph: np.ndarray, lam: bool) -> nn.Module:
        return SSModule(c_in, c_out, graph, lam)

    def _graph_convs(self) -> list[tuple[str, GraphConv]]:
        return [(f"layer{i + 1}", m.gcn) for i, m in enumerate(self.layers)]

    def _layers(self, x: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        h = self.input_norm(self.features(x))  # (N, C, 3, V)
        per_layer = {}
        for r, layer in enumerate(self.layers, start=1):
            h = layer(h)
            per_layer[r] = h
        return h, per_layer


class GTSGN(_GraphModel):
    """GTS-GN (Fig. 1): a coordinate stream (x, y) and a (D, alpha) stream, each with its own input BatchNorm
    and SS modules up to ``fusion_layer`` n, added after layer n; layers n+1..4 are shared; pool, FC."""

    def __init__(
        self,
        num_classes: int,
        points: int = 14,
        fusion_layer: int = 1,
        lam: bool = True,
        num_aus: int | None = None,
        au_layers: list[int] | None = None,
        aau_weighting: str | None = None,
        input: str = "absolute",
        align: str = "none",
    ) -> None:
        super().__init__(num_classes, num_aus, au_layers or [], aau_weighting)
        ps = point_set(points)
        self.fusion_layer = fusion_layer
        self.features = GMGraphFeatures(points, "B", input, align)
        half = self.features.out_channels // 2  # (x, y) channels, then as many (D, alpha) channels
        self.xy_norm = InputNorm(half, ps.num_nodes)
        self.dalpha_norm = InputNorm(half, ps.num_nodes)
        chans = (half, *LAYER_CHANNELS)

        def block(i: int) -> SSModule:
            return SSModule(chans[i], chans[i + 1], ps.adjacency, lam)

        self.xy_layers = nn.ModuleList(block(i) for i in range(fusion_layer))
        self.dalpha_layers = nn.ModuleList(block(i) for i in range(fusion_layer))
        self.shared_layers = nn.ModuleList(block(i) for i in range(fusion_layer, len(LAYER_CHANNELS)))

    def _graph_convs(self) -> list[tuple[str, GraphConv]]:
        out = []
        for i in range(self.fusion_layer):
            out += [
                (f"layer{i + 1}.xy", self.xy_layers[i].gcn),
                (f"layer{i + 1}.dalpha", self.dalpha_layers[i].gcn),
            ]
        out += [(f"layer{self.fusion_layer + 1 + i}", m.gcn) for i, m in enumerate(self.shared_layers)]
        return out

    def _layers(self, x: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        f = self.features(x)  # (N, 2h, 3, V): x, y [, x0, y0], D, alpha [, D0, alpha0]
        half = f.shape[1] // 2
        a = self.xy_norm(f[:, :half])
        b = self.dalpha_norm(f[:, half:])
        for la, lb in zip(self.xy_layers, self.dalpha_layers, strict=True):
            a, b = la(a), lb(b)
        h = a + b  # fusion after layer n (element-wise sum, Fig. 1)
        per_layer = {self.fusion_layer: h}
        for r, layer in enumerate(self.shared_layers, start=self.fusion_layer + 1):
            h = layer(h)
            per_layer[r] = h
        return h, per_layer


class VanillaGCN(_OneStream):
    """Baseline: Kipf-style GCN over the whole 42-node GM-Graph (3 frames x 14 nodes for 14 points).

    Spatial edges inside each frame plus temporal edges joining each node to itself in the next frame
    (``gm_graph_adjacency``). Each layer is ``relu((L + A_L) H theta)`` with L of Eq. (5) on the 3V x 3V
    graph; no separate TCN, no residual. Input BatchNorm, four layers of Table II widths, pool, FC.
    """

    def _graph(self, ps: PointSet, points: int) -> np.ndarray:
        return gm_graph_adjacency(points)  # the whole 3V x 3V GM-Graph

    def _layer(self, c_in: int, c_out: int, graph: np.ndarray, lam: bool) -> nn.Module:
        return GraphConv(c_in, c_out, graph, lam)

    def _graph_convs(self) -> list[tuple[str, GraphConv]]:
        return [(f"layer{i + 1}", g) for i, g in enumerate(self.layers)]

    def _layers(self, x: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        h = self.input_norm(self.features(x))  # (N, C, 3, V)
        n, c, t, v = h.shape
        h = h.reshape(n, c, 1, t * v)  # one graph of 3V nodes, node t*V + v
        per_layer = {}
        for r, layer in enumerate(self.layers, start=1):
            h = torch.relu(layer(h))
            per_layer[r] = h
        return h, per_layer


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """Build the model a flat config describes (see ``mer_model.config``).

    ``num_classes`` must be set, and ``num_aus`` too unless ``au_loss`` is ``none``. Training keys are
    accepted and ignored here. Raises ``InputError`` (a ``ValueError``) on any bad key or value.
    """
    cfg = validate_config(config)
    if cfg["num_classes"] is None:
        raise InputError("config: num_classes: got None; allowed: an integer >= 2 (build_model needs it)")
    mode, _ = parse_au_loss(cfg["au_loss"])
    common = dict(
        num_classes=cfg["num_classes"],
        points=cfg["points"],
        lam=cfg["lam"],
        num_aus=cfg["num_aus"],
        au_layers=config_au_layers(cfg),
        aau_weighting=cfg["aau_weighting"] if mode == "aau" else None,
        input=cfg["input"],
        align=cfg["align"],
    )
    if cfg["model"] == "gts_gn":
        return GTSGN(fusion_layer=cfg["fusion_layer"], **common)
    cls = SSGN if cfg["model"] == "ss_gn" else VanillaGCN
    return cls(features=cfg["features"], **common)
