"""Losses shared by the training programs, and SegNet's class balancing."""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf


def masked_cross_entropy(
    label: tf.Tensor, logits: tf.Tensor, void: int, class_weights: Optional[Sequence[float]] = None
) -> tf.Tensor:
    """Per-example mean cross-entropy ``[B]`` of ``logits [B, H, W, K]`` against
    ``label [B, H, W]``, pixels labelled ``void`` left out.

    With ``class_weights`` ``[K]`` each pixel's term is multiplied by the weight
    of its true class; the sum is still divided by the number of kept pixels.
    """
    keep = tf.cast(label != void, tf.float32)
    safe = tf.where(label == void, tf.zeros_like(label), label)
    ce = keras.losses.sparse_categorical_crossentropy(safe, tf.cast(logits, tf.float32), from_logits=True)
    if class_weights is not None:
        ce = ce * tf.gather(tf.constant(class_weights, tf.float32), safe)
    return tf.reduce_sum(ce * keep, axis=[1, 2]) / tf.maximum(tf.reduce_sum(keep, axis=[1, 2]), 1.0)


def median_frequency_weights(labels: Sequence[np.ndarray], num_classes: int, void: int) -> np.ndarray:
    """SegNet's median frequency balancing (Eigen & Fergus, ICCV 2015): ``w_c = median(f) / f_c``.

    ``f_c`` is the pixel count of class ``c`` over the pixel count of the
    images where ``c`` appears (void left out). A class that never appears
    gets weight 1. Returns float32 ``[num_classes]``.
    """
    counts = np.zeros(num_classes, np.float64)
    present_pixels = np.zeros(num_classes, np.float64)
    for label in labels:
        label = np.asarray(label)
        kept = label[label != void]
        per_class = np.bincount(kept.ravel(), minlength=num_classes)[:num_classes]
        counts += per_class
        present_pixels += (per_class > 0) * kept.size
    seen = counts > 0
    frequency = np.where(seen, counts / np.maximum(present_pixels, 1), np.nan)
    weights = np.where(seen, np.nanmedian(frequency) / frequency, 1.0)
    return weights.astype(np.float32)
