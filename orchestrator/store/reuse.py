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

Pure MLflow client calls, no Ray; the driver (``sweep/driver.py``, ``sweep/reuse_links.py``) decides when
to look up and link.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
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


def _is_done(run: Any) -> bool:
    return run.info.status == "FINISHED" and run.data.tags.get(C.STATUS) == "complete"


def scan_store(client: Any) -> dict[str, Any]:
    """unit key -> a done fold run holding that result, over every active experiment of the store.

    A run that trained the unit is preferred over a run that links to one (either has the same
    contents; the trained one is the origin ``mer.reused_from`` should name)."""
    index: dict[str, Any] = {}
    flt = f"tags.`{C.KIND}` = '{C.FOLD}' and tags.`{C.STATUS}` = 'complete'"
    for exp in client.search_experiments():
        for run in search_runs(client, exp.experiment_id, flt):
            key = run.data.tags.get(C.UNIT_KEY)
            if not key or not _is_done(run):
                continue
            if key not in index or (C.REUSED_FROM in index[key].data.tags
                                    and C.REUSED_FROM not in run.data.tags):
                index[key] = run
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


def seconds_per_unit(index: Mapping[str, Any], dataset: str) -> tuple[float, int] | None:
    """(mean ``train_seconds``, how many runs) of the store's trained fold runs of ``dataset``, or None
    when it has none (fold runs before issue 14 do not log ``train_seconds``)."""
    vals = [r.data.metrics["train_seconds"] for r in index.values()
            if C.REUSED_FROM not in r.data.tags and r.data.tags.get(C.DATASET) == dataset
            and "train_seconds" in r.data.metrics]
    return (sum(vals) / len(vals), len(vals)) if vals else None
