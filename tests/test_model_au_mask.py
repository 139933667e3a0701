"""Clips without AU labels (SMIC, issue 23): the AU losses are masked, never fed zeros as targets.

A masked clip contributes its classification loss only: its AU targets are never read, its gradient is the
classification loss's, a batch without any labelled clip adds no AU term (so the AAU weights learn from
labelled clips only), and both training paths agree on partly labelled folds.
"""

import dataclasses

import numpy as np
import pytest
import torch
from fold_data import make_split
from torch.nn import functional as F

from mer_model import train_fold
from mer_model.batched import train_folds_batched
from mer_model.errors import InputError
from mer_model.losses import combine_au_losses, total_loss

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

AAU = dict(model="gts_gn", features="B", fusion_layer=1, lam=True, au_loss="aau", beta=0.7, epochs=2,
           batch_size=8)


def _batch(n=10, c=3, a=5, layers=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64, requires_grad=True)
    au_logits = [torch.randn(n, a, generator=g, dtype=torch.float64, requires_grad=True)
                 for _ in range(layers)]
    labels = torch.randint(0, c, (n,), generator=g)
    aus = (torch.rand(n, a, generator=g) < 0.4).double()
    w = torch.rand(layers, generator=g, dtype=torch.float64).add(0.5).requires_grad_(True)
    return logits, au_logits, labels, aus, w


@pytest.mark.parametrize("weighting", ["learned", "frozen", "sum", "uncertainty"])
def test_masked_loss_is_classification_plus_au_loss_of_the_labelled_clips(weighting):
    logits, au_logits, labels, aus, w = _batch()
    mask = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], dtype=torch.float64)
    got = total_loss(logits, labels, au_logits, aus, w, 0.7, aau_weighting=weighting, au_mask=mask)
    keep = mask.bool()
    per_layer = torch.stack([F.multilabel_soft_margin_loss(a[keep], aus[keep]) for a in au_logits])
    want = F.cross_entropy(logits, labels) + 0.7 * combine_au_losses(per_layer, weighting, w)
    torch.testing.assert_close(got, want)


def test_an_unlabelled_clip_gets_the_classification_only_gradient():
    logits, au_logits, labels, aus, w = _batch()
    mask = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], dtype=torch.float64)
    total_loss(logits, labels, au_logits, aus, w, 1.0, au_mask=mask).backward()
    g_logits, g_au = logits.grad.clone(), [a.grad.clone() for a in au_logits]
    ce_logits = logits.detach().clone().requires_grad_(True)
    F.cross_entropy(ce_logits, labels).backward()
    torch.testing.assert_close(g_logits, ce_logits.grad)  # L_ME is untouched by the mask
    unlabelled = ~mask.bool()
    for g in g_au:
        assert torch.all(g[unlabelled] == 0)  # no AU gradient reaches an unlabelled clip
        assert torch.any(g[~unlabelled] != 0)  # ...but it does reach the labelled ones


@pytest.mark.parametrize("weighting", ["learned", "uncertainty"])
def test_a_batch_without_labels_adds_no_au_term_and_leaves_the_aau_weights_alone(weighting):
    logits, au_logits, labels, aus, w = _batch()
    loss = total_loss(logits, labels, au_logits, aus, w, 1.0, aau_weighting=weighting,
                      au_mask=torch.zeros(10, dtype=torch.float64))
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    loss.backward()
    assert w.grad is None or torch.all(w.grad == 0)


def _partly_labelled(n, seed, views=0):
    mask = np.arange(n) % 3 != 0  # every third clip has no AU labels
    return make_split(n, seed, classes=3, num_aus=4, views=views, every_class=True), mask


@dataclasses.dataclass
class _Masked:
    landmarks: np.ndarray
    labels: np.ndarray
    aus: np.ndarray
    augment: np.ndarray | None
    au_labelled: np.ndarray


def _with_mask(split, mask, fill):
    aus = split.aus.copy()
    aus[~mask] = fill  # what an unlabelled clip's AU row holds must not matter
    return _Masked(split.landmarks, split.labels, aus, split.augment, mask)


def test_unlabelled_clips_au_rows_are_never_read_by_training():
    split, mask = _partly_labelled(18, 0, views=1)
    test = make_split(5, 9, classes=3, num_aus=4, every_class=True)
    zeros = train_fold(AAU, _with_mask(split, mask, 0.0), test, seed=3)
    ones = train_fold(AAU, _with_mask(split, mask, 1.0), test, seed=3)
    np.testing.assert_array_equal(zeros.probs, ones.probs)
    np.testing.assert_array_equal(zeros.aau_weights, ones.aau_weights)
    assert zeros.n_au_train == int(mask.sum())
    # and the mask matters: the same rows taken as labels (zeros as targets) train differently
    zeros_as_targets = dataclasses.replace(split, aus=np.where(mask[:, None], split.aus, 0.0))
    as_zeros = train_fold(AAU, _with_mask(zeros_as_targets, np.ones(len(mask), bool), 0.0), test, seed=3)
    assert not np.allclose(as_zeros.probs, zeros.probs)


@pytest.mark.usefixtures("float64")
def test_batched_training_equals_train_fold_on_partly_labelled_folds():
    folds = []
    for k, n in enumerate((14, 11)):
        split, mask = _partly_labelled(n, k, views=k)
        test = make_split(4, 10 + k, classes=3, num_aus=4, every_class=True)
        folds.append((_with_mask(split, mask, 0.0), test))
    batched = train_folds_batched(AAU, folds, [0, 1])
    for (tr, te), b, seed in zip(folds, batched, (0, 1), strict=True):
        s = train_fold(AAU, tr, te, seed=seed)
        np.testing.assert_allclose(b.loss_curve, s.loss_curve, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(b.probs, s.probs, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(b.aau_weights, s.aau_weights, rtol=1e-9, atol=1e-9)
        assert b.n_au_train == s.n_au_train == int(tr.au_labelled.sum())


def test_an_au_loss_without_any_labelled_training_clip_is_refused_in_one_line():
    split, _ = _partly_labelled(12, 0)
    none = _with_mask(split, np.zeros(12, bool), 0.0)
    test = make_split(4, 5, classes=3, num_aus=4, every_class=True)
    with pytest.raises(InputError, match=r"^config: au_loss: 'aau' but no training clip has AU labels") as e:
        train_fold(AAU, none, test, seed=0)
    assert "\n" not in str(e.value)
    plain = train_fold({**AAU, "au_loss": "none"}, none, test, seed=0)  # classification only: fine
    assert plain.n_au_train == 0
