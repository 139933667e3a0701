"""Tiny synthetic folds for the training tests (``train_fold``, ``train_folds_batched``): the fields that
``mer_model.train.FoldData`` reads, with the apex brows raised by class so that the label is learnable."""

from dataclasses import dataclass

import numpy as np

from mer_model.landmarks import REFERENCE_SHAPE


@dataclass
class Split:
    landmarks: np.ndarray
    labels: np.ndarray
    aus: np.ndarray
    augment: np.ndarray | None = None


def make_split(n, seed, classes=3, num_aus=4, views=0, every_class=False):
    """``n`` clips; ``every_class``: the first ``classes`` labels are 0..classes-1, so that every fold built
    from such splits infers the same ``num_classes``."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    if every_class:
        labels[:classes] = np.arange(classes)
    lm = np.broadcast_to(REFERENCE_SHAPE, (n, 3, 68, 2)) + rng.normal(0, 0.5, (n, 3, 68, 2))
    lm[:, 1, 17:27, 1] -= 2.0 * labels[:, None]  # apex: brows raised by class
    aus = (rng.random((n, num_aus)) < 0.4).astype(np.float32)
    aug = lm[:, None] + rng.normal(0, 0.3, (n, views, 3, 68, 2)) if views else None
    return Split(lm.astype(np.float32), labels, aus, None if aug is None else aug.astype(np.float32))
