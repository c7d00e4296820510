"""Segmentation metrics in numpy: confusion matrices and mean IoU.

Labels are integer class ids ``[..., H, W]``; an ``ignore_index`` (e.g. 11,
CamVid's void) is left out of every count.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, ignore_index: Optional[int] = None
) -> np.ndarray:
    """``[num_classes, num_classes]`` int64 counts, rows = true class, columns = predicted.

    Raises ``ValueError`` when shapes differ or a kept label is outside ``[0, num_classes)``.
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels have shape {labels.shape} but predictions {predictions.shape}")
    keep = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    truth = labels[keep].astype(np.int64)
    guess = predictions[keep].astype(np.int64)
    for name, values in (("labels", truth), ("predictions", guess)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} must lie in [0, {num_classes}) (ignore_index={ignore_index}), "
                f"found values from {values.min()} to {values.max()}"
            )
    return np.bincount(truth * num_classes + guess, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class; NaN for classes absent from both labels and predictions."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in labels or predictions."""
    ious = iou_per_class(confusion)
    return float(np.nanmean(ious)) if np.any(np.isfinite(ious)) else float("nan")
