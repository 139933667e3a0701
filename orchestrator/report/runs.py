"""Read one sweep's MLflow runs (the layout in ``docs/architecture.md``) into pandas frames.

Three run kinds live in a sweep's experiment: one sweep run, one config run per arm / Optuna trial (child of
the sweep run) and one fold run per LOSO subject (child of its config run). This module turns them into:

- ``configs``: one row per config run: ``run_id, arm, table, status, baseline, order, optuna_trial,
  config_hash, dataset, setup`` + pooled / per-fold metrics (``accuracy, uf1, uar, fold_mean_*, fold_std_*,
  n_folds, n_failed``) + every param as ``param.<key>``.
- ``folds``: one row per (config run, seed, subject): ``run_id, config_run_id, arm, subject, seed, status,
  attempt, error, node`` + metrics (``accuracy, uf1, uar, n_test, aau_weight_layer{r}``).

Nothing here averages anything: statuses are carried through so the tables can show failures as such.
"""

from __future__ import annotations

import io
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run

from mer_model.errors import InputError
from orchestrator.store import contract as C
from orchestrator.store.contract import (
    ARM,
    KIND,
    STATUS,
    SUBJECT,
    TABLE,
    run_filter,
    search_runs,
    sqlite_path,
)

BASELINE_TAG = C.BASELINE  # optional: "true" on the config run that is its table's baseline


@dataclass(frozen=True)
class SweepRuns:
    """Everything the report reads from one experiment (frames described in the module docstring)."""

    tracking_uri: str
    client: MlflowClient
    experiment_id: str
    experiment_name: str
    sweep_run_id: str | None
    sweep_tags: dict[str, str]
    configs: pd.DataFrame
    folds: pd.DataFrame
    notes: list[str] = field(default_factory=list)  # things the reader must know (duplicates dropped, ...)
    choice: str = ""  # how the sweep was chosen: "" (the only one), "the latest of N ...", "--sweep-id"

    @property
    def dataset(self) -> str:
        """The dataset recorded with the sweep run (else with its config runs)."""
        if self.sweep_tags.get(C.DATASET):
            return self.sweep_tags[C.DATASET]
        names = sorted(set(self.configs.get("dataset", pd.Series(dtype=str)).dropna()))
        return ", ".join(names) if names else "unknown"


def check_tracking_uri(uri: str) -> None:
    """Fail fast with one line when the tracking store is not there (never create an empty SQLite DB)."""
    from orchestrator.services import check_tracking

    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "sqlite":
        path = sqlite_path(uri)
        if path is not None and str(path) not in ("", ".", ":memory:") and not path.is_file():
            raise InputError(f"tracking URI {uri}: no SQLite tracking store at {path}; run a sweep first")
    elif parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme == "file" else uri
        if not Path(path).is_dir():
            raise InputError(f"tracking URI {uri}: no MLflow file store at {path}")
    else:
        # http(s): GET /health with a deadline (MLflow's own client retries a dead server for minutes);
        # postgresql / mysql: one connection; anything else: unsupported scheme
        check_tracking(uri)


def _search_all(client: MlflowClient, experiment_id: str, kind: str) -> list[Run]:
    return search_runs(client, experiment_id, run_filter(kind))


def _sweep_members(
    client: MlflowClient, experiment_id: str, sweep_id: str | None
) -> tuple[list[Run], list[Run]]:
    """(config runs, fold runs) of sweep ``sweep_id``: two queries by its tag, so the report reads the
    sweep it shows, not the experiment (issue 26). Runs without ``mer.sweep_id`` (from before it was written,
    or fold runs logged by hand under tagged config runs) fall back to every run of the experiment, as the
    report read them before; ``_select_folds`` keeps those of the selected configs."""
    configs = search_runs(client, experiment_id, run_filter(C.CONFIG, sweep_id=sweep_id)) if sweep_id else []
    if not configs:
        return _search_all(client, experiment_id, C.CONFIG), _search_all(client, experiment_id, C.FOLD)
    folds = search_runs(client, experiment_id, run_filter(C.FOLD, sweep_id=sweep_id))
    return configs, folds or _search_all(client, experiment_id, C.FOLD)


def _truthy(value: str | None) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


def _arm_order(client: MlflowClient, sweep_run_id: str | None) -> dict[str, int]:
    """Spec order of the arms, from the sweep run's ``tables/arms.csv`` (row order = spec order)."""
    if sweep_run_id is None:
        return {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(sweep_run_id, C.ARMS_CSV, tmp)
            arms = pd.read_csv(path)
    except Exception:  # noqa: BLE001 - a missing artifact only loses the order, the fallback is start time
        return {}
    col = next((c for c in ("arm", "name", "Arm") if c in arms.columns), arms.columns[0])
    return {str(a): i for i, a in enumerate(arms[col])}


def _config_row(run: Run) -> dict:
    tags, data = run.data.tags, run.data
    trial = tags.get(C.OPTUNA_TRIAL)
    row = {
        "run_id": run.info.run_id,
        "arm": tags.get(ARM) or run.info.run_name,
        "table": tags.get(TABLE, "untagged"),
        "status": tags.get(STATUS, "unknown"),
        "baseline": _truthy(tags.get(BASELINE_TAG)),
        "optuna_trial": float(trial) if trial not in (None, "") else np.nan,
        "config_hash": tags.get(C.CONFIG_HASH),
        "sweep_id": tags.get(C.SWEEP_ID),
        "dataset": tags.get(C.DATASET) or data.params.get("dataset"),
        "setup": data.params.get("setup"),
        "start_time": run.info.start_time or 0,
        "run_status": run.info.status,  # MLflow's own RUNNING / FINISHED / FAILED / KILLED
    }
    row.update(data.metrics)
    row.update({f"param.{k}": v for k, v in data.params.items()})
    return row


def _fold_row(run: Run) -> dict:
    tags = run.data.tags
    row = {
        "run_id": run.info.run_id,
        "config_run_id": tags.get(C.PARENT),
        "arm": tags.get(ARM),
        "subject": tags.get(SUBJECT) or (run.info.run_name or "").rsplit("/", 1)[-1],
        # training seed (seeds contract); a run of before the seeds axis has one seed, read as 0
        "seed": int(tags.get(C.SEED) or 0),
        "status": tags.get(STATUS, "unknown"),
        "attempt": int(tags.get(C.ATTEMPT, 0) or 0),
        "error": tags.get(C.ERROR),
        "node": tags.get(C.NODE),
        "start_time": run.info.start_time or 0,
    }
    row.update(run.data.metrics)
    return row


def _pick_sweep(sweeps: list[Run], sweep_id: str | None, experiment: str) -> tuple[Run | None, str]:
    """The sweep run to report (``sweep_id``, else the latest) and how it was chosen (said in the header:
    a value edit makes a new sweep in the same experiment, and the report must not switch silently)."""
    if sweep_id is not None:
        hit = [r for r in sweeps if r.data.tags.get(C.SWEEP_ID) == sweep_id]
        if not hit:
            ids = [r.data.tags.get(C.SWEEP_ID, "?") for r in sweeps]
            raise InputError(f"experiment {experiment}: --sweep-id {sweep_id}: no such sweep; expected one "
                             f"of {', '.join(ids) or '(none)'}")
        return hit[-1], "chosen with --sweep-id"
    if len(sweeps) > 1:
        return sweeps[-1], (f"the latest of {len(sweeps)} sweeps in this experiment (`mer-orch ls` lists "
                            "them; `--sweep-id` picks another)")
    return (sweeps[-1] if sweeps else None), ""


def load_sweep(experiment: str, tracking_uri: str, sweep_id: str | None = None) -> SweepRuns:
    """Read the runs of one sweep of experiment ``experiment`` (name) into :class:`SweepRuns`: the sweep
    ``sweep_id``, else the latest one (the choice is kept in ``choice``).

    A subject with several fold runs under one config (retries) keeps its latest complete run, else its
    latest run; an arm with several config runs keeps the latest; both are written to ``notes``.
    """
    check_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise InputError(
            f"experiment {experiment}: no such experiment at {tracking_uri}; "
            f"expected one of {names[:10]}{' ...' if len(names) > 10 else ''}"
        )
    notes: list[str] = []

    sweeps = sorted(_search_all(client, exp.experiment_id, C.SWEEP), key=lambda r: r.info.start_time or 0)
    sweep, choice = _pick_sweep(sweeps, sweep_id, experiment)
    if choice:
        notes.append(f"Sweep {sweep.data.tags.get(C.SWEEP_ID)}: {choice}.")
    sweep_tags = dict(sweep.data.tags) if sweep else {}

    config_runs, fold_runs = _sweep_members(client, exp.experiment_id, sweep_tags.get(C.SWEEP_ID))
    configs = pd.DataFrame([_config_row(r) for r in config_runs])
    folds = pd.DataFrame([_fold_row(r) for r in fold_runs])
    if configs.empty:
        raise InputError(
            f"experiment {experiment}: no config runs (tag {KIND}=config); is it a mer-orch sweep?"
        )
    configs = _select_configs(configs, sweep_tags, notes)
    configs = _spec_order(configs, _arm_order(client, sweep.info.run_id if sweep else None))
    folds = _select_folds(folds, configs, notes)

    # a sweep whose folds all failed logged no metric at all: the columns must still exist (NaN = missing)
    configs, folds = (_with_columns(df, C.METRICS) for df in (configs, folds))
    state = (sweep.info.status, sweep_tags.get(C.STATUS, "unset")) if sweep is not None else None
    if state is not None and (state[0] != "FINISHED" or state[1] == "incomplete"):
        notes.append(
            "The sweep has not finished (still running, interrupted or with failed configs; sweep run "
            f"{state[0]}, `mer.status` {state[1]}): this report shows the runs that exist so far; "
            "configs not listed have not started, and incomplete ones carry no pooled value."
        )
    return SweepRuns(
        tracking_uri=tracking_uri,
        client=client,
        experiment_id=exp.experiment_id,
        experiment_name=exp.name,
        sweep_run_id=sweep.info.run_id if sweep else None,
        sweep_tags=sweep_tags,
        configs=configs,
        folds=folds,
        notes=notes,
        choice=choice,
    )


def _select_configs(configs: pd.DataFrame, sweep_tags: dict[str, str], notes: list[str]) -> pd.DataFrame:
    """The config runs of the reported sweep id, the latest of each (table, arm); drops go to notes."""
    if sweep_tags.get(C.SWEEP_ID) and configs["sweep_id"].notna().any():
        keep = configs["sweep_id"].isna() | (configs["sweep_id"] == sweep_tags[C.SWEEP_ID])
        if (~keep).any():
            notes.append(f"{int((~keep).sum())} config runs of other sweep ids ignored.")
        configs = configs[keep]
    configs = configs.sort_values("start_time")
    dup = configs.duplicated(["table", "arm"], keep="last")
    if dup.any():
        notes.append(
            f"{int(dup.sum())} older duplicate config runs ignored: {sorted(configs.loc[dup, 'arm'])}."
        )
        configs = configs[~dup]
    return configs


def _spec_order(configs: pd.DataFrame, order: dict[str, int]) -> pd.DataFrame:
    """Spec order when the sweep recorded it, then Optuna trial number, then start time."""
    configs = configs.assign(
        order=[order.get(a, len(order)) for a in configs["arm"]],
        _trial=configs["optuna_trial"].fillna(-1),
    ).sort_values(["order", "_trial", "start_time"], kind="stable")
    return configs.drop(columns="_trial").reset_index(drop=True)


def _select_folds(folds: pd.DataFrame, configs: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Fold runs of the selected configs; a retried fold is one fold: its latest complete attempt, else its
    latest attempt."""
    if folds.empty:
        cols = ["run_id", "config_run_id", "arm", "subject", "seed", "status", "accuracy"]
        return pd.DataFrame(columns=cols)
    folds = folds[folds["config_run_id"].isin(configs["run_id"])]
    arm_of = dict(zip(configs["run_id"], configs["arm"], strict=True))
    folds = folds.assign(arm=folds["config_run_id"].map(arm_of))
    folds = folds.assign(_ok=folds["status"] == "complete").sort_values(["_ok", "attempt", "start_time"])
    n_before = len(folds)
    folds = folds.drop_duplicates(["config_run_id", "seed", "subject"], keep="last").drop(columns="_ok")
    if len(folds) < n_before:
        notes.append(f"{n_before - len(folds)} superseded fold attempts ignored (retries).")
    return folds.sort_values(["config_run_id", "seed", "subject"]).reset_index(drop=True)
def _with_columns(df: pd.DataFrame, cols: tuple[str, ...]) -> pd.DataFrame:
    """``df`` with every column of ``cols`` present (all-NaN where no run logged it)."""
    missing = [c for c in cols if c not in df.columns]
    return df.assign(**{c: np.nan for c in missing}) if missing else df


def read_csv_artifact(client: MlflowClient, run_id: str, path: str) -> pd.DataFrame | None:
    """One CSV artifact of a run as a frame, or None when the run has no such artifact."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(run_id, path, tmp)
            return pd.read_csv(io.StringIO(Path(local).read_text()))
    except Exception:  # noqa: BLE001 - missing artifact: the caller reports it as missing
        return None


def read_text_artifact(client: MlflowClient, run_id: str, path: str) -> str | None:
    """One text artifact of a run, or None when the run has no such artifact."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return Path(client.download_artifacts(run_id, path, tmp)).read_text()
    except Exception:  # noqa: BLE001 - missing artifact
        return None


def read_predictions(client: MlflowClient, run_id: str) -> pd.DataFrame | None:
    """A config run's clip-level ``predictions.csv`` with a ``seed`` column (0 when the run predates the
    seeds axis); subject / clip ids stay strings ("006" is SAMM's subject, not 6). None when absent."""
    text = read_text_artifact(client, run_id, C.PREDICTIONS_CSV)
    if text is None:
        return None
    df = pd.read_csv(io.StringIO(text), dtype={"subject": str, "clip": str})
    if "seed" not in df:
        df.insert(0, "seed", 0)
    return df


def read_lam(client: MlflowClient, run_id: str) -> dict[str, np.ndarray]:
    """The learned adjacency matrices of one fold run: ``{"layer1": (V, V), "layer2.xy": ...}``."""
    out: dict[str, np.ndarray] = {}
    try:
        files = [f for f in client.list_artifacts(run_id, "lam") if f.path.endswith(".npy")]
    except Exception:  # noqa: BLE001 - no lam/ folder: an arm without LAM
        return out
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            local = client.download_artifacts(run_id, f.path, tmp)
            out[Path(f.path).name[: -len(".npy")]] = np.load(local)
    return out


def read_confusion(client: MlflowClient, run_id: str) -> tuple[np.ndarray, list[str]] | None:
    """The pooled confusion matrix the sweep computed and stored (``confusion.csv``) and its class names;
    never recomputed. None when the run stored none."""
    df = read_csv_artifact(client, run_id, C.CONFUSION_CSV)
    if df is not None and len(df):
        first = df.columns[0]
        if (
            not pd.api.types.is_numeric_dtype(df[first])
            or str(first).startswith("Unnamed")
            or first in ("true", "y_true", "label", "class")
        ):
            df = df.set_index(first)
        return df.to_numpy(dtype=int), [str(c) for c in df.columns]
    return None
