"""Up-front checks on tensors and arrays, with errors that name the argument."""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf


def static_shape(x, name: str, rank: Optional[int] = None) -> tuple:
    """Return the static shape of ``x`` as a tuple (``None`` for unknown dims).

    Raises ``ValueError`` naming ``name`` when ``rank`` is given and differs.
    """
    shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
    shape = tuple(None if d is None else int(d) for d in shape)
    if rank is not None and len(shape) != rank:
        layout = {4: "[batch, height, width, channels]", 3: "[height, width, channels]"}
        hint = f" {layout[rank]}" if rank in layout else ""
        raise ValueError(f"{name} must have rank {rank}{hint}, got shape {shape}")
    return shape


def check_floating(x, name: str) -> None:
    """Raise ``TypeError`` unless ``x`` has a floating dtype."""
    dtype = tf.as_dtype(x.dtype)
    if not dtype.is_floating:
        raise TypeError(f"{name} must be a floating tensor, got dtype {dtype.name}")
