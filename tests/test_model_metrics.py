"""Metrics: accuracy, UF1, UAR, confusion on a hand-computed case; pooled vs per-fold."""

import numpy as np
import pytest

from mer_model import classification_metrics
from mer_model.metrics import fold_metrics, pooled_metrics


def test_hand_computed_metrics():
    m = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], num_classes=3)
    assert m["accuracy"] == pytest.approx(0.6)
    # recall: class 0 1/2, class 1 2/2, class 2 0/1 -> UAR 0.5
    assert m["uar"] == pytest.approx(0.5)
    # F1: class 0 p=1/2 r=1/2 -> 0.5; class 1 p=2/3 r=1 -> 0.8; class 2 -> 0; UF1 = 1.3 / 3
    assert m["uf1"] == pytest.approx(1.3 / 3)
    np.testing.assert_array_equal(m["confusion"], [[1, 1, 0], [0, 2, 0], [1, 0, 0]])


def test_fold_missing_classes():
    # one left-out subject with only class 1: UAR over present classes (1/2); UF1 over classes seen in y_true
    # or y_pred: class 0 predicted but absent -> F1 0, class 1 p=1 r=1/2 -> 2/3; UF1 = 1/3
    m = classification_metrics([1, 1], [1, 0], num_classes=4)
    assert m["uar"] == pytest.approx(0.5) and m["uf1"] == pytest.approx(1 / 3)
    assert m["confusion"].shape == (4, 4) and m["confusion"].sum() == 2


def test_pooled_differs_from_fold_mean():
    folds = [(np.array([0, 0, 0]), np.array([0, 0, 0])), (np.array([1]), np.array([0]))]
    pooled = pooled_metrics(folds, 2)
    per = fold_metrics(folds, 2)
    assert pooled["accuracy"] == pytest.approx(0.75)  # 3 of 4 clips
    assert per["fold_mean_accuracy"] == pytest.approx(0.5) and per["fold_std_accuracy"] == pytest.approx(0.5)
    assert set(per) == {f"fold_{s}_{m}" for s in ("mean", "std") for m in ("accuracy", "uf1", "uar")}


def test_bad_shapes_refused():
    with pytest.raises(ValueError, match="equal-length"):
        classification_metrics([0, 1], [0], num_classes=2)


def test_metrics_from_confusion_equal_scikit_learn_with_absent_and_unpredicted_classes():
    from mer_model.metrics import metrics_from_confusion

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 25))
        yt = rng.integers(0, 4, n)  # class 4 never occurs in truth; some draws miss more classes
        yp = rng.integers(0, 5, n)
        want = classification_metrics(yt, yp, 5)
        got = metrics_from_confusion(want["confusion"])
        for m in ("accuracy", "uf1", "uar"):
            assert float(got[m]) == pytest.approx(want[m])
    # vectorised over leading axes: a stack of matrices gives one value each
    stack = np.stack([classification_metrics(yt, yp, 5)["confusion"]] * 3)
    assert metrics_from_confusion(stack)["uf1"].shape == (3,)
