"""Turning user frames into network input: checks, channel handling, padding.

Frames are RGB. Accepted layouts: ``[H, W, 3]`` (one frame) or ``[B, H, W, 3]``,
dtype uint8 (0..255) or floating (values in 0..255). Documented conversions:

* grayscale ``[H, W]``, ``[H, W, 1]`` or ``[B, H, W, 1]`` is repeated to 3 channels;
* RGBA (4 channels) drops its alpha channel.

Anything else is rejected with an error naming the argument and its shape or
dtype. (The DFF model pads sizes that are not multiples of its networks'
``size_divisor`` at the bottom and right, and crops its outputs back.)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def as_frame_batch(frames, name: str = "frames") -> tf.Tensor:
    """Return ``frames`` as float32 ``[B, H, W, 3]`` (values 0..255).

    Raises:
        ValueError: unsupported rank or channel count, or an empty frame.
        TypeError: a dtype that is neither uint8 nor floating.
    """
    x = tf.convert_to_tensor(frames)
    dtype = x.dtype
    if not (dtype == tf.uint8 or dtype.is_floating):
        raise TypeError(f"{name} must be uint8 or floating RGB, got dtype {dtype.name}")
    shape = tuple(x.shape)
    if len(shape) == 2:  # one grayscale frame
        x = x[None, :, :, None]
    elif len(shape) == 3:
        if shape[-1] in (1, 3, 4):
            x = x[None]
        else:
            raise ValueError(
                f"{name} of rank 3 must be one frame [H, W, C] with C in (1, 3, 4), got shape {shape}"
            )
    elif len(shape) != 4:
        raise ValueError(f"{name} must be [H, W, 3] or [B, H, W, 3], got shape {shape}")
    channels = x.shape[-1]
    if channels == 1:
        x = tf.repeat(x, 3, axis=-1)
    elif channels == 4:
        x = x[..., :3]
    elif channels != 3:
        raise ValueError(
            f"{name} must have 3 (RGB), 1 (grayscale) or 4 (RGBA) channels, got shape {shape}"
        )
    if x.shape[1] == 0 or x.shape[2] == 0 or x.shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {shape}")
    return tf.cast(x, tf.float32)


def lcm(*values: int) -> int:
    return int(np.lcm.reduce([int(v) for v in values]))
