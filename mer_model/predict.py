"""A trained fold model kept on disk, loaded again, and used on landmark clips (issue 15).

A saved model is a directory of two files:

- ``model.pt``: the final model's ``state_dict`` written by ``torch.save`` and read back with
  ``torch.load(weights_only=True)`` (tensors only: loading never runs pickled code);
- ``model.json``: what is needed to rebuild and feed it: the resolved config (``num_classes`` /
  ``num_aus`` filled in), ``class_names``, ``au_names``, the point set, the input it expects and its
  normalisation, plus provenance (dataset, setup, magnification, the left-out subject).

Input of :func:`predict` is what ``mer_model.data.load_dataset`` returns and training consumed:
``(N, 3, 68, 2)`` float landmarks (onset, apex, offset x all dlib-68 points x (x, y) pixels) with the
dataset's magnification already applied. The model selects its point set (14 / 31 / 68) and normalises
each sample by its own onset frame inside ``forward`` (``mer_model.features``), exactly as in training, so
nothing is normalised here. Predictions are those of ``train.finish_fold``: eval mode, the whole input
in one forward pass, softmax -> argmax.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mer_model.config import validate_config
from mer_model.errors import InputError
from mer_model.models import build_model

FORMAT = 1
WEIGHTS, META = "model.pt", "model.json"
INPUT = "landmarks (N, 3, 68, 2): onset, apex, offset x dlib-68 points x (x, y) pixels, magnification applied"
NORMALISATION = "per sample, from its own onset frame, inside the model (mer_model.features); none outside"


@dataclass(frozen=True)
class SavedModel:
    """A loaded fold model in eval mode and its ``model.json``."""

    model: torch.nn.Module
    config: dict[str, Any]
    class_names: tuple[str, ...]
    au_names: tuple[str, ...]
    meta: dict[str, Any]


@dataclass(frozen=True)
class Prediction:
    """``probs`` (N, C) softmax, ``y_pred`` (N,) argmax, ``au_probs`` (N, A) or None (no AU head)."""

    probs: np.ndarray
    y_pred: np.ndarray
    au_probs: np.ndarray | None


def model_meta(config: Mapping[str, Any], class_names: Sequence[str], au_names: Sequence[str],
               **provenance: Any) -> dict[str, Any]:
    """The ``model.json`` content: the config with every default filled in (``validate_config``), the names
    of its outputs, its input contract; ``provenance``: dataset, setup, magnification, subject, arm, ..."""
    config = validate_config(config)
    return {"format": FORMAT, "config": config, "class_names": [str(c) for c in class_names],
            "au_names": [str(a) for a in au_names], "points": int(config["points"]), "input": INPUT,
            "normalisation": NORMALISATION, **provenance}


def model_bytes(config: Mapping[str, Any]) -> int:
    """Bytes of one saved fold model of ``config`` (``num_classes`` / ``num_aus`` set): its ``model.pt`` as
    ``torch.save`` writes it, plus about 2 kB of ``model.json``."""
    import io

    buf = io.BytesIO()
    torch.save(build_model(config).state_dict(), buf)
    return buf.getbuffer().nbytes + 2048


def save_model(directory: Path, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Write ``model.pt`` (CPU tensors) and ``model.json`` into ``directory`` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, directory / WEIGHTS)
    (directory / META).write_text(json.dumps(dict(meta), indent=1, sort_keys=True))


def load_model(directory: Path, device: str = "cpu") -> SavedModel:
    """Rebuild the model of ``model.json`` and load ``model.pt`` into it (``weights_only=True``).

    Raises InputError (one line) when a file is missing or the weights do not fit the config (for example
    weights of another point set or model).
    """
    meta_path, weights_path = directory / META, directory / WEIGHTS
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise InputError(f"{p}: missing; expected a saved fold model ({META} + {WEIGHTS})")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise InputError(f"{meta_path}: format: got {meta.get('format')!r}; allowed: {FORMAT}")
    model = build_model(meta["config"])
    state = torch.load(weights_path, map_location=device, weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise InputError(f"{weights_path}: weights do not fit model.json (points {meta['config']['points']}, "
                         f"model {meta['config']['model']}): {first}") from None
    model.to(device).eval()
    return SavedModel(model, meta["config"], tuple(meta["class_names"]), tuple(meta["au_names"]), meta)


def check_landmarks(x: np.ndarray, source: str, points: int) -> np.ndarray:
    """``x`` as float32 ``(N, 3, 68, 2)``, or InputError naming ``source`` and the shape expected."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1:] != (3, 68, 2) or len(x) == 0:
        hint = f" (the model uses {points} of the 68 points and selects them itself)" if points != 68 else ""
        raise InputError(f"{source}: landmarks: got shape {x.shape}; allowed: (N>=1, 3, 68, 2) = onset, "
                         f"apex, offset x dlib-68 points x (x, y){hint}")
    if not np.isfinite(x).all():
        raise InputError(f"{source}: landmarks: not all finite; allowed: finite pixel coordinates")
    return x.astype(np.float32)


def predict(saved: SavedModel, landmarks: np.ndarray, source: str = "landmarks") -> Prediction:
    """Class and AU probabilities for ``(N, 3, 68, 2)`` clips, as the fold's evaluation computed them.

    AU probabilities (our choice of read-out): the sigmoid of each AU head (the heads are trained with
    ``MultiLabelSoftMarginLoss``, a per-AU sigmoid), averaged over the AU layers with the model's AAU layer
    shares (``model.aau_weights()``: Eq. 11's for the paper's AAU loss; one layer: that layer's head).
    """
    x = check_landmarks(landmarks, source, saved.config["points"])
    model = saved.model
    dev = next(model.parameters()).device
    with torch.no_grad():
        logits, au = model(torch.from_numpy(x).to(dev), return_aux=True)
        probs = torch.softmax(logits, dim=1).cpu().numpy().astype(np.float64)
        au_probs = None
        if au:
            w = model.aau_weights().to(dev)
            au_probs = sum(wi * torch.sigmoid(a) for wi, a in zip(w, au, strict=True)).cpu().numpy()
    return Prediction(probs, probs.argmax(axis=1).astype(np.int64), au_probs)


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``landmarks`` (N, 3, 68, 2) and ``clips`` (N,) str from an ``.npz`` (``clips`` optional: then
    ``clip0`` ...); InputError naming the file and the key otherwise."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable .npz ({type(e).__name__}); expected numpy.savez output "
                         "with 'landmarks' (N, 3, 68, 2) and optionally 'clips' (N,)") from None
    if "landmarks" not in data.files:
        raise InputError(f"{path}: no 'landmarks' array; got keys {sorted(data.files)}; expected 'landmarks' "
                         "(N, 3, 68, 2) and optionally 'clips' (N,)")
    x = np.asarray(data["landmarks"])  # its shape is checked against the model by ``predict``
    n = len(x) if x.ndim else 0
    clips = data["clips"].astype(str) if "clips" in data.files else np.array([f"clip{i}" for i in range(n)])
    if clips.shape != (n,):
        raise InputError(f"{path}: clips: got shape {clips.shape}; allowed: ({n},), one id per clip")
    return x, clips
