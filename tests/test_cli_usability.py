"""Small command-line behaviours of issue 14: ``data show`` without a dataset lists them; errors name
options as the user types them."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mer_model.data.dataset import dataset_names
from orchestrator.cli import main


def test_data_show_without_a_dataset_lists_them() -> None:
    r = CliRunner().invoke(main, ["data", "show"])
    assert r.exit_code == 0, r.output
    listed = [ln.split()[0] for ln in r.stdout.splitlines() if ln and not ln.startswith("mer-orch")]
    assert listed == list(dataset_names()) and "casme2" in listed
    r = CliRunner().invoke(main, ["data", "show", "--json"])
    assert [d["name"] for d in json.loads(r.stdout)] == list(dataset_names())


def test_missing_spreadsheet_names_the_option_as_typed(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["extract", "casme2", "--root", str(tmp_path)])
    assert r.exit_code == 2
    msg = r.stderr.strip()
    assert "\n" not in msg and msg.startswith(f"{tmp_path}: no coding spreadsheet")
    assert msg.endswith("--spreadsheet PATH")
    assert "spreadsheet=" not in msg
