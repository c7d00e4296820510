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
    the bilinearly warped one-hot classes (the lowest class among equals) and
    its weight (1 inside a uniform area, lower at carried boundaries). Values
    outside ``0..num_classes - 1`` (void) carry no class evidence. Non-finite
    flow counts as zero.
    """
    h, w = key_label.shape
    return carry_planes(class_planes(key_label, num_classes), sampling_maps(flow, h, w))


def class_planes(key_label: np.ndarray, num_classes: int) -> list:
    """``[(class, plane [h, w] float32)]``: the one-hot planes of the classes ``key_label``
    holds, in increasing order; absent classes and void (outside ``0..num_classes - 1``)
    have none, as their warped planes would be zero everywhere."""
    label = np.asarray(key_label)
    valid = label[(label >= 0) & (label < num_classes)]
    present = np.flatnonzero(np.bincount(valid.astype(np.int64), minlength=num_classes))
    return [(int(c), (label == c).astype(np.float32)) for c in present]


def sampling_maps(flow: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``(map_x, map_y)`` ``[h, w]`` float32 for ``cv2.remap``: each pixel plus its flow
    (current -> key, pixels), non-finite flow counted as zero."""
    flow = np.nan_to_num(np.asarray(flow, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return (flow[..., 0] + np.arange(w, dtype=np.float32)[None, :],
            flow[..., 1] + np.arange(h, dtype=np.float32)[:, None])


def carry_planes(planes: list, maps: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`carry_labels` from a key's :func:`class_planes` (built once for all the frames
    a key is carried to) along :func:`sampling_maps`: each plane warped on its own (bilinear
    ``cv2.remap``, exact in float32) and the first class of the highest weight kept, so the
    result equals ``argmax`` over all ``num_classes`` warped one-hot planes: a class the key
    lacks weighs 0 everywhere and never wins, and where every weight is 0 the class is 0."""
    map_x, map_y = maps
    labels = np.zeros(map_x.shape, np.int32)
    confidence = np.zeros(map_x.shape, np.float32)
    for c, plane in planes:
        warped = cv2.remap(plane, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        labels[warped > confidence] = c
        np.maximum(confidence, warped, out=confidence)
    return labels, confidence


def copy_labels(key_label: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`carry_labels` along a zero flow, without the remap: the key labels as they
    are, void (values outside ``0..num_classes - 1``) carrying no class (class 0, confidence 0)."""
    labels = key_label.astype(np.int32)
    known = (labels >= 0) & (labels < num_classes)
    return np.where(known, labels, 0), known.astype(np.float32)
