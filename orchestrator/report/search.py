"""The Optuna side of the report: find the sweep's study, or rebuild it from the MLflow trial runs.

The study in the Optuna storage is the primary source (its trial states are Optuna's own). When no storage
is given or reachable, the ``mer.table=search`` config runs are turned into an in-memory study with
``optuna.trial.create_trial`` so that the same history and importance code runs on them (the report says
which source it used).
"""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pandas as pd

from mer_model.errors import InputError
from orchestrator.store.contract import sqlite_path

# mer.status of a config run -> Optuna trial state
_STATE = {
    "complete": optuna.trial.TrialState.COMPLETE,
    "pruned": optuna.trial.TrialState.PRUNED,
    "failed": optuna.trial.TrialState.FAIL,
    "incomplete": optuna.trial.TrialState.FAIL,
}


def storage_exists(storage: str) -> bool:
    """False for a local SQLite / journal storage whose file is missing (opening it would create it)."""
    from orchestrator.services import journal_path

    path = journal_path(storage) or sqlite_path(storage)
    return path is None or path.is_file()


def load_study(storage: str, names: list[str], *, given: bool) -> optuna.Study | None:
    """The first study of ``names`` (sweep tag, experiment name) in ``storage``, or the storage's only
    study; None when none matches or (for a storage not given by the user) it cannot be opened. A storage
    the user gave (``--storage``) that is missing or cannot be opened is bad input."""
    from orchestrator.services import open_optuna_storage

    if not storage_exists(storage):
        if given:
            raise InputError(f"Optuna storage {storage}: no storage file at that path")
        return None
    try:
        opened = open_optuna_storage(storage)
        present = [s.study_name for s in opened.get_all_studies()]
    except Exception as err:  # noqa: BLE001 - any storage failure is one line for the user
        if given:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"Optuna storage {storage}: cannot open ({msg})") from None
        return None
    for name in names:
        if name and name in present:
            return optuna.load_study(study_name=name, storage=opened)
    if len(present) == 1:
        return optuna.load_study(study_name=present[0], storage=opened)
    return None


def _as_number(values: pd.Series) -> pd.Series:
    num = pd.to_numeric(values, errors="coerce")
    return num if num.notna().all() else values


def study_from_runs(
    search_rows: pd.DataFrame, params: list[str], objective: str = "accuracy"
) -> optuna.Study:
    """In-memory study from config runs (columns ``optuna_trial``, ``status``, ``objective``, ``param.<p>``).

    Numeric params with more than a handful of values become float distributions, the rest categorical.
    """
    study = optuna.create_study(direction="maximize", study_name="from-mlflow")
    dists: dict[str, optuna.distributions.BaseDistribution] = {}
    cols: dict[str, pd.Series] = {}
    for p in params:
        col = _as_number(search_rows[f"param.{p}"])
        cols[p] = col
        distinct = sorted(col.dropna().unique())
        if pd.api.types.is_numeric_dtype(col) and len(distinct) > 6:
            dists[p] = optuna.distributions.FloatDistribution(float(min(distinct)), float(max(distinct)))
        else:
            choices = [x.item() if isinstance(x, np.generic) else x for x in distinct]
            dists[p] = optuna.distributions.CategoricalDistribution(choices)
    rows = search_rows.sort_values("optuna_trial", na_position="last")
    for i, (idx, r) in enumerate(rows.iterrows()):
        state = _STATE.get(r["status"], optuna.trial.TrialState.FAIL)
        value = r.get(objective)
        if state == optuna.trial.TrialState.COMPLETE and not np.isfinite(value):
            state = optuna.trial.TrialState.FAIL
        values = {}
        for p in params:
            v = cols[p].loc[idx]
            values[p] = (
                float(v)
                if isinstance(dists[p], optuna.distributions.FloatDistribution)
                else (v.item() if isinstance(v, np.generic) else v)
            )
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=float(value) if state == optuna.trial.TrialState.COMPLETE else None,
                params=values,
                distributions=dists,
                user_attrs={"arm": r["arm"], "mlflow_run_id": r["run_id"], "trial": i},
            )
        )
    return study


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """``number, state, value, params_*`` of every trial (Optuna's own trials_dataframe); ``value`` only on
    COMPLETE trials (Optuna stores a pruned trial's last fold value as its value: not a result)."""
    df = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs"))
    # a study with no trial yet (a sweep interrupted in its grid part) gives a frame with no columns
    for col in ("number", "state", "value"):
        if col not in df.columns:
            df[col] = pd.Series(dtype=object)
    df["value"] = df["value"].where(df["state"] == "COMPLETE")
    return df.rename(columns=lambda c: c.replace("params_", "param_"))


def importances(study: optuna.Study) -> tuple[dict[str, float], str | None]:
    """Parameter importances of the complete trials, or ({}, why-not) when Optuna cannot compute them."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 2:
        return {}, f"only {len(done)} complete trial(s); importances need at least 2"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(study)
    except Exception as err:  # noqa: BLE001 - e.g. no param varies among complete trials
        return {}, f"Optuna could not compute importances ({err})"
    return {k: float(v) for k, v in imp.items()}, None
