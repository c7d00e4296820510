"""Metrics against scikit-learn on random data."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import jaccard_score

from adaptive_dff.metrics import confusion_matrix, mean_iou


def test_confusion_and_miou_match_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, (3, 40, 50))
    predictions = np.where(rng.random(labels.shape) < 0.6, labels, rng.integers(0, 6, labels.shape))
    labels[0, :5] = 6  # void
    conf = confusion_matrix(labels, predictions, 6, ignore_index=6)
    keep = labels != 6
    np.testing.assert_array_equal(conf, sk_confusion(labels[keep], predictions[keep], labels=range(6)))
    assert mean_iou(conf) == pytest.approx(jaccard_score(labels[keep], predictions[keep], average="macro"))


def test_out_of_range_labels_are_named():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        confusion_matrix(np.array([0, 5]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="labels have shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 3)
