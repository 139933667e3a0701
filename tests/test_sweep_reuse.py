"""Reuse (issue 14): two real sweeps (Ray, SQLite MLflow, train_fold on SynthME) in one tracking store.

The first has an arm twice (as ablation.yaml shares baseline rows between tables): the duplicate's units
wait for the first arm's and are linked, not trained. The second sweep (another experiment, same store)
shares one arm with the first and adds one: it trains only the new arm. ``--no-reuse`` trains again.
Counts come from the fold runs in the store (trained = no ``mer.reused_from`` tag)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from orchestrator.store import contract as C

pytestmark = pytest.mark.slow

GCN = {"model": "gcn", "features": "A", "lam": False, "au_loss": "none"}
SSGN = {"model": "ss_gn", "features": "A", "lam": False, "au_loss": "none"}
GTS = {"model": "gts_gn", "features": "B", "lam": False, "au_loss": "none"}


def _spec(experiment: str, grid: list[dict]) -> dict:
    return {"dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": 3, "n_clips": 30}},
            "protocol": {"seed": 0, "retries": 0}, "train": {"epochs": 1, "batch_size": 16},
            "grid": grid, "resources": {"cpu_per_fold": 1}, "tracking": {"experiment": experiment}}


def _sweep(d: Path, name: str, spec: dict, *extra: str) -> str:
    (d / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    r = CliRunner().invoke(main, ["sweep", f"{name}.yaml", "--num-cpus", "2", *extra])
    assert r.exit_code == 0, r.output
    return r.output


def _folds(client: MlflowClient, experiment: str, **tags: str) -> tuple[list, list]:
    """(trained, linked) fold runs of ``experiment`` (with these ``mer.*`` tags)."""
    exp = client.get_experiment_by_name(experiment)
    runs = C.search_runs(client, exp.experiment_id, C.run_filter(C.FOLD, **tags))
    assert all(r.data.tags[C.STATUS] == "complete" for r in runs)
    return ([r for r in runs if C.REUSED_FROM not in r.data.tags],
            [r for r in runs if C.REUSED_FROM in r.data.tags])


def test_second_sweep_trains_only_what_is_new(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for k in ("MLFLOW_TRACKING_URI", "MER_OPTUNA_STORAGE", "RAY_ADDRESS"):
        monkeypatch.delenv(k, raising=False)
    first = [{"name": "GCN", "table": "III", **GCN}, {"name": "GCN (IV)", "table": "IV(a)", **GCN},
             {"name": "SS-GN", "table": "III", **SSGN}]
    out = _sweep(tmp_path, "first", _spec("first", first))
    assert "6 folds trained by this run, 3 reused" in out, out
    client = MlflowClient(f"sqlite:///{tmp_path / 'mer-runs' / 'mlflow.db'}")
    trained, linked = _folds(client, "first")
    assert len(trained) == 6 and len(linked) == 3
    assert {r.data.tags[C.ARM] for r in linked} == {"GCN (IV)"}  # the duplicate arm, not the first one
    by_id = {r.info.run_id: r for r in trained}
    for r in linked:  # linked to the run that trained the same unit, with its result
        src = by_id[r.data.tags[C.REUSED_FROM]]
        assert src.data.tags[C.UNIT_KEY] == r.data.tags[C.UNIT_KEY]
        assert (src.data.tags[C.ARM], src.data.tags[C.SUBJECT]) == ("GCN", r.data.tags[C.SUBJECT])
        assert src.data.metrics["uf1"] == r.data.metrics["uf1"]

    # the second sweep shares SS-GN with the first (another arm name, another table) and adds GTS-GN
    second = [{"name": "SS-GN+Type A", "table": "IV(a)", **SSGN}, {"name": "GTS-GN", "table": "V", **GTS}]
    (tmp_path / "second.yaml").write_text(yaml.safe_dump(_spec("second", second)))
    dry = " ".join(CliRunner().invoke(main, ["sweep", "second.yaml", "--dry-run"]).stdout.split())
    assert "2 arms, 2 distinct configs: 3 units to train, 3 reused; about " in dry, dry
    assert "the mean of 6 fold runs of the newest sweep of synthme-tiny" in dry, dry  # trained, not links
    # per_unit training seeds are other units: the dry run keys them as the driver does, nothing to reuse
    per_unit = CliRunner().invoke(main, ["sweep", "second.yaml", "--dry-run", "--set",
                                         "protocol.seed_scheme=per_unit"])
    assert "2 arms, 2 distinct configs: 6 units to train, 0 reused" in " ".join(per_unit.stdout.split()), \
        per_unit.output
    out = _sweep(tmp_path, "second", _spec("second", second))
    assert "3 folds trained by this run, 3 reused" in out, out
    trained2, linked2 = _folds(client, "second")
    assert {r.data.tags[C.ARM] for r in trained2} == {"GTS-GN"} and len(trained2) == 3
    assert {r.data.tags[C.ARM] for r in linked2} == {"SS-GN+Type A"} and len(linked2) == 3
    ss_gn = {r.info.run_id for r in trained if r.data.tags[C.ARM] == "SS-GN"}
    assert {r.data.tags[C.REUSED_FROM] for r in linked2} == ss_gn
    # the linked config's pooled metrics are the first sweep's (same predictions)
    pooled = {}
    for name, arm in (("first", "SS-GN"), ("second", "SS-GN+Type A")):
        exp = client.get_experiment_by_name(name)
        [run] = C.search_runs(client, exp.experiment_id, C.run_filter(C.CONFIG, arm=arm))
        assert run.data.tags[C.STATUS] == "complete"
        pooled[name] = run.data.metrics["uf1"]
    assert pooled["first"] == pooled["second"]

    # --no-reuse trains the shared arm again: a second sweep of experiment "second"
    ss_gn_again = _spec("second", [{"name": "SS-GN", "table": "III", **SSGN}])
    out = _sweep(tmp_path, "third", ss_gn_again, "--no-reuse")
    assert "3 folds trained by this run, 0 reused" in out, out
    third = re.search(r"sweep (\w{12}): ", out).group(1)
    trained3, linked3 = _folds(client, "second", sweep_id=third)
    assert len(trained3) == 3 and not linked3
    assert not (tmp_path / "mer-runs" / "optuna.db").exists()  # grid-only sweeps create no Optuna storage
    _listing_and_report(tmp_path, third)
    # one home: from another directory, --home (or $MER_HOME) finds the same store
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert "no tracking store" in CliRunner().invoke(main, ["ls"]).stderr  # ./mer-runs is not here
    home = str(tmp_path / "mer-runs")
    assert third in CliRunner().invoke(main, ["--home", home, "ls"]).stdout
    monkeypatch.setenv("MER_HOME", home)
    r = CliRunner().invoke(main, ["report", "--experiment", "second"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "mer-runs" / "reports" / "second" / "report.md").exists()
    assert not (elsewhere / "mer-runs").exists()


def _counts_recorded_once(d: Path, rows: dict[str, list[str]]) -> None:
    """A finished sweep's counts are tags on its sweep run (``ls`` reads them, not its fold runs); a sweep
    without them (running, or from before the tags) is counted from its fold runs, to the same row."""
    client = MlflowClient(f"sqlite:///{d / 'mer-runs' / 'mlflow.db'}")
    [sw] = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              C.run_filter(C.SWEEP, sweep_id=rows["first.yaml"][1]))
    got = [sw.data.tags[t] for t in (C.UNITS_DONE, C.UNITS_FAILED, C.UNITS_REUSED)]
    assert got == ["9", "0", "3"], sw.data.tags
    assert rows["first.yaml"][9] == f"uf1 {float(sw.data.tags[C.BEST]):.3f}", (rows, sw.data.tags)
    for t in (C.UNITS_DONE, C.UNITS_FAILED, C.BEST):
        client.delete_tag(sw.info.run_id, t)
    client.set_tag(sw.info.run_id, C.UNITS_REUSED, "7")  # without mer.units_done the tags are not read
    live = [ln for ln in CliRunner().invoke(main, ["ls"]).stdout.splitlines() if "first.yaml" in ln]
    assert [x.strip() for x in live[0].split("│")][5:10] == rows["first.yaml"][5:10], (live, rows)


def _listing_and_report(d: Path, third: str) -> None:
    """``ls``, ``status`` and ``report --sweep-id`` on the store of three sweeps (two in "second")."""
    ls = CliRunner().invoke(main, ["ls"])
    assert ls.exit_code == 0, ls.output
    rows = {c[3]: c for c in ([x.strip() for x in ln.split("│")] for ln in ls.stdout.splitlines())
            if len(c) == 11 and re.fullmatch(r"[0-9a-f]{12}", c[1])}  # file -> cells
    assert sorted(rows) == ["first.yaml", "second.yaml", "third.yaml"], ls.stdout
    # id, experiment, file, started, status, done/total, failed, reused, best
    assert rows["first.yaml"][5:9] == ["complete", "9/9", "0", "3"]  # 6 trained + 3 linked of 9 planned
    assert rows["second.yaml"][5:9] == ["complete", "6/6", "0", "3"]
    assert rows["third.yaml"][5:9] == ["complete", "3/3", "0", "0"] and rows["third.yaml"][1] == third
    assert all(c[9].startswith("uf1 0.") for c in rows.values())
    _counts_recorded_once(d, rows)
    only = CliRunner().invoke(main, ["ls", "--experiment", "second"]).stdout
    assert "first.yaml" not in only and "second.yaml" in only and "third.yaml" in only
    st = CliRunner().invoke(main, ["status", third])
    assert st.exit_code == 0 and "SS-GN" in st.stdout and "3/3" in st.stdout, st.output
    bad = CliRunner().invoke(main, ["status", "000000000000"])
    assert bad.exit_code == 2 and "no such sweep" in bad.stderr and third in bad.stderr
    second_id = rows["second.yaml"][1]
    for args, sid, says in ((["--experiment", "second"], third, "the latest of 2 sweeps"),
                            (["--sweep-id", second_id], second_id, "chosen with --sweep-id")):
        r = CliRunner().invoke(main, ["report", *args, "--out", str(d / sid)])
        assert r.exit_code == 0, r.output
        md = (d / sid / "report.md").read_text()
        assert f"{sid} ({says}" in md, md[:1500]
        assert ("SS-GN+Type A" in md) == (sid == second_id)  # each report shows its own sweep's arms
