"""Confusion matrices of a DFF model over frames: per frame, and under DFF with a fixed key interval.

Both sum one ``[num_classes, num_classes]`` int64 matrix (rows: true class,
columns: predicted class; :func:`adaptive_dff.metrics.confusion_matrix`) over
all frames, as the segmentation literature reports mIoU (summed, not averaged
per frame). Labels equal to ``ignore_index`` are left out.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from adaptive_dff.metrics import confusion_matrix


def per_frame_confusion(model, frames: Sequence[np.ndarray], labels: Sequence[np.ndarray], num_classes: int,
                        ignore_index: Optional[int]) -> np.ndarray:
    """Confusion matrix of ``model.key_step`` (feature net and head) on every frame."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for frame, label in zip(frames, labels):
        guess = np.argmax(model.key_step(frame)[0].numpy()[0], -1)
        confusion += confusion_matrix(label, guess, num_classes, ignore_index)
    return confusion


def interval_confusion(model, frames: Sequence[np.ndarray], labels: Sequence[np.ndarray], num_classes: int,
                       ignore_index: Optional[int], interval: int) -> np.ndarray:
    """Confusion matrix of DFF over a clip, a key frame every ``interval`` frames."""
    from adaptive_dff.runner import VideoRunner
    from schedulers import FixedInterval

    confusion = np.zeros((num_classes, num_classes), np.int64)
    runner = VideoRunner(model, FixedInterval(interval))
    for step, label in zip(runner.run(frames), labels):
        confusion += confusion_matrix(label, step.labels, num_classes, ignore_index)
    return confusion
