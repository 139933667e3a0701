"""The two training-seed schemes side by side (issue 24): how much of an arm's seed noise is a shared start.

    mer-orch sweep search_spaces/recipe_seed_scheme.yaml
    mer-orch sweep search_spaces/recipe_seed_scheme.yaml --set protocol.seed_scheme=shared \\
        --set tracking.experiment=recipe-shared
    python benchmarks/seed_scheme.py [--tracking-uri URI]

Under ``protocol.seed_scheme: shared`` every fold of a seed starts from the same initial weights, so the
folds of one seed may err together; under ``per_unit`` each unit has its own seed. For each scheme, from
the config run's ``predictions.csv`` (seed, subject, clip, y_true, y_pred):

- pooled accuracy and UF1 per seed, their mean and sd over seeds (what the report's ± shows);
- ``sd if independent``: the seed sd of pooled accuracy the folds would give if they varied independently,
  sqrt(sum_i w_i^2 var_seeds(acc_i)) with w_i the fold's share of the clips (pooled accuracy is the
  clip-weighted mean of fold accuracies), and the variance ratio observed / independent;
- a two-way analysis of variance of the fold accuracies (folds x seeds, no replication): F of the seed
  effect against the fold-by-seed residual and its p. A shared start shows as a seed effect (F > 1);
  independent units give F ~ 1. With 3 seeds the observed sd alone is a 2-df estimate (its 95 % interval
  spans a factor of ~150 in variance), which is why the F test, on all 26 x 3 fold values, is the measurement.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from scipy import stats
from sklearn.metrics import f1_score

from orchestrator.store import contract as C

ARM = "SS-GN+Type A (paper)"


def predictions(client: MlflowClient, experiment: str, arm: str) -> pd.DataFrame:
    """The newest complete config run of ``arm`` in ``experiment``: its predictions.csv."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"no experiment {experiment!r}: run the two sweeps in this file's docstring first")
    runs = [r for r in C.search_runs(client, exp.experiment_id, C.run_filter(C.CONFIG, arm=arm))
            if r.data.tags.get(C.STATUS) == "complete"]
    if not runs:
        raise SystemExit(f"{experiment}: no complete config run of {arm!r}")
    run = max(runs, key=lambda r: r.info.start_time)
    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_csv(client.download_artifacts(run.info.run_id, C.PREDICTIONS_CSV, tmp))


def seed_noise(df: pd.DataFrame) -> dict[str, float]:
    df = df.assign(hit=(df["y_true"] == df["y_pred"]).astype(float))
    seeds = sorted(df["seed"].unique())
    acc = df.groupby("seed")["hit"].mean()
    uf1 = df.groupby("seed")[["y_true", "y_pred"]].apply(
        lambda g: f1_score(g["y_true"], g["y_pred"], average="macro"))
    folds = df.groupby(["subject", "seed"])["hit"].mean().unstack("seed")[seeds]  # folds x seeds
    n = df[df["seed"] == seeds[0]].groupby("subject").size().reindex(folds.index)
    w = n / n.sum()
    independent = float(np.sqrt((w ** 2 * folds.var(axis=1, ddof=1)).sum()))
    a = folds.to_numpy()
    n_f, n_s = a.shape
    resid = a - a.mean(axis=1, keepdims=True) - a.mean(axis=0, keepdims=True) + a.mean()
    ms_seed = n_f * ((a.mean(axis=0) - a.mean()) ** 2).sum() / (n_s - 1)
    ms_resid = (resid ** 2).sum() / ((n_f - 1) * (n_s - 1))
    f = ms_seed / ms_resid
    return {"seeds": len(seeds), "folds": n_f, "acc_mean": acc.mean(), "acc_sd": acc.std(ddof=1),
            "uf1_mean": uf1.mean(), "uf1_sd": uf1.std(ddof=1), "acc_sd_independent": independent,
            "variance_ratio": (acc.std(ddof=1) / independent) ** 2, "F_seed": f,
            "p_seed": float(stats.f.sf(f, n_s - 1, (n_f - 1) * (n_s - 1))),
            "acc_per_seed": " ".join(f"{v:.4f}" for v in acc)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    ap.add_argument("--arm", default=ARM)
    args = ap.parse_args()
    client = MlflowClient(args.tracking_uri)
    rows = {scheme: seed_noise(predictions(client, exp, args.arm))
            for scheme, exp in (("shared", "recipe-shared"), ("per_unit", "recipe-per-unit"))}
    table = pd.DataFrame(rows).T
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
        print(f"{args.arm} on synthme-casme2 (SynthME, not a real dataset):")
        print(table)


if __name__ == "__main__":
    main()
