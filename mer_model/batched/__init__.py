"""Fold-batched training (``resources.packing``): K LOSO folds of one architecture trained together as one
stacked model, each fold getting the result ``train_fold`` gives it alone (to float rounding).

- :mod:`mer_model.batched.trainer`: ``train_folds_batched`` and the stacked model;
- :mod:`mer_model.batched.layers`: stand-in layers (masked BatchNorm, convolutions as matmuls) for ``vmap``;
- :mod:`mer_model.batched.optim`: the element-wise optimiser with per-fold state.
"""

from mer_model.batched.trainer import ARCH_KEYS, PER_FOLD_KEYS, train_folds_batched

__all__ = ["ARCH_KEYS", "PER_FOLD_KEYS", "train_folds_batched"]
