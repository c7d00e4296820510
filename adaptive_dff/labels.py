"""Carrying labels from a key frame to the current one: along a flow, or as they are.

Labels are carried by bilinear interpolation of their one-hot encoding
(``cv2.remap``, ``BORDER_REPLICATE``: a pixel whose source lies outside the
region takes the nearest edge) and an argmax over the classes. Used by
``compare``'s oracle mode and by the propagation-quality training data.
"""

from __future__ import annotations

import cv2
import numpy as np


def carry_labels(key_label: np.ndarray, flow: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Carry ``key_label`` ``[h, w]`` to the current frame along ``flow`` ``[h, w, 2]``
    (current -> key, ``dx, dy`` in pixels).

    Returns ``(labels [h, w] int32, confidence [h, w] float32)``: the argmax of
    the bilinearly warped one-hot classes and its weight (1 inside a uniform
    area, lower at carried boundaries). Values outside ``0..num_classes - 1``
    (void) carry no class evidence. Non-finite flow counts as zero.
    """
    h, w = key_label.shape
    flow = np.nan_to_num(np.asarray(flow, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = gx + flow[..., 0], gy + flow[..., 1]
    one_hot = (key_label[..., None] == np.arange(num_classes)).astype(np.float32)
    # cv2.remap is exact for float32 with up to 4 channels; wider inputs go
    # through a coarser path, so remap four classes at a time.
    chunks = [
        cv2.remap(np.ascontiguousarray(one_hot[..., c:c + 4]), map_x, map_y, cv2.INTER_LINEAR,
                  borderMode=cv2.BORDER_REPLICATE).reshape(h, w, -1)
        for c in range(0, num_classes, 4)
    ]
    warped = np.concatenate(chunks, axis=-1)
    return warped.argmax(axis=-1).astype(np.int32), warped.max(axis=-1)


def copy_labels(key_label: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`carry_labels` along a zero flow, without the remap: the key labels as they
    are, void (values outside ``0..num_classes - 1``) carrying no class (class 0, confidence 0)."""
    labels = key_label.astype(np.int32)
    known = (labels >= 0) & (labels < num_classes)
    return np.where(known, labels, 0), known.astype(np.float32)
