"""The display-only sections: ``reference`` (the paper's published values beside an arm, or another
method's numbers on the sweep's protocol) and ``report`` (how ``mer-orch report`` reads the sweep).

Neither enters a statistic nor the sweep's id (``plan._NOT_IDENTITY``); :func:`check_reference` checks,
once the grid is expanded, that each entry points at something that exists.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mer_model.errors import InputError
from mer_model.metrics import MetricName
from orchestrator.spec.section import Section


class PaperValues(Section):
    """One dataset's published numbers for an arm: ACC in percent (as the paper prints it), F1 in [0, 1]."""

    acc: float = Field(ge=0, le=100)  # percent, e.g. 77.29
    f1: float = Field(ge=0, le=1)  # the paper's F1 (macro-F1 over classes, i.e. UF1)


class PaperReference(Section):
    """``reference: {<arm name>: ...}``: the paper's published values beside an arm, for display only.

    They are shown in their own, labelled report columns and never enter any statistic; ``table`` names the
    paper table they are copied from (e.g. ``V``), ``casme2`` / ``samm`` its two dataset columns (either may
    be absent, e.g. Table VII has no AAU row for layer 4).
    """

    table: str = Field(min_length=1)
    casme2: PaperValues | None = None
    samm: PaperValues | None = None


class PublishedValues(Section):
    """One column group of another method's published numbers: UF1 and UAR as printed, in [0, 1]."""

    uf1: float | None = Field(None, ge=0, le=1)
    uar: float | None = Field(None, ge=0, le=1)


class MethodReference(Section):
    """``reference: {<method>: {source: ..., values: {full: {uf1, uar}, <dataset label>: {...}}}}``: another
    method's published numbers on the sweep's protocol (e.g. the MEGC2019 composite table), display only.

    They get rows of their own in a table of their own, with their ``source``, and never enter a statistic;
    ``full`` is the whole (composite) column, a dataset label one dataset's column."""

    source: str = Field(min_length=1)
    values: dict[str, PublishedValues] = Field(min_length=1)


class ReportSpec(Section):
    """``report:``: how ``mer-orch report`` reads the sweep (display only: not part of the sweep's id).

    ``primary``: the metric whose pooled swap tests form each table's corrected family (default: the
    protocol's ``objective``); the other metrics are shown as secondary, uncorrected. ``all``: every
    metric in the family (k arms x 3 metrics, the report of before issue 24).
    """

    primary: MetricName | Literal["all"] | None = None


def check_reference(reference: dict[str, PaperReference | MethodReference], arms: set[str],
                    columns: list[str], source: str) -> None:
    """A paper ``reference`` entry must name a grid arm (a typo would silently show no paper values); another
    method's must not (its row is not an arm's), and its columns are among ``columns`` (``full`` and the
    file's dataset labels)."""
    for name, ref in reference.items():
        if isinstance(ref, PaperReference) and name not in arms:
            raise InputError(f"{source}: reference.{name}: no grid arm has this name; allowed: one of "
                             + ", ".join(sorted(arms)) + " (or another method's numbers, with `source:`)")
        if isinstance(ref, MethodReference):
            if name in arms:
                raise InputError(f"{source}: reference.{name}: is a grid arm's name; allowed: another "
                                 "method's name (the paper's values of an arm take `table:`, not `source:`)")
            bad = next((k for k in ref.values if k not in columns), None)
            if bad is not None:
                raise InputError(f"{source}: reference.{name}.values.{bad}: not a column of this sweep; "
                                 f"allowed: {', '.join(columns)}")
