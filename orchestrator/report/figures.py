"""The report's figures, drawn with matplotlib's object API (``Figure``: no pyplot state, no display).

Every figure is a PNG; the numbers behind it are written next to it by the caller (CSV / NPZ) so that a
figure can be checked against the runs without reading pixels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import ConfusionMatrixDisplay

_DPI = 110


def _lam_sort_key(key: str) -> tuple[int, str]:
    m = re.match(r"layer(\d+)(.*)", key)
    stream = {"": "0", ".xy": "1", ".dalpha": "2"}  # shared layer, then the (x, y) stream before (D, alpha)
    return (int(m.group(1)), stream.get(m.group(2), m.group(2))) if m else (99, key)


def lam_order(keys: Sequence[str]) -> list[str]:
    """LAM keys in layer order: ``layer1.xy, layer1.dalpha, layer2, ...``."""
    return sorted(keys, key=_lam_sort_key)


def lam_heatmaps(mats: Mapping[str, np.ndarray], title: str, path: Path) -> None:
    """Paper Fig. 5: one heatmap per learned adjacency ``A_L`` (Eq. 6), each (V, V), on one shared colour
    scale so that the layers' magnitudes can be compared (the paper's observation: deeper layers smaller)."""
    keys = lam_order(list(mats))
    vmin = min(float(np.min(mats[k])) for k in keys)
    vmax = max(float(np.max(mats[k])) for k in keys)
    fig = Figure(figsize=(3.2 * len(keys) + 1.0, 3.4), dpi=_DPI, layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    im = None
    for ax, key in zip(axes, keys, strict=True):
        im = ax.imshow(mats[key], cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_title(f"{key} (mean {float(np.mean(mats[key])):.3g})", fontsize=9)
        ax.set_xlabel("node")
        ax.set_ylabel("node")
    fig.colorbar(im, ax=list(axes), shrink=0.8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path)


def accuracy_vs_beta(points: pd.DataFrame, title: str, path: Path) -> None:
    """Paper Fig. 9: pooled accuracy (%) against beta, one line per fusion layer when it varies.

    points: columns ``beta``, ``accuracy`` (fraction) and optionally ``fusion_layer``; complete arms only.
    """
    fig = Figure(figsize=(6.0, 4.0), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    groups = points.groupby("fusion_layer") if "fusion_layer" in points else [("all", points)]
    for key, g in groups:
        g = g.sort_values("beta")
        label = f"fusion layer {key}" if key != "all" else "pooled accuracy"
        ax.plot(g["beta"], 100 * g["accuracy"], marker="o", label=label)
    ax.set_xlabel("beta (weight of the AAU loss, Eq. 12)")
    ax.set_ylabel("pooled ACC (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.savefig(path)


def confusion(matrix: np.ndarray, labels: Sequence[str], title: str, path: Path) -> None:
    """Pooled confusion matrix (rows true, columns predicted; counts over all LOSO folds)."""
    fig = Figure(figsize=(4.8, 4.2), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(labels)).plot(
        ax=ax, colorbar=False, values_format="d"
    )
    ax.set_title(title, fontsize=9)
    fig.savefig(path)


def search_history(
    trials: pd.DataFrame, objective: str, title: str, path: Path, *, maximize: bool = True
) -> None:
    """Optuna search history: each complete trial's objective and the best so far; pruned / failed trials
    marked on the axis (they have no value)."""
    fig = Figure(figsize=(6.4, 4.0), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    done = trials[trials["state"] == "COMPLETE"].sort_values("number")
    ax.plot(done["number"], done["value"], "o", label=f"trial {objective}")
    best = done["value"].cummax() if maximize else done["value"].cummin()
    ax.step(done["number"], best, where="post", label="best so far")
    other = trials[trials["state"] != "COMPLETE"]
    for state, g in other.groupby("state"):
        y = np.full(len(g), np.nanmin(done["value"]) if len(done) else 0.0)
        ax.plot(g["number"], y, "x", label=f"{state.lower()} (no value)")
    ax.set_xlabel("trial number")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(objective)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.savefig(path)


def param_importances(importances: Mapping[str, float], title: str, path: Path) -> None:
    """Optuna parameter importances (fANOVA by default) as horizontal bars."""
    names = list(importances)[::-1]
    fig = Figure(figsize=(5.6, 0.6 * len(names) + 1.4), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance (fraction of objective variance)")
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=10)
    fig.savefig(path)
