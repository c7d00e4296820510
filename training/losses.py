"""Losses shared by the training programs."""

from __future__ import annotations

import keras
import tensorflow as tf


def masked_cross_entropy(label: tf.Tensor, logits: tf.Tensor, void: int) -> tf.Tensor:
    """Per-example mean cross-entropy ``[B]`` of ``logits [B, H, W, K]`` against
    ``label [B, H, W]``, pixels labelled ``void`` left out."""
    keep = tf.cast(label != void, tf.float32)
    safe = tf.where(label == void, tf.zeros_like(label), label)
    ce = keras.losses.sparse_categorical_crossentropy(safe, tf.cast(logits, tf.float32), from_logits=True)
    return tf.reduce_sum(ce * keep, axis=[1, 2]) / tf.maximum(tf.reduce_sum(keep, axis=[1, 2]), 1.0)
