"""Features of a (current, key) region pair for DVSNet's decision network, without a flow network.

:func:`resize_features` averages any ``[h, w, C]`` feature map over a small
grid of cells (the decision network's input size); :class:`OpenCVPairFeatures`
builds the pair's features from OpenCV DIS flow (dx, dy, flow magnitude and
the warp error of the key frame), so no TensorFlow is needed to compute them.
With a DFF model the flow network's ``features`` output takes their place.
"""

from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np


def resize_features(features: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Average ``[h, w, C]`` features over a ``size = (rows, cols)`` grid of cells; float32.

    Cell ``(i, j)`` covers rows ``floor(i h / rows) .. ceil((i + 1) h / rows)``
    (and likewise columns), at least one pixel, so it works for any channel
    count and for grids smaller than ``size``. Non-finite values become 0.
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 3 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"features must be a non-empty [h, w, C] array, got shape {features.shape}")
    rows, cols = int(size[0]), int(size[1])
    if rows < 1 or cols < 1:
        raise ValueError(f"size must be two positive integers, got {tuple(size)}")
    features = np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)
    h, w = features.shape[:2]

    def edges(n, parts):
        start = np.floor(np.arange(parts) * n / parts).astype(int)
        stop = np.maximum(np.ceil(np.arange(1, parts + 1) * n / parts).astype(int), start + 1)
        return np.minimum(start, n - 1), np.minimum(stop, n)

    y0, y1 = edges(h, rows)
    x0, x1 = edges(w, cols)
    # Column sums per row band, then means over each cell.
    bands = np.stack([features[a:b].sum(axis=0) for a, b in zip(y0, y1)])  # [rows, w, C]
    cells = np.stack([bands[:, a:b].sum(axis=1) for a, b in zip(x0, x1)], axis=1)  # [rows, cols, C]
    counts = ((y1 - y0)[:, None] * (x1 - x0)[None, :]).astype(np.float32)
    return (cells / counts[..., None]).astype(np.float32)


class OpenCVPairFeatures:
    """Decision-network features of a (current, key) region pair without a flow network.

    Channels (``[h, w, 4]`` float32 at the region's size): flow dx and dy
    (pixels, current to key, from ``flow``), flow magnitude, and the absolute
    grayscale difference between the current region and the key region
    warped by the flow (grey levels / 255). ``flow`` defaults to
    :class:`schedulers.DISFlow`.
    """

    channels = 4

    def __init__(self, flow=None):
        if flow is None:
            from schedulers.flow import default_flow

            flow = default_flow()
        self.flow = flow

    def __call__(self, current: np.ndarray, key: np.ndarray, flow: Optional[np.ndarray] = None) -> np.ndarray:
        if flow is None:
            flow = self.flow(current, key)
        flow = np.nan_to_num(np.asarray(flow, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        h, w = current.shape[:2]
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        cur = cv2.cvtColor(current, cv2.COLOR_RGB2GRAY).astype(np.float32)
        key_gray = cv2.cvtColor(key, cv2.COLOR_RGB2GRAY).astype(np.float32)
        warped = cv2.remap(key_gray, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        error = np.abs(cur - warped) / 255.0
        magnitude = cv2.magnitude(flow[..., 0], flow[..., 1])
        return np.dstack([flow[..., 0], flow[..., 1], magnitude, error]).astype(np.float32)
