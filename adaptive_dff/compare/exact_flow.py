"""``--flow exact``: the generator's own flow, through the same ``flow(current, key)`` call as DIS.

Policies and the label carrying ask for ``flow(current, key)`` with the frames
(or region crops) themselves. :class:`ExactFlow` finds which clip, frame and
region each array is by its bytes (every frame and every crop of the
configured region grids is indexed once), then returns the clip's exact flow
``Clip.flow(i, k)`` cropped to that region. So the same policy and carrying
run on exact motion, which separates a policy's choices from the flow's
errors. Two identical frames of one clip are indexed as the first of them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Sequence

import numpy as np


class NoExactFlowError(ValueError):
    """A data set's clips do not carry an exact flow (``Clip.flow`` is ``None``)."""


def check_exact_flow(datasets: Sequence) -> None:
    """Raise :class:`NoExactFlowError` naming the first data set and clip without an exact flow."""
    for dataset in datasets:
        for clip in dataset.calibration + dataset.test:
            if getattr(clip, "flow", None) is None:
                raise NoExactFlowError(
                    f"--flow exact: data set {dataset.name!r}, clip {clip.name!r} has no exact flow "
                    "(only the generated data sets carry one); use --flow dis or --flow model")


def _digest(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    return hashlib.blake2b(array.tobytes(), digest_size=16, person=str(array.shape).encode()[:16]).digest()


class ExactFlow:
    """``flow(current, key) -> [h, w, 2]`` float32, exact, for frames and region crops of ``datasets``.

    Args:
        datasets: :class:`~adaptive_dff.compare.datasets.Dataset` objects whose
            clips all have ``Clip.flow``.
        grids: the :class:`schedulers.RegionGrid` objects whose crops will be asked for.
    """

    CACHE = 8

    def __init__(self, datasets: Sequence, grids: Sequence = ()):
        check_exact_flow(datasets)
        self._where: dict = {}
        self._clips: list = []
        self._cache: OrderedDict = OrderedDict()
        for dataset in datasets:
            for clip in dataset.calibration + dataset.test:
                number = len(self._clips)
                self._clips.append(clip.flow)
                height, width = np.asarray(clip.frames[0]).shape[:2]
                boxes = [(0, height, 0, width)]
                for grid in grids:
                    boxes += [tuple(int(v) for v in box) for box in grid.boxes(height, width)]
                for t, frame in enumerate(clip.frames):
                    for y0, y1, x0, x1 in dict.fromkeys(boxes):
                        self._where.setdefault(_digest(np.asarray(frame)[y0:y1, x0:x1]), (number, t, (y0, y1, x0, x1)))

    def __getstate__(self):
        return {"_where": self._where, "_clips": self._clips}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._cache = OrderedDict()

    def _find(self, array, name: str):
        found = self._where.get(_digest(np.asarray(array)))
        if found is None:
            raise ValueError(f"--flow exact: the {name} array (shape {np.asarray(array).shape}) is no frame or "
                             "region of the data sets given")
        return found

    def __call__(self, current: np.ndarray, key: np.ndarray) -> np.ndarray:
        clip, i, box = self._find(current, "current")
        clip_k, k, box_k = self._find(key, "key")
        if clip_k != clip or box_k != box:
            raise ValueError(f"--flow exact: current and key are not the same region of one clip ({box} vs {box_k})")
        full = self._cache.get((clip, i, k))
        if full is None:
            full = np.asarray(self._clips[clip](i, k), np.float32)
            self._cache[(clip, i, k)] = full
            while len(self._cache) > self.CACHE:
                self._cache.popitem(last=False)
        y0, y1, x0, x1 = box
        return np.ascontiguousarray(full[y0:y1, x0:x1])
