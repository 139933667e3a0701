"""The report's "Selection" section (issue 13): the nested LOSO estimate beside the test-selected one.

Two numbers answer different questions and are labelled apart:

- **nested LOSO**: a nested sweep's estimate (sweep-run metrics ``nested_<m>``, ``nested_sweep.py``): each
  outer subject chose its params on the other subjects only; the metric is pooled over the outer test
  predictions (mean over seeds). It estimates how the *search procedure* does on a new subject;
- **selected on the test subjects, optimistic**: the best complete trial of a test-selected search
  (``mer.table=search``) of the same experiment, any sweep: the left-out subjects chose it, so its pooled
  score is biased upwards (the paper's Fig. 9 way).

How stable the nested choice was: the chosen params per outer subject (``tables/nested_choices.csv``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from orchestrator import contract as C
from orchestrator.report.runs import SweepRuns, read_csv_artifact

NESTED_CSV = "tables/nested_choices.csv"
NESTED_TABLES = ("nested-inner", "nested")  # orchestrator.nested.INNER_TABLE, CHOSEN_TABLE
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
    return {"arm": b.data.tags.get(C.ARM, b.info.run_name), "value": b.data.metrics[objective],
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


def selection_section(runs: SweepRuns, out: Path, objective: str) -> list[str]:
    """Markdown lines of the section (empty for a sweep that is not a nested search); writes
    ``tables/selection_estimates.csv`` and ``tables/nested_choices.csv``."""
    choices = read_csv_artifact(runs.client, runs.sweep_run_id, NESTED_CSV) if runs.sweep_run_id else None
    if choices is None:
        return []
    est = _estimates(runs, objective)
    est.to_csv(out / "tables/selection_estimates.csv", index=False)
    choices.to_csv(out / NESTED_CSV, index=False)
    lines = [f"Pooled {objective} (mean over seeds, ± sd over seeds where there are several); data: "
             "[tables/selection_estimates.csv](tables/selection_estimates.csv).", ""]
    for _, r in est.iterrows():
        sd = "" if pd.isna(r["sd_over_seeds"]) else f" ± {r['sd_over_seeds']:.4f}"
        lines.append(f"- **{r['selection']}**: {r[objective]:.4f}{sd} ({r['source']})")
    if LABEL_TEST not in (set(est["selection"]) if len(est) else set()):
        lines.append(f"- **{LABEL_TEST}**: no test-selected search of this experiment on record")
    lines += ["", "The nested estimate scores the search procedure on subjects that took no part in choosing "
              "its params; the test-selected value was chosen by the very subjects it is scored on. A "
              "difference inside the seed sd is not a finding.", "",
              "Choice per outer subject (inner trial, its inner value, params; status and objective of the "
              f"chosen config on the outer subject): [{NESTED_CSV}]({NESTED_CSV}).", "",
              choices.to_markdown(index=False), ""]
    return lines
