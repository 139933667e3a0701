"""The Markdown writer: one ``report.md`` linking every table CSV and figure PNG (paths relative to it).

Formatting only: the numbers arrive computed. ACC is shown in percent with two decimals and UF1 / UAR with
three, like the paper; blanks (an arm that did not complete) are shown as an em dash.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

import pandas as pd

from orchestrator.report.display import (
    DASH,
    SIG_MARK,
    Display,
    aau_display,
    arm_display,
    extension_arms,
    extension_footnote,
    grid_display,
    per_class_display,
    power_display,
    published_display,
    significance_display,
)

__all__ = ["DASH", "FigureItem", "ReportContent", "TableSection", "render"]


@dataclass
class TableSection:
    tag: str
    title: str
    table: pd.DataFrame  # tables.arm_table
    significance: pd.DataFrame  # significance.significance_table
    csv: str
    significance_csv: str
    grid: pd.DataFrame | None = None  # Table VII in the paper's shape
    grid_csv: str | None = None
    reference: pd.DataFrame | None = None  # the paper's values (paper_* columns) by arm; display only
    reference_csv: str | None = None
    caption: str = ""  # dataset, protocol and metric convention (also the LaTeX caption)
    tex: dict[str, str] = field(default_factory=dict)  # "table" / "significance" / "grid" -> .tex path
    per_class: pd.DataFrame | None = None  # effects.per_class: every complete arm's per-class F1 / recall
    per_class_csv: str | None = None
    power: pd.DataFrame | None = None  # power.power_table of the primary tests
    power_csv: str | None = None
    forest: FigureItem | None = None  # per-subject differences against the baseline


@dataclass
class FigureItem:
    title: str
    png: str
    data: str | None  # the numbers behind the figure
    caption: str
    vectors: list[str] = field(default_factory=list)  # PDF / SVG of the same drawing


@dataclass
class ReportContent:
    header: dict[str, str]
    dataset_statement: str
    tables: list[TableSection] = field(default_factory=list)
    aau: list[tuple[str, pd.DataFrame, str]] = field(default_factory=list)  # (arm, table VIII, csv)
    aau_tex: dict[str, str] = field(default_factory=dict)  # arm -> .tex of its Table VIII
    aau_captions: dict[str, str] = field(default_factory=dict)  # arm -> Table VIII caption (its weighting)
    aau_figures: dict[str, FigureItem] = field(default_factory=dict)  # arm -> weight trajectory (issue 16)
    aau_notes: dict[str, str] = field(default_factory=dict)  # arm -> why it has no trajectory figure
    guesses: list[str] = field(default_factory=list)  # where the paper is underspecified (report/guesses.py)
    search: list[str] = field(default_factory=list)  # Markdown lines about the Optuna study
    selection: list[str] = field(default_factory=list)  # nested vs test-selected estimates (report/nested.py)
    figures: list[FigureItem] = field(default_factory=list)
    failures: pd.DataFrame | None = None  # fold runs that did not complete
    folds_csv: str | None = None
    notes: list[str] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)  # the sweep's reproducibility record, as lines
    methods: str = ""  # generated methods paragraph (orchestrator.report.methods)
    reference_banner: str = ""  # shown above the tables when the spec gives the paper's values
    published: pd.DataFrame | None = None  # other methods' published numbers (reference.published_methods)
    published_banner: str = ""
    published_files: dict[str, str] = field(default_factory=dict)  # "data" / "LaTeX" -> path
    au_supervision: pd.DataFrame | None = None  # tables.au_supervision: clips some folds trained without AUs
    latex_document: str | None = None  # tables/tables.tex: every table, compilable as is
    html: str | None = None  # report.html


_MD_SPECIAL = re.compile(r"([\\`*\[\]|])")


def md_escape(text: object) -> str:
    """User text (arm names, errors, params) made inert in Markdown and HTML: one line (a newline would end a
    table row), ``<`` ``>`` ``&`` as entities (``<img onerror=...>`` is shown, never run), and backslash,
    backtick, ``*``, ``[``, ``]``, ``|`` backslash-escaped (no emphasis, link, remote image, code span or
    extra table column)."""
    s = html.escape(" ".join(str(text).split()), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", s)


def md_table(d: Display) -> str:
    """A :class:`~orchestrator.report.display.Display` as a GFM table, bold cells in ``**``."""
    cells = d.cells.map(md_escape)
    cells = cells.where(~d.bold, "**" + cells + "**")
    cells.columns = [md_escape(c) for c in cells.columns]
    return cells.to_markdown(index=False, disable_numparse=True)


def _md(df: pd.DataFrame) -> str:
    return md_table(Display(df.astype(str), pd.DataFrame(False, index=df.index, columns=df.columns)))


def with_reference(t: pd.DataFrame, reference: pd.DataFrame | None) -> pd.DataFrame:
    """The arm table with the paper's ``paper_*`` columns joined by arm (rows without one stay blank)."""
    if reference is None or reference.empty:
        return t
    return t.merge(reference, on="arm", how="left")


def format_arm_table(t: pd.DataFrame, sig: pd.DataFrame | None = None) -> pd.DataFrame:
    """Display text of tables.arm_table (kept for callers; bold marks are in :func:`arm_display`)."""
    return arm_display(t, sig).cells


def _intro(r: ReportContent) -> list[str]:
    lines: list[str] = [f"# mer-orch report: {r.header.get('experiment', '')}", ""]
    lines += [f"> **Dataset: {r.header.get('dataset', 'unknown')}.** {r.dataset_statement}", ""]
    lines += [f"- **{k}**: {v}" for k, v in r.header.items()]
    if r.environment:
        lines += ["", "**Reproducibility record** (the sweep run's `environment.json`):", ""]
        lines += [f"- {e}" for e in r.environment]
    lines += [
        "",
        "**How to read the numbers.** *Pooled* metrics are computed once on the predictions of all "
        "LOSO folds concatenated (the field's convention; the paper's ACC and F1). *Per-fold* metrics "
        "are the mean ± std over the left-out subjects of each fold's own metric; they are usually "
        "lower. ACC is in %, F1 = UF1 is the macro-F1 over classes, UAR the mean per-class recall. An "
        "arm whose status is not *complete* keeps its row with blank metrics: a partial mean is never "
        "shown as the arm's result. The best value of each metric column is in **bold**.",
        "",
        "**Significance.** In each table every arm is compared with the table's baseline (marked; the "
        "first arm of the table in spec order unless a config run carries the tag "
        "`mer.baseline=true`) on the subjects both completed on every seed, for ACC, UF1 and UAR. The test "
        f"behind {SIG_MARK} is the *pooled subject-swap permutation test*: the two arms' predictions are "
        "exchanged within subjects (the same swap on every seed), each seed's pooled metric is recomputed "
        "and averaged over seeds, so it tests the pooled number the table shows (exact up to 2^n swap "
        "vectors, else Monte Carlo, whose p cannot go below 2/(B+1): the *p floor* column). Only the "
        "*primary* metric (the spec's `report.primary`, default the search objective) forms each table's "
        "corrected family; the other metrics are *secondary*, their p uncorrected and never marked. A "
        f"difference is *significant* only when its corrected p < 0.05 (then marked {SIG_MARK}); a "
        "verdict says in words when the 95% interval (bootstrap over subjects, and over seeds with several) "
        "and the test disagree, and beside every *n.s.* the smallest difference the design could detect "
        "at 80% power (MDE). The seed noise is measured from the seed-paired differences (their sd / "
        "√k): a difference whose seed-paired t interval excludes 0 is *resolved from the seed noise*. "
        "The per-fold mean view (sign-flip and Wilcoxon tests on the seed-averaged per-subject metric, "
        "and the subject wins / ties / losses) is shown beside it, labelled, and decides nothing.",
        "",
        "**Pooled ± sd.** With several training seeds a pooled value is the mean over seeds of each "
        "seed's pooled metric, ± their sample standard deviation (the seed noise); with one seed there "
        "is no sd.",
        "",
    ]
    if r.methods:
        lines += ["## Methods", "", r.methods, ""]
    if r.guesses:
        lines += ["## Where the paper is underspecified", "",
                  "Choices the paper leaves open, made by us for the models of this sweep (what the paper "
                  "does say comes first):", ""] + [f"- {g}" for g in r.guesses] + [""]
    if r.notes:
        lines += ["**Notes on the runs read:**", ""] + [f"- {n}" for n in r.notes] + [""]
    if r.latex_document:
        lines += [
            f"LaTeX (booktabs) of every table: `tables/*.tex`, each linked below; "
            f"[{r.latex_document}]({r.latex_document}) inputs them all and compiles as is.",
            "",
        ]
    if r.html:
        lines += [f"The same report as one self-contained web page: [{r.html}]({r.html}).", ""]
    return lines


def _links(*pairs: tuple[str, str | None]) -> str:
    return " · ".join(f"{label}: [{path}]({path})" for label, path in pairs if path)


def _table_section(s: TableSection) -> list[str]:
    tex = s.tex
    lines = [f"### {s.title}", "", f"`mer.table = {s.tag}` · "
             + _links(("data", s.csv), ("LaTeX", tex.get("table")), ("paper's values", s.reference_csv)), ""]
    lines += [md_table(arm_display(with_reference(s.table, s.reference), s.significance)), ""]
    if s.caption:
        lines += [f"*{md_escape(s.caption)}*", ""]
    ext = extension_arms(s.table)
    foot = [md_escape(extension_footnote(ext)), ""] if ext else []
    if s.grid is not None:
        lines += [
            "In the paper's shape (pooled; "
            + _links(("data", s.grid_csv), ("LaTeX", tex.get("grid")))
            + "):",
            "",
            md_table(grid_display(s.grid)),
            "",
            *foot,
        ]
    if len(s.significance):
        lines += [
            "Significance against the baseline ("
            + _links(("data", s.significance_csv), ("LaTeX", tex.get("significance"))) + "):",
            "",
            md_table(significance_display(s.significance, ext)),
            "",
            *foot,
        ]
        if "family" in s.significance:
            lines += [f"Multiple comparisons: {md_escape(s.significance['family'].iloc[0])}.", ""]
        lines += _power_lines(s)
    else:
        lines += [
            f"Only one arm in this table: nothing to compare "
            f"([{s.significance_csv}]({s.significance_csv}) is empty).",
            "",
        ]
    return lines + _effect_lines(s)


def _power_lines(s: TableSection) -> list[str]:
    """The power table of a section's primary tests, and how to read it."""
    if s.power is None or s.power.empty:
        return []
    d = float(s.power["detect"].iloc[0])
    return [
        f"**Power** ({_links(('data', s.power_csv))}): what this design could detect, and the subjects it "
        f"would need to detect a true difference of d = {d:g} (fraction; ACC {100 * d:g} pp) at 80% power "
        "and the table's per-test level, from this sweep's variance components: SE over subjects (the "
        "subject bootstrap of the seed-mean Δ) and the sd of the seed-paired Δ, in the model Var(Δ) = "
        "n0·SE²/n + sd²/k. 'more seeds': the seed share alone exceeds the budget at that seed count.",
        "",
        md_table(power_display(s.power)),
        "",
    ]


def _effect_lines(s: TableSection) -> list[str]:
    """Per-class results and the forest plot of a section."""
    lines: list[str] = []
    if s.per_class is not None and len(s.per_class):
        lines += ["Per-class F1 and recall of every complete arm, pooled over the LOSO folds (mean over "
                  "seeds), 95% interval resampling whole subjects ("
                  + _links(("data", s.per_class_csv), ("LaTeX", s.tex.get("per_class"))) + "):", "",
                  md_table(per_class_display(s.per_class, extension_arms(s.table))), ""]
    if s.forest is not None:
        lines += _figure(s.forest, "####")
    return lines


def _figure(f: FigureItem, level: str = "###") -> list[str]:
    data = f" · data: [{f.data}]({f.data})" if f.data else ""
    vec = "".join(f" · {v.rsplit('.', 1)[-1].upper()}: [{v}]({v})" for v in f.vectors)
    title = md_escape(f.title)
    return [f"{level} {title}", "", f"![{title}]({f.png})", "", f"{md_escape(f.caption)}{data}{vec}", ""]


def _aau_section(r: ReportContent) -> list[str]:
    """Table VIII of each AAU arm, its caption, and directly after it the weights' trajectory (or why
    there is none)."""
    lines = [
        "## Table VIII: AAU layer weights per subject",
        "",
        "The AAU layer weights of each LOSO fold's final model: for the paper's AAU loss the learned "
        "W_r² / Σ W² (Eq. 11); the caption under each table names its arm's weighting. The average is over "
        "complete folds only. After each table: the weights' trajectory over training.",
        "",
    ]
    for arm, t, csv in r.aau:
        lines += [f"### {md_escape(arm)}", "", _links(("data", csv), ("LaTeX", r.aau_tex.get(arm))), "",
                  md_table(aau_display(t)), ""]
        if arm in r.aau_captions:
            lines += [f"*{md_escape(r.aau_captions[arm])}*", ""]
        if arm in r.aau_figures:
            lines += _figure(r.aau_figures[arm], "####")
        elif arm in r.aau_notes:
            lines += [md_escape(r.aau_notes[arm]), ""]
    return lines


def _published_section(r: ReportContent) -> list[str]:
    """Other methods' published numbers: a table of their own, after ours, with their sources."""
    if r.published is None or r.published.empty:
        return []
    return ["### Published results of other methods", "", f"> {r.published_banner}", "",
            _links(*r.published_files.items()), "", md_table(published_display(r.published)), ""]


def _au_supervision_section(r: ReportContent) -> list[str]:
    """How many training clips of each AU-loss arm's folds carried AU labels (some, e.g. SMIC's, had none)."""
    t = r.au_supervision
    if t is None or t.empty:
        return []
    def span(lo: pd.Series, hi: pd.Series) -> list[str]:
        return [DASH if pd.isna(a) else f"{int(a)}-{int(b)}" if a != b else str(int(a))
                for a, b in zip(lo, hi, strict=True)]

    rows = pd.DataFrame({"arm": t["arm"], "folds": t["folds"].astype(str),
                         "training clips with AU labels, per fold": span(t["au_labelled_min"],
                                                                         t["au_labelled_max"]),
                         "training clips, per fold": span(t["train_min"], t["train_max"])})
    return ["### AU supervision per fold", "",
            "The training clips whose AU labels supervised the AU losses. A clip without AU labels (SMIC "
            "has none) trains on the classification loss only (the AU losses are masked for it, never fed "
            "zeros), and the AAU weights are learned from the labelled clips. Per AU-loss arm, over its "
            "complete fold runs (min-max; — where a run did not record its training clips):", "",
            _md(rows), ""]


def render(r: ReportContent) -> str:
    """The whole report as Markdown text."""
    lines = _intro(r)
    if r.tables:
        lines += ["## Tables", ""]
        if r.reference_banner:
            lines += [f"> {r.reference_banner}", ""]
    for s in r.tables:
        lines += _table_section(s)
    lines += _published_section(r)
    lines += _au_supervision_section(r)
    if r.aau:
        lines += _aau_section(r)
    if r.search:
        lines += ["## Optuna search", ""] + r.search + [""]
    if r.selection:
        lines += ["## Selection: nested LOSO vs selected on the test subjects", ""] + r.selection + [""]
    if r.figures:
        lines += ["## Figures", ""]
    for f in r.figures:
        lines += _figure(f)
    lines += ["## Folds that did not complete", ""]
    if r.failures is not None and len(r.failures):
        lines += [_md(r.failures), ""]
    else:
        lines += ["None: every fold run of every arm completed.", ""]
    if r.folds_csv:
        lines += [f"Every fold's per-subject metrics: [{r.folds_csv}]({r.folds_csv}).", ""]
    return "\n".join(lines)
