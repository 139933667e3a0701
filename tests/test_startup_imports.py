"""What importing the sweep driver and the CLI loads (issue 26's start-up): not scikit-learn (only a nested
search's inner folds need its splitters), matplotlib or Optuna; a grid sweep imports them when it needs
them, or never."""

from __future__ import annotations

import subprocess
import sys


def test_driver_import_leaves_sklearn_and_matplotlib_for_later() -> None:
    code = ("import sys, orchestrator.sweep.driver, orchestrator.cli\n"
            "print(sorted(m for m in ('sklearn', 'matplotlib', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
