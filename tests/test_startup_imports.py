"""What a grid sweep's driver imports before Ray starts (issue 26's start-up): scikit-learn and matplotlib
are loaded later, on a thread, while the actors start (``executor.warm_imports``)."""

from __future__ import annotations

import subprocess
import sys


def test_driver_import_leaves_sklearn_and_matplotlib_for_later() -> None:
    code = ("import sys, orchestrator.sweep.driver, orchestrator.cli\n"
            "print(sorted(m for m in ('sklearn', 'matplotlib', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_warm_imports_loads_what_a_finished_config_needs() -> None:
    code = ("import sys, matplotlib\nfrom orchestrator.sweep import executor\n"
            "before = 'sklearn.metrics' in sys.modules or 'matplotlib.pyplot' in sys.modules\n"
            "executor.warm_imports().join(timeout=120)\n"
            "print(before, 'sklearn.metrics' in sys.modules, 'matplotlib.pyplot' in sys.modules, "
            "matplotlib.get_backend().lower())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True", "agg"], out
