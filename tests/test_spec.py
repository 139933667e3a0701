"""Search-space files: every shipped file validates; every bad file exits 2 with one line naming the file,
the key and what is allowed, before Ray starts (checked with ``ray.is_initialized()``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import ray
import yaml
from click.testing import CliRunner

from mer_model.errors import InputError
from orchestrator.cli import main
from orchestrator.spec import load_spec
from orchestrator.spec.plan import grid_configs, sweep_id

ROOT = Path(__file__).resolve().parents[1]

GOOD = {
    "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": 3, "n_clips": 30}},
    "train": {"epochs": 1},
    "grid": [{"name": "base", "table": "V", "model": "gts_gn", "au_loss": "aau"}],
}


def _write(tmp_path: Path, doc: dict, name: str = "space.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def _with(**sections) -> dict:
    return {**GOOD, **sections}


@pytest.mark.parametrize("name", ["smoke", "ablation", "beta_fusion"])
def test_shipped_search_spaces_validate(name: str) -> None:
    spec = load_spec(ROOT / "search_spaces" / f"{name}.yaml")
    plans = grid_configs(spec)
    assert len({p.arm for p in plans}) == len(plans)
    assert all(p.table != "-" for p in plans)  # every arm says which paper table it belongs to
    assert len({p.config_hash for p in plans}) == len({tuple(sorted(p.config.items())) for p in plans})
    if name == "ablation":
        # the paper's whole ablation, beta fixed to 1, every arm tagged with its table
        assert {p.table for p in plans} == {"III", "IV(a)", "IV(b)", "V", "VI", "VII", "IX"}
        assert all(p.config["beta"] == 1.0 for p in plans)
        vii = [p for p in plans if p.table == "VII"]
        assert len(vii) == 11  # 4 fusion layers x (none, AU loss, AAU) minus AAU at layer 4
        assert not any(p.config["fusion_layer"] == 4 and p.config["au_loss"] == "aau" for p in vii)
        # the paper's published values for every arm, from the table the arm reproduces
        assert set(spec.reference) == {p.arm for p in plans}
        assert all(spec.reference[p.arm].table == p.table for p in plans)
        full = spec.reference["GTS-GN+LAM+AAU"]  # Table V, last row
        assert (full.casme2.acc, full.casme2.f1, full.samm.acc, full.samm.f1) == (77.29, 0.765, 79.43, 0.782)
    if name == "beta_fusion":
        assert spec.search is not None and spec.search.params["beta"].step == pytest.approx(0.1)


def test_sweep_id_depends_on_contents_not_formatting(tmp_path: Path) -> None:
    a = load_spec(_write(tmp_path, GOOD, "a.yaml"))
    text = "# a comment\n" + yaml.safe_dump(GOOD, sort_keys=True)
    (tmp_path / "b.yaml").write_text(text)
    b = load_spec(tmp_path / "b.yaml")
    tmp_b2 = tmp_path / "x"
    tmp_b2.mkdir()
    c = load_spec(_write(tmp_b2, _with(train={"epochs": 2}), "a.yaml"))
    # b has another file name -> another experiment name -> another sweep id; a vs a-with-comment/order:
    same = load_spec(_write(tmp_b2, GOOD, "a.yaml"))
    assert sweep_id(a) == sweep_id(same) != sweep_id(c)
    assert sweep_id(a) != sweep_id(b)


BAD = [
    ("unknown key", _with(train={"epochs": 1, "epoch_count": 3}), "train.epoch_count: unknown key",
     "allowed keys: epochs, batch_size"),
    ("wrong type", _with(train={"epochs": "many"}), "train.epochs:", "integer"),
    ("beta out of range", _with(grid=[{"name": "neg", "beta": -0.5}]), "grid[0] ('neg').beta:",
     "greater than or equal to 0"),
    ("search beta out of range",
     _with(search={"n_trials": 2, "params": {"beta": {"low": -1.0, "high": 1.0, "step": 0.1}}}),
     "search.params:", "allowed: a finite number >= 0"),
    ("fusion layer 5", _with(grid=[{"name": "f5", "fusion_layer": 5}]), "grid[0] ('f5').fusion_layer:",
     "less than or equal to 4"),
    ("search fusion layer 5",
     _with(search={"n_trials": 2, "params": {"fusion_layer": {"choices": [1, 5]}}}),
     "search.params:", "allowed: an integer 1..4"),
    ("aau with fusion 4", _with(grid=[{"name": "ok", "fusion_layer": 1},
                                      {"name": "bad", "fusion_layer": 4, "au_loss": "aau"}]),
     "grid[1] ('bad'): au_loss:", "fusion_layer 1..3"),
    ("aau with fusion 4 in a product",
     _with(grid=[{"product": {"fusion_layer": [3, 4]}, "name": "L{fusion_layer}",
                  "base": {"au_loss": "aau"}}]),
     "grid[0].product (fusion_layer=4): au_loss:", "fusion_layer 1..3"),
    ("aau with fusion 4 reachable by the search",
     _with(search={"n_trials": 2, "base": {"au_loss": "aau"},
                   "params": {"fusion_layer": {"choices": [1, 4]}}}),
     "search.params (fusion_layer=4): au_loss:", "fusion_layer 1..3"),
    ("missing dataset path", _with(dataset={"name": "casme2", "root": "/no/such/CASME2"}),
     "dataset.root:", "does not exist"),
    ("real dataset without a path", _with(dataset={"name": "casme2"}), "dataset.root: required for casme2",
     "allowed: the dataset folder"),
    ("unknown dataset", _with(dataset={"name": "casme9"}), "dataset.name: 'casme9' is unknown",
     "synthme-tiny"),
    ("precision fp16", _with(train={"precision": "fp16"}), "train.precision:", "'fp32' or 'bf16'"),
    ("packing 0", _with(resources={"packing": 0}), "resources.packing:", "greater than or equal to 1"),
    ("bf16 with packing", _with(train={"precision": "bf16"}, resources={"packing": 2}), "grid[0] ('base'): "
     "precision: 'bf16' with resources.packing 2", "allowed: 'fp32' when folds are packed"),
    ("duplicate arm", _with(grid=[{"name": "x"}, {"name": "x", "lam": False}]), "grid[1] ('x'): arm name",
     "unique names"),
    ("nothing to run", _with(grid=[]), "(top level): nothing to run", "allowed:"),
    ("dataset key as a knob", _with(dataset={"name": "synthme-tiny", "knobs": {"magnification": 2}}),
     "dataset.knobs:", "set it as dataset.magnification"),
    ("arm name with both quotes", _with(grid=[{"name": "Wei's \"full\" model"}]),
     "grid[0] ('Wei\\'s \"full\" model'): arm name", "at most one of"),
    ("reference to no arm", _with(reference={"bsae": {"table": "V", "casme2": {"acc": 77.29, "f1": 0.765}}}),
     "reference.bsae: no grid arm", "allowed: one of base"),
    ("reference ACC as a fraction of 100", _with(reference={"base": {"table": "V", "samm": {"acc": 101,
                                                                                          "f1": 0.7}}}),
     "reference.base.samm.acc:", "less than or equal to 100"),
    ("reference with a misspelt dataset",
     _with(reference={"base": {"table": "V", "casme": {"acc": 1, "f1": 0.1}}}),
     "reference.base.casme: unknown key", "allowed keys: table, casme2, samm"),
    ("reference without its table", _with(reference={"base": {"casme2": {"acc": 77.29, "f1": 0.765}}}),
     "reference.base.table: required key missing", ""),
]


@pytest.mark.parametrize("case,doc,where,allowed", BAD, ids=[b[0] for b in BAD])
def test_bad_file_exits_2_with_one_line_before_ray(tmp_path: Path, case: str, doc: dict, where: str,
                                                    allowed: str) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(InputError) as err:
        load_spec(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {where}"), msg
    assert allowed in msg, msg

    result = CliRunner().invoke(main, ["sweep", str(path), "--num-cpus", "1"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == msg
    assert not ray.is_initialized()
    assert not (tmp_path / "mer-runs").exists()


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["sweep", str(tmp_path / "missing.yaml")])
    assert r.exit_code == 2 and "missing.yaml: cannot read the file" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed\n")
    r = CliRunner().invoke(main, ["sweep", str(bad)])
    assert r.exit_code == 2 and r.stderr.startswith(f"{bad}: line ")


def test_dry_run_counts_units(tmp_path: Path) -> None:
    doc = _with(grid=[{"product": {"fusion_layer": [1, 2, 3]}, "name": "GTS-GN (layer {fusion_layer})",
                       "table": "IV(b)"}],
                search={"n_trials": 4, "params": {"beta": {"low": 0.1, "high": 1.0, "step": 0.1}}})
    r = CliRunner().invoke(main, ["sweep", str(_write(tmp_path, doc)), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "GTS-GN (layer 3)" in r.stdout
    assert "7 configs x 3 LOSO folds = 21 units" in " ".join(r.stdout.split())
    assert not ray.is_initialized()


def test_resume_of_a_sweep_never_started_is_bad_input(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = _write(tmp_path, GOOD)
    r = CliRunner().invoke(main, ["sweep", str(path), "--resume"])
    assert r.exit_code == 2
    assert r.stderr.startswith(f"{path}: --resume: sweep ") and "was never started" in r.stderr
    assert not ray.is_initialized()
    assert not (tmp_path / "mer-runs").exists()  # looking did not create a store


def test_ablation_dry_run_counts_distinct_configs_and_reuse(tmp_path: Path, monkeypatch) -> None:
    """ablation.yaml: 33 arms but 21 distinct configs (tables share rows), so with an empty store 12 arms'
    units are reused from the arm that trains them first; --no-reuse trains all 2574."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = Path(__file__).resolve().parents[1] / "search_spaces" / "ablation.yaml"
    r = CliRunner().invoke(main, ["sweep", str(path), "--dry-run"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.stdout.split())
    assert "33 arms, 21 distinct configs: 1638 units to train, 936 reused" in out  # 21 x 78 trained
    assert "no time estimate" in out
    r = CliRunner().invoke(main, ["sweep", str(path), "--dry-run", "--no-reuse"])
    assert "2574 units to train, 0 reused (--no-reuse)" in " ".join(r.stdout.split())
    assert not (tmp_path / "mer-runs" / "mlflow.db").exists()  # looking did not create a store


def test_set_overrides_change_the_resolved_spec_and_the_sweep_id(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    base = load_spec(path)
    sets = ("train.epochs=5", "grid[0].beta=0.2", "dataset.name=synthme-samm", "dataset.knobs.n_subjects=4")
    spec = load_spec(path, sets)
    assert spec.train.epochs == 5 and isinstance(spec.train.epochs, int)  # YAML-typed
    assert spec.dataset.name == "synthme-samm" and spec.dataset.knobs == {"n_subjects": 4, "n_clips": 30}
    assert grid_configs(spec)[0].config["beta"] == 0.2 and grid_configs(base)[0].config["beta"] == 1.0
    assert sweep_id(spec) != sweep_id(base)
    stored = yaml.safe_load(spec.text)  # spec.yaml: the resolved document
    assert stored["train"]["epochs"] == 5 and stored["grid"][0]["beta"] == 0.2
    assert sweep_id(load_spec(path, sets)) == sweep_id(spec)  # the same overrides, the same sweep
    r = CliRunner().invoke(main, ["sweep", str(path), "--dry-run", "--set", "train.epochs=5"])
    plain = CliRunner().invoke(main, ["sweep", str(path), "--dry-run"])
    ids = [re.search(r"sweep (\w{12}) ", x.stdout).group(1) for x in (r, plain)]
    assert r.exit_code == 0 and ids[0] != ids[1]  # the dry run shows the resolved spec's id
    assert "epochs: 5" in r.stdout  # the resolved spec is shown


@pytest.mark.parametrize("override,where", [
    ("train.epochs=0", "train.epochs: "),
    ("train.epoch=3", "train.epoch: unknown key"),
    ("grid[9].beta=1", "--set: grid[9].beta: index [9] is out of range"),
    ("train.epochs", "--set 'train.epochs': no '='"),
    ("train..epochs=3", "--set: key 'train..epochs' is not a dotted key"),
    ("dataset.name=nope", "dataset.name: 'nope' is unknown"),
])
def test_bad_set_exits_2_with_one_line_naming_the_key(tmp_path: Path, override: str, where: str) -> None:
    path = _write(tmp_path, GOOD)
    r = CliRunner().invoke(main, ["sweep", str(path), "--dry-run", "--set", override])
    assert r.exit_code == 2, r.output
    msg = r.stderr.strip()
    assert "\n" not in msg and msg.startswith(f"{path}: {where}"), msg
    assert not ray.is_initialized()
