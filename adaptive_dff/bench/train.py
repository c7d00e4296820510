"""``adaptive-dff bench train``: cost of an end-to-end DFF training step.

One end-to-end DFF step on a (key, current) batch (feature net on the key
frames, flow net on the pairs, warp, scale, head, loss on the current frames,
gradients to all three parts) against one per-frame step of the same feature
net + head on the same current frames; both Adam, both traced, interleaved
in one run.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import tensorflow as tf

from adaptive_dff.bench.timing import format_table, time_interleaved
from adaptive_dff.model import compact_dff

logger = logging.getLogger(__name__)


def run(batch: int = 2, height: int = 256, width: int = 512, repeats: int = 10, seed: int = 0) -> dict:
    keras.utils.set_random_seed(seed)
    model = compact_dff(num_classes=11)
    rng = np.random.default_rng(seed)
    key = tf.constant(rng.uniform(0, 255, (batch, height, width, 3)).astype(np.float32))
    current = tf.constant(rng.uniform(0, 255, (batch, height, width, 3)).astype(np.float32))
    labels = tf.constant(rng.integers(0, 11, (batch, height, width)))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    dff_vars = model.trainable_variables
    frame_vars = model.feature_net.trainable_variables + model.head.trainable_variables
    dff_opt, frame_opt = keras.optimizers.Adam(1e-4), keras.optimizers.Adam(1e-4)

    @tf.function
    def dff_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model({"key": key, "current": current}, training=True))
        dff_opt.apply_gradients(zip(tape.gradient(loss, dff_vars), dff_vars))
        return loss

    @tf.function
    def frame_step():
        with tf.GradientTape() as tape:
            padded = model._pad(current)
            grid = model.head(model.feature_net(padded, training=True), training=True)
            logits = tf.image.resize(grid, tf.shape(padded)[1:3])[:, :height, :width]
            loss = loss_fn(labels, logits)
        frame_opt.apply_gradients(zip(tape.gradient(loss, frame_vars), frame_vars))
        return loss

    times = time_interleaved({"end-to-end DFF step": dff_step, "per-frame step": frame_step}, repeats=repeats)
    ratio = times["end-to-end DFF step"] / times["per-frame step"]
    logger.info(f"training-step benchmark: compact model, batch {batch} of {height}x{width}, median of {repeats} interleaved rounds")
    logger.info(format_table([(k, f"{v:.1f}") for k, v in times.items()], ("step", "ms")))
    logger.info(f"\nend-to-end DFF step / per-frame step = {ratio:.2f}x (target <= 1.6x)")
    return {"times_ms": times, "ratio": ratio}
