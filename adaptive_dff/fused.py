"""Fused inference of a DFF model's per-frame work: head, upsampling and argmax in one XLA program.

Every frame, key or propagated, ends the same way: the 1x1 head turns grid
features ``[B, h, w, C]`` into grid logits ``[B, h, w, K]``, the logits are
upsampled bilinearly to the padded frame ``[B, H', W', K]``, cropped to the
frame ``H x W``, and the class of each pixel is their argmax. Run op by op
(``tf.image.resize`` then ``numpy.argmax``) this costs about a fifth of a
key frame of the shipped model on a CPU. Here it is one XLA-compiled
function, with the upsampling written as two small matrix products:

    up[b, k, Y, X] = sum_{y, x} A[Y, y] * logits[b, y, x, k] * B[X, x]

where ``A`` ``[H, h]`` and ``B`` ``[W, w]`` hold the weights of
``tf.image.resize(..., method="bilinear")`` (half-pixel centres, no
antialiasing) from the grid to the padded frame, rows past the crop dropped.
Bilinear resizing is separable, so this is the same upsampling, equal to
``tf.image.resize`` up to float rounding (tested); the argmax is taken on the
full-resolution float32 logits, not at grid resolution.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import tensorflow as tf

from adaptive_dff.warp import bilinear_warp

__all__ = ["bilinear_matrix", "FusedHead"]


@lru_cache(maxsize=64)
def _bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
    scale = n_in / n_out
    rows = np.arange(n_out)
    src = np.maximum((rows + 0.5) * scale - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    frac = (src - np.floor(src)).astype(np.float32)
    out = np.zeros((n_out, n_in), np.float32)
    np.add.at(out, (rows, low), 1.0 - frac)
    np.add.at(out, (rows, high), frac)
    out.setflags(write=False)
    return out


def bilinear_matrix(n_out: int, n_in: int, keep: int | None = None) -> np.ndarray:
    """Weights ``[keep, n_in]`` (float32) of 1-D bilinear resizing from ``n_in`` to ``n_out`` samples.

    Row ``i`` gives output sample ``i`` as a blend of input samples, as
    ``tf.image.resize(method="bilinear")`` computes it (half-pixel centres:
    source coordinate ``(i + 0.5) * n_in / n_out - 0.5``, clamped to the
    edges). ``keep`` (default ``n_out``) keeps the first rows only (a crop).
    """
    for value, name in ((n_out, "n_out"), (n_in, "n_in")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    keep = n_out if keep is None else keep
    if not 1 <= keep <= n_out:
        raise ValueError(f"keep must be in 1..{n_out}, got {keep}")
    return _bilinear_matrix(int(n_out), int(n_in))[:keep]


class FusedHead:
    """Head, bilinear upsampling, crop and argmax of a DFF model as one XLA program.

    Args:
        head: the model's head, grid features ``[B, h, w, C]`` -> logits ``[B, h, w, K]``.

    Call :meth:`labels` with grid features (a key frame's), or
    :meth:`propagate` with key features and a flow (a propagated frame; the
    warp joins the same program), the padded frame size and the frame size. One program is compiled per (grid, padded, frame) shape and
    whether logits are asked for.
    """

    def __init__(self, head):
        self.head = head
        self._labels = tf.function(self._labels_impl, jit_compile=True, reduce_retracing=True)
        self._labels_logits = tf.function(self._labels_logits_impl, jit_compile=True, reduce_retracing=True)
        self._matrices: dict = {}
        self._programs: dict = {}

    def _upsampled(self, features, rows, cols):
        logits = tf.cast(self.head(features, training=False), tf.float32)  # [B, h, w, K]
        channels_first = tf.transpose(logits, (0, 3, 1, 2))  # [B, K, h, w]
        up = tf.einsum("Yy,bkyx->bkYx", rows, channels_first)
        return tf.einsum("bkYx,Xx->bkYX", up, cols)  # [B, K, H, W]

    def _labels_impl(self, features, rows, cols):
        return tf.argmax(self._upsampled(features, rows, cols), axis=1, output_type=tf.int32)

    def _labels_logits_impl(self, features, rows, cols):
        up = self._upsampled(features, rows, cols)
        return tf.argmax(up, axis=1, output_type=tf.int32), tf.transpose(up, (0, 2, 3, 1))

    def _program(self, warp: bool, scale: bool, logits: bool):
        """The compiled program: [warp (and scale)], head, upsampling, argmax [and logits]."""
        key = (warp, scale, logits)
        if key not in self._programs:
            finish = self._labels_logits_impl if logits else self._labels_impl

            def program(features, rows, cols, *flow_and_scale):
                if warp:
                    features = bilinear_warp(features, flow_and_scale[0])
                    if scale:
                        features = features * tf.cast(flow_and_scale[1], features.dtype)
                return finish(features, rows, cols)

            self._programs[key] = tf.function(program, jit_compile=True, reduce_retracing=True)
        return self._programs[key]

    def propagate(self, key_features: tf.Tensor, flow: tf.Tensor, scale, padded_hw: tuple, frame_hw: tuple,
                  logits: bool = False):
        """Warp ``key_features`` along ``flow`` (times ``scale`` unless ``None``), then as :meth:`labels`.

        The warp (:func:`adaptive_dff.bilinear_warp`), the scale, the head, the
        upsampling and the argmax run as one XLA program. ``flow``:
        ``[B, h, w, 2]`` on the key features' grid (see :mod:`adaptive_dff.warp`).
        """
        rows, cols = self._crop_matrices(key_features, padded_hw, frame_hw)
        extra = (flow,) if scale is None else (flow, scale)
        return self._program(True, scale is not None, logits)(key_features, rows, cols, *extra)

    def labels(self, features: tf.Tensor, padded_hw: tuple, frame_hw: tuple, logits: bool = False):
        """Class ids ``[B, H, W]`` int32 (and, with ``logits=True``, logits ``[B, H, W, K]`` float32).

        Args:
            features: grid features ``[B, h, w, C]`` (key or warped).
            padded_hw: ``(H', W')``, the padded frame the grid covers.
            frame_hw: ``(H, W)``, the frame size to crop to (``H <= H'``, ``W <= W'``).
        """
        rows, cols = self._crop_matrices(features, padded_hw, frame_hw)
        if logits:
            return self._labels_logits(features, rows, cols)
        return self._labels(features, rows, cols)

    def _crop_matrices(self, features, padded_hw, frame_hw):
        grid_h, grid_w = int(features.shape[1]), int(features.shape[2])
        (padded_h, padded_w), (height, width) = padded_hw, frame_hw
        if not (0 < height <= padded_h and 0 < width <= padded_w):
            raise ValueError(f"frame size {frame_hw} must fit in the padded size {padded_hw}")
        key = (grid_h, grid_w, int(padded_h), int(padded_w), int(height), int(width))
        if key not in self._matrices:
            self._matrices[key] = (tf.constant(bilinear_matrix(key[2], grid_h, key[4])),
                                   tf.constant(bilinear_matrix(key[3], grid_w, key[5])))
        return self._matrices[key]
