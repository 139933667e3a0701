"""Table VIII's companion (issue 16): the AAU layer weights' trajectory over training, and what each
``aau_weighting`` makes of the weights Table VIII shows.

A fold run logs ``aau_weight_layer<r>`` at steps 0..E (``contract.AAU_METRIC_PREFIX``): step 0 is the
weight at initialisation, step e the weight after epoch e. Its MLflow metric history is therefore the
trajectory; the latest value is Table VIII's number. Runs of stores written before the trajectory existed
hold one value (the final, at step 0): they cannot be drawn and are counted, not guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from mlflow import MlflowClient

from mer_model.config import EXTENSION_DEFAULTS
from orchestrator.store.contract import AAU_METRIC_PREFIX

TRAJECTORY_COLUMNS = ("epoch", "layer", "mean", "low", "high", "n_folds")
BAND = "min-max range over the fold runs"  # what ``low`` / ``high`` are (said in every caption)

# What the weights of Table VIII are under each aau_weighting (mer_model.config.AAU_WEIGHTINGS). Only
# 'learned' is the paper's AAU loss (Eq. 11); the others are the issue-16 controls and extension.
WEIGHTING_TEXT: dict[str, str] = {
    "learned": "learned AAU layer weights W_r² / Σ W² (Eq. 11)",
    "frozen": "AAU layer weights W_r² / Σ W² of the 'frozen' control (not in the paper): W fixed at its "
              "initial ones, so every share is 1/N_L (Eq. 9 averaged)",
    "sum": "AAU layer shares of the 'sum' control (not in the paper's AAU arm): Eq. (9) as written, the "
           "unweighted sum of the layer losses, shares 1/N_L",
    "uncertainty": "AAU layer shares of the 'uncertainty' weighting (ours, not in the paper): normalised "
                   "shares exp(-s_r) / Σ exp(-s) of homoscedastic-uncertainty weighting",
}


def weighting_of(config: pd.Series | dict[str, Any]) -> str:
    """The arm's ``aau_weighting`` from its config-run row (``param.aau_weighting``); a run logged before
    the option existed, or without the param, is the paper's 'learned'."""
    v = config.get("param.aau_weighting")
    return str(v) if isinstance(v, str) and v else str(EXTENSION_DEFAULTS["aau_weighting"])


def weights_text(weighting: str) -> str:
    """What Table VIII's numbers are for ``weighting`` (an unknown value is named as such)."""
    return WEIGHTING_TEXT.get(weighting, f"AAU layer weights of aau_weighting '{weighting}'")


def weight_histories(client: MlflowClient, fold_run_ids: Iterable[str], layers: Sequence[int]
                     ) -> pd.DataFrame:
    """Every logged value of ``aau_weight_layer<r>`` of each fold run: columns ``run_id, layer, epoch,
    weight`` (epoch = MLflow step: 0 the initialisation, e after epoch e). A step logged twice (a retried
    write) keeps its last value."""
    rows = [
        {"run_id": rid, "layer": int(r), "epoch": int(m.step), "weight": float(m.value), "ts": m.timestamp}
        for rid in fold_run_ids
        for r in layers
        for m in client.get_metric_history(rid, f"{AAU_METRIC_PREFIX}{r}")
    ]
    h = pd.DataFrame(rows, columns=["run_id", "layer", "epoch", "weight", "ts"])
    h = h.sort_values("ts", kind="stable").drop_duplicates(["run_id", "layer", "epoch"], keep="last")
    return h.drop(columns="ts").sort_values(["run_id", "layer", "epoch"]).reset_index(drop=True)


def trajectory(hist: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Per (epoch, layer): mean, min and max of the weight over the fold runs that logged a trajectory
    (2+ steps of that layer), and how many fold runs held a single value only (old stores: not drawable).

    hist: :func:`weight_histories`. Returns (frame of :data:`TRAJECTORY_COLUMNS`, n_single).
    """
    steps = hist.groupby(["run_id", "layer"])["epoch"].transform("nunique")
    single = int(hist.loc[steps < 2, "run_id"].nunique())
    g = hist[steps >= 2].groupby(["epoch", "layer"])["weight"]
    t = g.agg(mean="mean", low="min", high="max", n_folds="count").reset_index()
    return t[list(TRAJECTORY_COLUMNS)], single
