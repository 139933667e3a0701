"""``mer-orch predict --run RUN_ID INPUT``: a fold model logged by a ``tracking.save_models`` sweep,
applied to landmark clips; one CSV row per clip (class, its index, class probabilities, AU probabilities).

INPUT is an ``.npz`` (``landmarks`` (N, 3, 68, 2) as ``load_dataset`` returns them, optional ``clips``) or
a CASME II / SAMM root (spreadsheet + frame folders), which goes through the same dlib extraction, cache,
class setup and magnification as training (``mer_model.data.load_dataset``). Bad input (wrong shape, a run
with no model, weights that do not fit the model's point set): one line, exit 2, no CSV written.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click
import numpy as np

from mer_model.data.dataset import REAL_DATASETS
from mer_model.errors import InputError


@click.command(name="predict")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--run", "run_id", required=True, help="MLflow run id of a fold run with a logged model.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("predictions.csv"),
              show_default=True, help="CSV to write.")
@click.option("--tracking-uri", default=None,
              help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mer-runs/mlflow.db].")
@click.option("--dataset", type=click.Choice(list(REAL_DATASETS)), default=None,
              help="Layout of a dataset-root INPUT (default: the model's training dataset; required for a "
                   "model trained on a union of datasets).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Landmark cache folder (dataset-root INPUT) [default: <home>/cache].")
def command(input_path: Path, run_id: str, out: Path, tracking_uri: str | None, dataset: str | None,
            cache_dir: Path | None) -> None:
    """Predict classes (and AU probabilities) of INPUT clips with the model of fold run RUN_ID."""
    from mer_model.predict import load_model, predict

    try:
        with tempfile.TemporaryDirectory() as tmp:
            saved = load_model(_download(run_id, tracking_uri, Path(tmp)))
        from orchestrator.store.contract import cache_dir as home_cache_dir

        clips, x = _read_input(input_path, saved.meta, dataset, cache_dir or home_cache_dir())
        pred = predict(saved, x, str(input_path))
    except InputError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    _write(out, clips, pred, saved)
    click.echo(f"{out}: {len(clips)} clips, model of run {run_id} ({saved.meta.get('arm', '?')}, left-out "
               f"subject {saved.meta.get('subject', '?')}, trained on {saved.meta.get('dataset', '?')})")


def _download(run_id: str, tracking_uri: str | None, dst: Path) -> Path:
    """The run's ``model/`` artifact directory, downloaded into ``dst``; InputError if there is none."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from orchestrator.services import resolve_services

    # the error / result line is the whole output: no download progress bar on stderr
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = resolve_services(tracking_uri).tracking_uri
    client = MlflowClient(uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        raise InputError(f"--run: no run {run_id!r} at {uri}; expected a fold run id") from None
    if "model" not in {f.path for f in client.list_artifacts(run_id)}:
        raise InputError(f"--run {run_id}: the run has no model/; expected a fold run of a sweep with "
                         "tracking.save_models: true") from None
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model", dst_path=str(dst),
                                                    tracking_uri=uri))


def _read_input(path: Path, meta: dict, dataset: str | None,
                cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(clips, landmarks) of an ``.npz`` or of a dataset root loaded as at training time."""
    from mer_model.predict import load_npz

    if path.is_file():
        x, clips = load_npz(path)
        return clips, x
    if not path.is_dir():
        raise InputError(f"{path}: not found; expected an .npz file or a dataset root "
                         f"({', '.join(REAL_DATASETS)})")
    from mer_model.data import load_dataset

    name = dataset or meta.get("dataset")
    if name not in REAL_DATASETS:
        raise InputError(f"{path}: --dataset: the model was trained on {meta.get('dataset')!r}; "
                         f"allowed: one of {', '.join(REAL_DATASETS)} for a dataset root")
    ds = load_dataset(name, setup=meta["setup"], root=path, magnification=meta.get("magnification", 1.0),
                      cache_dir=cache_dir)
    return ds.clips, ds.landmarks


def _write(out: Path, clips: np.ndarray, pred, saved) -> None:  # noqa: ANN001
    """The CSV, written to a temporary name and renamed: never a partial file under ``out``."""
    from orchestrator.store.tracking import write_csv

    header = ["clip", "pred_class", "pred_index", *[f"p_{c}" for c in saved.class_names]]
    au = pred.au_probs is not None
    if au:
        header += [f"p_{a}" for a in saved.au_names]
    rows = []
    for i, clip in enumerate(clips):
        row = [str(clip), saved.class_names[pred.y_pred[i]], int(pred.y_pred[i]), *pred.probs[i].tolist()]
        rows.append(row + (pred.au_probs[i].tolist() if au else []))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    write_csv(tmp, header, rows)
    tmp.replace(out)
