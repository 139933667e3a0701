"""The report's figures, drawn with matplotlib's object API (``Figure``: no pyplot state, no display).

Every figure is written three times from one drawing (:func:`save`): vector PDF and SVG for a paper, and a
300-dpi PNG for the Markdown / HTML views. Sizes follow two-column journals (IEEE: one column 3.5 in, two
columns 7.16 in) with 8-pt text, so a figure is placed at 100% and stays readable in print. The numbers
behind each figure are written next to it by the caller (CSV / NPZ), so that a figure can be checked
against the runs without reading pixels. Each drawing function returns its ``Figure`` (tests read labels).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import wraps
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import ConfusionMatrixDisplay

from mer_model.landmarks import node_names

ONE_COLUMN_IN = 3.5  # inches: IEEE one-column width
TWO_COLUMN_IN = 7.16  # IEEE two-column (full text) width
PNG_DPI = 300
VECTOR_SUFFIXES = (".pdf", ".svg")
# 8-pt text (a journal's caption size); SVG keeps text as text (searchable, smaller), PDF embeds TrueType
# (Type 42) fonts, which publishers' checkers accept where Type 3 is refused.
_PRINT_STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "svg.fonttype": "none",
    "pdf.fonttype": 42,
}


def _print_style(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Run a drawing function under the print rc settings (artists read rcParams when created)."""

    @wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with matplotlib.rc_context(_PRINT_STYLE):
            return draw(*args, **kwargs)

    return wrapper


def figure_files(png: Path | str) -> list[str]:
    """The three files :func:`save` writes for ``png`` (same stem): PNG, PDF, SVG."""
    p = Path(png)
    return [str(p)] + [str(p.with_suffix(s)) for s in VECTOR_SUFFIXES]


def save(fig: Figure, png: Path) -> None:
    """Write ``fig`` as 300-dpi PNG plus PDF and SVG beside it; no creation date inside, so the same
    numbers give the same files."""
    with matplotlib.rc_context(_PRINT_STYLE):
        fig.savefig(png, dpi=PNG_DPI, metadata={"Software": None})
        fig.savefig(png.with_suffix(".pdf"), metadata={"CreationDate": None})
        fig.savefig(png.with_suffix(".svg"), metadata={"Date": None})


def _lam_sort_key(key: str) -> tuple[int, str]:
    m = re.match(r"layer(\d+)(.*)", key)
    stream = {"": "0", ".xy": "1", ".dalpha": "2"}  # shared layer, then the (x, y) stream before (D, alpha)
    return (int(m.group(1)), stream.get(m.group(2), m.group(2))) if m else (99, key)


def lam_order(keys: Sequence[str]) -> list[str]:
    """LAM keys in layer order: ``layer1.xy, layer1.dalpha, layer2, ...``."""
    return sorted(keys, key=_lam_sort_key)


def lam_node_labels(v: int) -> list[str]:
    """Axis labels of a (V, V) learned adjacency: the landmark names of the 14 / 31 / 68-point set; for the
    vanilla GCN's whole GM-Graph (3 frames x V nodes, node t*V + v) the frame is prefixed; else indices."""
    if v in (14, 31, 68):
        return list(node_names(v))
    if v % 3 == 0 and v // 3 in (14, 31, 68):
        return [f"{f} {n}" for f in ("on", "apex", "off") for n in node_names(v // 3)]
    return [str(i) for i in range(v)]


@_print_style
def lam_heatmaps(mats: Mapping[str, np.ndarray], title: str, path: Path) -> Figure:
    """Paper Fig. 5: one heatmap per learned adjacency ``A_L`` (Eq. 6), each (V, V), on one shared colour
    scale so that the layers' magnitudes can be compared (the paper's observation: deeper layers smaller).
    Two-column wide; rows and columns are labelled with landmark names (every node, one tick each)."""
    keys = lam_order(list(mats))
    v = int(np.shape(mats[keys[0]])[0])
    labels = lam_node_labels(v)
    # two-column width; 68 names fit a half-width panel at 3 pt (about 3.8 pt of axis per node)
    ncols = min(len(keys), 3 if v <= 14 else 2)
    nrows = -(-len(keys) // ncols)
    tick_pt = 5.5 if v <= 14 else 4.5 if v <= 31 else 3.0
    panel = TWO_COLUMN_IN / ncols
    vmin = min(float(np.min(mats[k])) for k in keys)
    vmax = max(float(np.max(mats[k])) for k in keys)
    fig = Figure(figsize=(TWO_COLUMN_IN, panel * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    im = None
    for i, ax in enumerate(axes):
        if i >= len(keys):
            ax.set_axis_off()
            continue
        im = ax.imshow(mats[keys[i]], cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_title(f"{keys[i]} (mean {float(np.mean(mats[keys[i]])):.3g})")
        ax.set_xticks(range(v), labels, rotation=90, fontsize=tick_pt)
        ax.set_yticks(range(v), labels, fontsize=tick_pt)
        ax.tick_params(length=1.5, pad=1)
    fig.colorbar(im, ax=list(axes), shrink=0.6, label="A_L")
    fig.suptitle(title)
    save(fig, path)
    return fig


def beta_grid_holes(points: pd.DataFrame, max_betas: int = 25) -> pd.DataFrame:
    """Points of the beta x fusion-layer grid with no complete result (Fig. 9's markers).

    The grid is every beta seen (any status) times every fusion layer seen; a point is a hole when no
    complete arm sits on it: ``status`` is the arm's own status there (e.g. ``pruned``) or ``not run``.
    With more than ``max_betas`` distinct betas the search was continuous, not a grid: only the arms that
    did not complete are holes. Columns: ``beta``, ``fusion_layer`` (when it varies), ``status``.
    """
    layer = "fusion_layer" if "fusion_layer" in points else None
    betas = sorted(points["beta"].dropna().unique())
    layers = sorted(points[layer].dropna().unique()) if layer else [None]
    done = points[points["status"] == "complete"]
    rows = []
    for lay in layers:
        at_layer = points if layer is None else points[points[layer] == lay]
        ok = set(done["beta"] if layer is None else done.loc[done[layer] == lay, "beta"])
        for b in betas:
            if b in ok:
                continue
            there = at_layer.loc[at_layer["beta"] == b, "status"]
            if there.empty and len(betas) > max_betas:
                continue
            rows.append({"beta": b, **({layer: lay} if layer else {}),
                         "status": str(there.iloc[0]) if len(there) else "not run"})
    return pd.DataFrame(rows, columns=["beta", *([layer] if layer else []), "status"])


@_print_style
def accuracy_vs_beta(points: pd.DataFrame, holes: pd.DataFrame, title: str, path: Path) -> Figure:
    """Paper Fig. 9: pooled accuracy (%) against beta, one line per fusion layer when it varies.

    points: columns ``beta``, ``accuracy`` (fraction), ``status`` and optionally ``fusion_layer``; only
    complete rows are drawn. holes (:func:`beta_grid_holes`): drawn as open markers on the bottom edge in the
    line's colour, so an incomplete grid never reads as a line through the missing points.
    """
    fig = Figure(figsize=(ONE_COLUMN_IN, 2.6), layout="constrained")
    ax = fig.subplots()
    done = points[points["status"] == "complete"]
    layer = "fusion_layer" if "fusion_layer" in points else None
    keys = sorted(points[layer].dropna().unique()) if layer else ["all"]
    colours = {k: f"C{i}" for i, k in enumerate(keys)}
    for key in keys:
        g = done if layer is None else done[done[layer] == key]
        h = holes if layer is None else holes[holes[layer] == key]
        # a hole inside a line breaks it (NaN), so no segment is drawn through a missing point
        line = pd.concat([g[["beta", "accuracy"]], h[["beta"]].assign(accuracy=np.nan)]).sort_values("beta")
        label = f"fusion layer {key}" if layer else "pooled accuracy"
        ax.plot(line["beta"], 100 * line["accuracy"], marker="o", ms=3, color=colours[key], label=label)
    if len(holes):
        y0, y1 = ax.get_ylim()
        for i, key in enumerate(keys):
            h = holes if layer is None else holes[holes[layer] == key]
            y = y0 + 0.03 * i * (y1 - y0)  # one row per layer, so holes at the same beta stay visible
            ax.plot(h["beta"], np.full(len(h), y), linestyle="none", marker="v", mfc="none", ms=5,
                    color=colours[key], clip_on=False, label="no result (not run / not complete)" if i == 0
                    else None)
        ax.set_ylim(y0, y1)  # the markers sit on the bottom edge instead of stretching the axis
    ax.set_xlabel("beta (weight of the AAU loss, Eq. 12)")
    ax.set_ylabel("pooled ACC (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    save(fig, path)
    return fig


@_print_style
def confusion(matrix: np.ndarray, labels: Sequence[str], title: str, path: Path) -> Figure:
    """Pooled confusion matrix (rows true, columns predicted; counts over all LOSO folds); one column."""
    fig = Figure(figsize=(ONE_COLUMN_IN, 3.2), layout="constrained")
    ax = fig.subplots()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(labels)).plot(
        ax=ax, colorbar=False, values_format="d", xticks_rotation=45
    )
    ax.set_title(title)
    save(fig, path)
    return fig


@_print_style
def search_history(
    trials: pd.DataFrame, objective: str, title: str, path: Path, *, maximize: bool = True
) -> Figure:
    """Optuna search history: each complete trial's objective and the best so far; pruned / failed trials
    marked on the axis (they have no value). One column."""
    fig = Figure(figsize=(ONE_COLUMN_IN, 2.6), layout="constrained")
    ax = fig.subplots()
    done = trials[trials["state"] == "COMPLETE"].sort_values("number")
    ax.plot(done["number"], done["value"], "o", ms=3, label=f"trial {objective}")
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
    ax.legend()
    ax.set_title(title)
    save(fig, path)
    return fig


@_print_style
def param_importances(importances: Mapping[str, float], title: str, path: Path) -> Figure:
    """Optuna parameter importances (fANOVA by default) as horizontal bars; one column."""
    names = list(importances)[::-1]
    fig = Figure(figsize=(ONE_COLUMN_IN, 0.35 * len(names) + 1.0), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance (fraction of objective variance)")
    ax.set_xlim(0, 1)
    ax.set_title(title)
    save(fig, path)
    return fig


@_print_style
def aau_trajectory(traj: pd.DataFrame, title: str, path: Path, band: str) -> Figure:
    """The AAU layer weights over training (issue 16, beside Table VIII): per layer the mean over the fold
    runs against the epoch (0 = initialisation), with a shaded band (``low`` .. ``high``, what ``band``
    names). traj: ``report.aau.trajectory`` (columns epoch, layer, mean, low, high). One column."""
    fig = Figure(figsize=(ONE_COLUMN_IN, 2.9), layout="constrained")
    ax = fig.subplots()
    for i, (layer, g) in enumerate(traj.sort_values("epoch").groupby("layer")):
        colour = f"C{i}"
        ax.plot(g["epoch"], g["mean"], color=colour, lw=1.2, label=f"layer {int(layer)}")
        ax.fill_between(g["epoch"], g["low"], g["high"], color=colour, alpha=0.2, lw=0)
    ax.set_xlabel("epoch (0 = initialisation)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("layer weight (share)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    # below the axes: a legend inside would hide the bands of up to four layers
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=4,
               title=f"line: mean; band: {band}", title_fontsize=6)
    ax.set_title(title, fontsize=8)
    save(fig, path)
    return fig


@_print_style
def forest(diffs: pd.DataFrame, metric_label: str, title: str, path: Path) -> Figure:
    """Per-subject forest plot (``effects.forest`` rows): one panel per arm, subjects as rows, the
    seed-mean difference against the baseline as a dot, min-max over seeds as a line, 0 dashed."""
    arms = list(dict.fromkeys(diffs["arm"]))
    subjects = sorted(diffs["subject"].astype(str).unique())
    y = {s: i for i, s in enumerate(subjects)}
    height = min(9.0, 1.0 + 0.14 * len(subjects))
    fig = Figure(figsize=(TWO_COLUMN_IN, height), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(arms), sharey=True, squeeze=False)[0])
    for ax, arm in zip(axes, arms, strict=True):
        d = diffs[diffs["arm"] == arm]
        ys = d["subject"].astype(str).map(y).to_numpy()
        ax.hlines(ys, d["low"], d["high"], color="0.6", linewidth=0.8)
        colour = np.where(d["diff"] > 0, "tab:blue", np.where(d["diff"] < 0, "tab:red", "0.3"))
        ax.scatter(d["diff"], ys, s=9, c=colour, zorder=3)
        ax.axvline(0, color="0.3", linestyle="--", linewidth=0.6)
        ax.set_title(arm, fontsize=7)
        ax.set_xlabel(f"Δ {metric_label}")
    axes[0].set_yticks(range(len(subjects)), subjects)
    axes[0].set_ylabel("left-out subject")
    fig.suptitle(title)
    save(fig, path)
    return fig
