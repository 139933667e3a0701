"""``mer-orch report``: the paper's tables and figures, with significance tests, from one sweep's MLflow runs.

Modules: ``runs`` (MLflow -> pandas), ``tables`` (paper tables, Table VIII, significance per table),
``stats`` (paired permutation / Wilcoxon tests, subject bootstrap), ``figures`` (matplotlib: PDF, SVG,
300-dpi PNG), ``search`` (Optuna study history and importances), ``display`` (cell text, bold best, mean
± sd, significance mark: shared by the writers), ``captions`` (table captions), ``markdown`` / ``latex`` /
``html`` (the writers), ``reference`` (the paper's values from spec.yaml, display only), ``methods`` (the
generated methods paragraph), ``redact`` (no machine paths), ``browser`` (headless Chromium check of
report.html), ``build`` (the driver: the order of the sections), ``sections_*`` (one module per group of
sections: ``sweep``, ``tables``, ``effects``, ``aau``, ``search``, ``figures``), ``context`` (what the
sections share), ``folder`` (the output folder and its final files)."""

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    # build pulls in mlflow, optuna and matplotlib: import it only when asked, so the pure statistics and
    # table modules stay quick to import (tests, notebooks).
    if name == "build_report":
        from orchestrator.report.build import build_report

        return build_report
    raise AttributeError(name)
