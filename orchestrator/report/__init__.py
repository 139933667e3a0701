"""``mer-orch report``: the paper's tables and figures, with significance tests, from one sweep's MLflow runs.

Modules: ``runs`` (MLflow -> pandas), ``tables`` (paper tables, Table VIII, significance per table),
``stats`` (paired permutation / Wilcoxon tests, subject bootstrap), ``figures`` (matplotlib), ``search``
(Optuna study history and importances), ``markdown`` (the writer), ``build`` (the driver).
"""

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    # build pulls in mlflow, optuna and matplotlib: import it only when asked, so the pure statistics and
    # table modules stay quick to import (tests, notebooks).
    if name == "build_report":
        from orchestrator.report.build import build_report

        return build_report
    raise AttributeError(name)
