"""``mer-orch report``: the paper's tables and figures, with significance tests, from one sweep's MLflow runs.

Modules: ``runs`` (MLflow -> pandas), ``tables`` (paper tables, Table VIII, significance per table),
``stats`` (paired permutation / Wilcoxon tests, subject bootstrap), ``figures`` (matplotlib), ``search``
(Optuna study history and importances), ``markdown`` (the writer), ``build`` (the driver).
"""

from orchestrator.report.build import build_report

__all__ = ["build_report"]
