"""Landmark cache: dlib extraction runs once per (dataset files, settings); every trial and sweep reuses it.

Key: SHA-256 of the coding spreadsheet's bytes, each used frame's path / size / mtime, the extraction
settings (crop scales, detector upsampling, predictor file size) and ``CACHE_VERSION``. Changing any frame
file or setting gives a new key (a new file); stale files are simply not read. A cache entry is ONE
``.npz`` written to a temp file in the cache folder and moved into place with ``os.replace``: a crash or a
bad-input error leaves either no entry or a complete one, never a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mer_model.data.raw import RawClips
from mer_model.errors import InputError

CACHE_VERSION = 1
DEFAULT_CACHE_DIR = Path("mer-runs") / "cache"
REAL_KNOBS = ("spreadsheet", "frames", "crop_scales", "upsample")


def _loader(name: str):
    """The loader module of a real dataset: ``SHEET_PATTERNS``, ``rows(sheet, frames_root)`` and optionally
    ``frames_root(root)`` (where the clip folders are, when not the dataset folder itself)."""
    from mer_model.data import casme2, casme3, mmew, samm, smic

    return {"casme2": casme2, "samm": samm, "smic": smic, "casme3": casme3, "mmew": mmew}[name]


def find_spreadsheet(name: str, root: Path) -> Path:
    mod = _loader(name)
    for pattern in mod.SHEET_PATTERNS:
        hits = sorted(root.glob(pattern))
        if hits:
            return hits[0]
    raise InputError(f"{root}: no coding spreadsheet; expected one of {', '.join(mod.SHEET_PATTERNS)} "
                     "in the dataset folder, or the spreadsheet's path given explicitly")


def cache_key(name: str, sheet: Path, frames_root: Path, rows: Sequence, settings: dict) -> str:
    """Content hash of the inputs and settings (hex)."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "dataset": name, "settings": settings}, sort_keys=True).encode())
    h.update(sheet.read_bytes())
    for row in rows:
        for p in row.frames:
            try:
                st = p.stat()
            except OSError as e:  # a frame that is a symlink loop, or vanished since the sheet was read
                raise InputError(f"{sheet}: row {row.row}: frame {p} cannot be read ({e.strerror or e}); "
                                 "expected an image file") from None
            h.update(f"{p.relative_to(frames_root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez to a temp file beside ``path``, fsync, then ``os.replace`` (all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove a file can be written in it; InputError naming it if not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mer-write-check-"):
            pass
    except OSError as e:
        raise InputError(f"{folder}: landmark cache folder is not writable ({e.strerror or e}); allowed: a "
                         "writable --cache-dir / dataset.cache_dir") from None


def _raw_from(name: str, landmarks, augment, info: dict) -> RawClips:
    aus = [frozenset(a) for a in info["aus"]]
    labelled = info.get("au_labelled")  # absent: every clip labelled (CASME II / SAMM entries stay valid)
    return RawClips(
        family=name,
        landmarks=landmarks,
        augment=augment,
        subjects=np.array(info["subjects"], dtype=str),
        clips=np.array(info["clips"], dtype=str),
        aus=aus,
        objective=np.array(info["objective"], dtype=str),
        emotion=np.array(info["emotion"], dtype=str),
        au_numbers=tuple(sorted(set().union(*aus))),
        meta=info["meta"],
        au_labelled=None if labelled is None else np.array(labelled, dtype=bool),
    )


def _cached(name: str, path: Path, key: str, meta: dict) -> RawClips | None:
    """The cache entry at ``path`` when it holds ``key``; None to extract. A corrupt entry is said (and
    noted in ``meta``), then replaced by a fresh atomic extraction: never a load failing until deleted."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = json.loads(str(z["info"]))
            if stored["meta"]["cache_key"] != key:
                return None
            aug = z["augment"] if z["augment"].shape[1] else None
            stored["meta"]["cache_hit"] = True
            return _raw_from(name, z["landmarks"], aug, stored)
    except Exception as err:  # noqa: BLE001 - truncated (BadZipFile), empty (EOFError), foreign numpy...
        warnings.warn(f"{path}: corrupt landmark cache entry ({type(err).__name__}: {err}); "
                      "extracting again", stacklevel=2)
        meta["cache_rebuilt"] = f"{type(err).__name__}: {err}"
        return None


def load_or_extract(
    name: str,
    root: Path,
    *,
    cache_dir: Path | None = None,
    progress=None,
    spreadsheet: Path | None = None,
    frames: Path | None = None,
    crop_scales: Sequence[float] | None = None,
    upsample: int = 0,
    **unknown,
) -> RawClips:
    """Raw clips of a real dataset: from the cache when the key matches, else extracted with dlib and cached.

    ``progress``: optional ``callable(total) -> advance()`` factory (the CLI's progress bar).
    """
    from mer_model.data import dlib_landmarks

    if unknown:
        raise InputError(f"{name}: unknown option(s) {', '.join(sorted(unknown))}; expected any of "
                         f"{', '.join(REAL_KNOBS)}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder does not exist; expected the folder of the {name} release")
    sheet = Path(spreadsheet) if spreadsheet else find_spreadsheet(name, root)
    if not sheet.is_file():
        raise InputError(f"{sheet}: spreadsheet does not exist; expected the coding .xlsx / .csv")
    loader = _loader(name)
    frames_root = Path(frames) if frames else getattr(loader, "frames_root", lambda r: r)(root)
    scales = dlib_landmarks.DEFAULT_CROP_SCALES if crop_scales is None else crop_scales
    scales = tuple(float(s) for s in scales)
    rows, repairs = loader.rows(sheet, frames_root)
    settings = {"crop_scales": list(scales), "upsample": int(upsample),
                "predictor_bytes": dlib_landmarks.predictor_path().stat().st_size}
    key = cache_key(name, sheet, frames_root, rows, settings)
    path = Path(cache_dir or DEFAULT_CACHE_DIR) / f"{name}-{key[:20]}.npz"
    meta = {"source": name, "root": str(root), "spreadsheet": str(sheet), "cache_key": key,
            "cache_file": str(path), "repairs": repairs, "crop_scales": list(scales),
            "upsample": int(upsample), "n_rows": len(rows)}
    info = {"subjects": [r.subject for r in rows], "clips": [r.clip for r in rows],
            "aus": [sorted(r.aus) for r in rows], "objective": [r.objective for r in rows],
            "emotion": [r.emotion for r in rows], "meta": meta}
    if not all(r.au_labelled for r in rows):  # stored only when some clip lacks AU labels (SMIC)
        info["au_labelled"] = [bool(r.au_labelled) for r in rows]
    hit = _cached(name, path, key, meta)
    if hit is not None:
        return hit
    check_writable(path.parent)  # before the extraction, which can take many minutes
    advance = progress(len(rows)) if progress is not None else None
    landmarks, augment = dlib_landmarks.extract_rows(rows, sheet=sheet, crop_scales=scales, upsample=upsample,
                                                     progress=advance)
    empty_aug = np.zeros((len(rows), 0, 3, 68, 2), np.float32)
    write_atomic(path, {"landmarks": landmarks, "augment": empty_aug if augment is None else augment,
                        "info": np.array(json.dumps(info))})
    meta["cache_hit"] = False
    return _raw_from(name, landmarks, augment, info)
