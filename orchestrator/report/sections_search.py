"""The report's search section: the sweep's Optuna study (from its storage, else rebuilt from the config
runs), its trials and best trial, the search history and the parameter importances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.report import figures, nested, search, tables
from orchestrator.report.folder import write_csv
from orchestrator.report.markdown import FigureItem
from orchestrator.report.runs import SweepRuns
from orchestrator.store import contract as C


def search_study(runs: SweepRuns, storage: str | None, objective: str) -> tuple[Any, str]:
    """The sweep's Optuna study and where it came from: ``--storage``, else the storage the sweep recorded,
    else $MER_OPTUNA_STORAGE / the home's optuna.db; else rebuilt from the search's config runs."""
    rows = runs.configs[runs.configs["table"] == "search"]
    names = [runs.sweep_tags.get(C.OPTUNA_STUDY, ""), runs.experiment_name]
    study, source = None, ""
    # --storage, else the storage the sweep recorded, else $MER_OPTUNA_STORAGE / mer-runs/optuna.db
    candidates = [(storage, True)] if storage else []
    if not storage and runs.sweep_tags.get(C.OPTUNA_STORAGE):
        candidates.append((runs.sweep_tags[C.OPTUNA_STORAGE], False))
    if not storage:
        from orchestrator.services import resolve_services

        candidates.append((resolve_services(runs.tracking_uri).optuna_storage, False))
    for url, given in candidates:
        study = search.load_study(url, names, given=given)
        if study is not None:
            source = f"Optuna study `{study.study_name}` in `{url}`"
            break
    if study is None and len(rows):
        params = [p[len("param.") :] for p in tables.varying_params(rows)]
        rows = rows.assign(status=tables.effective_status(rows, runs.folds))
        study = search.study_from_runs(rows, params, objective)
        source = (
            "rebuilt from the MLflow config runs tagged `mer.table=search` (the sweep's Optuna storage "
            f"was not found); value = pooled `{objective}`"
        )
    return study, source


def search_part(
    runs: SweepRuns, out: Path, storage: str | None, objective: str
) -> tuple[list[str], list[FigureItem]]:
    """The search section's lines (source, trial counts, best trial, importances when missing) and its
    figures (history, importances); nothing when the sweep has no study."""
    study, source = search_study(runs, storage, objective)
    if study is None:
        return [], []
    trials = search.trials_frame(study)
    write_csv(trials, out / "tables/search_trials.csv")
    lines = _trial_lines(study, trials, source)
    items = [_history_figure(study, trials, objective, out)] if len(trials) else []
    imp_item, why = _importance_figure(study, out)
    if imp_item is not None:
        items.append(imp_item)
    else:
        lines.append(f"Parameter importances: not computed: {why}.")
    return lines, items


def _trial_lines(study: Any, trials: pd.DataFrame, source: str) -> list[str]:
    """Where the study came from, its trials by state, and its best trial (chosen on the test subjects)."""
    counts = trials["state"].value_counts().to_dict()
    lines = [
        f"Source: {source}. Trials: {len(trials)} ("
        + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
        + "); data: "
        "[tables/search_trials.csv](tables/search_trials.csv)."
    ]
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if done:
        best = study.best_trial
        lines.append(
            f"Best trial ({nested.LABEL_TEST}: the LOSO test subjects chose it): #{best.number}, value "
            f"{best.value:.4f}, params "
            + ", ".join(f"`{k}={v}`" for k, v in best.params.items())
            + ". `search.selection: nested` estimates the search without that bias."
        )
    return lines


def _history_figure(study: Any, trials: pd.DataFrame, objective: str, out: Path) -> FigureItem:
    """The objective of each complete trial and the best so far."""
    maximize = study.direction.name == "MAXIMIZE"
    figures.search_history(
        trials,
        f"pooled {objective}",
        "Optuna search history",
        out / "figures/search_history.png",
        maximize=maximize,
    )
    return FigureItem(
        "Optuna search history",
        "figures/search_history.png",
        "tables/search_trials.csv",
        "Objective of each complete trial and the best so far; pruned / failed trials "
        "are marked with x and carry no value.",
    )


def _importance_figure(study: Any, out: Path) -> tuple[FigureItem | None, str | None]:
    """Optuna's parameter importances (CSV + figure), or None and why they could not be computed."""
    imp, why = search.importances(study)
    if not imp:
        return None, why
    write_csv(pd.DataFrame({"param": list(imp), "importance": list(imp.values())}),
              out / "tables/param_importances.csv")
    figures.param_importances(imp, "Optuna parameter importances", out / "figures/param_importances.png")
    return FigureItem(
        "Optuna parameter importances",
        "figures/param_importances.png",
        "tables/param_importances.csv",
        "Share of the objective's variance explained by each parameter (Optuna's default fANOVA evaluator "
        "over the complete trials).",
    ), ""
