"""Thin driver: read the sweep, build every table / figure / test, write them, ``report.md`` and
``report.html`` into a folder.

Output folder layout (all paths in ``report.md`` are relative to it)::

    report.md, report.html            the report; the HTML is the same text with the figures embedded
    tables/table_<tag>.csv / .tex     arms x metrics of each paper table (mer.table tag); LaTeX booktabs
    tables/paper_reference_<tag>.csv  the paper's values for that table's arms (spec `reference:` only)
    tables/significance_<tag>.csv/.tex  each arm vs its table's baseline
    tables/table_VII_grid.csv / .tex  Table VII in the paper's shape (when the arms allow it)
    tables/table_VIII_<arm>.csv/.tex  per-subject AAU weights + average
    figures/aau_trajectory_<arm>.*    the AAU weights over training (per-epoch history), beside Table VIII
    tables/tables.tex                 a standalone document inputting every .tex table
    tables/search_trials.csv          Optuna trials; tables/param_importances.csv
    tables/folds.csv                  every fold run: subject, status, per-fold metrics
    figures/*.png / .pdf / .svg       each with its numbers beside it (.csv / .npz)

The folder is built under a temporary name and swapped in at the end, so an interrupted report leaves the
previous one (or nothing), never a half-written one.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mer_model.data.dataset import is_synthetic
from mer_model.errors import InputError
from orchestrator.report import (
    aau,
    effects,
    figures,
    guesses,
    latex,
    nested,
    power,
    search,
    significance,
    tables,
    units,
)
from orchestrator.report.display import (
    aau_display,
    arm_display,
    extension_arms,
    extension_footnote,
    grid_display,
    mark_arm,
    per_class_display,
    published_display,
    significance_display,
    table_caption,
)
from orchestrator.report.html import render_html
from orchestrator.report.markdown import FigureItem, ReportContent, TableSection, render, with_reference
from orchestrator.report.methods import methods_paragraph, parse_environment
from orchestrator.report.redact import redact_paths
from orchestrator.report.reference import banner, paper_reference, published_banner, published_methods
from orchestrator.report.runs import (
    SweepRuns,
    load_sweep,
    read_csv_artifact,
    read_lam,
    read_predictions,
    read_text_artifact,
)
from orchestrator.store import contract as C
from orchestrator.store.names import distinct_names, safe_name

MARKER = ".mer-report"  # written into every report folder: what --out may replace
_LEGACY = {"report.md", "tables", "figures"}  # a report written before the marker existed


def slug(name: str) -> str:
    """File-name-safe experiment / arm name (never ``..``, never over ~110 characters)."""
    return safe_name(name)


def _arm_file(runs: SweepRuns, arm: str) -> str:
    """The file-name part of ``arm``, distinct from every other arm of the sweep (``P+Q`` vs ``P Q``)."""
    return distinct_names(runs.configs["arm"].astype(str))[str(arm)]


def check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or a non-empty folder that is not a previous report: the report
    replaces its folder whole, and must never delete what it did not write."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: --out: is a file; allowed: a new folder, an empty one or a previous report")
    if not out.is_dir():
        return
    entries = {p.name for p in out.iterdir()}
    if entries and MARKER not in entries and not ("report.md" in entries and entries <= _LEGACY):
        raise InputError(f"{out}: --out: folder is not empty and holds no mer-orch report ({MARKER} "
                         "missing); allowed: a new folder, an empty one or a previous report")


def dataset_statement(dataset: str, setup: str | None) -> str:
    """The sentence under the report title saying where the numbers come from."""
    d = dataset.lower()
    setup_txt = f" (class setup `{setup}`)" if setup else ""
    if is_synthetic(d):
        return (
            f"These numbers come from **SynthME**{setup_txt}, the synthetic dataset embedded in "
            "mer-orch (landmarks moved by FACS-following AU templates). **They are not CASME II or SAMM "
            "numbers** and say nothing about GTS-GN on real micro-expressions; compare them only with "
            "other SynthME runs."
        )
    if d == "unknown":
        return (
            "The runs do not record their dataset (`mer.dataset` tag): do not compare these numbers "
            "with any paper."
        )
    return f"These numbers come from **{dataset}**{setup_txt}, leave-one-subject-out over its subjects."


def _write_csv(df: pd.DataFrame, path: Path, index: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=index)


@dataclass
class _Context:
    """What every table caption and the reference columns need."""

    dataset: str
    setup: str | None
    n_subjects: int
    reference: pd.DataFrame  # reference.COLUMNS; empty when the spec gives no paper values
    correction: str = "holm"  # multiple-comparison correction of each table's family
    scheme: str = "loso"  # protocol.scheme of the sweep (loso | composite | cross_dataset)
    primary: str = "uf1"  # the metric of each table's corrected family (spec report.primary / objective)
    n_resamples: int = 20_000  # B of the Monte Carlo permutation tests (--resamples): floor 2/(B+1)
    detect: float = power.DETECT  # the difference the power table asks about (--detect)


def _reference_for(rows: pd.DataFrame, ctx: _Context) -> pd.DataFrame | None:
    ref = ctx.reference[ctx.reference["arm"].isin(rows["arm"])]
    return ref.reset_index(drop=True) if len(ref) else None


def _n_classes(runs: SweepRuns, preds: dict[str, pd.DataFrame | None]) -> int:
    """The sweep's class count: the config runs' ``num_classes`` param, else the largest label seen + 1."""
    logged = pd.to_numeric(runs.configs.get("param.num_classes", pd.Series(dtype=float)), errors="coerce")
    if logged.notna().any():
        return int(logged.max())
    seen = [int(max(p["y_true"].max(), p["y_pred"].max())) + 1
            for p in preds.values() if p is not None and len(p)]
    return max(seen, default=2)


def _table_section(runs: SweepRuns, out: Path, seed: int, tag: str, ctx: _Context) -> TableSection:
    t = tables.arm_table(runs.configs, runs.folds, tag)
    ids = runs.configs.loc[runs.configs["table"] == tag, "run_id"]
    preds = {rid: read_predictions(runs.client, rid) for rid in ids}  # per-class results: one arm too
    # the unit of the paired tests is the subject: a cross-dataset fold's test subjects, not the pair
    unit_folds, unit_preds = units.by_subject(runs.folds, preds, _n_classes(runs, preds))
    sig = significance.significance_table(
        runs.configs, unit_folds, tag, unit_preds, seed=seed, correction=ctx.correction, primary=ctx.primary,
        n_resamples=ctx.n_resamples,
    )
    s = tables.table_slug(tag)
    csv, sig_csv = f"tables/table_{s}.csv", f"tables/significance_{s}.csv"
    _write_csv(t, out / csv)
    _write_csv(sig, out / sig_csv)
    section = TableSection(tag, tables.table_title(tag), t, sig, csv, sig_csv)
    section.reference = _reference_for(t, ctx)
    if section.reference is not None:
        section.reference_csv = f"tables/paper_reference_{s}.csv"
        _write_csv(section.reference, out / section.reference_csv)
    section.caption = table_caption(
        section.title, ctx.dataset, ctx.setup, ctx.n_subjects, t, sig, section.reference, ctx.scheme
    )
    section.tex["table"] = latex.write_table(
        out, f"tables/table_{s}.tex", arm_display(with_reference(t, section.reference), sig), section.caption
    )
    ext = extension_arms(t)
    note = f" {extension_footnote(ext)}" if ext else ""
    if len(sig):
        section.tex["significance"] = latex.write_table(
            out, f"tables/significance_{s}.tex", significance_display(sig, ext),
            f"{section.title}: each arm and metric against the baseline {sig['baseline'].iloc[0]}, paired "
            f"over the subjects both completed; pooled subject-swap permutation p, corrected "
            f"({ctx.correction}) over the table's family ({sig['family'].iloc[0]})." + note,
        )
    _effects(runs, out, tag, preds, section, ctx, seed)
    if tag == "VII":
        grid = tables.vii_grid(t)
        if grid is not None:
            section.grid, section.grid_csv = grid, f"tables/table_{s}_grid.csv"
            _write_csv(grid, out / section.grid_csv)
            section.tex["grid"] = latex.write_table(
                out, f"tables/table_{s}_grid.tex", grid_display(grid),
                f"{section.title}, in the paper's shape (rows: fusion layer). {ctx.dataset}; pooled over "
                f"the LOSO folds; bold: best of each column.{note}",
            )
    return section


def _class_labels(runs: SweepRuns, run_ids: list[str], n_classes: int) -> list[str]:
    """Class names from the first stored pooled confusion matrix of the table, else ``class <i>``."""
    for rid in run_ids:
        got = _confusion_matrix(runs, rid)
        if got is not None and len(got[1]) == n_classes:
            return got[1]
    return [f"class {i}" for i in range(n_classes)]


def _effects(runs: SweepRuns, out: Path, tag: str, preds: dict, section: TableSection, ctx: _Context,
             seed: int) -> None:
    """Per-class F1 / recall of every complete arm, the per-subject forest plot of the primary metric
    against the baseline, and the power table of the primary tests: files and section fields."""
    rows = runs.configs[runs.configs["table"] == tag]
    rows = rows[(tables.effective_status(rows, runs.folds) == "complete").to_numpy()]
    s, ext = tables.table_slug(tag), extension_arms(section.table)
    n_classes = significance._n_classes([preds.get(r) for r in rows["run_id"]], rows)
    confs = {}
    for r in rows.itertuples():
        subjects = list(significance.per_subject(runs.folds, r.run_id).index)
        conf = significance._confusions(preds.get(r.run_id), subjects, n_classes)
        if conf is not None:
            confs[str(r.arm)] = conf
    if confs:
        labels = _class_labels(runs, list(rows["run_id"]), n_classes)
        section.per_class = effects.per_class(confs, labels, seed=seed)
        section.per_class_csv = f"tables/per_class_{s}.csv"
        _write_csv(section.per_class, out / section.per_class_csv)
        section.tex["per_class"] = latex.write_table(
            out, f"tables/per_class_{s}.tex", per_class_display(section.per_class, ext),
            f"{section.title}: per-class F1 and recall of every complete arm, pooled over the LOSO folds "
            f"(mean over seeds), with 95% percentile intervals resampling whole subjects; {ctx.dataset}.")
    sig = section.significance
    if not len(sig) or "se_subjects" not in sig:
        return
    section.power, section.power_csv = power.power_table(sig, ctx.correction, detect=ctx.detect), \
        f"tables/power_{s}.csv"
    _write_csv(section.power, out / section.power_csv)
    _forest(runs, out, s, rows, sig, section, ctx)


def _forest(runs: SweepRuns, out: Path, s: str, rows: pd.DataFrame, sig: pd.DataFrame,
            section: TableSection, ctx: _Context) -> None:
    metric = ctx.primary if ctx.primary in C.METRICS else "uf1"
    base = str(sig["baseline"].iloc[0])
    ids = dict(zip(runs.configs.loc[runs.configs["table"] == section.tag, "arm"].astype(str),
                   runs.configs.loc[runs.configs["table"] == section.tag, "run_id"], strict=True))
    arms = {a: ids[a] for a in dict.fromkeys(sig["arm"].astype(str)) if a in ids}
    if base not in ids or metric not in runs.folds:
        return
    d = effects.forest(runs.folds, arms, base, ids[base], metric)
    if d.empty:
        return
    png, csv = f"figures/forest_{s}.png", f"figures/forest_{s}.csv"
    _write_csv(d, out / csv)
    label = {"accuracy": "ACC", "uf1": "UF1", "uar": "UAR"}[metric]
    figures.forest(d, label, f"{section.title}: per-subject Δ {label} against {base}", out / png)
    section.forest = FigureItem(
        f"Per-subject differences, {section.title}", png, csv,
        f"Per left-out subject: the arm's per-fold {label} minus the baseline's ({base}), mean over seeds "
        "(dot; blue: the arm wins, red: it loses) and min-max over seeds (line). Subject counts of wins / "
        "ties / losses are in the significance table.", vectors=figures.figure_files(png)[1:])


def _table_sections(runs: SweepRuns, out: Path, seed: int, ctx: _Context) -> list[TableSection]:
    """One section per paper table (and the test-selected search); a nested search's inner trials and
    chosen configs are no table of arms (each scores other subjects): its own section shows them."""
    tags = [t for t in tables.ordered_tables(runs.configs["table"]) if t not in nested.NESTED_TABLES]
    return [_table_section(runs, out, seed, tag, ctx) for tag in tags]


def _shown_arms(runs: SweepRuns, objective: str) -> pd.DataFrame:
    """Config runs that get per-arm figures and Table VIII: every arm of the paper tables, and of the Optuna
    trials only the best complete one (a search of 50 trials would otherwise bury the paper's arms)."""
    c = runs.configs.assign(status=tables.effective_status(runs.configs, runs.folds))
    search_rows = c[(c["table"] == "search") & (c["status"] == "complete")]
    keep = ~c["table"].isin(["search", *nested.NESTED_TABLES])
    if len(search_rows) and objective in search_rows:
        keep |= c["run_id"] == search_rows.loc[search_rows[objective].idxmax(), "run_id"]
    return runs.configs[keep.to_numpy()]


def _lam_figures(runs: SweepRuns, arms: pd.DataFrame, out: Path) -> list[FigureItem]:
    items = []
    for _, c in arms.iterrows():
        if str(c.get("param.lam", "true")).lower() in ("false", "0"):
            continue  # fixed adjacency: nothing learned to show
        f = runs.folds[(runs.folds["config_run_id"] == c["run_id"]) & runs.folds["status"].eq("complete")]
        per_fold = [read_lam(runs.client, rid) for rid in f["run_id"]]
        per_fold = [m for m in per_fold if m]
        if not per_fold:
            continue
        keys = sorted(set.intersection(*(set(m) for m in per_fold)))
        mean = {k: np.mean([m[k] for m in per_fold], axis=0, dtype=np.float64) for k in keys}
        name = _arm_file(runs, c["arm"])
        png, npz = f"figures/fig5_lam_{name}.png", f"figures/fig5_lam_{name}.npz"
        np.savez(out / npz, **mean)
        figures.lam_heatmaps(
            mean, f"Learned adjacency (LAM) per layer: {c['arm']}, mean of {len(per_fold)} folds", out / png
        )
        items.append(
            FigureItem(
                f"Fig. 5: LAM heatmaps, {c['arm']}",
                png,
                npz,
                f"Learned A_L (Eq. 6) of each layer, element-wise mean over the {len(per_fold)} complete "
                "LOSO folds (one model per left-out subject), on one colour scale.",
            )
        )
    return items


def _beta_figure(runs: SweepRuns, out: Path) -> list[FigureItem]:
    c = runs.configs.assign(status=tables.effective_status(runs.configs, runs.folds))
    if "param.beta" not in c:
        return []
    # the tables in which beta varies (the search, or a beta sweep written as arms)
    tags = [t for t in c["table"].unique()
            if t not in nested.NESTED_TABLES and c.loc[c["table"] == t, "param.beta"].nunique() > 1]
    rows = c[c["table"].isin(tags)]
    if rows.empty:
        return []
    pts = pd.DataFrame(
        {
            "arm": rows["arm"],
            "table": rows["table"],
            "status": rows["status"],
            "beta": pd.to_numeric(rows["param.beta"], errors="coerce"),
            "accuracy": rows["accuracy"] if "accuracy" in rows else np.nan,
        }
    )
    if "param.fusion_layer" in rows and rows["param.fusion_layer"].nunique() > 1:
        pts["fusion_layer"] = rows["param.fusion_layer"].to_numpy()
    pts.loc[pts["status"] != "complete", "accuracy"] = np.nan
    holes = figures.beta_grid_holes(pts)
    # the CSV beside the figure lists the holes too (arm blank where nothing ran), as the plot marks them
    not_run = holes[holes["status"] == "not run"].assign(arm="", table="", accuracy=np.nan)
    _write_csv(pd.concat([pts, not_run], ignore_index=True), out / "figures/fig9_accuracy_vs_beta.csv")
    excluded = int((pts["status"] != "complete").sum())
    figures.accuracy_vs_beta(pts, holes,
                             "Pooled accuracy against beta", out / "figures/fig9_accuracy_vs_beta.png")
    caption = f"Pooled ACC of the complete arms of table(s) {', '.join(tags)} against beta (Eq. 12)"
    if excluded:
        caption += f"; {excluded} arm(s) not complete are left off the lines (listed in the data file)"
    if len(holes):
        caption += (f"; open triangles on the bottom edge mark the {len(holes)} point(s) of the beta x "
                    "fusion layer grid without a complete result (not run, or run but not complete)")
    return [
        FigureItem(
            "Fig. 9: accuracy against beta",
            "figures/fig9_accuracy_vs_beta.png",
            "figures/fig9_accuracy_vs_beta.csv",
            caption + ".",
        )
    ]


def _confusion_matrix(runs: SweepRuns, run_id: str) -> tuple[np.ndarray, list[str]] | None:
    """The pooled confusion matrix the sweep computed and stored (``confusion.csv``); never recomputed."""
    df = read_csv_artifact(runs.client, run_id, C.CONFUSION_CSV)
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


def _confusion_figures(runs: SweepRuns, arms: pd.DataFrame, out: Path) -> list[FigureItem]:
    items = []
    status = tables.effective_status(arms, runs.folds)
    for c, st in zip(arms.itertuples(), status, strict=True):
        if st != "complete":
            continue  # a partial confusion matrix would be read as the arm's
        got = _confusion_matrix(runs, c.run_id)
        if got is None:
            continue
        m, labels = got
        name = _arm_file(runs, c.arm)
        png, csv = f"figures/confusion_{name}.png", f"figures/confusion_{name}.csv"
        _write_csv(pd.DataFrame(m, index=labels, columns=labels), out / csv, index=True)
        figures.confusion(m, labels, f"{c.arm}: pooled confusion (rows true)", out / png)
        items.append(
            FigureItem(
                f"Confusion matrix, {c.arm}",
                png,
                csv,
                "Counts over all LOSO folds pooled; rows are true classes, columns predictions.",
            )
        )
    return items


def _search_study(runs: SweepRuns, storage: str | None, objective: str) -> tuple[Any, str]:
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


def _search_part(
    runs: SweepRuns, out: Path, storage: str | None, objective: str
) -> tuple[list[str], list[FigureItem]]:
    study, source = _search_study(runs, storage, objective)
    if study is None:
        return [], []
    trials = search.trials_frame(study)
    _write_csv(trials, out / "tables/search_trials.csv")
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
    items = []
    if len(trials):
        maximize = study.direction.name == "MAXIMIZE"
        figures.search_history(
            trials,
            f"pooled {objective}",
            "Optuna search history",
            out / "figures/search_history.png",
            maximize=maximize,
        )
        items.append(
            FigureItem(
                "Optuna search history",
                "figures/search_history.png",
                "tables/search_trials.csv",
                "Objective of each complete trial and the best so far; pruned / failed trials "
                "are marked with x and carry no value.",
            )
        )
    imp_item, why = _importance_figure(study, out)
    if imp_item is not None:
        items.append(imp_item)
    else:
        lines.append(f"Parameter importances: not computed: {why}.")
    return lines, items


def _importance_figure(study: Any, out: Path) -> tuple[FigureItem | None, str | None]:
    """Optuna's parameter importances (CSV + figure), or None and why they could not be computed."""
    imp, why = search.importances(study)
    if not imp:
        return None, why
    _write_csv(pd.DataFrame({"param": list(imp), "importance": list(imp.values())}),
               out / "tables/param_importances.csv")
    figures.param_importances(imp, "Optuna parameter importances", out / "figures/param_importances.png")
    return FigureItem(
        "Optuna parameter importances",
        "figures/param_importances.png",
        "tables/param_importances.csv",
        "Share of the objective's variance explained by each parameter (Optuna's default fANOVA evaluator "
        "over the complete trials).",
    ), ""


def _default_objective() -> str:
    from orchestrator.spec import ProtocolSpec

    return str(ProtocolSpec.model_fields["objective"].default)


def _read_spec(runs: SweepRuns) -> tuple[dict[str, Any] | None, str | None]:
    """The sweep's ``spec.yaml`` artifact as a dict (None and a note when it is missing or broken)."""
    import yaml

    text = read_text_artifact(runs.client, runs.sweep_run_id, C.SPEC_YAML) if runs.sweep_run_id else None
    assumed = f"the search objective is assumed to be {_default_objective()}."
    if text is None:
        return None, f"The sweep run has no spec.yaml: {assumed}"
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError:
        return None, f"The sweep's spec.yaml does not parse: {assumed}"
    return (spec if isinstance(spec, dict) else {}), None


def _objective(spec: dict[str, Any] | None) -> str:
    """The pooled metric the sweep's search optimised (``protocol.objective``); the spec's own default
    whether spec.yaml, its protocol section or only the key is missing."""
    return str(((spec or {}).get("protocol") or {}).get("objective", _default_objective()))


def _primary(spec: dict[str, Any] | None, objective: str) -> str:
    """The metric of each table's corrected family: ``report.primary`` of the spec, else the objective."""
    primary = ((spec or {}).get("report") or {}).get("primary")
    return str(primary) if primary in (*C.METRICS, significance.ALL) else objective


def _public_uri(uri: str) -> str:
    """The tracking URI without a local machine path: a SQLite / file store by its file name only."""
    if uri.startswith("sqlite:") or "://" not in uri or uri.startswith("file:"):
        return f"local store `{Path(uri.split(':///')[-1]).name}`"
    return uri


def _environment(runs: SweepRuns, text: str | None) -> tuple[list[str], str | None]:
    """The sweep's reproducibility record (``environment.json`` text) as header lines, and a warning note
    when it was resumed in a different environment (tag ``mer.environment_changed``)."""
    import json

    from orchestrator.store import environment

    if text is None:
        return ["no environment.json: this sweep predates the reproducibility record"], None
    lines = environment.summary_lines(json.loads(text))
    changed = runs.sweep_tags.get(C.ENVIRONMENT_CHANGED)
    note = None
    if changed:
        note = (
            f"**Warning: this sweep was resumed in a different environment** ({changed} differ); folds run "
            "before and after the change may not be comparable. Every record is in the sweep run's "
            "`environment.json` and `environment/` artifacts."
        )
    return lines, note


def _failures(runs: SweepRuns) -> pd.DataFrame:
    f = runs.folds[~runs.folds["status"].eq("complete")]
    cols = [c for c in ("arm", "subject", "status", "attempt", "node", "error") if c in f]
    out = f[cols].fillna("").reset_index(drop=True)
    if "arm" in out:  # an arm with options the paper lacks keeps its mark here too (the footnote: its table)
        ext = {a: v for a, v in zip(runs.configs["arm"].astype(str), tables.non_paper(runs.configs),
                                    strict=True) if v}
        out["arm"] = [mark_arm(a, ext) for a in out["arm"].astype(str)]
    return out


def _header(runs: SweepRuns, setup: str | None, n_subjects: int, tracking_uri: str, command: str | None
            ) -> dict[str, str]:
    header = {
        "experiment": runs.experiment_name,
        "dataset": runs.dataset,
        "class setup": setup or "unknown",
        "sweep id": runs.sweep_tags.get(C.SWEEP_ID, "unknown") + (f" ({runs.choice})" if runs.choice else ""),
        "search-space file": runs.sweep_tags.get(C.SPEC, "unknown"),
        "arms / trials": str(len(runs.configs)),
        "LOSO subjects": f"{n_subjects}",
        "tracking URI": _public_uri(tracking_uri),
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if command:
        header["made by"] = f"`{redact_paths(command)}`"
    return header


def _aau_tables(runs: SweepRuns, shown: pd.DataFrame, out: Path, content: ReportContent) -> None:
    """Table VIII of every AAU arm, its caption naming the arm's weighting, and beside it the weights'
    trajectory over training (or why there is none)."""
    for arm, run_id in tables.aau_arms(shown, runs.folds):
        csv = f"tables/table_VIII_{_arm_file(runs, arm)}.csv"
        t = tables.aau_weight_table(runs.folds, run_id)
        _write_csv(t, out / csv, index=True)
        config = runs.configs[runs.configs["run_id"] == run_id]
        ext = {str(arm): v} if (v := "".join(tables.non_paper(config))) else {}
        what = aau.weights_text(aau.weighting_of(config.iloc[0]) if len(config) else "learned")
        caption = (f"Table VIII: {what} per left-out subject, {mark_arm(arm, ext)}; {runs.dataset}; the "
                   "average is over the complete folds." + (f" {extension_footnote(ext)}" if ext else ""))
        content.aau.append((arm, t, csv))
        content.aau_captions[arm] = caption
        content.aau_tex[arm] = latex.write_table(out, csv.replace(".csv", ".tex"), aau_display(t), caption)
        layers = [int(c[len("layer"):]) for c in t.columns if str(c).startswith("layer")]
        fig, why = _aau_trajectory(runs, arm, run_id, layers, what, out)
        if fig is not None:
            content.aau_figures[arm] = fig
        else:
            content.aau_notes[arm] = why


def _aau_trajectory(runs: SweepRuns, arm: str, run_id: str, layers: list[int], what: str, out: Path
                    ) -> tuple[FigureItem | None, str]:
    """The trajectory figure of one AAU arm (PNG / PDF / SVG + CSV ``epoch, layer, mean, low, high,
    n_folds``) from its complete fold runs' ``aau_weight_layer<r>`` histories; None and the reason when no
    fold run logged more than one value."""
    f = runs.folds[(runs.folds["config_run_id"] == run_id) & runs.folds["status"].eq("complete")]
    traj, single = aau.trajectory(aau.weight_histories(runs.client, f["run_id"], layers))
    old = (f" {single} fold run(s) hold one value per layer only (the final weight, as runs logged before "
           "the per-epoch trajectory existed) and are left out.") if single else ""
    if traj.empty:
        return None, (f"No trajectory of the layer weights over training for this arm: none of its "
                      f"{len(f)} complete fold runs logged more than one value per layer.{old}")
    name = _arm_file(runs, arm)
    png, csv = f"figures/aau_trajectory_{name}.png", f"figures/aau_trajectory_{name}.csv"
    _write_csv(traj, out / csv)
    figures.aau_trajectory(traj, f"AAU layer weights over training:\n{arm}", out / png, aau.BAND)
    n = int(traj["n_folds"].max())
    caption = (f"Trajectory of the {what} over training, {arm}: per layer the mean over {n} complete fold "
               "runs (every seed and left-out subject) against the epoch (0 = at initialisation; the last "
               f"epoch is Table VIII's value); shaded band: the {aau.BAND}.{old}")
    return FigureItem(f"AAU weight trajectory, {arm}", png, csv, caption,
                      vectors=figures.figure_files(png)[1:]), ""


def _write_files(content: ReportContent, runs: SweepRuns, out: Path) -> None:
    """folds.csv, tables/tables.tex, report.md and report.html, machine paths left out of all of them."""
    fold_cols = [c for c in runs.folds.columns if c not in ("config_run_id", "start_time")]
    folds = runs.folds[fold_cols].copy()
    if "error" in folds:
        folds["error"] = folds["error"].map(lambda e: redact_paths(e) if isinstance(e, str) else e)
    _write_csv(folds, out / "tables/folds.csv")
    content.folds_csv = "tables/folds.csv"
    tex = [f for s in content.tables for f in s.tex.values()] + list(content.aau_tex.values())
    tex += [content.published_files["LaTeX"]] if "LaTeX" in content.published_files else []
    if tex:
        content.latex_document = "tables/tables.tex"
        doc = latex.document(tex, f"mer-orch report: {runs.experiment_name} ({runs.dataset})")
        (out / content.latex_document).write_text(doc)
    content.html = "report.html"
    md = redact_paths(render(content)) + (
        f"\nThis folder was written by `mer-orch report`; the file [{MARKER}]({MARKER}) marks it as a report "
        "that a later `--out` may replace whole.\n")
    (out / "report.md").write_text(md)
    (out / MARKER).write_text("written by mer-orch report; --out may replace this folder\n")
    (out / "report.html").write_text(render_html(md, out, f"mer-orch report: {runs.experiment_name}"))


def _fill(content: ReportContent, runs: SweepRuns, out: Path, seed: int, storage: str | None,
          ctx: _Context) -> None:
    spec, why = _read_spec(runs)
    if why:
        content.notes.append(why)
    ctx.scheme = str(((spec or {}).get("protocol") or {}).get("scheme", "loso"))
    ctx.reference, bad_ref = paper_reference(spec)
    if bad_ref:
        content.notes.append(bad_ref)
    if len(ctx.reference):
        content.reference_banner = banner(runs.dataset)
    objective = _objective(spec)
    ctx.primary = _primary(spec, objective)
    content.tables = _table_sections(runs, out, seed, ctx)
    _published(content, spec, runs, out)
    content.au_supervision = tables.au_supervision(runs.configs, runs.folds)
    env_text = read_text_artifact(runs.client, runs.sweep_run_id, C.ENVIRONMENT_JSON) if runs.sweep_run_id \
        else None
    content.environment, env_note = _environment(runs, env_text)
    if env_note:
        content.notes.append(env_note)
    content.methods = methods_paragraph(spec, dataset=runs.dataset, setup=ctx.setup,
                                        n_subjects=ctx.n_subjects, objective=objective,
                                        environment=parse_environment(env_text),
                                        non_paper=tables.non_paper_options(runs.configs))
    content.guesses = guesses.underspecified(runs.configs)
    shown = _shown_arms(runs, objective)
    if runs.configs["table"].isin(nested.NESTED_TABLES).any():
        content.notes.append(
            "A nested search's inner trials and chosen configs get no table of arms and no per-arm figures "
            "(each scores other subjects); see the Selection section. Their per-fold values are in "
            "tables/folds.csv (an inner fold's subject is its id: `<outer>/<validation subjects joined by "
            "+>`)."
        )
    elif len(shown) < len(runs.configs):
        content.notes.append(
            "Per-arm figures and Table VIII cover the arms of the paper tables and the best Optuna trial "
            f"(by pooled {objective}); every trial's per-fold values are in tables/folds.csv."
        )
    _aau_tables(runs, shown, out, content)
    content.search, search_figs = _search_part(runs, out, storage, objective)
    content.selection = nested.selection_section(runs, out, objective, seed)
    content.figures = _lam_figures(runs, shown, out) + _beta_figure(runs, out) + search_figs
    content.figures += _confusion_figures(runs, shown, out)
    for f in content.figures:
        f.vectors = figures.figure_files(f.png)[1:]
    content.failures = _failures(runs)


def _published(content: ReportContent, spec: dict[str, Any] | None, runs: SweepRuns, out: Path) -> None:
    """Other methods' published numbers from the spec's ``reference`` block: CSV, LaTeX, their section."""
    pub = published_methods(spec)
    if pub.empty:
        return
    content.published, content.published_banner = pub, published_banner(runs.dataset)
    csv = "tables/published_methods.csv"
    _write_csv(pub, out / csv)
    tex = latex.write_table(out, "tables/published_methods.tex", published_display(pub),
                            "Other methods' published numbers (display only; never in a statistic).")
    content.published_files = {"data": csv, "LaTeX": tex}


def _n_subjects(runs: SweepRuns) -> int:
    """LOSO subjects of the sweep (a nested search's inner fold runs carry fold ids, not subjects)."""
    inner = runs.configs.loc[runs.configs["table"] == "nested-inner", "run_id"]
    folds = runs.folds[~runs.folds["config_run_id"].isin(inner)] if len(inner) else runs.folds
    return int(folds["subject"].dropna().nunique())


def build_report(
    experiment: str,
    tracking_uri: str | None = None,
    out: Path | str | None = None,
    storage: str | None = None,
    *,
    seed: int = 0,
    correction: str = "holm",
    command: str | None = None,
    sweep_id: str | None = None,
    n_resamples: int = 20_000,
    detect: float = power.DETECT,
) -> Path:
    """Read experiment ``experiment`` and write the report folder; returns the path of ``report.md``.

    ``tracking_uri`` / ``storage``: None resolves like ``mer-orch sweep`` does ($MLFLOW_TRACKING_URI, else
    ``mer-runs/mlflow.db``; the Optuna storage the sweep recorded, else $MER_OPTUNA_STORAGE, else
    ``mer-runs/optuna.db``), without ever creating a store that is not there. ``command``: the command
    line to print in the report's header (machine paths are shortened in the written report).
    ``correction``: multiple-comparison correction of each table's significance family (``holm`` | ``bh``
    | ``none``). ``sweep_id``: the sweep of the experiment to report (default: the latest; the header
    says which and why). ``n_resamples``: swap vectors of the Monte Carlo permutation tests (exact
    enumeration up to 2^n <= it; the Monte Carlo floor is 2 / (n_resamples + 1)). ``detect``: the
    difference (fraction) the power table gives the subjects needed for.
    """
    from orchestrator.services import resolve_services

    out = Path(out) if out is not None else C.reports_dir() / slug(experiment)
    check_out_folder(out)
    tracking_uri = resolve_services(tracking_uri).tracking_uri
    runs = load_sweep(experiment, tracking_uri, sweep_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the report is an ordinary folder
    try:
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        setup = runs.sweep_tags.get(C.SETUP) or next(iter(runs.configs["setup"].dropna()), None)
        n_subjects = _n_subjects(runs)
        content = ReportContent(
            header=_header(runs, setup, n_subjects, tracking_uri, command),
            dataset_statement=dataset_statement(runs.dataset, setup),
            notes=list(runs.notes),
        )
        ctx = _Context(runs.dataset, setup, n_subjects, pd.DataFrame(), correction,
                       n_resamples=n_resamples, detect=detect)
        _fill(content, runs, tmp, seed, storage, ctx)
        _write_files(content, runs, tmp)
        # swap the finished folder in: the old report stays whole until the new one is complete
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "report")
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "report.md"
