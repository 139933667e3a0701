"""The report's "Selection" section (issue 13): the nested LOSO estimate beside the test-selected one.

Two numbers answer different questions and are labelled apart:

- **nested LOSO**: a nested sweep's estimate (sweep-run metrics ``nested_<m>``, ``nested_sweep.py``): each
  outer subject chose its params on the other subjects only; the metric is pooled over the outer test
  predictions (mean over seeds). It estimates how the *search procedure* does on a new subject;
- **selected on the test subjects, optimistic**: the best complete trial of a test-selected search
  (``mer.table=search``) of the same experiment, any sweep: the left-out subjects chose it, so its pooled
  score is biased upwards (the paper's Fig. 9 way).

How stable the nested choice was: the chosen params per outer subject (``tables/nested_choices.csv``).
With the chosen configs' outer predictions on record, the nested estimate gets a two-level bootstrap
interval (outer subjects and seeds) and the optimism gap (test-selected minus nested) a paired interval on
the same outer subjects and seeds, with the smallest gap the design could detect (issue 24).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.report import power, seednoise, stats
from orchestrator.report.runs import SweepRuns, read_csv_artifact, read_predictions
from orchestrator.store import contract as C

LABEL_NESTED = "nested LOSO"
LABEL_TEST = "selected on the test subjects, optimistic"


def test_selected_best(runs: SweepRuns, objective: str) -> dict | None:
    """The best complete ``mer.table=search`` config run of the experiment (any sweep), or None."""
    exp = runs.client.get_experiment_by_name(runs.experiment_name)
    if exp is None:
        return None
    found = runs.client.search_runs([exp.experiment_id], f"tags.`{C.KIND}` = 'config' and tags.`{C.TABLE}` = "
                                    f"'search' and tags.`{C.STATUS}` = 'complete'", max_results=5000)
    scored = [r for r in found if objective in r.data.metrics]
    if not scored:
        return None
    b = max(scored, key=lambda r: r.data.metrics[objective])
    return {"arm": b.data.tags.get(C.ARM, b.info.run_name), "run_id": b.info.run_id,
            "value": b.data.metrics[objective],
            "sd": b.data.metrics.get(f"{objective}_sd"), "sweep": b.data.tags.get(C.SWEEP_ID, "")}


def _estimates(runs: SweepRuns, objective: str) -> pd.DataFrame:
    """One row per estimate on record: label, value (mean over seeds), sd over seeds, where it comes from."""
    rows = []
    m = runs.client.get_run(runs.sweep_run_id).data.metrics if runs.sweep_run_id else {}
    if f"nested_{objective}" in m:
        rows.append({"selection": LABEL_NESTED, objective: m[f"nested_{objective}"],
                     "sd_over_seeds": m.get(f"nested_{objective}_sd"),
                     "source": f"sweep {runs.sweep_tags.get(C.SWEEP_ID, '')}: pooled over the outer test "
                               "predictions"})
    best = test_selected_best(runs, objective)
    if best is not None:
        rows.append({"selection": LABEL_TEST, objective: best["value"], "sd_over_seeds": best["sd"],
                     "source": f"sweep {best['sweep']}: best trial {best['arm']}, pooled over the LOSO test "
                               "subjects that chose it"})
    return pd.DataFrame(rows)


def _outer_confusions(runs: SweepRuns, best_run: str | None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(nested, test-selected) confusion stacks (n_seeds, n_outer, C, C) on the outer subjects: the
    nested one from each chosen config's outer predictions, the test-selected one from the best trial's
    predictions on the same subjects and seeds (None when it has none); None without outer predictions."""
    configs = getattr(runs, "configs", None)
    if configs is None or "table" not in configs:
        return None
    chosen = configs.loc[configs["table"] == C.CHOSEN_TABLE, "run_id"]
    frames = [p for p in (read_predictions(runs.client, r) for r in chosen) if p is not None and len(p)]
    if not frames:
        return None
    nested = pd.concat(frames, ignore_index=True)
    test = read_predictions(runs.client, best_run) if best_run else None
    seeds = sorted(set(nested["seed"].astype(int)) & (set(test["seed"].astype(int)) if test is not None
                                                       else set(nested["seed"].astype(int))))
    subjects = sorted(nested["subject"].astype(str).unique())
    both = [f for f in (nested, test) if f is not None]
    n_classes = int(max(f[["y_true", "y_pred"]].to_numpy().max() for f in both)) + 1
    conf_n = stats.subject_confusions(nested, subjects, seeds, n_classes)
    if test is not None and not set(subjects) <= set(test["subject"].astype(str)):
        test = None  # the test-selected search did not score every outer subject: no paired gap
    return conf_n, (stats.subject_confusions(test, subjects, seeds, n_classes) if test is not None else None)


def _fmt(x: float) -> str:
    return f"{x:+.4f}"


def interval_lines(runs: SweepRuns, objective: str, best_run: str | None, seed: int = 0) -> list[str]:
    """The nested estimate's interval over outer subjects (and seeds) and the paired interval of the
    optimism gap (test-selected minus nested) with the smallest gap the design could detect."""
    got = _outer_confusions(runs, best_run)
    if got is None:
        return ["- no outer predictions on record: no interval for the nested estimate"]
    conf_n, conf_t = got
    k, n = conf_n.shape[:2]
    est = seednoise.bootstrap_value(conf_n, objective, seed=seed)
    lines = [f"- **{LABEL_NESTED}**, 95% interval (bootstrap over the {n} outer subjects"
             + (f" and {k} seeds" if k > 1 else "") + f"): {est.point:.4f} [{est.low:.4f}, {est.high:.4f}]"]
    if conf_t is None:
        return [*lines, "- no test-selected predictions on every outer subject: no paired optimism gap"]
    gap = seednoise.bootstrap_diff(conf_t, conf_n, objective, seed=seed)
    mde = power.mde(gap.se)
    lines.append(f"- **optimism gap** (test-selected minus nested, paired on the same outer subjects and "
                 f"seeds): {_fmt(gap.point)} [{_fmt(gap.low)}, {_fmt(gap.high)}] (95%, bootstrap over "
                 f"{gap.levels}); the smallest gap this design could detect at 80% power (two-sided 0.05) is "
                 f"about {mde:.4f}: a gap below that could not have been measured here")
    note = seednoise.few_subjects_note(n, gap.distinct)
    return lines + ([f"- {note}"] if note else [])


def selection_section(runs: SweepRuns, out: Path, objective: str, seed: int = 0) -> list[str]:
    """Markdown lines of the section (empty for a sweep that is not a nested search); writes
    ``tables/selection_estimates.csv`` and ``tables/nested_choices.csv``."""
    choices = read_csv_artifact(runs.client, runs.sweep_run_id, C.NESTED_CSV) if runs.sweep_run_id else None
    if choices is None:
        return []
    est = _estimates(runs, objective)
    est.to_csv(out / "tables/selection_estimates.csv", index=False)
    choices.to_csv(out / C.NESTED_CSV, index=False)
    lines = [f"Pooled {objective} (mean over seeds, ± sd over seeds where there are several); data: "
             "[tables/selection_estimates.csv](tables/selection_estimates.csv).", ""]
    for _, r in est.iterrows():
        sd = "" if pd.isna(r["sd_over_seeds"]) else f" ± {r['sd_over_seeds']:.4f}"
        lines.append(f"- **{r['selection']}**: {r[objective]:.4f}{sd} ({r['source']})")
    if LABEL_TEST not in (set(est["selection"]) if len(est) else set()):
        lines.append(f"- **{LABEL_TEST}**: no test-selected search of this experiment on record")
    best = test_selected_best(runs, objective)
    lines += interval_lines(runs, objective, best["run_id"] if best else None, seed)
    lines += ["", "The nested estimate scores the search procedure on subjects that took no part in choosing "
              "its params; the test-selected value was chosen by the very subjects it is scored on. A gap "
              "whose interval includes 0 is not a finding, and on few subjects only a large gap could be "
              "seen (the detectable gap above).", "",
              "Choice per outer subject (inner trial, its inner value, params; status and objective of the "
              f"chosen config on the outer subject): [{C.NESTED_CSV}]({C.NESTED_CSV}).", "",
              choices.to_markdown(index=False), ""]
    return lines
