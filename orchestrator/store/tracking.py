"""The MLflow layout of a sweep (docs/architecture.md, "MLflow layout"): sweep run > config runs > fold runs.

Driver side: :func:`prepare_experiment` creates the tracking DB and the experiment before any worker writes
(fresh SQLite stores race on their schema migration when several processes open them first: stack-notes);
:func:`open_sweep_run` / :func:`open_config_run` find-or-create runs by their ``mer.*`` tags so that a
resumed sweep reuses them; :func:`scan_folds` returns the fold runs that count as done and deletes every
other fold run of the sweep (partial, orphaned, failed -> rerun), so MLflow never holds duplicates;
:func:`finish_config_run` / :func:`finish_sweep_run` write the pooled metrics and tables.

Worker side: :func:`log_fold_run` writes one fold run in one short burst after training (create -> one
``log_batch`` -> artifacts -> ``mer.status`` -> terminate), so a fold killed mid-way leaves either nothing
or a run that is not FINISHED+complete, which the next scan deletes.
"""

from __future__ import annotations

import csv
import math
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator.store import contract as C
from orchestrator.store.contract import METRICS, FoldRecord, run_filter, search_runs, sqlite_path
from orchestrator.store.names import safe_name
from orchestrator.store.reuse import index_tag_values

__all__ = ["METRICS", "FoldRecord"]  # re-exported: the contract's, not a second definition


# ------------------------------------------------------------------------------------------------ driver


def prepare_experiment(tracking_uri: str, experiment: str, artifact_root: Path | None) -> str:
    """Create (or open) the tracking store and the experiment, in the driver; return the experiment id.

    ``artifact_root``: where a new experiment stores artifacts (local stores only; a tracking server
    decides itself when None).
    """
    db = sqlite_path(tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri)
    if db is not None:
        client.search_experiments(max_results=1)  # the schema exists before the index goes on it
        index_tag_values(db)  # store/reuse.py: the reuse lookup's index
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None
    if artifact_root is not None:
        artifact_root.mkdir(parents=True, exist_ok=True)
        # safe_name: an experiment named ".." (or "a/../../x") must not put artifacts outside the root
        location = (artifact_root / safe_name(experiment)).resolve().as_uri()
    # a new experiment only ever holds fold runs that carry mer.reuse_group: reuse looks them up by it
    try:
        return client.create_experiment(experiment, artifact_location=location, tags={C.REUSE_GROUPS: "true"})
    except MlflowException:
        # two drivers started at the same moment both found no experiment: the second's insert fails on the
        # unique name; the experiment exists now, and the driver lease decides which of them runs
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return exp.experiment_id


def _find_or_create(client: MlflowClient, exp_id: str, flt: str, name: str, tags: dict[str, str]) -> str:
    """The oldest run matching ``flt`` (newer duplicates deleted), reopened; else a new run."""
    found = sorted(search_runs(client, exp_id, flt), key=lambda r: r.info.start_time or 0)
    for dup in found[1:]:
        client.delete_run(dup.info.run_id)
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    return client.create_run(exp_id, tags=tags, run_name=name).info.run_id


def open_sweep_run(client: MlflowClient, exp_id: str, sweep_id: str, tags: dict[str, str]) -> str:
    tags = {C.KIND: C.SWEEP, C.SWEEP_ID: sweep_id, **tags}
    flt = run_filter(C.SWEEP, sweep_id=sweep_id)
    run_id = _find_or_create(client, exp_id, flt, f"sweep-{sweep_id}", tags)
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return run_id


def open_config_run(
    client: MlflowClient, exp_id: str, *, sweep_run_id: str, arm: str, tags: dict[str, str],
    params: dict[str, Any],
) -> str:
    """Find-or-create the config run of ``arm`` (a child of the sweep run) and log its params."""
    sweep_id = tags[C.SWEEP_ID]
    tags = {C.KIND: C.CONFIG, C.ARM: arm, C.PARENT: sweep_run_id, **tags}
    run_id = _find_or_create(client, exp_id, run_filter(C.CONFIG, sweep_id=sweep_id, arm=arm), arm, tags)
    existing = client.get_run(run_id).data.params
    new = [Param(k, _param(v)) for k, v in params.items() if k not in existing]
    client.log_batch(run_id, params=new, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return run_id


def _param(v: Any) -> str:
    return "null" if v is None else str(v)


def _is_done(run: Any) -> bool:
    """A fold run counts as done when FINISHED with ``mer.status=complete`` (written last by the worker)."""
    return run.info.status == "FINISHED" and run.data.tags.get(C.STATUS) == "complete"


FoldKey = tuple[str, int, str]  # (arm, seed, subject)


def fold_key(tags: Mapping[str, str], default_seed: int) -> FoldKey:
    """The key resume uses for a fold run (docs/architecture.md): (arm, seed, subject). A fold run without
    ``mer.seed`` (written before seeds existed, always one-seed) has ``default_seed``, the sweep's seed."""
    seed = tags.get(C.SEED)
    return tags.get(C.ARM, ""), default_seed if seed in (None, "") else int(seed), tags.get(C.SUBJECT, "")


def scan_folds(
    client: MlflowClient, exp_id: str, sweep_id: str, default_seed: int = 0,
) -> tuple[dict[FoldKey, FoldRecord], dict[FoldKey, list[str]]]:
    """Done folds of a sweep by :func:`fold_key`, and the other fold runs' ids by the same key.

    Done = MLflow status FINISHED and ``mer.status=complete`` (written last by the worker). Duplicate done
    runs are deleted here. The rest (RUNNING orphans of a killed driver, partial bursts, failed folds) is
    returned as *stale*: the driver deletes them when it reruns that config (a finished Optuna trial keeps
    its failed folds on record).
    """
    done: dict[FoldKey, FoldRecord] = {}
    stale: dict[FoldKey, list[str]] = {}
    runs = search_runs(client, exp_id, run_filter(C.FOLD, sweep_id=sweep_id))
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):
        key = fold_key(run.data.tags, default_seed)
        ok = _is_done(run)
        if ok and key in done:
            client.delete_run(run.info.run_id)
        elif ok:
            done[key] = _read_fold(client, run, seed=key[1])
        else:
            stale.setdefault(key, []).append(run.info.run_id)
    return done, stale


def delete_partial_folds(client: MlflowClient, exp_id: str, *, sweep_id: str, arm: str, seed: int,
                         subject: str) -> int:
    """Delete the fold runs of (arm, seed, subject) in this sweep that are not done; return how many.

    For a worker that died under a fold: it may have died inside ``log_fold_run``'s burst, leaving a run
    that is not FINISHED+complete. The driver calls this before the retry, so the sweep ends with one run
    per fold even without a later resume (whose ``scan_folds`` would otherwise be what removes it).
    """
    n = 0
    flt = run_filter(C.FOLD, sweep_id=sweep_id, arm=arm, seed=str(seed), subject=subject)
    for run in search_runs(client, exp_id, flt):
        if not _is_done(run):
            client.delete_run(run.info.run_id)
            n += 1
    return n


def config_run_status(client: MlflowClient, exp_id: str, sweep_id: str, arm: str) -> tuple[str, str | None]:
    """(``mer.status`` tag, run id) of the config run of ``arm``; ("", None) when there is none."""
    runs = search_runs(client, exp_id, run_filter(C.CONFIG, sweep_id=sweep_id, arm=arm))
    if not runs:
        return "", None
    return runs[0].data.tags.get(C.STATUS, ""), runs[0].info.run_id


def config_runs_of(client: MlflowClient, exp_id: str, sweep_id: str) -> list[Any]:
    """Every config run of sweep ``sweep_id``."""
    return search_runs(client, exp_id, run_filter(C.CONFIG, sweep_id=sweep_id))


def _read_fold(client: MlflowClient, run: Any, *, seed: int) -> FoldRecord:
    tags, metrics = run.data.tags, run.data.metrics
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run.info.run_id, C.PREDICTIONS_CSV, tmp)
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    pre = C.AAU_METRIC_PREFIX
    aau = {int(k[len(pre):]): v for k, v in metrics.items() if k.startswith(pre)}
    return FoldRecord(
        arm=tags[C.ARM], subject=tags[C.SUBJECT], seed=seed, status="complete", run_id=run.info.run_id,
        clips=[r["clip"] for r in rows], y_true=[int(r["y_true"]) for r in rows],
        y_pred=[int(r["y_pred"]) for r in rows], metrics={m: metrics[m] for m in METRICS if m in metrics},
        aau=aau, node=tags.get(C.NODE, ""), reused_from=tags.get(C.REUSED_FROM, ""),
        clip_subjects=[r[C.TEST_SUBJECT_COLUMN] for r in rows if r.get(C.TEST_SUBJECT_COLUMN)],
    )


def read_fold_run(client: MlflowClient, run_id: str, *, seed: int) -> FoldRecord:
    """The :class:`FoldRecord` of a done fold run (a linked one: reuse.py), as resume reads it."""
    return _read_fold(client, client.get_run(run_id), seed=seed)


def finish_config_run(
    client: MlflowClient, run_id: str, *, folds: Sequence[FoldRecord], summary: dict[str, Any], status: str,
    class_names: Sequence[str],
) -> None:
    """Pooled metrics (only for a complete config), confusion CSV + PNG, predictions CSV, ``mer.status``."""
    # An incomplete / pruned config gets no pooled value: a partial mean would read as a result.
    scalars = {k: v for k, v in summary.items() if k != "confusion"}
    counts = ("n_folds", "n_failed")
    keep = scalars if status == "complete" else {k: scalars[k] for k in counts if k in scalars}
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in keep.items()])
    ok = [f for f in folds if f.ok]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        by_clip = any(f.clip_subjects for f in ok)  # cross-dataset: each clip's own subject too
        cols = C.CONFIG_PREDICTION_COLUMNS + ((C.TEST_SUBJECT_COLUMN,) if by_clip else ())
        write_csv(d / C.PREDICTIONS_CSV, cols, [
            (f.seed, f.subject, c, t, p, *((s,) if by_clip else ())) for f in ok
            for c, t, p, s in zip(f.clips, f.y_true, f.y_pred, f.clip_subjects or [f.subject] * len(f.clips),
                                  strict=True)])
        cm = summary.get("confusion")
        if ok and cm is not None:
            write_csv(d / C.CONFUSION_CSV, ["true\\pred", *class_names],
                      [[name, *row.tolist()] for name, row in zip(class_names, cm, strict=True)])
            _confusion_png(cm, class_names, d / C.CONFUSION_PNG)
        client.log_artifacts(run_id, tmp)
    client.set_tag(run_id, C.STATUS, status)
    client.set_terminated(run_id, "FINISHED")


def _confusion_png(cm: np.ndarray, class_names: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(class_names), 0.8 + 0.6 * len(class_names)))
    ConfusionMatrixDisplay(cm, display_labels=list(class_names)).plot(ax=ax, colorbar=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def finish_sweep_run(
    client: MlflowClient, run_id: str, *, spec_text: str, arms_header: Sequence[str],
    arms_rows: Sequence[Sequence[Any]], aau_rows: Sequence[Sequence[Any]], status: str,
) -> None:
    """``spec.yaml``, ``tables/arms.csv`` (spec order) and ``tables/aau_weights.csv`` (paper Table VIII:
    one block of rows per AAU arm: ``arm, subject, layer1..layer4``, ending with the arm's average)."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / C.SPEC_YAML).write_text(spec_text)
        write_csv(d / C.ARMS_CSV, arms_header, arms_rows)
        write_csv(d / C.AAU_CSV, C.AAU_COLUMNS, aau_rows)
        client.log_artifacts(run_id, tmp)
    client.set_tag(run_id, C.STATUS, status)
    client.set_terminated(run_id, "FINISHED")


# ------------------------------------------------------------------------------------------------ worker


def log_fold_run(
    client: MlflowClient, exp_id: str, parent_run_id: str, *, tags: Mapping[str, str],
    metrics: Mapping[str, float], status: str, loss_curve: Sequence[float] = (),
    step_metrics: Mapping[str, Sequence[float]] | None = None,
    lam: Mapping[str, np.ndarray] | None = None,
    predictions: tuple[Sequence[str], Sequence[int], Sequence[int]] | None = None,
    model: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
    clip_subjects: Sequence[str] = (),
) -> str:
    """One fold run in one burst; ``mer.status`` is set last, then the run is terminated FINISHED.

    ``step_metrics``: key -> values logged at steps 0, 1, ... (the AAU weights' trajectory), so MLflow's
    latest value of each key is its last entry.

    ``model``: (state_dict, model.json content) logged as ``model/`` (``mer_model.predict.save_model``)
    before the status, so a complete fold run of a ``save_models`` sweep always has its model."""
    name = f"{tags[C.ARM]}/{tags[C.SUBJECT]}"
    run = client.create_run(exp_id, tags={**tags, C.PARENT: parent_run_id, C.KIND: C.FOLD}, run_name=name)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    ms = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and math.isfinite(v)]
    ms += [Metric("train_loss", float(v), now, i) for i, v in enumerate(loss_curve) if math.isfinite(v)]
    ms += [Metric(k, float(v), now, i) for k, vs in (step_metrics or {}).items() for i, v in enumerate(vs)
           if math.isfinite(v)]
    for i in range(0, len(ms), 900):  # log_batch takes at most 1000 metrics
        client.log_batch(run_id, metrics=ms[i:i + 900])
    if lam or predictions or model:
        with tempfile.TemporaryDirectory() as tmp:
            _fold_artifacts(Path(tmp), tags[C.SUBJECT], lam, predictions, clip_subjects)
            if model is not None:
                from mer_model.predict import save_model

                save_model(Path(tmp) / "model", *model)
            client.log_artifacts(run_id, tmp)
    client.set_tag(run_id, C.STATUS, status)
    client.set_terminated(run_id, "FINISHED" if status == "complete" else "FAILED")
    return run_id


def _fold_artifacts(d: Path, subject: str, lam: Mapping[str, np.ndarray] | None,
                    predictions: tuple[Sequence[str], Sequence[int], Sequence[int]] | None,
                    clip_subjects: Sequence[str] = ()) -> None:
    """``predictions.csv`` (with each clip's ``test_subject`` when given) and ``lam/<key>.npy`` + ``.png``
    of one fold, written into ``d``."""
    if predictions is not None:
        clips, y_true, y_pred = predictions
        cols, extra = C.PREDICTION_COLUMNS, ()
        if clip_subjects:
            cols, extra = (*cols, C.TEST_SUBJECT_COLUMN), (clip_subjects,)
        write_csv(d / C.PREDICTIONS_CSV, cols,
                  zip([subject] * len(clips), clips, y_true, y_pred, *extra, strict=True))
    for key, arr in (lam or {}).items():
        (d / C.LAM_DIR).mkdir(exist_ok=True)
        np.save(d / C.LAM_DIR / f"{key}.npy", arr)
        _heatmap(arr, d / C.LAM_DIR / f"{key}.png")


def _heatmap(a: np.ndarray, path: Path) -> None:
    """A (V, V) learned adjacency as a viridis heatmap, each cell 16 px (plt.imsave: no figure to lay out,
    a few ms per array, which matters at one PNG per layer per fold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = np.asarray(a, dtype=float)
    plt.imsave(path, np.kron(a, np.ones((16, 16))), cmap="viridis")
