"""Do a key frame's labels, carried to the current frame, still fit its colours?

A pipeline keeps the labels of each key frame (the model's prediction, or the
ground truth in oracle mode) and carries them along the flow. Whether the
carried labels have gone stale is not visible in the image alone: a warp error
counts every mismatched pixel, also the ones inside one class, and misses a
boundary that moved across pixels of similar grey level. The key frame itself
says which colours, at which places, belong to which class.

:class:`KeyColours` learns that from the key frame: the joint histogram of
class and colour cell (RGB quantised to :data:`LEVELS` levels per channel,
times a :data:`CELLS` x :data:`CELLS` grid of places in the image), and each
cell's most frequent class. On a later frame, :meth:`KeyColours.disagreement`
is the share of pixels whose carried label is not the class the key frame's
colours predict there (a colour cell the key frame never showed counts as a
disagreement: new content). It grows where labels were carried across a
boundary, where new content entered, and at a cut; it is cheap (a table look-up
per pixel, no model).

No TensorFlow: numpy and OpenCV only.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

LEVELS = 8  # colour levels per RGB channel
CELLS = 4  # places: a CELLS x CELLS grid over the image


def colour_cells(rgb: np.ndarray) -> np.ndarray:
    """``[h, w]`` int32 colour cell of each pixel of ``rgb`` ``[h, w, 3]`` uint8: its RGB quantised to
    :data:`LEVELS` levels per channel (``value * LEVELS // 256``), and which of the :data:`CELLS` x
    :data:`CELLS` places it lies in (``0 .. LEVELS**3 * CELLS**2 - 1``)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"colour cells need an [h, w, 3] uint8 RGB image, got {rgb.dtype} of shape {rgb.shape}")
    q = (rgb >> _SHIFT).astype(np.float32)  # value * LEVELS // 256 for a power-of-two LEVELS
    # ((r * LEVELS + g) * LEVELS + b) * CELLS**2 as one weighted sum of the channels: integers below
    # 2**24, exact in float32
    colour = cv2.transform(q.reshape(-1, 1, 3), _CELL_WEIGHTS).reshape(rgb.shape[:2])
    return colour.astype(np.int32) + _places(rgb.shape[0], rgb.shape[1])


_SHIFT = 8 - (LEVELS.bit_length() - 1)
assert 1 << (8 - _SHIFT) == LEVELS, "LEVELS must be a power of two up to 256"
_CELL_WEIGHTS = np.array([[LEVELS * LEVELS, LEVELS, 1]], np.float32) * (CELLS * CELLS)


@lru_cache(maxsize=16)
def _places(h: int, w: int) -> np.ndarray:
    """``[h, w]`` int32: which of the CELLS x CELLS places each pixel lies in (read-only, kept for reuse)."""
    places = ((np.arange(h) * CELLS // h)[:, None] * CELLS + (np.arange(w) * CELLS // w)[None, :]).astype(np.int32)
    places.flags.writeable = False
    return places


class KeyColours:
    """Which class each colour cell of a key frame belongs to.

    Args:
        key_rgb: the key frame (or region) ``[h, w, 3]`` uint8 RGB.
        key_labels: its labels ``[h, w]`` int, a class per pixel; negative
            values are unknown (void) and left out.

    ``ValueError`` names a shape mismatch.
    """

    def __init__(self, key_rgb: np.ndarray, key_labels: np.ndarray):
        key_rgb, key_labels = np.asarray(key_rgb), np.asarray(key_labels)
        if key_rgb.ndim != 3 or key_rgb.shape[2] != 3 or key_labels.shape != key_rgb.shape[:2]:
            raise ValueError(f"key labels of shape {key_labels.shape} do not fit a key frame of shape "
                             f"{key_rgb.shape}; give one class per pixel, [h, w]")
        cells = colour_cells(key_rgb).reshape(-1).astype(np.int64)
        labels = key_labels.reshape(-1).astype(np.int64)
        known = labels >= 0
        size = LEVELS ** 3 * CELLS * CELLS
        classes, index = np.unique(labels[known], return_inverse=True)
        # The most frequent class per cell; -1 where never seen. int32 when the ids fit (a look-up and
        # comparison half as wide per pixel).
        wide = bool(classes.size) and int(classes[-1]) > np.iinfo(np.int32).max
        self.best = np.full(size, -1, np.int64 if wide else np.int32)
        if known.any():
            # classes numbered 0.. in increasing order: any class ids (255 for void, ...) cost alike
            counts = np.bincount(index * size + cells[known], minlength=classes.size * size).reshape(classes.size, size)
            seen = counts.sum(0) > 0
            self.best[seen] = classes[counts[:, seen].argmax(0)]  # the lowest class among equals

    def disagreement(self, rgb: np.ndarray, carried_labels: np.ndarray) -> float:
        """Share in [0, 1] of the pixels of ``rgb`` ``[h, w, 3]`` with a known carried label
        (``carried_labels`` ``[h, w]``, negative = unknown) whose colour cell the key frame gave another
        class, or never showed. 0 when no pixel has a known label."""
        carried = np.asarray(carried_labels)
        if carried.shape != np.asarray(rgb).shape[:2]:
            raise ValueError(f"carried labels of shape {carried.shape} do not fit a frame of shape "
                             f"{np.asarray(rgb).shape}")
        known = carried >= 0
        count = np.count_nonzero(known)
        if not count:
            return 0.0
        differ = np.take(self.best, colour_cells(rgb)) != carried
        if count < known.size:
            differ &= known
        return float(np.count_nonzero(differ)) / float(count)
