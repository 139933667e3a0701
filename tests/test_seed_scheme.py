"""``protocol.seed_scheme`` (issue 24): per-unit training seeds differ across subjects and are reproducible;
the shared scheme (the default) keeps every stored sweep's ids and unit keys."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import yaml

from orchestrator.spec import load_spec
from orchestrator.spec.plan import config_hash, grid_configs, sweep_id, torch_seed, units_for
from orchestrator.store.reuse import unit_key

DOC = {
    "dataset": {"name": "synthme-tiny", "knobs": {"n_subjects": 3, "n_clips": 30}},
    "protocol": {"seeds": [0, 1, 2]},
    "train": {"epochs": 1},
    "grid": [{"name": "base", "table": "V", "model": "gts_gn", "au_loss": "aau"}],
}
SUBJECTS = [f"sub{i:02d}" for i in range(1, 27)]


def _spec(tmp_path: Path, **protocol):
    doc = {**DOC, "protocol": {**DOC["protocol"], **protocol}}
    d = tmp_path / str(len(list(tmp_path.iterdir())))  # same file name: same experiment, same id inputs
    d.mkdir()
    p = d / "space.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_spec(p)


def test_per_unit_seeds_differ_across_subjects_and_seeds_and_are_reproducible(tmp_path):
    spec = _spec(tmp_path, seed_scheme="per_unit")
    plan = grid_configs(spec)[0]
    units = units_for(plan, SUBJECTS, spec.protocol.seed_list, spec.protocol.seed_scheme)
    seeds = [u.train_seed for u in units]
    assert len(set(seeds)) == len(units) == 3 * 26  # every (seed, subject) its own start
    assert all(0 <= s < 2**32 for s in seeds)
    again = units_for(plan, SUBJECTS, spec.protocol.seed_list, "per_unit")
    assert [u.train_seed for u in again] == seeds  # the same on every call (no Python hash())
    entropy = [1, int.from_bytes(hashlib.sha256(b"sub03").digest()[:8], "big")]
    want = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])
    assert torch_seed(1, "sub03", "per_unit") == want and torch_seed(1, "sub03") == 1
    assert [u.seed for u in units] == [k for k in (0, 1, 2) for _ in SUBJECTS]  # the protocol seed stays


def test_shared_scheme_keeps_the_protocol_seed_ids_and_unit_keys(tmp_path):
    default, shared, per = _spec(tmp_path), _spec(tmp_path, seed_scheme="shared"), \
        _spec(tmp_path, seed_scheme="per_unit")
    plan = grid_configs(default)[0]
    units = units_for(plan, SUBJECTS, default.protocol.seed_list)
    assert all(u.train_seed == u.seed and u.torch_seed is None for u in units)
    # the default dumps without the key: the sweep id and config hash of a stored sweep do not move
    assert "seed_scheme" not in default.protocol.model_dump()
    assert sweep_id(default) == sweep_id(shared) != sweep_id(per)
    assert config_hash(plan.config, default) == config_hash(plan.config, shared) \
        != config_hash(plan.config, per)
    # a per-unit unit's key is not the shared unit's (it must train, not link to a shared-scheme run)
    pu = units_for(plan, SUBJECTS, per.protocol.seed_list, "per_unit")[0]
    assert unit_key(plan.config, units[0].train_seed, units[0].subject, "h") == \
        unit_key(plan.config, units[0].seed, units[0].subject, "h")
    assert unit_key(plan.config, pu.train_seed, pu.subject, "h") != \
        unit_key(plan.config, units[0].train_seed, units[0].subject, "h")


def test_report_section_is_display_only(tmp_path):
    base = _spec(tmp_path)
    doc = {**DOC, "report": {"primary": "accuracy"}}
    (tmp_path / "r").mkdir()
    p = tmp_path / "r" / "space.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_spec(p)
    assert spec.report.primary == "accuracy" and sweep_id(spec) == sweep_id(base)
