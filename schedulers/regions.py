"""Regions: a grid of overlapping crops, each with its own key frame (DVSNet).

A ``rows x cols`` grid splits the frame into equal cells; each region is its
cell grown by ``overlap // 2`` pixels on every side that faces another cell,
so neighbouring regions share ``overlap`` pixels (DVSNet: 2x2, 64 px).
Outputs computed per region are merged back by keeping, at every pixel, the
output of the region with the higher confidence.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from schedulers.base import Estimator, check_int

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (end exclusive)


class RegionGrid(Estimator):
    """``rows x cols`` overlapping regions. ``RegionGrid(1, 1)`` is the whole frame."""

    def __init__(self, rows: int = 1, cols: int = 1, overlap: int = 0):
        self.rows = check_int(rows, "rows", 1)
        self.cols = check_int(cols, "cols", 1)
        self.overlap = check_int(overlap, "overlap", 0)

    def __len__(self) -> int:
        return self.rows * self.cols

    def set_params(self, **params) -> "RegionGrid":
        """Set ``rows``, ``cols`` or ``overlap``, checked as in the constructor before any is set
        (a bad value leaves the grid as it was); returns ``self``."""
        checked = type(self)(**{**self.get_params(), **params}) if set(params) <= set(self._param_names()) else None
        super().set_params(**params)  # names an unknown parameter
        self.__init__(**checked.get_params())
        return self

    def boxes(self, height: int, width: int) -> list[Box]:
        """The regions of a ``height x width`` frame, row-major, as ``(y0, y1, x0, x1)``.

        Raises ``ValueError`` when the grid does not fit the frame or the
        overlap is as large as a cell.
        """
        if height < self.rows or width < self.cols:
            raise ValueError(f"a {self.rows}x{self.cols} grid does not fit a {height}x{width} frame")
        ys = np.linspace(0, height, self.rows + 1).round().astype(int)
        xs = np.linspace(0, width, self.cols + 1).round().astype(int)
        split = [np.diff(ys).min()] * (self.rows > 1) + [np.diff(xs).min()] * (self.cols > 1)
        cell = min(split) if split else None
        if cell is not None and self.overlap >= cell:
            raise ValueError(
                f"overlap {self.overlap} px is larger than a region: the {self.rows}x{self.cols} grid "
                f"of a {height}x{width} frame has cells of {cell} px"
            )
        half = self.overlap // 2
        boxes = []
        for r in range(self.rows):
            for c in range(self.cols):
                y0 = ys[r] - (half if r > 0 else 0)
                y1 = ys[r + 1] + (self.overlap - half if r < self.rows - 1 else 0)
                x0 = xs[c] - (half if c > 0 else 0)
                x1 = xs[c + 1] + (self.overlap - half if c < self.cols - 1 else 0)
                boxes.append((int(y0), int(y1), int(x0), int(x1)))
        return boxes

    def split(self, frame: np.ndarray) -> list[np.ndarray]:
        """Crops (views, not copies) of ``frame`` ``[H, W, ...]``, one per region."""
        if np.ndim(frame) < 2:
            raise ValueError(f"split needs an image [H, W, ...], got shape {np.shape(frame)}")
        return [frame[y0:y1, x0:x1] for y0, y1, x0, x1 in self.boxes(frame.shape[0], frame.shape[1])]

    def merge(
        self, outputs: Sequence[np.ndarray], confidences: Sequence, height: int, width: int
    ) -> np.ndarray:
        """Assemble per-region outputs into one ``[height, width, ...]`` array.

        Args:
            outputs: per region, ``[h_r, w_r, ...]`` (the region's box size).
            confidences: per region, a scalar or a ``[h_r, w_r]`` map; where
                regions overlap, the higher confidence wins (ties: the earlier
                region). A NaN confidence counts as the lowest: it loses to any
                other and wins only where no region says more (every pixel
                gets some region's output). Outputs are cast to the first
                output's dtype.
        """
        boxes = self.boxes(height, width)
        if len(outputs) != len(boxes) or len(confidences) != len(boxes):
            raise ValueError(
                f"merge needs one output and one confidence per region ({len(boxes)}), "
                f"got {len(outputs)} outputs and {len(confidences)} confidences"
            )
        first = np.asarray(outputs[0])
        merged = np.zeros((height, width) + first.shape[2:], dtype=first.dtype)
        best = np.full((height, width), -np.inf)
        covered = np.zeros((height, width), bool)  # pixels some region has written
        for r, ((y0, y1, x0, x1), out, conf) in enumerate(zip(boxes, outputs, confidences)):
            out = np.asarray(out)
            if out.shape[:2] != (y1 - y0, x1 - x0):
                raise ValueError(f"output of region {r} has shape {out.shape}, its box is {(y1 - y0, x1 - x0)}")
            if conf is None:
                raise ValueError(f"confidence of region {r} is None; give a number or a [h, w] map per region")
            try:
                conf = np.broadcast_to(np.asarray(conf, dtype=np.float64), (y1 - y0, x1 - x0))
            except ValueError:
                raise ValueError(f"confidence of region {r} has shape {np.shape(conf)}; it must be a number or "
                                 f"a map of its box's size {(y1 - y0, x1 - x0)}") from None
            conf = np.where(np.isnan(conf), -np.inf, conf)
            window = best[y0:y1, x0:x1]
            wins = (conf > window) | (np.isneginf(window) & ~covered[y0:y1, x0:x1])
            covered[y0:y1, x0:x1] = True
            merged[y0:y1, x0:x1][wins] = out[wins]
            window[wins] = conf[wins]
        return merged
