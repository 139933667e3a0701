"""The union of several datasets as one ``LandmarkDataset`` (the MEGC2019 composite, cross-dataset tests).

Each part keeps what identifies it: subjects and clip ids get the part's label as a prefix
(``casme2:sub01``), so no two datasets can share a subject and a LOSO over the union leaves out one person
of one dataset; ``origin`` says which dataset every clip came from (per-dataset metrics, cross-dataset
splits). The parts must name the same classes in the same order (the composite's ``megc3`` setup); their
AU vocabularies are merged (a part that does not code an AU has it 0, as "not present"), and a part with no
AU labels at all (SMIC) keeps ``au_labelled`` False for its clips, so the AU losses never read its rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mer_model.data.dataset import LandmarkDataset
from mer_model.errors import InputError

SEP = ":"  # <dataset label>:<subject id>


def _au_columns(parts: Sequence[LandmarkDataset], names: tuple[str, ...]) -> list[np.ndarray]:
    """Each part's AU rows re-indexed into the union vocabulary ``names``: (N_p, len(names)) float32."""
    out = []
    for ds in parts:
        cols = np.zeros((len(ds), len(names)), dtype=np.float32)
        for j, au in enumerate(ds.au_names):
            cols[:, names.index(au)] = ds.aus[:, j]
        out.append(cols)
    return out


def _au_order(name: str) -> tuple[int, str]:
    digits = "".join(c for c in name if c.isdigit())
    return (int(digits) if digits else 10**6, name)


def _augment(parts: Sequence[LandmarkDataset], labels: Sequence[str]) -> np.ndarray | None:
    views = {ds.augment.shape[1] if ds.augment is not None else 0 for ds in parts}
    if len(views) > 1:
        detail = ", ".join(f"{lab}: {0 if ds.augment is None else ds.augment.shape[1]}"
                           for lab, ds in zip(labels, parts, strict=True))
        raise InputError(f"dataset: the parts have different numbers of training views ({detail}); "
                         "allowed: the same n_augment / crop_scales for every dataset")
    if views == {0}:
        return None
    return np.concatenate([ds.augment for ds in parts])


def combine(parts: Sequence[LandmarkDataset], labels: Sequence[str]) -> LandmarkDataset:
    """One dataset of ``parts`` (labelled ``labels``, distinct): clips in part order, ids prefixed.

    Raises InputError (one line) when the parts' classes differ or their training views do not match.
    """
    if len(parts) != len(labels) or len(set(labels)) != len(labels) or not parts:
        raise ValueError("combine: one distinct label per part")
    first = parts[0]
    for lab, ds in zip(labels, parts, strict=True):
        if ds.class_names != first.class_names:
            raise InputError(f"dataset: {lab} ({ds.name}, setup {ds.setup}) has classes "
                             f"{', '.join(ds.class_names)} but {labels[0]} has "
                             f"{', '.join(first.class_names)}; allowed: one class setup naming the same "
                             "classes (e.g. megc3 for all)")
    au_names = tuple(sorted({a for ds in parts for a in ds.au_names}, key=_au_order))
    pairs = list(zip(labels, parts, strict=True))
    prefix = [np.char.add(f"{lab}{SEP}", ds.subjects.astype(str)) for lab, ds in pairs]
    clips = [np.char.add(f"{lab}{SEP}", ds.clips.astype(str)) for lab, ds in pairs]
    return LandmarkDataset(
        name="+".join(ds.name for ds in parts),
        setup=first.setup if len({ds.setup for ds in parts}) == 1 else "+".join(ds.setup for ds in parts),
        landmarks=np.concatenate([ds.landmarks for ds in parts]),
        subjects=np.concatenate(prefix),
        clips=np.concatenate(clips),
        labels=np.concatenate([ds.labels for ds in parts]),
        class_names=first.class_names,
        aus=np.concatenate(_au_columns(parts, au_names)),
        au_names=au_names,
        augment=_augment(parts, labels),
        meta={"parts": [{"label": lab, **ds.meta} for lab, ds in pairs]},
        au_labelled=np.concatenate([ds.au_mask for ds in parts]),
        origin=np.concatenate([np.full(len(ds), lab) for lab, ds in pairs]),
    )

