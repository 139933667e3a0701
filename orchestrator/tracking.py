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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from orchestrator.names import safe_name

METRICS = ("accuracy", "uf1", "uar")
PARENT = "mlflow.parentRunId"
RUN_NAME = "mlflow.runName"


@dataclass
class FoldRecord:
    """What the driver keeps of one finished fold (from a worker, or read back from MLflow on resume)."""

    arm: str
    subject: str
    status: str  # complete | failed
    run_id: str | None
    clips: list[str] = field(default_factory=list)
    y_true: list[int] = field(default_factory=list)
    y_pred: list[int] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    aau: dict[int, float] = field(default_factory=dict)  # layer -> W_r^2 / sum W^2
    error: str = ""
    node: str = ""
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------------ driver


def prepare_experiment(tracking_uri: str, experiment: str, artifact_root: Path | None) -> str:
    """Create (or open) the tracking store and the experiment, in the driver; return the experiment id.

    ``artifact_root``: where a new experiment stores artifacts (local stores only; a tracking server
    decides itself when None).
    """
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri)
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
    return client.create_experiment(experiment, artifact_location=location)


def _search(client: MlflowClient, exp_id: str, flt: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([exp_id], flt, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _find_or_create(client: MlflowClient, exp_id: str, flt: str, name: str, tags: dict[str, str]) -> str:
    """The oldest run matching ``flt`` (newer duplicates deleted), reopened; else a new run."""
    found = sorted(_search(client, exp_id, flt), key=lambda r: r.info.start_time or 0)
    for dup in found[1:]:
        client.delete_run(dup.info.run_id)
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    return client.create_run(exp_id, tags=tags, run_name=name).info.run_id


def open_sweep_run(client: MlflowClient, exp_id: str, sweep_id: str, tags: dict[str, str]) -> str:
    tags = {"mer.kind": "sweep", "mer.sweep_id": sweep_id, **tags}
    flt = f"tags.`mer.kind` = 'sweep' and tags.`mer.sweep_id` = '{sweep_id}'"
    run_id = _find_or_create(client, exp_id, flt, f"sweep-{sweep_id}", tags)
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return run_id


def open_config_run(
    client: MlflowClient, exp_id: str, sweep_run_id: str, arm: str, tags: dict[str, str],
    params: dict[str, Any],
) -> str:
    """Find-or-create the config run of ``arm`` (a child of the sweep run) and log its params."""
    sweep_id = tags["mer.sweep_id"]
    tags = {"mer.kind": "config", "mer.arm": arm, PARENT: sweep_run_id, **tags}
    flt = (f"tags.`mer.kind` = 'config' and tags.`mer.sweep_id` = '{sweep_id}' and "
           f"tags.`mer.arm` = {_lit(arm)}")
    run_id = _find_or_create(client, exp_id, flt, arm, tags)
    existing = client.get_run(run_id).data.params
    new = [Param(k, _param(v)) for k, v in params.items() if k not in existing]
    client.log_batch(run_id, params=new, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return run_id


def _lit(s: str) -> str:
    """``s`` as a string literal of MLflow's search filter, which has no escapes: an arm named ``Wei's``
    is found only as ``"Wei's"`` (``'Wei\\'s'`` matches nothing, so resume would miss its runs)."""
    if "'" not in s:
        return f"'{s}'"
    if '"' not in s:
        return f'"{s}"'
    raise ValueError(f"name {s!r}: has both quote characters; MLflow's search filter cannot express it")


def _param(v: Any) -> str:
    return "null" if v is None else str(v)


def _is_done(run: Any) -> bool:
    """A fold run counts as done when FINISHED with ``mer.status=complete`` (written last by the worker)."""
    return run.info.status == "FINISHED" and run.data.tags.get("mer.status") == "complete"


def scan_folds(
    client: MlflowClient, exp_id: str, sweep_id: str,
) -> tuple[dict[tuple[str, str], FoldRecord], dict[tuple[str, str], list[str]]]:
    """Done folds of a sweep keyed (arm, subject), and the other fold runs' ids by the same key.

    Done = MLflow status FINISHED and ``mer.status=complete`` (written last by the worker). Duplicate done
    runs are deleted here. The rest (RUNNING orphans of a killed driver, partial bursts, failed folds) is
    returned as *stale*: the driver deletes them when it reruns that config (a finished Optuna trial keeps
    its failed folds on record).
    """
    flt = f"tags.`mer.kind` = 'fold' and tags.`mer.sweep_id` = '{sweep_id}'"
    done: dict[tuple[str, str], FoldRecord] = {}
    stale: dict[tuple[str, str], list[str]] = {}
    for run in sorted(_search(client, exp_id, flt), key=lambda r: r.info.start_time or 0):
        tags = run.data.tags
        key = (tags.get("mer.arm", ""), tags.get("mer.subject", ""))
        ok = _is_done(run)
        if ok and key in done:
            client.delete_run(run.info.run_id)
        elif ok:
            done[key] = _read_fold(client, run)
        else:
            stale.setdefault(key, []).append(run.info.run_id)
    return done, stale


def delete_partial_folds(client: MlflowClient, exp_id: str, sweep_id: str, arm: str, subject: str) -> int:
    """Delete the fold runs of (arm, subject) in this sweep that are not done; return how many.

    For a worker that died under a fold: it may have died inside ``log_fold_run``'s burst, leaving a run
    that is not FINISHED+complete. The driver calls this before the retry, so the sweep ends with one run
    per fold even without a later resume (whose ``scan_folds`` would otherwise be what removes it).
    """
    flt = (f"tags.`mer.kind` = 'fold' and tags.`mer.sweep_id` = '{sweep_id}' and "
           f"tags.`mer.arm` = {_lit(arm)} and tags.`mer.subject` = {_lit(subject)}")
    n = 0
    for run in _search(client, exp_id, flt):
        if not _is_done(run):
            client.delete_run(run.info.run_id)
            n += 1
    return n


def config_run_status(client: MlflowClient, exp_id: str, sweep_id: str, arm: str) -> tuple[str, str | None]:
    """(``mer.status`` tag, run id) of the config run of ``arm``; ("", None) when there is none."""
    flt = (f"tags.`mer.kind` = 'config' and tags.`mer.sweep_id` = '{sweep_id}' and "
           f"tags.`mer.arm` = {_lit(arm)}")
    runs = _search(client, exp_id, flt)
    if not runs:
        return "", None
    return runs[0].data.tags.get("mer.status", ""), runs[0].info.run_id


def config_runs_of(client: MlflowClient, exp_id: str, sweep_id: str) -> list[Any]:
    """Every config run of sweep ``sweep_id``."""
    return _search(client, exp_id, f"tags.`mer.kind` = 'config' and tags.`mer.sweep_id` = '{sweep_id}'")


def _read_fold(client: MlflowClient, run: Any) -> FoldRecord:
    tags, metrics = run.data.tags, run.data.metrics
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run.info.run_id, "predictions.csv", tmp)
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    pre = "aau_weight_layer"
    aau = {int(k[len(pre):]): v for k, v in metrics.items() if k.startswith(pre)}
    return FoldRecord(
        arm=tags["mer.arm"], subject=tags["mer.subject"], status="complete", run_id=run.info.run_id,
        clips=[r["clip"] for r in rows], y_true=[int(r["y_true"]) for r in rows],
        y_pred=[int(r["y_pred"]) for r in rows], metrics={m: metrics[m] for m in METRICS if m in metrics},
        aau=aau, node=tags.get("mer.node", ""),
    )


def config_summary(folds: Sequence[FoldRecord], n_folds: int, num_classes: int) -> dict[str, float]:
    """Pooled metrics over the complete folds' concatenated predictions + per-fold mean / std.

    Only meaningful when every fold is complete; the caller marks the config incomplete otherwise.
    """
    from mer_model.metrics import classification_metrics

    ok = [f for f in folds if f.status == "complete"]
    out: dict[str, float] = {"n_folds": float(n_folds), "n_failed": float(n_folds - len(ok))}
    if not ok:
        return out
    y_true = np.concatenate([np.asarray(f.y_true, dtype=np.int64) for f in ok])
    y_pred = np.concatenate([np.asarray(f.y_pred, dtype=np.int64) for f in ok])
    pooled = classification_metrics(y_true, y_pred, num_classes)
    for m in METRICS:
        out[m] = float(pooled[m])
        per = np.array([f.metrics[m] for f in ok], dtype=float)
        out[f"fold_mean_{m}"] = float(per.mean())
        out[f"fold_std_{m}"] = float(per.std())
    return out


def finish_config_run(
    client: MlflowClient, run_id: str, folds: Sequence[FoldRecord], summary: dict[str, float], status: str,
    class_names: Sequence[str],
) -> None:
    """Pooled metrics (only for a complete config), confusion CSV + PNG, predictions CSV, ``mer.status``."""
    # An incomplete / pruned config gets no pooled value: a partial mean would read as a result.
    counts = ("n_folds", "n_failed")
    keep = summary if status == "complete" else {k: summary[k] for k in counts if k in summary}
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in keep.items()])
    ok = [f for f in folds if f.status == "complete"]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        with open(d / "predictions.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["subject", "clip", "y_true", "y_pred"])
            for fr in ok:
                w.writerows(zip([fr.subject] * len(fr.clips), fr.clips, fr.y_true, fr.y_pred, strict=True))
        if ok:
            from sklearn.metrics import confusion_matrix

            y_true = np.concatenate([np.asarray(f.y_true) for f in ok])
            y_pred = np.concatenate([np.asarray(f.y_pred) for f in ok])
            cm = confusion_matrix(y_true, y_pred, labels=list(range(len(class_names))))
            with open(d / "confusion.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["true\\pred", *class_names])
                for name, row in zip(class_names, cm, strict=True):
                    w.writerow([name, *row.tolist()])
            _confusion_png(cm, class_names, d / "confusion.png")
        client.log_artifacts(run_id, tmp)
    client.set_tag(run_id, "mer.status", status)
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
    client: MlflowClient, run_id: str, spec_text: str, arms_header: Sequence[str],
    arms_rows: Sequence[Sequence[Any]], aau_rows: Sequence[Sequence[Any]], status: str,
) -> None:
    """``spec.yaml``, ``tables/arms.csv`` (spec order) and ``tables/aau_weights.csv`` (paper Table VIII:
    one block of rows per AAU arm: ``arm, subject, layer1..layer4``, ending with the arm's average)."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "spec.yaml").write_text(spec_text)
        write_csv(d / "tables" / "arms.csv", arms_header, arms_rows)
        write_csv(d / "tables" / "aau_weights.csv",
                  ["arm", "subject", "layer1", "layer2", "layer3", "layer4"], aau_rows)
        client.log_artifacts(run_id, tmp)
    client.set_tag(run_id, "mer.status", status)
    client.set_terminated(run_id, "FINISHED")


# ------------------------------------------------------------------------------------------------ worker


def log_fold_run(
    client: MlflowClient, exp_id: str, parent_run_id: str, tags: Mapping[str, str],
    metrics: Mapping[str, float], loss_curve: Sequence[float], lam: Mapping[str, np.ndarray] | None,
    predictions: tuple[Sequence[str], Sequence[int], Sequence[int]] | None, status: str,
) -> str:
    """One fold run in one burst; ``mer.status`` is set last, then the run is terminated FINISHED."""
    name = f"{tags['mer.arm']}/{tags['mer.subject']}"
    run = client.create_run(exp_id, tags={**tags, PARENT: parent_run_id, "mer.kind": "fold"}, run_name=name)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    ms = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and math.isfinite(v)]
    ms += [Metric("train_loss", float(v), now, i) for i, v in enumerate(loss_curve) if math.isfinite(v)]
    for i in range(0, len(ms), 900):  # log_batch takes at most 1000 metrics
        client.log_batch(run_id, metrics=ms[i:i + 900])
    if lam or predictions:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            if predictions is not None:
                clips, y_true, y_pred = predictions
                write_csv(d / "predictions.csv", ["subject", "clip", "y_true", "y_pred"],
                          zip([tags["mer.subject"]] * len(clips), clips, y_true, y_pred, strict=True))
            for key, arr in (lam or {}).items():
                (d / "lam").mkdir(exist_ok=True)
                np.save(d / "lam" / f"{key}.npy", arr)
                _heatmap(arr, d / "lam" / f"{key}.png")
            client.log_artifacts(run_id, tmp)
    client.set_tag(run_id, "mer.status", status)
    client.set_terminated(run_id, "FINISHED" if status == "complete" else "FAILED")
    return run_id


def _heatmap(a: np.ndarray, path: Path) -> None:
    """A (V, V) learned adjacency as a viridis heatmap, each cell 16 px (plt.imsave: no figure to lay out,
    a few ms per array, which matters at one PNG per layer per fold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = np.asarray(a, dtype=float)
    plt.imsave(path, np.kron(a, np.ones((16, 16))), cmap="viridis")
