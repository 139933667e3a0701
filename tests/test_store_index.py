"""The store's done units, read as far as a sweep needs them (issue 26, ``store.reuse.StoreIndex``).

A real SQLite MLflow store: an experiment mer-orch creates is asked one query per config group, never
read whole; an experiment from before the ``mer.reuse_group`` tag is scanned whole (and tagged once every
fold run in it carries the group); a trained run is preferred over a linked one.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from orchestrator.store import contract as C
from orchestrator.store.reuse import StoreIndex, reuse_group, scan_store, unit_key
from orchestrator.store.tracking import prepare_experiment

CFG_A = {"model": "gcn", "lr": 0.01, "num_classes": 3}
CFG_B = {"model": "ss_gn", "lr": 0.01, "num_classes": 3}


def _fold(client: MlflowClient, exp: str, cfg: dict, seed: int, subject: str, *, group: bool = True,
          linked_from: str | None = None) -> str:
    tags = {C.KIND: C.FOLD, C.STATUS: "complete", C.UNIT_KEY: unit_key(cfg, seed, subject, "d")}
    if group:
        tags[C.REUSE_GROUP] = reuse_group(cfg, "d")
    if linked_from:
        tags[C.REUSED_FROM] = linked_from
    run_id = client.create_run(exp, tags=tags).info.run_id
    client.set_terminated(run_id, "FINISHED")
    return run_id


def test_new_experiments_are_asked_by_group_old_ones_scanned(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    new = prepare_experiment(uri, "new", tmp_path / "artifacts")
    old = client.create_experiment("old")  # as before the tag: no mer.reuse_groups
    assert client.get_experiment(new).tags[C.REUSE_GROUPS] == "true"
    a0 = _fold(client, new, CFG_A, 0, "s1")
    b0 = _fold(client, new, CFG_B, 0, "s1")
    legacy = _fold(client, old, CFG_B, 1, "s2", group=False)

    store = StoreIndex(client).open()
    # the old experiment is read whole at open; nothing of the new one is read yet
    assert set(store.index) == {unit_key(CFG_B, 1, "s2", "d")}
    assert new in store.grouped and old not in store.grouped
    index = store.group(reuse_group(CFG_A, "d"))
    assert {k: r.info.run_id for k, r in index.items()} == {unit_key(CFG_A, 0, "s1", "d"): a0,
                                                             unit_key(CFG_B, 1, "s2", "d"): legacy}
    index = store.group(reuse_group(CFG_B, "d"))
    assert index[unit_key(CFG_B, 0, "s1", "d")].info.run_id == b0
    # the same lookups as the whole-store scan, for the groups asked
    assert {k: r.info.run_id for k, r in scan_store(client).items()} == {
        k: r.info.run_id for k, r in index.items()}
    # the old experiment holds a run without the group: it stays scanned
    assert C.REUSE_GROUPS not in client.get_experiment(old).tags


def test_an_old_experiment_whose_runs_all_carry_the_group_is_tagged_once(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    old = client.create_experiment("old")
    _fold(client, old, CFG_A, 0, "s1")
    StoreIndex(client).open(write=False)  # --dry-run reads only
    assert C.REUSE_GROUPS not in client.get_experiment(old).tags
    StoreIndex(client).open()
    assert client.get_experiment(old).tags[C.REUSE_GROUPS] == "true"
    store = StoreIndex(client).open()
    assert old in store.grouped and store.index == {}  # from now on asked by group, not scanned
    # MLflow's empty Default experiment is never scanned (a tag filter would read every tag of the store)
    assert client.get_experiment("0").tags.get(C.REUSE_GROUPS) == "true"
    assert list(store.group(reuse_group(CFG_A, "d"))) == [unit_key(CFG_A, 0, "s1", "d")]


def test_a_trained_run_is_preferred_over_a_link_to_it(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = prepare_experiment(uri, "e", tmp_path / "artifacts")
    link = _fold(client, exp, CFG_A, 0, "s1", linked_from="elsewhere")
    trained = _fold(client, exp, CFG_A, 0, "s1")
    index = StoreIndex(client).open().group(reuse_group(CFG_A, "d"))
    assert index[unit_key(CFG_A, 0, "s1", "d")].info.run_id == trained != link
