"""Fold sets: which samples each unit of a config trains and tests on, for LOSO and for nested selection.

A sweep's configs are evaluated on a :class:`FoldSet`: fold id -> (train indices, test indices) plus the
subjects on each side (recorded as MLflow tags, so a test can check them). The plain sweep has one, the LOSO
folds (fold id = the left-out subject). A nested search (``search.selection: nested``, issue 13) has, for
every outer subject ``o``:

- an *inner* fold set over the subjects other than ``o``, grouped by subject (``inner.scheme``: ``loso``, or
  ``group_kfold`` with ``k`` folds, scikit-learn's ``GroupKFold``): the trials of ``o``'s own Optuna study
  are trained and validated on it, so ``o`` enters no inner training and no selection;
- an *outer* fold set with the single fold ``o`` (train on every other subject, test on ``o``): the config of
  the best inner trial is retrained there (every seed) and tested once.

Pure functions, no Ray / MLflow / Optuna.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mer_model.errors import InputError
from orchestrator.spec.protocol import InnerSpec, PairSpec
from orchestrator.store import contract as C


@dataclass
class FoldSet:
    """Folds by id, in unit order; ``subjects[fid]`` = (training subjects, test subjects) of fold ``fid``."""

    ids: list[str]
    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    subjects: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    outer: str | None = None  # the outer subject of a nested fold set
    # union of datasets: the dataset (label) each fold tests, whose per-dataset metrics its predictions
    # enter; cross-dataset: also the datasets each fold trains on
    groups: dict[str, str] = field(default_factory=dict)
    train_groups: dict[str, list[str]] = field(default_factory=dict)

    def tags(self, fid: str) -> dict[str, str]:
        """Fold-run tags naming its training and test subjects (and the outer subject) or datasets, when
        recorded."""
        out: dict[str, str] = {}
        if fid in self.groups:
            out[C.TEST_DATASET] = self.groups[fid]
        if fid in self.train_groups:
            out[C.TRAIN_DATASETS] = "+".join(self.train_groups[fid])
        if fid not in self.subjects:
            return out
        train, test = self.subjects[fid]
        out |= {C.TRAIN_SUBJECTS: ",".join(train), C.TEST_SUBJECTS: ",".join(test)}
        return out | ({C.OUTER_SUBJECT: self.outer} if self.outer is not None else {})


def subject_index(splits: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Subject -> its sample indices, from ``LandmarkDataset.loso_splits`` (each test set is one subject)."""
    return {s: te for s, _, te in splits}


def loso_folds(splits: list[tuple[str, np.ndarray, np.ndarray]], subjects: list[str],
               origins: dict[str, str] | None = None) -> FoldSet:
    """The sweep's LOSO folds of ``subjects`` (no subject tags: plain sweeps' fold runs stay as they were);
    ``origins``: subject -> its dataset on a union (the composite), which each fold then tests."""
    by = {s: (tr, te) for s, tr, te in splits}
    groups = {s: origins[s] for s in subjects} if origins else {}
    return FoldSet(list(subjects), {s: by[s] for s in subjects}, groups=groups)


def subject_origins(subjects: np.ndarray, origin: np.ndarray) -> dict[str, str]:
    """Subject -> the one dataset its clips come from (a union's subjects are prefixed, so one each)."""
    out: dict[str, str] = {}
    for s, o in zip(subjects.tolist(), origin.tolist(), strict=True):
        if out.setdefault(s, o) != o:
            raise ValueError(f"subject {s} has clips of two datasets ({out[s]}, {o})")
    return out


def pair_id(pair: PairSpec) -> str:
    """The fold id of a cross-dataset unit: ``<train datasets joined by +>-><test>``. It names the split
    itself, so the unit key (config, seed, this id, data) means the same samples in every sweep."""
    return f"{'+'.join(pair.train)}->{pair.test}"


def cross_dataset_folds(origin: np.ndarray, labels: list[str], pairs: list[PairSpec] | None) -> FoldSet:
    """One fold per (train datasets, test dataset) pair; ``pairs`` None: leave one dataset out (each
    dataset tested after training on all the others). Train and test never share a dataset."""
    if pairs is None:
        pairs = [PairSpec(train=[o for o in labels if o != t], test=t) for t in labels]
    folds = FoldSet([], {})
    for pair in pairs:
        assert pair.test not in pair.train
        fid = pair_id(pair)
        folds.ids.append(fid)
        folds.splits[fid] = (np.flatnonzero(np.isin(origin, pair.train)), np.flatnonzero(origin == pair.test))
        folds.groups[fid] = pair.test
        folds.train_groups[fid] = list(pair.train)
    return folds


def _join(idx: dict[str, np.ndarray], subjects: list[str]) -> np.ndarray:
    return np.sort(np.concatenate([idx[s] for s in subjects]))


def outer_fold(idx: dict[str, np.ndarray], outer: str) -> FoldSet:
    """Train on every subject but ``outer``, test on ``outer``: where the chosen config is scored."""
    train = [s for s in idx if s != outer]
    return FoldSet([outer], {outer: (_join(idx, train), idx[outer])}, {outer: (train, [outer])}, outer)


def inner_folds(idx: dict[str, np.ndarray], outer: str, inner: InnerSpec, source: str = "spec") -> FoldSet:
    """The inner folds of ``outer``: the other subjects split by ``inner`` (fold id ``<outer>/<validation
    subjects joined by +>``)."""
    pool = np.array(sorted(s for s in idx if s != outer))
    k = len(pool) if inner.scheme == "loso" else inner.k
    if k > len(pool) or len(pool) < 2:
        raise InputError(f"{source}: search.inner.k: {k} inner folds need {k} subjects besides the outer "
                         f"one, the dataset has {len(pool)}; allowed: 2..{max(2, len(pool))}")
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut  # here: a grid sweep's start skips it

    splitter = LeaveOneGroupOut() if inner.scheme == "loso" else GroupKFold(n_splits=k)
    folds = FoldSet([], {}, outer=outer)
    for tr, va in splitter.split(pool, groups=pool):
        train, val = sorted(pool[tr].tolist()), sorted(pool[va].tolist())
        # the id names the split itself (outer + validation subjects fix the training subjects), so the
        # unit key of reuse.py (config, seed, this id, data) means the same samples in every sweep
        fid = f"{outer}/{'+'.join(val)}"
        folds.ids.append(fid)
        folds.splits[fid] = (_join(idx, train), _join(idx, val))
        folds.subjects[fid] = (train, val)
    return folds
