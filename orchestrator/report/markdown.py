"""The Markdown writer: one ``report.md`` linking every table CSV and figure PNG (paths relative to it).

Formatting only: the numbers arrive computed. ACC is shown in percent with two decimals and UF1 / UAR with
three, like the paper; blanks (an arm that did not complete) are shown as an em dash.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

import pandas as pd

DASH = "—"


@dataclass
class TableSection:
    tag: str
    title: str
    table: pd.DataFrame  # tables.arm_table
    significance: pd.DataFrame  # tables.significance_table
    csv: str
    significance_csv: str
    grid: pd.DataFrame | None = None  # Table VII in the paper's shape
    grid_csv: str | None = None


@dataclass
class FigureItem:
    title: str
    png: str
    data: str | None  # the numbers behind the figure
    caption: str


@dataclass
class ReportContent:
    header: dict[str, str]
    dataset_statement: str
    tables: list[TableSection] = field(default_factory=list)
    aau: list[tuple[str, pd.DataFrame, str]] = field(default_factory=list)  # (arm, table VIII, csv)
    search: list[str] = field(default_factory=list)  # Markdown lines about the Optuna study
    figures: list[FigureItem] = field(default_factory=list)
    failures: pd.DataFrame | None = None  # fold runs that did not complete
    folds_csv: str | None = None
    notes: list[str] = field(default_factory=list)


def _pct(x: float) -> str:
    return DASH if pd.isna(x) else f"{100 * x:.2f}"


def _f3(x: float) -> str:
    return DASH if pd.isna(x) else f"{x:.3f}"


_MD_SPECIAL = re.compile(r"([\\`\[\]|])")


def esc(text: object) -> str:
    """User text (arm names, errors, params) made inert in Markdown and HTML: one line (a newline would
    end a table row), ``<`` ``>`` ``&`` as entities (``<img onerror=...>`` is shown, never run), and
    backslash, backtick, ``[``, ``]``, ``|`` backslash-escaped (no link, remote image, code span or extra
    table column)."""
    s = html.escape(" ".join(str(text).split()), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", s)


def _md(df: pd.DataFrame) -> str:
    safe = df.rename(columns=esc).map(lambda v: esc(v) if isinstance(v, str) else v)
    return safe.to_markdown(index=False, disable_numparse=True)


def format_arm_table(t: pd.DataFrame) -> pd.DataFrame:
    """Display form of tables.arm_table: labelled pooled / per-fold columns, statuses in bold."""
    out = pd.DataFrame()
    out["arm"] = [f"{a} (baseline)" if b else a for a, b in zip(t["arm"], t["baseline"], strict=True)]
    if "optuna_trial" in t:
        out.insert(0, "trial", [DASH if pd.isna(v) else str(int(v)) for v in t["optuna_trial"]])
    skip = {"arm", "baseline", "status", "optuna_trial", "n_folds_complete", "n_folds_failed"}
    for c in t.columns:
        if c not in skip and not c.startswith(("accuracy", "uf1", "uar", "fold_")):
            out[c] = t[c].astype(str).to_numpy()
    out["status"] = [s if s == "complete" else f"**{s}**" for s in t["status"]]
    out["folds ok / failed"] = [
        f"{a} / {b}" for a, b in zip(t["n_folds_complete"], t["n_folds_failed"], strict=True)
    ]
    if "accuracy" in t:
        out["ACC % (pooled)"] = t["accuracy"].map(_pct).to_numpy()
    if "uf1" in t:
        out["F1 = UF1 (pooled)"] = t["uf1"].map(_f3).to_numpy()
    if "uar" in t:
        out["UAR (pooled)"] = t["uar"].map(_f3).to_numpy()
    if {"fold_mean_accuracy", "fold_std_accuracy"} <= set(t.columns):
        out["ACC % per-fold mean ± std"] = [
            DASH if pd.isna(m) else f"{100 * m:.2f} ± {100 * s:.2f}"
            for m, s in zip(t["fold_mean_accuracy"], t["fold_std_accuracy"], strict=True)
        ]
    if {"fold_mean_uf1", "fold_std_uf1"} <= set(t.columns):
        out["UF1 per-fold mean ± std"] = [
            DASH if pd.isna(m) else f"{m:.3f} ± {s:.3f}"
            for m, s in zip(t["fold_mean_uf1"], t["fold_std_uf1"], strict=True)
        ]
    return out


def format_significance(s: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "arm": s["arm"],
            "vs baseline": s["baseline"],
            "subjects": s["n_subjects"],
            "Δ ACC % (pooled)": s["pooled_diff"].map(_pct),
            "95% CI (bootstrap over subjects)": [
                DASH if pd.isna(lo) else f"[{100 * lo:.2f}, {100 * hi:.2f}]"
                for lo, hi in zip(s["ci_low"], s["ci_high"], strict=True)
            ],
            "mean per-subject Δ ACC %": s["mean_diff"].map(_pct),
            "p (permutation)": s["p_permutation"].map(lambda p: DASH if pd.isna(p) else f"{p:.3g}"),
            "p (Wilcoxon)": s["p_wilcoxon"].map(lambda p: DASH if pd.isna(p) else f"{p:.3g}"),
            "verdict": [
                v if sig else f"*{v}*" for v, sig in zip(s["verdict"], s["significant"], strict=True)
            ],
        }
    )


def format_aau(t: pd.DataFrame) -> pd.DataFrame:
    out = t.reset_index()
    for c in out.columns:
        if c.startswith("layer"):
            out[c] = out[c].map(lambda v: DASH if pd.isna(v) else f"{v:.4f}")
    return out


def format_grid(g: pd.DataFrame) -> pd.DataFrame:
    out = g.copy()
    for c in out.columns:
        if c.endswith("accuracy"):
            out[c] = out[c].map(_pct)
            out = out.rename(columns={c: c.replace("accuracy", "ACC %")})
        elif c.endswith("uf1"):
            out[c] = out[c].map(_f3)
            out = out.rename(columns={c: c.replace("uf1", "UF1")})
    return out


def render(r: ReportContent) -> str:
    """The whole report as Markdown text."""
    lines: list[str] = [f"# mer-orch report: {esc(r.header.get('experiment', ''))}", ""]
    lines += [f"> **Dataset: {r.header.get('dataset', 'unknown')}.** {r.dataset_statement}", ""]
    lines += [f"- **{k}**: {v if k == 'made by' else esc(v)}" for k, v in r.header.items()]
    lines += [
        "",
        "**How to read the numbers.** *Pooled* metrics are computed once on the predictions of all "
        "LOSO folds concatenated (the field's convention; the paper's ACC and F1). *Per-fold* metrics "
        "are the mean ± std over the left-out subjects of each fold's own metric; they are usually "
        "lower. ACC is in %, F1 = UF1 is the macro-F1 over classes, UAR the mean per-class recall. An "
        "arm whose status is not *complete* keeps its row with blank metrics: a partial mean is never "
        "shown as the arm's result.",
        "",
        "**Significance.** In each table every arm is compared with the table's baseline (marked; the "
        "first arm of the table in spec order unless a config run carries the tag "
        "`mer.baseline=true`) on the subjects both completed: a paired sign-flip permutation test (and "
        "Wilcoxon signed-rank) on the per-subject accuracy differences, and a 95% bootstrap interval of "
        "the pooled accuracy difference resampling subjects. p < 0.05 (permutation, two-sided, "
        "uncorrected for the number of arms) is called *significant*; anything else is marked *n.s.* "
        "in italics. With n subjects p cannot go below 2/2^n.",
        "",
    ]
    if r.notes:
        lines += ["**Notes on the runs read:**", ""] + [f"- {n}" for n in r.notes] + [""]
    if r.tables:
        lines += ["## Tables", ""]
    for s in r.tables:
        lines += [f"### {s.title}", "", f"`mer.table = {s.tag}` · data: [{s.csv}]({s.csv})", ""]
        lines += [_md(format_arm_table(s.table)), ""]
        if s.grid is not None:
            lines += [
                f"In the paper's shape (pooled; data: [{s.grid_csv}]({s.grid_csv})):",
                "",
                _md(format_grid(s.grid)),
                "",
            ]
        if len(s.significance):
            lines += [
                f"Significance against the baseline (data: [{s.significance_csv}]({s.significance_csv})):",
                "",
                _md(format_significance(s.significance)),
                "",
            ]
        else:
            lines += [
                f"Only one arm in this table: nothing to compare "
                f"([{s.significance_csv}]({s.significance_csv}) is empty).",
                "",
            ]
    if r.aau:
        lines += [
            "## Table VIII: learned AAU layer weights per subject",
            "",
            "W_r² / Σ W² of each layer (Eq. 11) learned in each LOSO fold; the average is over complete "
            "folds only.",
            "",
        ]
        for arm, t, csv in r.aau:
            lines += [f"### {esc(arm)}", "", f"data: [{csv}]({csv})", "", _md(format_aau(t)), ""]
    if r.search:
        lines += ["## Optuna search", ""] + r.search + [""]
    if r.figures:
        lines += ["## Figures", ""]
    for f in r.figures:
        data = f" · data: [{f.data}]({f.data})" if f.data else ""
        lines += [f"### {esc(f.title)}", "", f"![{esc(f.title)}]({f.png})", "", f"{f.caption}{data}", ""]
    lines += ["## Folds that did not complete", ""]
    if r.failures is not None and len(r.failures):
        lines += [_md(r.failures), ""]
    else:
        lines += ["None: every fold run of every arm completed.", ""]
    if r.folds_csv:
        lines += [f"Every fold's per-subject metrics: [{r.folds_csv}]({r.folds_csv}).", ""]
    return "\n".join(lines)
