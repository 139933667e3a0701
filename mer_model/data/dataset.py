"""``LandmarkDataset`` (the contract in docs/architecture.md) and ``load_dataset``.

Every source (SynthME generator, the real-dataset loaders) first produces a ``RawClips`` table: every clip
with raw detector-space landmarks, AU set, objective class and self-reported emotion. ``finalise`` then
applies the class setup (which clips are kept, how they are labelled) and landmark-space magnification,
so the expensive part (dlib extraction, cached) does not depend on either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mer_model.data.au import au_name, multi_hot
from mer_model.data.classes import SETUPS, apply_setup
from mer_model.data.raw import RawClips, magnify
from mer_model.errors import InputError


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no truth value; compare fields explicitly
class LandmarkDataset:
    """Landmark triplets of micro-expression clips under one class setup.

    landmarks (N, 3, 68, 2) float32 onset/apex/offset x dlib-68 x (x, y) pixels; subjects, clips (N,) str;
    labels (N,) int64 in [0, C); aus (N, A) float32 multi-hot; augment (N, K, 3, 68, 2) float32 extra
    training views or None; au_labelled (N,) bool, the clips whose ``aus`` row is a real annotation (None:
    every clip; a clip without one trains on the classification loss only); origin (N,) str, the dataset
    each clip came from (None: every clip is ``name``'s; set on the union of several datasets).
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
    au_labelled: np.ndarray | None = None
    origin: np.ndarray | None = None

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
            au_labelled=None if self.au_labelled is None else self.au_labelled[idx],
            origin=None if self.origin is None else self.origin[idx],
        )

    @property
    def au_mask(self) -> np.ndarray:
        """(N,) bool: the clips with AU labels (all True when ``au_labelled`` is None)."""
        if self.au_labelled is None:
            return np.ones(len(self), dtype=bool)
        return self.au_labelled.astype(bool, copy=False)

    @property
    def origins(self) -> np.ndarray:
        """(N,) str: the dataset of every clip (``name`` for a single dataset)."""
        return np.full(len(self), self.name) if self.origin is None else self.origin

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
        """SHA-256 (hex) of what a model sees of this dataset: landmarks, labels, subjects, clip ids, class
        names, AU targets (and vocabulary) and the training views, each with its shape and dtype.

        Two loads of the same data give the same hash on any machine (fixed dtypes, C order, UTF-8 ids);
        changing one label, one landmark coordinate or a subject id changes it. ``name`` and ``meta`` (paths,
        cache keys) are left out on purpose: the hash keys results by data, not by where it came from.
        """
        import hashlib

        h = hashlib.sha256()

        def add(key: str, a: np.ndarray | None) -> None:
            if a is None:
                h.update(f"{key}:none;".encode())
                return
            a = np.asarray(a)
            if a.dtype.kind in "OUS":  # ids: text, joined unambiguously
                data = "\x00".join(str(x) for x in a.ravel()).encode("utf-8")
            else:
                data = np.ascontiguousarray(a).tobytes()
            h.update(f"{key}:{a.dtype.str if a.dtype.kind not in 'OUS' else 'str'}:{a.shape};".encode())
            h.update(data)

        add("landmarks", self.landmarks.astype(np.float32, copy=False))
        add("labels", self.labels.astype(np.int64, copy=False))
        add("subjects", self.subjects.astype(str))
        add("clips", self.clips.astype(str))
        add("class_names", np.asarray(self.class_names, dtype=str))
        add("aus", self.aus.astype(np.float32, copy=False))
        add("au_names", np.asarray(self.au_names, dtype=str))
        add("augment", None if self.augment is None else self.augment.astype(np.float32, copy=False))
        # added only when set, so every dataset that has neither keeps the hash (and the results) it had
        if self.au_labelled is not None:
            add("au_labelled", self.au_labelled.astype(bool))
        if self.origin is not None:
            add("origin", self.origin.astype(str))
        return h.hexdigest()

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {c: int(n) for c, n in zip(self.class_names, counts, strict=True)}


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
        au_labelled=None if raw.au_labelled is None else np.asarray(raw.au_labelled, dtype=bool)[idx],
        # the total factor: the generator's (SynthME, on the motion) times this landmark-space one
        meta={**raw.meta, "dataset": name, "setup": setup,
              "magnification": float(raw.meta.get("magnification", 1.0)) * float(magnification),
              "n_dropped_by_setup": int((~keep).sum())},
    )


REAL_DATASETS = ("casme2", "samm", "smic", "casme3", "mmew")


def dataset_family(name: str) -> str:
    """The class-setup family of dataset ``name`` (a SynthME preset's real dataset, or the name itself)."""
    from mer_model.data.synthme import PRESETS

    return PRESETS[name].family if name in PRESETS else name


def default_setup(name: str) -> str:
    """``objective`` where the dataset defines it, else its first setup (SMIC: ``megc3``)."""
    from mer_model.data.classes import FAMILY_SETUPS

    allowed = FAMILY_SETUPS.get(dataset_family(name), ("objective",))
    return "objective" if "objective" in allowed else allowed[0]


def is_synthetic(name: str) -> bool:
    """Is dataset ``name`` (as loaded, or as recorded in ``mer.dataset``) SynthME? The one place that
    answers it: every SynthME preset is named ``synthme-*``; its numbers are never real-dataset numbers.
    A union of datasets (names joined by ``+``) is SynthME when any part is: one synthetic part makes
    every pooled number synthetic."""
    return any(part.strip().lower().startswith("synthme") for part in name.split("+"))


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
            raise InputError(f"{name}: root is required; expected the folder holding the coding "
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

    name: a SynthME preset (``synthme-casme2`` | ``-samm`` | ``-tiny`` | ``-smic`` | ``-megc-casme2`` |
    ``-megc-samm`` | ``-casme3`` | ``-mmew``: generated, no files; knobs: ``n_subjects``, ``n_clips``,
    ``noise``, ``amplitude``, ``n_augment``, ``agree``) or a real dataset (``casme2`` | ``samm`` | ``smic`` |
    ``casme3`` | ``mmew``: ``root`` = dataset folder; knobs: ``crop_scales``, ``upsample``, ``spreadsheet``).
    A setup the dataset does not define (``classes.FAMILY_SETUPS``) is refused with one line. ``seed`` only
    affects SynthME. ``magnification`` a (default 1 = off): real data, ``x_onset + a (x - x_onset)`` on the
    detected landmarks (``magnify``); SynthME, the facial motion times a before camera and detector noise,
    as the paper's video magnification acts (``synthme.generate``). The paper's factor is 3.
    """
    if setup not in SETUPS:
        raise InputError(f"setup: {setup!r} is not a class setup; expected one of {', '.join(SETUPS)}")
    from mer_model.data.synthme import PRESETS

    if name in PRESETS:  # the generator magnifies the motion itself (and checks a)
        raw = load_raw(name, seed=seed, magnification=magnification, **preset_knobs)
        return finalise(raw, name=name, setup=setup)
    raw = load_raw(name, root=root, seed=seed, cache_dir=cache_dir, **preset_knobs)
    return finalise(raw, name=name, setup=setup, magnification=magnification)
