"""Paper-shaped tables from the ``configs`` / ``folds`` frames of :mod:`orchestrator.report.runs`.

Arms are rows; the metric columns are the pooled ACC / UF1 (the paper's F1 is macro-F1, i.e. UF1) / UAR
plus the per-fold mean and std, always labelled. An arm whose status is not ``complete`` (or one with a
failed fold whatever its tag says) keeps its row, shows its status and fold counts, and has its metrics
left blank: a partial mean is never shown as if it were the arm's result.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from mer_model.config import EXTENSION_DEFAULTS, extensions
from orchestrator.store import contract as C
from orchestrator.store.contract import (
    METRICS,  # the one definition (mer_model.metrics via the contract)
    parse_dataset_metric,
)

# Paper table tags (``mer.table``) in the paper's order, with what each compares.
TABLE_TITLES: dict[str, str] = {
    "III": "Table III: graph models on landmarks (GCN vs SS-GN)",
    "IV(a)": "Table IV(a): graph models x node features (Type A / Type B)",
    "IV(b)": "Table IV(b): GTS-GN fusion layer",
    "V": "Table V: LAM x AAU loss ablation",
    "VI": "Table VI: AU loss on a single layer",
    "VII": "Table VII: basic / AU loss / AAU loss per fusion layer",
    "IX": "Table IX: landmark point sets",
    "search": "Optuna search over beta and the fusion layer",
}
COMPLETE = "complete"
NON_PAPER = "not_in_paper"  # arm-table column: the options not in the paper an arm turns on (issue 16)


def table_title(tag: str) -> str:
    """Heading of a table section: the paper's table, or what an unknown tag is."""
    if tag in ("-", "", "untagged"):
        return "Arms not assigned to a paper table"
    return TABLE_TITLES.get(tag, f"Table {tag}")


def table_slug(tag: str) -> str:
    """File-name-safe form of a table tag: ``IV(b)`` -> ``IV_b``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", tag).strip("_") or "untagged"


def ordered_tables(tags: pd.Series) -> list[str]:
    """The distinct table tags, paper order first, unknown tags after in name order."""
    present = set(tags.dropna())
    return [t for t in TABLE_TITLES if t in present] + sorted(present - set(TABLE_TITLES))


def fold_counts(folds: pd.DataFrame) -> pd.DataFrame:
    """Per config run: ``n_folds_complete``, ``n_folds_failed`` (any non-complete fold status)."""
    if folds.empty:
        return pd.DataFrame(columns=["n_folds_complete", "n_folds_failed"])
    ok = folds["status"].eq(COMPLETE)
    return pd.DataFrame(
        {
            "n_folds_complete": ok.groupby(folds["config_run_id"]).sum(),
            "n_folds_failed": (~ok).groupby(folds["config_run_id"]).sum(),
        }
    )


def effective_status(configs: pd.DataFrame, folds: pd.DataFrame) -> pd.Series:
    """The ``mer.status`` tag, demoted to ``incomplete`` when a fold of a 'complete' arm did not complete,
    and ``running`` for an untagged run MLflow still marks RUNNING."""
    counts = fold_counts(folds).reindex(configs["run_id"]).fillna(0)
    status = configs["status"].to_numpy(dtype=object).copy()
    failed = counts["n_folds_failed"].to_numpy() > 0
    status[(status == COMPLETE) & failed] = "incomplete"
    running = (status == "unknown") & (configs["run_status"].to_numpy() == "RUNNING")
    status[running] = "running"
    return pd.Series(status, index=configs.index, name="status")


def varying_params(rows: pd.DataFrame) -> list[str]:
    """``param.*`` columns whose value differs between the rows (what tells the arms apart)."""
    cols = [c for c in rows.columns if c.startswith("param.")]
    return [c for c in cols if rows[c].astype(str).nunique(dropna=False) > 1]


def baseline_arm(rows: pd.DataFrame) -> str:
    """The table's baseline: the arm tagged ``mer.baseline=true``, else the first arm (spec order)."""
    tagged = rows[rows["baseline"]]
    return str((tagged if len(tagged) else rows).iloc[0]["arm"])


def n_seeds(rows: pd.DataFrame) -> pd.Series:
    """Seeds each config run was trained with: its ``seeds`` param ("0,1,2", the seeds contract), else
    the number of ``<m>_seed<k>`` metrics it logged, else 1 (a one-seed run of before the seeds axis)."""
    per_seed = [c for c in rows.columns if re.fullmatch(r"accuracy_seed\d+", c)]
    counted = rows[per_seed].notna().sum(axis=1) if per_seed else pd.Series(0, index=rows.index)
    param = rows.get("param.seeds", pd.Series(np.nan, index=rows.index))
    from_param = param.map(lambda v: len(str(v).split(",")) if isinstance(v, str) and v else np.nan)
    return from_param.fillna(counted.where(counted > 0)).fillna(1).astype(int)


def _paper_defaults(rows: pd.DataFrame) -> pd.DataFrame:
    """Extension params a run did not log (a store of before the option) read as their paper value, so
    an old run and a new run of the same paper model do not differ in that column."""
    rows = rows.copy()
    for k, v in EXTENSION_DEFAULTS.items():
        if f"param.{k}" in rows:
            rows[f"param.{k}"] = rows[f"param.{k}"].fillna(str(v))
    return rows


def _row_extensions(rows: pd.DataFrame) -> list[dict[str, str]]:
    """Per config row, the options not in the paper it turns on (``mer_model.config.extensions`` of its
    logged ``param.*``; a param a run did not log counts as the paper's value)."""
    logged = [{k: r.get(f"param.{k}") for k in EXTENSION_DEFAULTS} for _, r in rows.iterrows()]
    return [extensions({k: v for k, v in cfg.items() if isinstance(v, str)}) for cfg in logged]


def non_paper(rows: pd.DataFrame) -> pd.Series:
    """Per config row: its options not in the paper as ``"input = onset_delta, align = procrustes"``;
    ``""`` for a paper model (or a run of before them)."""
    return pd.Series([", ".join(f"{k} = {v}" for k, v in e.items()) for e in _row_extensions(rows)],
                     index=rows.index, dtype=object)


def non_paper_options(configs: pd.DataFrame) -> dict[str, list[str]]:
    """Every option not in the paper that some config run uses: ``{key: [values]}`` in first-use order
    (empty: all paper)."""
    used: dict[str, list[str]] = {}
    for e in _row_extensions(configs):
        for k, v in e.items():
            if v not in used.setdefault(k, []):
                used[k].append(v)
    return used


def dataset_columns(rows: pd.DataFrame) -> list[str]:
    """A union of datasets' per-dataset pooled columns ``dataset/<d>/<m>`` (and ``_sd``), datasets in the
    order the config runs logged them, metrics in METRICS order."""
    labels = list(dict.fromkeys(p[0] for c in rows.columns if (p := parse_dataset_metric(c))))
    return [C.dataset_metric(d, f"{m}{x}") for d in labels for m in METRICS for x in ("", "_sd")
            if C.dataset_metric(d, f"{m}{x}") in rows]


def arm_table(configs: pd.DataFrame, folds: pd.DataFrame, table: str) -> pd.DataFrame:
    """One paper table: a row per arm of ``mer.table == table`` in spec order.

    Columns: ``arm, status, baseline, n_folds_complete, n_folds_failed``, the varying params (named without
    the ``param.`` prefix), ``not_in_paper`` (only when some arm turns on an option the paper does not
    have: :func:`non_paper`), then ``<m>`` and ``<m>_sd`` for m in accuracy, uf1, uar (pooled over folds:
    mean and sample sd over seeds of each seed's pooled value; sd blank with one seed), ``n_seeds``, and
    ``fold_mean_<m>`` / ``fold_std_<m>`` (per fold, over every (seed, subject) fold), all fractions in
    [0, 1]; blank (NaN) unless the status is complete. On a union of datasets the per-dataset pooled
    ``dataset/<d>/<m>`` (and ``_sd``) follow the whole's (:func:`dataset_columns`).
    Optuna rows also carry ``optuna_trial``.
    """
    rows = _paper_defaults(configs[configs["table"] == table])
    rows["status"] = effective_status(rows, folds)
    counts = fold_counts(folds).reindex(rows["run_id"]).fillna(0).astype(int)
    rows["n_folds_complete"] = counts["n_folds_complete"].to_numpy()
    rows["n_folds_failed"] = counts["n_folds_failed"].to_numpy()
    base = baseline_arm(rows)
    rows["baseline"] = rows["arm"] == base
    params = [p for p in varying_params(rows) if p != "param.seeds"]
    rows["n_seeds"] = n_seeds(rows)
    for m in METRICS:  # sd over seeds: blank with one seed (the contract logs <m>_sd only with >= 2)
        if m in rows:
            rows[f"{m}_sd"] = rows[f"{m}_sd"] if f"{m}_sd" in rows else np.nan
    metric_cols = (
        [c for m in METRICS for c in (m, f"{m}_sd") if c in rows]
        + dataset_columns(rows)
        + ["n_seeds"]
        + [f"fold_{s}_{m}" for m in METRICS for s in ("mean", "std") if f"fold_{s}_{m}" in rows]
    )
    for col in metric_cols:  # a partial mean is not the arm's result: blank it
        rows[col] = rows[col].where(rows["status"] == COMPLETE)
    lead = ["arm", "status", "baseline", "n_folds_complete", "n_folds_failed"]
    if table == "search" or rows["optuna_trial"].notna().any():
        lead.insert(1, "optuna_trial")
    rows[NON_PAPER] = non_paper(rows)
    marked = [NON_PAPER] if rows[NON_PAPER].astype(bool).any() else []  # a column only when some arm uses one
    out = rows[lead + params + marked + metric_cols].rename(columns={p: p[len("param.") :] for p in params})
    return out.reset_index(drop=True)


def aau_weight_table(folds: pd.DataFrame, config_run_id: str) -> pd.DataFrame:
    """Paper Table VIII for one arm: rows = subjects + ``Average``, columns = ``layer1`` .. ``layerN``.

    Values are the fold runs' ``aau_weight_layer{r}`` (W_r^2 / sum W^2, Eq. 11). Failed folds keep their
    row with a ``status`` column saying so and do not enter the average. With several seeds a subject has
    one row per seed (a ``seed`` column says which) and the average is over every complete (seed, subject)
    fold.
    """
    f = folds[folds["config_run_id"] == config_run_id]
    several_seeds = "seed" in f and f["seed"].nunique() > 1
    wcols = sorted(
        (c for c in f.columns if c.startswith("aau_weight_layer") and f[c].notna().any()),
        key=lambda c: int(c[len("aau_weight_layer") :]),
    )
    keep = (["seed"] if several_seeds else []) + wcols + ["status"]
    t = f.set_index("subject")[keep].rename(columns=lambda c: c.replace("aau_weight_", ""))
    t.index.name = "subject"
    layers = [c.replace("aau_weight_", "") for c in wcols]
    ok = t["status"].eq(COMPLETE)
    t.loc[~ok, layers] = np.nan
    avg = t.loc[ok, layers].mean().to_frame().T
    avg.index = pd.Index(["Average"], name="subject")
    avg["status"] = f"mean of {int(ok.sum())} complete folds"
    return pd.concat([t, avg])


def aau_arms(configs: pd.DataFrame, folds: pd.DataFrame) -> list[tuple[str, str]]:
    """(arm, config_run_id) of arms whose folds logged weights for 2+ layers (AAU loss, Table VIII)."""
    wcols = [c for c in folds.columns if c.startswith("aau_weight_layer")]
    if not wcols:
        return []
    n_layers = folds[wcols].notna().sum(axis=1).groupby(folds["config_run_id"]).max()
    ids = set(n_layers[n_layers >= 2].index)
    return [(r.arm, r.run_id) for r in configs.itertuples() if r.run_id in ids]


def vii_grid(table: pd.DataFrame) -> pd.DataFrame | None:
    """Table VII in the paper's shape: rows = fusion layer, column groups Basic / AU loss / AAU loss, each
    with pooled ACC and UF1. None when the arms do not carry ``fusion_layer`` and ``au_loss`` params."""
    if not {"fusion_layer", "au_loss"} <= set(table.columns):
        return None
    kind = table["au_loss"].map(lambda v: "Basic" if v == "none" else "AAU loss" if v == "aau" else "AU loss")
    long = table.assign(kind=kind)
    grid = long.pivot_table(
        index="fusion_layer", columns="kind", values=["accuracy", "uf1"], aggfunc="first", dropna=False
    )
    grid = grid.swaplevel(axis=1)
    order = [k for k in ("Basic", "AU loss", "AAU loss") if k in grid.columns.get_level_values(0)]
    grid = grid.reindex(columns=pd.MultiIndex.from_product([order, ["accuracy", "uf1"]]))
    grid.columns = [f"{k} {m}" for k, m in grid.columns]
    return grid.reset_index()


def au_supervision(configs: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame | None:
    """Per AU-loss arm, the training clips of its complete folds that carried AU labels (min / max over
    folds) beside the training clips (``n_au_train`` / ``n_train`` fold metrics; issue 23). None when no
    fold recorded it or every training clip of every fold was labelled (nothing to say)."""
    if C.N_AU_TRAIN not in folds.columns:
        return None
    au_loss = configs.get("param.au_loss", pd.Series("none", index=configs.index)).fillna("none")
    au_arms = configs.loc[au_loss != "none", "run_id"]
    f = folds[folds["config_run_id"].isin(au_arms) & (folds["status"] == COMPLETE)].dropna(
        subset=[C.N_AU_TRAIN])
    n_train = f["n_train"] if "n_train" in f else pd.Series(np.nan, index=f.index)  # logged since issue 23
    if f.empty or bool((f[C.N_AU_TRAIN] == n_train).all()):
        return None
    g = f.assign(n_train=n_train).groupby("arm", sort=False)
    out = pd.DataFrame({"folds": g.size(), "au_labelled_min": g[C.N_AU_TRAIN].min(),
                        "au_labelled_max": g[C.N_AU_TRAIN].max(), "train_min": g["n_train"].min(),
                        "train_max": g["n_train"].max()})
    return out.reset_index()
