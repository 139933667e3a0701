"""The report's AAU section: Table VIII (per-subject layer weights and their average) of every AAU arm,
its caption naming the arm's weighting, and beside it the weights' trajectory over training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from orchestrator.report import aau, figures, latex, tables
from orchestrator.report.display import aau_display, extension_footnote, mark_arm
from orchestrator.report.folder import arm_file, write_csv
from orchestrator.report.markdown import FigureItem, ReportContent
from orchestrator.report.runs import SweepRuns


def aau_tables(runs: SweepRuns, shown: pd.DataFrame, out: Path, content: ReportContent) -> None:
    """Table VIII of every AAU arm, its caption naming the arm's weighting, and beside it the weights'
    trajectory over training (or why there is none)."""
    for arm, run_id in tables.aau_arms(shown, runs.folds):
        csv = f"tables/table_VIII_{arm_file(runs, arm)}.csv"
        t = tables.aau_weight_table(runs.folds, run_id)
        write_csv(t, out / csv, index=True)
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
    name = arm_file(runs, arm)
    png, csv = f"figures/aau_trajectory_{name}.png", f"figures/aau_trajectory_{name}.csv"
    write_csv(traj, out / csv)
    figures.aau_trajectory(traj, f"AAU layer weights over training:\n{arm}", out / png, aau.BAND)
    n = int(traj["n_folds"].max())
    caption = (f"Trajectory of the {what} over training, {arm}: per layer the mean over {n} complete fold "
               "runs (every seed and left-out subject) against the epoch (0 = at initialisation; the last "
               f"epoch is Table VIII's value); shaded band: the {aau.BAND}.{old}")
    return FigureItem(f"AAU weight trajectory, {arm}", png, csv, caption,
                      vectors=figures.figure_files(png)[1:]), ""
