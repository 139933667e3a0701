"""Datasets: SynthME generator, CASME II / SAMM / SMIC / CAS(ME)^3 / MMEW loaders, dlib extraction,
landmark cache, class setups.

``load_dataset(name, setup=..., ...) -> LandmarkDataset`` is the entry point (docs/architecture.md).
"""

from mer_model.data.classes import OBJECTIVE_CLASSES, SETUPS, objective_class
from mer_model.data.dataset import (
    LandmarkDataset,
    RawClips,
    dataset_names,
    finalise,
    load_dataset,
    load_raw,
    magnify,
)


def loso_splits(ds: LandmarkDataset):
    """Leave-one-subject-out folds of ``ds``: [(subject, train_idx, test_idx)]."""
    return ds.loso_splits()


__all__ = [
    "LandmarkDataset",
    "OBJECTIVE_CLASSES",
    "RawClips",
    "SETUPS",
    "dataset_names",
    "finalise",
    "load_dataset",
    "load_raw",
    "loso_splits",
    "magnify",
    "objective_class",
]
