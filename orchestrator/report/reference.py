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

from orchestrator.spec import PaperReference

COLUMNS = ["arm", "paper_table", "paper_casme2_acc", "paper_casme2_f1", "paper_samm_acc", "paper_samm_f1"]


def paper_reference(spec: dict[str, Any] | None) -> tuple[pd.DataFrame, str | None]:
    """(frame with :data:`COLUMNS`, one row per referenced arm; a note when the block is invalid).

    ACC stays in percent as the paper prints it; F1 as printed. Missing datasets are NaN.
    """
    block = (spec or {}).get("reference") or {}
    try:
        refs = TypeAdapter(dict[str, PaperReference]).validate_python(block)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return pd.DataFrame(columns=COLUMNS), (
            f"The sweep's spec.yaml has an invalid `reference` block (reference.{where}: {err['msg']}): "
            "the paper's values are not shown."
        )
    rows = []
    for arm, r in refs.items():
        row: dict[str, Any] = {"arm": arm, "paper_table": r.table}
        for ds in ("casme2", "samm"):
            vals = getattr(r, ds)
            row[f"paper_{ds}_acc"] = vals.acc if vals else float("nan")
            row[f"paper_{ds}_f1"] = vals.f1 if vals else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS), None


def banner(dataset: str) -> str:
    """The line above the tables when the paper's values are shown: what they are, and for a SynthME
    sweep that they are not comparable."""
    base = (
        "Columns headed **paper:** are the values Wei et al. published (CASME II / SAMM, the table named in "
        "`paper: table`), copied from the search-space file's `reference:` block. They are shown for "
        "reference only and never enter a statistic or a test."
    )
    if dataset.lower().startswith("synthme"):
        return ("**Not comparable: this sweep ran on SynthME (synthetic), the paper on CASME II and SAMM.** "
                + base)
    return base + " Compare only under the same class setup and protocol."
