"""``LandmarkDataset`` (the contract in docs/architecture.md) and ``load_dataset``.

Every source (SynthME generator, CASME II / SAMM loaders) first produces a ``RawClips`` table: every clip
with raw detector-space landmarks, AU set, objective class and self-reported emotion. ``finalise`` then
applies the class setup (which clips are kept, how they are labelled) and landmark-space magnification,
so the expensive part (dlib extraction, cached) does not depend on either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mer_model.data.au import au_name, multi_hot
from mer_model.data.classes import SETUPS, apply_setup
from mer_model.errors import InputError


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value; compare fields explicitly
class LandmarkDataset:
    """Landmark triplets of micro-expression clips under one class setup.

    landmarks (N, 3, 68, 2) float32 onset/apex/offset x dlib-68 x (x, y) pixels; subjects, clips (N,) str;
    labels (N,) int64 in [0, C); aus (N, A) float32 multi-hot; augment (N, K, 3, 68, 2) float32 extra
    training views or None.
    """

    name: str
    setup: str
    landmarks: np.ndarray
    subjects: np.ndarray
    clips: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    aus: np.ndarray
    au_names: tuple[str, ...]
    augment: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, idx) -> LandmarkDataset:
        """Rows ``idx`` (int index array or bool mask); class and AU vocabularies are kept whole."""
        idx = np.asarray(idx)
        return dataclasses.replace(
            self,
            landmarks=self.landmarks[idx],
            subjects=self.subjects[idx],
            clips=self.clips[idx],
            labels=self.labels[idx],
            aus=self.aus[idx],
            augment=None if self.augment is None else self.augment[idx],
        )

    def loso_splits(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Leave-one-subject-out folds: [(subject, train_idx, test_idx)], subjects in sorted order.

        Every clip of the left-out subject is in test and none in train (no subject leakage).
        """
        out = []
        for s in sorted(set(self.subjects.tolist())):
            test = np.flatnonzero(self.subjects == s)
            train = np.flatnonzero(self.subjects != s)
            out.append((s, train, test))
        return out

    def content_hash(self) -> str:
        """16 hex chars of sha256 over everything a result depends on: landmark bytes (N, 3, 68, 2), the
        training views (``augment``), labels, AU matrix, subjects, clip ids, class and AU names.

        Part of the sweep id and every config hash (orchestrator.plan), so a corrected coding spreadsheet
        (one label changed) makes a new sweep that trains again, instead of a resume that keeps the old
        predictions and labels. Arrays are hashed with their dtype and shape (a reshape is a change).
        """
        h = hashlib.sha256()
        arrays = [self.landmarks, self.labels, self.aus, self.subjects.astype(str), self.clips.astype(str)]
        if self.augment is not None:
            arrays.append(self.augment)
        for a in arrays:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        h.update(json.dumps([self.name, self.setup, list(self.class_names), list(self.au_names)]).encode())
        return h.hexdigest()[:16]

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {c: int(n) for c, n in zip(self.class_names, counts, strict=True)}


@dataclass(frozen=True, eq=False)
class RawClips:
    """Every clip of a source before a class setup is applied (what the cache stores).

    landmarks (N, 3, 68, 2) raw pixels; augment (N, K, 3, 68, 2) or None; aus: per-clip AU number sets;
    objective (N,) str "I".."VII"; emotion (N,) str lower-case self-report; au_numbers: AU vocabulary.
    """

    family: str  # "casme2" | "samm": which class-setup lists apply
    landmarks: np.ndarray
    augment: np.ndarray | None
    subjects: np.ndarray
    clips: np.ndarray
    aus: list[frozenset[int]]
    objective: np.ndarray
    emotion: np.ndarray
    au_numbers: tuple[int, ...]
    meta: dict


def magnify(x: np.ndarray, a: float) -> np.ndarray:
    """Landmark-space motion magnification ``x_onset + a (x - x_onset)`` over the frame axis.

    x: (..., 3, 68, 2) with frame 0 = onset. The paper magnifies the *video* before detection ([47]; it
    does not state the factor). On detected landmarks the closest map is this one, which scales detector
    noise and head-pose jitter along with the motion; for the paper's pipeline on real data, magnify the
    videos before ``mer-orch extract``. SynthME magnifies its motion before the noise (``synthme.generate``).
    """
    if a == 1.0:
        return x
    onset = x[..., :1, :, :]
    return (onset + a * (x - onset)).astype(np.float32)


def finalise(raw: RawClips, *, name: str, setup: str, magnification: float = 1.0) -> LandmarkDataset:
    """Apply a class setup (Table I) and landmark-space magnification (``magnify``) to raw clips."""
    if setup not in SETUPS:
        raise InputError(f"setup: {setup!r} is not a class setup; expected one of {', '.join(SETUPS)}")
    if not magnification > 0:
        raise InputError(f"magnification: {magnification!r} must be > 0; expected e.g. 1 (off) or 3")
    keep, labels, class_names = apply_setup(setup, raw.family, raw.objective, raw.emotion)
    idx = np.flatnonzero(keep)
    aug = None if raw.augment is None else magnify(raw.augment[idx], magnification)
    return LandmarkDataset(
        name=name,
        setup=setup,
        landmarks=magnify(raw.landmarks[idx], magnification),
        subjects=raw.subjects[idx],
        clips=raw.clips[idx],
        labels=labels,
        class_names=tuple(class_names),
        aus=multi_hot([raw.aus[i] for i in idx], raw.au_numbers),
        au_names=tuple(au_name(a) for a in raw.au_numbers),
        augment=aug,
        # the total factor: the generator's (SynthME, on the motion) times this landmark-space one
        meta={**raw.meta, "dataset": name, "setup": setup,
              "magnification": float(raw.meta.get("magnification", 1.0)) * float(magnification),
              "n_dropped_by_setup": int((~keep).sum())},
    )


REAL_DATASETS = ("casme2", "samm")


def dataset_names() -> tuple[str, ...]:
    from mer_model.data.synthme import PRESETS

    return tuple(PRESETS) + REAL_DATASETS


def load_raw(
    name: str, *, root: Path | None = None, seed: int = 0, cache_dir: Path | None = None,
    progress=None, **knobs,
) -> RawClips:
    """The setup-independent clip table of a dataset (SynthME: generated; real: extracted or cached)."""
    from mer_model.data import synthme

    if name in synthme.PRESETS:
        return synthme.generate(name, seed=seed, **knobs)
    if name in REAL_DATASETS:
        if root is None:
            raise InputError(f"{name}: --root is required; expected the folder holding the coding "
                             "spreadsheet and the subject frame folders")
        from mer_model.data.cache import load_or_extract

        return load_or_extract(name, Path(root), cache_dir=cache_dir, progress=progress, **knobs)
    raise InputError(f"dataset: {name!r} is unknown; expected one of {', '.join(dataset_names())}")


def load_dataset(
    name: str,
    *,
    setup: str,
    root: Path | None = None,
    seed: int = 0,
    magnification: float = 1.0,
    cache_dir: Path | None = None,
    **preset_knobs,
) -> LandmarkDataset:
    """Load a dataset under a class setup.

    name: ``synthme-casme2`` | ``synthme-samm`` | ``synthme-tiny`` (generated, no files; knobs:
    ``n_subjects``, ``n_clips``, ``noise``, ``amplitude``, ``n_augment``, ``agree``) or ``casme2`` | ``samm``
    (``root`` = dataset folder; knobs: ``crop_scales``, ``upsample``, ``spreadsheet``). ``seed`` only
    affects SynthME. ``magnification`` a (default 1 = off): real data, ``x_onset + a (x - x_onset)`` on the
    detected landmarks (``magnify``); SynthME, the facial motion times a before camera and detector noise,
    as the paper's video magnification acts (``synthme.generate``). The paper does not state its factor.
    """
    if setup not in SETUPS:
        raise InputError(f"setup: {setup!r} is not a class setup; expected one of {', '.join(SETUPS)}")
    from mer_model.data.synthme import PRESETS

    if name in PRESETS:  # the generator magnifies the motion itself (and checks a)
        raw = load_raw(name, seed=seed, magnification=magnification, **preset_knobs)
        return finalise(raw, name=name, setup=setup)
    raw = load_raw(name, root=root, seed=seed, cache_dir=cache_dir, **preset_knobs)
    return finalise(raw, name=name, setup=setup, magnification=magnification)
