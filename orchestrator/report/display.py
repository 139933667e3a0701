"""Display form of the report's tables, shared by the Markdown, HTML and LaTeX writers.

A :class:`Display` is the text of every cell (plain Unicode: "±" for mean ± sd, an em dash for a blank)
plus a same-shaped boolean frame saying which cells are bold (the best value of their metric column). Each
writer only adds its own markup (``**x**``, ``\\textbf{x}``), so the three views can never disagree on a
number. Written generically over the frames :mod:`orchestrator.report.tables` builds: a metric column ``m``
shows ``m ± <m>_sd`` where an ``<m>_sd`` column exists and is not blank (seeds), ``fold_mean_<m>`` pairs
with ``fold_std_<m>``; columns it does not know are shown as text, missing ones are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.report.tables import NON_PAPER  # the arm table's column of options not in the paper
from orchestrator.store.contract import parse_dataset_metric

DASH = "—"
SIG_MARK = "†"  # after a pooled value significantly different from its table's baseline (that metric)
EXT_MARK = "‡"  # after an arm that turns on an option the paper does not have (issue 16), with a footnote
# pooled metric -> (header, scale, decimals); the paper prints ACC in % with 2 decimals, F1 with 3
POOLED = {
    "accuracy": ("ACC % (pooled)", 100.0, 2),
    "uf1": ("F1 = UF1 (pooled)", 1.0, 3),
    "uar": ("UAR (pooled)", 1.0, 3),
}
PER_FOLD = {"accuracy": ("ACC % per-fold mean ± std", 100.0, 2), "uf1": ("UF1 per-fold mean ± std", 1.0, 3),
            "uar": ("UAR per-fold mean ± std", 1.0, 3)}
# the paper's published values (spec `reference:`): their own columns, never bolded, never tested
REFERENCE_COLUMNS = {
    "paper_table": "paper: table",
    "paper_casme2_acc": "paper: CASME II ACC %",
    "paper_casme2_f1": "paper: CASME II F1",
    "paper_samm_acc": "paper: SAMM ACC %",
    "paper_samm_f1": "paper: SAMM F1",
}
_META = {"arm", "baseline", "status", "optuna_trial", "n_folds_complete", "n_folds_failed", "n_seeds",
         NON_PAPER}  # NON_PAPER: shown as the arm's mark and the footnote, not as a column


@dataclass
class Display:
    cells: pd.DataFrame  # str, one column per shown column, header = display name
    bold: pd.DataFrame  # bool, same shape: the best value of its metric column


def number(x: float, scale: float = 1.0, decimals: int = 3, sd: float | None = None) -> str:
    """``77.29`` or ``77.29 ± 1.20`` (sd shown only when given and not blank); blank -> em dash."""
    if x is None or pd.isna(x):
        return DASH
    txt = f"{scale * float(x):.{decimals}f}"
    return txt if sd is None or pd.isna(sd) else f"{txt} ± {scale * float(sd):.{decimals}f}"


def _best(values: pd.Series, higher_is_better: bool = True) -> np.ndarray:
    """Rows holding the column's best value (ties all bold); nothing bold with fewer than two values or
    when every value is the same (no arm is best then)."""
    v = pd.to_numeric(values, errors="coerce")
    if v.notna().sum() < 2 or v.nunique() < 2:
        return np.zeros(len(v), dtype=bool)
    best = v.max() if higher_is_better else v.min()
    return (np.isclose(v.to_numpy(float), best, rtol=0, atol=1e-12) & v.notna().to_numpy())


def _sd(t: pd.DataFrame, col: str) -> pd.Series:
    return t[f"{col}_sd"] if f"{col}_sd" in t else pd.Series(np.nan, index=t.index)


def extension_arms(t: pd.DataFrame) -> dict[str, str]:
    """``{arm: "input = onset_delta, ..."}`` of the arms of a table (``tables.arm_table``) that turn on an
    option the paper does not have; empty when the table has none (or no ``not_in_paper`` column)."""
    if NON_PAPER not in t:
        return {}
    return {str(a): str(v) for a, v in zip(t["arm"], t[NON_PAPER], strict=True) if isinstance(v, str) and v}


def mark_arm(arm: str, ext: dict[str, str]) -> str:
    """``arm`` followed by :data:`EXT_MARK` when it is one of ``ext`` (:func:`extension_arms`)."""
    return f"{arm}{EXT_MARK}" if str(arm) in ext else str(arm)


def extension_footnote(ext: dict[str, str]) -> str:
    """The footnote under a table with marked arms: which options each uses, all called not in the paper
    (plain text; empty when no arm is marked)."""
    if not ext:
        return ""
    return f"{EXT_MARK} not in the paper: " + "; ".join(f"{a}: {v}" for a, v in ext.items()) + "."


def _arm_names(t: pd.DataFrame, significant: set[str]) -> list[str]:
    base = t["baseline"] if "baseline" in t else pd.Series(False, index=t.index)
    ext = extension_arms(t)
    return [
        f"{mark_arm(a, ext)}{SIG_MARK if a in significant else ''}{' (baseline)' if bool(b) else ''}"
        for a, b in zip(t["arm"].astype(str), base, strict=True)
    ]


def _flags(sig: pd.DataFrame) -> pd.Series:
    return sig["significant"].map(lambda v: str(v).lower() in ("true", "1", "1.0"))


def significant_arms(sig: pd.DataFrame | None) -> set[str]:
    """Arms whose ``significant`` is true (after correction where the frame carries one) and whose rows
    name no metric (a frame of per-(arm, metric) rows marks the metric cells instead)."""
    if sig is None or sig.empty or "significant" not in sig or "metric" in sig:
        return set()
    return set(sig.loc[_flags(sig), "arm"].astype(str))


def significant_cells(sig: pd.DataFrame | None) -> set[tuple[str, str]]:
    """(arm, metric) pairs significant after correction, from a per-(arm, metric) significance frame."""
    if sig is None or sig.empty or not {"significant", "metric"} <= set(sig.columns):
        return set()
    rows = sig.loc[_flags(sig)]
    return set(zip(rows["arm"].astype(str), rows["metric"].astype(str), strict=True))


def arm_display(t: pd.DataFrame, sig: pd.DataFrame | None = None) -> Display:
    """A paper table (``tables.arm_table``, optionally joined with ``paper_*`` reference columns)."""
    cells: dict[str, list[str]] = {}
    bold: dict[str, np.ndarray] = {}
    if "optuna_trial" in t:
        cells["trial"] = [DASH if pd.isna(v) else str(int(v)) for v in t["optuna_trial"]]
    cells["arm"] = _arm_names(t, significant_arms(sig))
    for c in t.columns:
        if (c in _META or c in REFERENCE_COLUMNS or c.endswith("_sd") or c in POOLED or c.startswith("fold_")
                or parse_dataset_metric(c)):
            continue
        cells[c] = t[c].astype(str).tolist()
    if "status" in t:
        cells["status"] = t["status"].astype(str).tolist()
        bold["status"] = (t["status"].astype(str) != "complete").to_numpy()  # an arm without a result
    if "n_seeds" in t and pd.to_numeric(t["n_seeds"], errors="coerce").max() > 1:
        cells["seeds"] = [DASH if pd.isna(n) else str(int(n)) for n in t["n_seeds"]]
    if {"n_folds_complete", "n_folds_failed"} <= set(t.columns):
        cells["folds ok / failed"] = [
            f"{a} / {b}" for a, b in zip(t["n_folds_complete"], t["n_folds_failed"], strict=True)
        ]
    marked = significant_cells(sig)
    for m, (head, scale, dec) in POOLED.items():
        if m in t:
            cells[head] = [
                number(x, scale, dec, s) + (SIG_MARK if (str(a), m) in marked else "")
                for a, x, s in zip(t["arm"], t[m], _sd(t, m), strict=True)
            ]
            bold[head] = _best(t[m])
    cells.update(_dataset_cells(t, bold))
    for m, (head, scale, dec) in PER_FOLD.items():
        mean, std = f"fold_mean_{m}", f"fold_std_{m}"
        if {mean, std} <= set(t.columns):
            cells[head] = [number(x, scale, dec, s) for x, s in zip(t[mean], t[std], strict=True)]
            bold[head] = _best(t[mean])
    for c, head in REFERENCE_COLUMNS.items():
        if c in t and t[c].notna().any():
            is_acc, is_text = c.endswith("_acc"), c == "paper_table"
            cells[head] = [
                (DASH if pd.isna(v) else str(v)) if is_text else number(v, 1.0, 2 if is_acc else 3)
                for v in t[c]
            ]
    return _frame(cells, bold)


# a union of datasets (the composite): each dataset's UF1 and UAR beside the whole's, as the field prints it
PER_DATASET = {"uf1": "UF1", "uar": "UAR"}


def _dataset_cells(t: pd.DataFrame, bold: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """``<dataset> UF1`` / ``<dataset> UAR`` (pooled over that dataset's folds, ± sd over seeds) cells."""
    cells: dict[str, list[str]] = {}
    for c in t.columns:
        p = parse_dataset_metric(c)
        if p is None or p[1] not in PER_DATASET:
            continue
        head = f"{p[0]} {PER_DATASET[p[1]]}"
        cells[head] = [number(x, 1.0, 3, s) for x, s in zip(t[c], _sd(t, c), strict=True)]
        bold[head] = _best(t[c])
    return cells


def published_display(pub: pd.DataFrame) -> Display:
    """Other methods' published numbers (``reference.published_methods``): never bolded (not ours)."""
    cells: dict[str, list[str]] = {"method": pub["method"].astype(str).tolist()}
    for c in pub.columns:
        if c.endswith(("_uf1", "_uar")):
            col, m = c.rsplit("_", 1)
            cells[f"{'composite' if col == 'full' else col} {m.upper()}"] = [number(v) for v in pub[c]]
    cells["source"] = pub["source"].astype(str).tolist()
    return _frame(cells, {})


def _frame(cells: dict[str, list[str]], bold: dict[str, np.ndarray]) -> Display:
    text = pd.DataFrame(cells)
    flags = pd.DataFrame(
        {c: bold.get(c, np.zeros(len(text), dtype=bool)) for c in text.columns}, index=text.index
    )
    return Display(text, flags.astype(bool))


_METRIC_NAMES = {"accuracy": "ACC %", "uf1": "UF1", "uar": "UAR"}


def _diff(x: float, metric: str, decimals: int | None = None) -> str:
    """A difference in the metric's display unit: ACC in percentage points, UF1 / UAR as fractions."""
    pct = metric == "accuracy"
    return number(x, 100.0 if pct else 1.0, decimals if decimals is not None else (2 if pct else 3))


def _p(x: float) -> str:
    return DASH if pd.isna(x) else f"{float(x):.3g}"


def _ci_head(s: pd.DataFrame) -> str:
    levels = s["ci_levels"].dropna().astype(str) if "ci_levels" in s else pd.Series([], dtype=str)
    levels = levels[levels != ""]
    return f"95% CI (bootstrap over {levels.iloc[0] if len(levels) else 'subjects'})"


def significance_display(s: pd.DataFrame, ext: dict[str, str] | None = None) -> Display:
    """Each (arm, metric) against its baseline (``significance.significance_table``): differences in the
    metric's unit (ACC in percentage points), the pooled swap test's p before and after the table's
    correction (primary metric; secondary rows uncorrected), the interval, the minimum detectable
    difference, the seed-paired SE, subject wins / ties / losses and the per-fold-mean sign-flip p; rows
    significant after correction have their verdict in bold. Columns a frame lacks are skipped.
    ``ext``: the table's :func:`extension_arms`, marked."""
    ext = ext or {}
    metric = s["metric"].astype(str) if "metric" in s else pd.Series("accuracy", index=s.index)
    role = s["role"].astype(str) if "role" in s else pd.Series("", index=s.index)
    cells: dict[str, list[str]] = {
        "arm": [mark_arm(a, ext) for a in s["arm"].astype(str)],
        "metric": [_METRIC_NAMES.get(m, m) + (f" ({r.split()[0]})" if r else "")
                   for m, r in zip(metric, role, strict=True)],
        "vs baseline": [mark_arm(a, ext) for a in s["baseline"].astype(str)],
        "subjects": [str(int(n)) if pd.notna(n) else DASH for n in s.get("n_subjects", [np.nan] * len(s))],
    }
    if "pooled_diff" in s:
        cells["Δ pooled (seed mean)"] = [_diff(x, m) for x, m in zip(s["pooled_diff"], metric, strict=True)]
    if {"ci_low", "ci_high"} <= set(s.columns):
        cells[_ci_head(s)] = [
            DASH if pd.isna(lo) else f"[{_diff(lo, m)}, {_diff(hi, m)}]"
            for lo, hi, m in zip(s["ci_low"], s["ci_high"], metric, strict=True)
        ]
    for col, head in (("p_swap", "p (pooled swap)"), ("p_adj", "p (adjusted)"), ("p_floor", "p floor")):
        if col in s:
            cells[head] = [_p(p) for p in s[col]]
    if "mde" in s:
        cells["MDE (80% power)"] = [_diff(x, m) for x, m in zip(s["mde"], metric, strict=True)]
    if "seed_se" in s:
        cells["seed-paired SE"] = [_diff(x, m) for x, m in zip(s["seed_se"], metric, strict=True)]
    if {"wins", "ties", "losses"} <= set(s.columns):
        cells["subjects W / T / L"] = [f"{int(w)} / {int(t)} / {int(lo)}" if pd.notna(w) else DASH
                                       for w, t, lo in zip(s["wins"], s["ties"], s["losses"], strict=True)]
    if "mean_diff" in s:
        cells["per-fold mean Δ"] = [_diff(x, m) for x, m in zip(s["mean_diff"], metric, strict=True)]
    old = (("p_permutation", "p (permutation)"), ("p_wilcoxon", "p (Wilcoxon, uncorrected)"))  # pre-issue 24
    for col, head in (("p_fold_permutation", "p per-fold mean (sign-flip)"), *old):
        if col in s:
            cells[head] = [_p(p) for p in s[col]]
    sig = _flags(s).to_numpy() if "significant" in s else np.zeros(len(s), dtype=bool)
    cells["verdict"] = s["verdict"].astype(str).tolist() if "verdict" in s else [
        "significant" if f else "n.s." for f in sig]
    return _frame(cells, {"verdict": sig})


def _ci(x: float, lo: float, hi: float) -> str:
    return DASH if pd.isna(x) else f"{x:.3f} [{number(lo)}, {number(hi)}]"


def per_class_display(t: pd.DataFrame, ext: dict[str, str] | None = None) -> Display:
    """Per-class F1 and recall of every arm (``effects.per_class``) with their subject-bootstrap
    intervals; per class the best F1 and recall across arms in bold."""
    ext = ext or {}
    cells = {
        "arm": [mark_arm(a, ext) for a in t["arm"].astype(str)],
        "class": t["class"].astype(str).tolist(),
        "true clips (seed mean)": [f"{x:g}" for x in t["n_true"]],
        "F1 [95% CI]": [_ci(*v) for v in zip(t["f1"], t["f1_low"], t["f1_high"], strict=True)],
        "recall [95% CI]": [_ci(*v) for v in zip(t["recall"], t["recall_low"], t["recall_high"],
                                                  strict=True)],
    }
    def best_per_class(col: str) -> np.ndarray:
        return t.groupby("class", sort=False)[col].transform(
            lambda g: pd.Series(_best(g), index=g.index)).to_numpy(bool)

    bold = {"F1 [95% CI]": best_per_class("f1"), "recall [95% CI]": best_per_class("recall")}
    return _frame(cells, bold)


def power_display(p: pd.DataFrame) -> Display:
    """The power table (``power.power_table``): components, this design's MDE, subjects needed."""
    metric = p["metric"].astype(str)
    cells: dict[str, list[str]] = {
        "arm": p["arm"].astype(str).tolist(),
        "metric": [_METRIC_NAMES.get(m, m) for m in metric],
        "subjects x seeds": [f"{int(n)} x {int(k)}"
                             for n, k in zip(p["n_subjects"], p["n_seeds"], strict=True)],
        "SE over subjects": [_diff(x, m) for x, m in zip(p["se_subjects"], metric, strict=True)],
        "sd of seed-paired Δ": [_diff(x, m) for x, m in zip(p["seed_sd"], metric, strict=True)],
        "per-test α": [f"{a:.3g}" for a in p["alpha"]],
        "MDE (80% power)": [_diff(x, m) for x, m in zip(p["mde"], metric, strict=True)],
    }
    for c in (c for c in p.columns if c.startswith("subjects_for_k")):
        k = c[len("subjects_for_k"):]
        cells[f"subjects for |Δ| = d, {k} seed(s)"] = ["more seeds" if np.isinf(v) else str(int(v))
                                                         for v in p[c]]
    return _frame(cells, {})


def grid_display(g: pd.DataFrame) -> Display:
    """Table VII in the paper's shape (``tables.vii_grid``): ACC % / UF1 per column group, best bold."""
    cells: dict[str, list[str]] = {}
    bold: dict[str, np.ndarray] = {}
    for c in g.columns:
        if c.endswith("accuracy"):
            head = c.replace("accuracy", "ACC %")
            cells[head], bold[head] = [number(x, 100.0, 2) for x in g[c]], _best(g[c])
        elif c.endswith("uf1"):
            head = c.replace("uf1", "UF1")
            cells[head], bold[head] = [number(x, 1.0, 3) for x in g[c]], _best(g[c])
        else:
            cells[c] = g[c].astype(str).tolist()
    return _frame(cells, bold)


def aau_display(t: pd.DataFrame) -> Display:
    """Table VIII (``tables.aau_weight_table``): subjects x layers, 4 decimals; nothing bold (weights)."""
    out = t.reset_index()
    cells = {
        c: [DASH if pd.isna(v) else f"{v:.4f}" for v in out[c]] if str(c).startswith("layer")
        else out[c].astype(str).tolist()
        for c in out.columns
    }
    return _frame(cells, {})
