"""Reuse of finished units: never train the same (config, seed, subject, data) twice in one tracking store.

A unit's *unit key* hashes what decides its result (``train_fold``: same config, seed and data -> same
fold result): the flat config (dataset-derived sizes included), the training seed, the left-out subject
and the dataset's :meth:`~mer_model.data.LandmarkDataset.content_hash`. Every fold run carries it (tag
``mer.unit_key``). Before a unit is queued the driver looks it up among the done fold runs of the whole
store (every experiment, this sweep or an earlier one); a hit is not trained but *linked*: a fold run of
this sweep with the same metrics and artifacts and the tag ``mer.reused_from`` = the run that trained it.
The linked run is an ordinary done fold run, so resume, the config's pooled metrics and the report read it
unchanged. What is left out of the key on purpose: the device and thread count (same-device determinism
is what train_fold promises; a reused fold says where it trained in its copied ``mer.node`` /
``mer.device`` tags).

Looking up without reading the whole store: every fold run also carries ``mer.reuse_group``, the key
without seed and subject, and an experiment mer-orch created says so (``mer.reuse_groups``), so
:class:`StoreIndex` asks one query per config of the sweep there; only experiments from before the tag
are scanned whole (BENCHMARKS.md, "Store size": the cost of a sweep's start against the store's size).

Pure MLflow client calls, no Ray; the driver (``sweep/driver.py``, ``sweep/reuse_links.py``) decides when
to look up and link.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mer_model.config import paper_free
from orchestrator.store import contract as C
from orchestrator.store.contract import search_runs

# Tags a linked run copies from the run that trained it: where and how it trained.
_COPIED_TAGS = (C.NODE, C.GPU_IDS, C.DEVICE, C.THREADS, C.ATTEMPT)


def unit_key(config: Mapping[str, Any], seed: int, subject: str, data_hash: str) -> str:
    """16 hex chars identifying a unit's result: flat config, training seed, left-out subject, data."""
    blob = json.dumps({"config": paper_free(config), "seed": int(seed), "subject": str(subject),
                       "data": data_hash}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# MLflow's tags table is keyed (key, run_uuid): finding runs by a tag's value reads every tag of that key.
# The same statement in SQLite and PostgreSQL; cluster/gpu.yaml runs it on the head's database.
TAG_INDEX_SQL = "CREATE INDEX IF NOT EXISTS mer_tags_key_value ON tags (key, value)"


def index_tag_values(db: Path) -> None:
    """An index on MLflow's ``tags (key, value)`` in a local SQLite store, so that finding runs by a tag's
    value (``mer.reuse_group``: reuse's one query per config; a sweep's runs by ``mer.sweep_id``) is a
    lookup, not a pass over every tag of that key (BENCHMARKS.md, "Store size"). Ours, beside MLflow's
    schema: ``IF NOT EXISTS``, made again at every sweep start should an MLflow migration rebuild the
    table. A tracking server's database is its owner's to index: the cluster recipe does it on its head."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db, timeout=60)) as con:  # another driver may be writing
        con.execute(TAG_INDEX_SQL)
        con.commit()


def reuse_group(config: Mapping[str, Any], data_hash: str) -> str:
    """16 hex chars of what a config's units share (flat config, data): tagged ``mer.reuse_group`` on every
    fold run, so one query finds every stored unit of a config, whatever its seed or subject."""
    blob = json.dumps({"config": paper_free(config), "data": data_hash}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _is_done(run: Any) -> bool:
    return run.info.status == "FINISHED" and run.data.tags.get(C.STATUS) == "complete"


_DONE = f"tags.`{C.KIND}` = '{C.FOLD}' and tags.`{C.STATUS}` = 'complete'"


def add_runs(index: dict[str, Any], runs: list[Any]) -> dict[str, Any]:
    """Add done fold runs to ``index`` (unit key -> run). A run that trained the unit is preferred over a
    run that links to one (either has the same contents; the trained one is the origin
    ``mer.reused_from`` should name)."""
    for run in runs:
        key = run.data.tags.get(C.UNIT_KEY)
        if not key or not _is_done(run):
            continue
        if key not in index or (C.REUSED_FROM in index[key].data.tags and C.REUSED_FROM not in run.data.tags):
            index[key] = run
    return index


class StoreIndex:
    """The store's done units, read only as far as a sweep needs them.

    Experiments tagged ``mer.reuse_groups`` (every one mer-orch created since the tag exists) are asked one
    query per config (:meth:`group`: the fold runs of its ``mer.reuse_group``), so a sweep's start costs
    its configs, not the store's size. Older experiments are scanned whole once (:meth:`open`), as every
    experiment was before the tag; one whose fold runs all carry the tag is tagged then, and asked by
    group from the next sweep on."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.index: dict[str, Any] = {}
        self.grouped: list[str] = []  # experiment ids asked by group
        self.asked: set[str] = set()  # groups already looked up

    def open(self, write: bool = True) -> StoreIndex:
        """Scan the experiments without the tag; ``write``: tag those found complete (False: read only,
        as ``--dry-run``)."""
        for exp in self.client.search_experiments():
            if exp.tags.get(C.REUSE_GROUPS) == "true":
                self.grouped.append(exp.experiment_id)
                continue
            if not self.client.search_runs([exp.experiment_id], "", max_results=1):
                # empty (MLflow's Default): nothing to scan; a tag filter would pass over the store's tags
                if write:
                    self._tag(exp.experiment_id)
                continue
            runs = search_runs(self.client, exp.experiment_id, _DONE)
            add_runs(self.index, runs)
            if write and runs and all(C.REUSE_GROUP in r.data.tags for r in runs):
                self._tag(exp.experiment_id)
        return self

    def _tag(self, exp_id: str) -> None:
        """Mark an experiment as asked by group. Only a shortcut for the next start: when another driver
        tags it at the same moment (a unique-key conflict in the store), this one's tag is not needed."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.set_experiment_tag(exp_id, C.REUSE_GROUPS, "true")
        except MlflowException:
            pass

    def group(self, group: str) -> dict[str, Any]:
        """The index, with the done fold runs of ``group`` in every grouped experiment added (once)."""
        if group not in self.asked and self.grouped:
            self.asked.add(group)
            flt = f"tags.`{C.REUSE_GROUP}` = '{group}'"  # one indexed lookup; add_runs keeps the done ones
            add_runs(self.index, search_runs(self.client, self.grouped, flt))
        return self.index


def scan_store(client: Any) -> dict[str, Any]:
    """unit key -> a done fold run holding that result, over every active experiment of the store, read
    whole (what ``StoreIndex`` avoids; kept for tools and tests that want every unit)."""
    index: dict[str, Any] = {}
    for exp in client.search_experiments():
        add_runs(index, search_runs(client, exp.experiment_id, _DONE))
    return index


def origin(run: Any) -> str:
    """The id of the run that trained ``run``'s unit (itself when it was trained, not linked)."""
    return run.data.tags.get(C.REUSED_FROM) or run.info.run_id


def link_fold(client: Any, exp_id: str, parent_run_id: str, source: Any, tags: Mapping[str, str]) -> str:
    """A fold run of this sweep for a unit ``source`` already holds; returns its id.

    Written in the order of ``tracking.log_fold_run`` (create -> metrics -> artifacts -> ``mer.status``
    -> FINISHED), so a link cut off half-way is not done and the next scan deletes it like any partial
    fold run. Metrics keep their histories (``train_loss`` per epoch)."""
    from mlflow.entities import Metric

    src = source.info.run_id
    copied = {k: source.data.tags[k] for k in _COPIED_TAGS if k in source.data.tags}
    name = f"{tags[C.ARM]}/{tags[C.SUBJECT]}"
    run_tags = {**tags, **copied, C.PARENT: parent_run_id, C.KIND: C.FOLD, C.REUSED_FROM: origin(source)}
    run_id = client.create_run(exp_id, tags=run_tags, run_name=name).info.run_id
    ms = [Metric(h.key, h.value, h.timestamp, h.step)
          for k in source.data.metrics for h in client.get_metric_history(src, k)]
    for i in range(0, len(ms), 900):  # log_batch takes at most 1000 metrics
        client.log_batch(run_id, metrics=ms[i:i + 900])
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(src, "", tmp)
        client.log_artifacts(run_id, path)
    client.set_tag(run_id, C.STATUS, "complete")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def plan_units(configs: list[tuple[Mapping[str, Any], list[Any]]], data_hash: str, index: Mapping[str, Any]
               ) -> tuple[int, int]:
    """(units to train, units reused) of a sweep's (flat config with sizes set, its units) before anything
    runs: a unit is reused when the store holds its key or an earlier config of the sweep trains it
    (``--dry-run``). Keyed by each unit's training seed, as the driver keys it (``protocol.seed_scheme``:
    per_unit units never match shared-scheme results)."""
    seen: set[str] = set()
    n_train = n_reused = 0
    for cfg, units in configs:
        for u in units:
            key = unit_key(cfg, u.train_seed, u.subject, data_hash)
            if key in index or key in seen:
                n_reused += 1
            else:
                n_train += 1
                seen.add(key)
    return n_train, n_reused


def seconds_per_unit(client: Any, dataset: str, most: int = 200) -> tuple[float, int] | None:
    """(mean ``train_seconds``, how many runs) of the trained fold runs of the newest sweep of ``dataset``
    that has some, or None when the store has none (fold runs before issue 14 do not log
    ``train_seconds``). Reads a few sweep runs and one sweep's fold runs, whatever the store's size."""
    exps = [e.experiment_id for e in client.search_experiments()]
    if not exps:
        return None
    newest = ["attributes.start_time DESC"]
    sweeps = client.search_runs(exps, f"tags.`{C.KIND}` = '{C.SWEEP}' and tags.`{C.DATASET}` = '{dataset}'",
                                max_results=10, order_by=newest)
    for sweep in sweeps:
        sid = sweep.data.tags.get(C.SWEEP_ID, "")
        runs = client.search_runs([sweep.info.experiment_id], f"tags.`{C.SWEEP_ID}` = '{sid}'",
                                  max_results=most)
        vals = [r.data.metrics["train_seconds"] for r in runs if r.data.tags.get(C.KIND) == C.FOLD
                and _is_done(r) and C.REUSED_FROM not in r.data.tags and "train_seconds" in r.data.metrics]
        if vals:
            return sum(vals) / len(vals), len(vals)
    return None
