"""The paper's published values from the sweep's ``spec.yaml`` (its ``reference:`` block), for display.

They are validated with the spec's own model (:class:`orchestrator.spec.PaperReference`) but read apart
from the rest of the spec (a report must not fail because e.g. a dataset folder of the sweep's machine is
missing here). The frame they become is joined to the tables' display only: nothing in
:mod:`orchestrator.report.tables` or :mod:`orchestrator.report.stats` ever sees it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pydantic import TypeAdapter, ValidationError

from mer_model.data.dataset import is_synthetic
from orchestrator.spec import MethodReference, PaperReference

COLUMNS = ["arm", "paper_table", "paper_casme2_acc", "paper_casme2_f1", "paper_samm_acc", "paper_samm_f1"]
_Block = TypeAdapter(dict[str, PaperReference | MethodReference])


def _references(spec: dict[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """The validated ``reference`` block (name -> PaperReference | MethodReference), or a note why not."""
    block = (spec or {}).get("reference") or {}
    try:
        return _Block.validate_python(block), None
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"] if p not in ("PaperReference", "MethodReference"))
        return {}, (f"The sweep's spec.yaml has an invalid `reference` block (reference.{where}: "
                    f"{err['msg']}): published values are not shown.")


def published_methods(spec: dict[str, Any] | None) -> pd.DataFrame:
    """Other methods' published numbers (``reference`` entries with a ``source``): one row per method,
    columns ``method``, ``<column>_uf1`` / ``<column>_uar`` (column ``full`` or a dataset label, in the
    order first given; NaN where not published) and ``source``. Display only: no statistic reads it."""
    refs, _ = _references(spec)
    methods = {k: r for k, r in refs.items() if isinstance(r, MethodReference)}
    cols = list(dict.fromkeys(c for r in methods.values() for c in r.values))
    cols.sort(key=lambda c: c != "full")  # the whole first, as the composite tables print it
    rows = []
    for name, r in methods.items():
        row: dict[str, Any] = {"method": name}
        for c in cols:
            v = r.values.get(c)
            row[f"{c}_uf1"] = v.uf1 if v is not None and v.uf1 is not None else float("nan")
            row[f"{c}_uar"] = v.uar if v is not None and v.uar is not None else float("nan")
        rows.append({**row, "source": r.source})
    value_cols = [f"{c}_{m}" for c in cols for m in ("uf1", "uar")]
    return pd.DataFrame(rows, columns=["method", *value_cols, "source"])


def paper_reference(spec: dict[str, Any] | None) -> tuple[pd.DataFrame, str | None]:
    """(frame with :data:`COLUMNS`, one row per referenced arm; a note when the block is invalid).

    ACC stays in percent as the paper prints it; F1 as printed. Missing datasets are NaN. Other methods'
    entries (with ``source``) are :func:`published_methods`'s.
    """
    refs, why = _references(spec)
    if why:
        return pd.DataFrame(columns=COLUMNS), why
    rows = []
    for arm, r in refs.items():
        if not isinstance(r, PaperReference):
            continue
        row: dict[str, Any] = {"arm": arm, "paper_table": r.table}
        for ds in ("casme2", "samm"):
            vals = getattr(r, ds)
            row[f"paper_{ds}_acc"] = vals.acc if vals else float("nan")
            row[f"paper_{ds}_f1"] = vals.f1 if vals else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS), None


def published_banner(dataset: str) -> str:
    """The line above other methods' published numbers: what they are, and for SynthME, not comparable."""
    base = ("Other methods' numbers as their papers published them on the real datasets, copied from the "
            "search-space file's `reference:` block with their source: rows of their own, never in a "
            "statistic or a test.")
    if is_synthetic(dataset):
        return "**Not comparable: this sweep ran on SynthME (synthetic), they on the real datasets.** " + base
    return base + " Compare only under the same class setup and protocol."


def banner(dataset: str) -> str:
    """The line above the tables when the paper's values are shown: what they are, and for a SynthME
    sweep that they are not comparable."""
    base = (
        "Columns headed **paper:** are the values Wei et al. published (CASME II / SAMM, the table named in "
        "`paper: table`), copied from the search-space file's `reference:` block. They are shown for "
        "reference only and never enter a statistic or a test."
    )
    if is_synthetic(dataset):
        return ("**Not comparable: this sweep ran on SynthME (synthetic), the paper on CASME II and SAMM.** "
                + base)
    return base + " Compare only under the same class setup and protocol."
