"""What the report's sections share about the sweep, read once: its spec (``spec.yaml`` artifact), the
search objective and primary metric, the LOSO subject and class counts, and the :class:`Context` every
table caption, test and reference column reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from orchestrator.report import power, significance
from orchestrator.report.runs import SweepRuns, read_text_artifact
from orchestrator.store import contract as C


@dataclass
class Context:
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


def reference_for(rows: pd.DataFrame, ctx: Context) -> pd.DataFrame | None:
    """The paper's values for the arms of ``rows`` (None when the spec gives none of them)."""
    ref = ctx.reference[ctx.reference["arm"].isin(rows["arm"])]
    return ref.reset_index(drop=True) if len(ref) else None


def n_subjects(runs: SweepRuns) -> int:
    """LOSO subjects of the sweep (a nested search's inner fold runs carry fold ids, not subjects)."""
    inner = runs.configs.loc[runs.configs["table"] == "nested-inner", "run_id"]
    folds = runs.folds[~runs.folds["config_run_id"].isin(inner)] if len(inner) else runs.folds
    return int(folds["subject"].dropna().nunique())


def n_classes(runs: SweepRuns, preds: dict[str, pd.DataFrame | None]) -> int:
    """The sweep's class count: the config runs' ``num_classes`` param, else the largest label seen + 1."""
    logged = pd.to_numeric(runs.configs.get("param.num_classes", pd.Series(dtype=float)), errors="coerce")
    if logged.notna().any():
        return int(logged.max())
    seen = [int(max(p["y_true"].max(), p["y_pred"].max())) + 1
            for p in preds.values() if p is not None and len(p)]
    return max(seen, default=2)


def default_objective() -> str:
    """The spec's own default of ``protocol.objective``."""
    from orchestrator.spec import ProtocolSpec

    return str(ProtocolSpec.model_fields["objective"].default)


def read_spec(runs: SweepRuns) -> tuple[dict[str, Any] | None, str | None]:
    """The sweep's ``spec.yaml`` artifact as a dict (None and a note when it is missing or broken)."""
    import yaml

    text = read_text_artifact(runs.client, runs.sweep_run_id, C.SPEC_YAML) if runs.sweep_run_id else None
    assumed = f"the search objective is assumed to be {default_objective()}."
    if text is None:
        return None, f"The sweep run has no spec.yaml: {assumed}"
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError:
        return None, f"The sweep's spec.yaml does not parse: {assumed}"
    return (spec if isinstance(spec, dict) else {}), None


def objective(spec: dict[str, Any] | None) -> str:
    """The pooled metric the sweep's search optimised (``protocol.objective``); the spec's own default
    whether spec.yaml, its protocol section or only the key is missing."""
    return str(((spec or {}).get("protocol") or {}).get("objective", default_objective()))


def primary(spec: dict[str, Any] | None, objective: str) -> str:
    """The metric of each table's corrected family: ``report.primary`` of the spec, else the objective."""
    primary = ((spec or {}).get("report") or {}).get("primary")
    return str(primary) if primary in (*C.METRICS, significance.ALL) else objective


def scheme(spec: dict[str, Any] | None) -> str:
    """The sweep's ``protocol.scheme`` (loso when the spec does not say)."""
    return str(((spec or {}).get("protocol") or {}).get("scheme", "loso"))
