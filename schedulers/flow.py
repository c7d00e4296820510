"""Optical flow without TensorFlow: an OpenCV DIS adapter.

The result follows the project's convention: ``flow(current, key)`` is
float32 ``[H, W, 2]`` (``dx, dy`` in pixels) with
``current[y, x] ~ key[y + dy, x + dx]``, the flow from the current frame to
the key frame that Deep Feature Flow warps along.
"""

from __future__ import annotations

import cv2
import numpy as np

_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class DISFlow:
    """Dense Inverse Search flow (Kroeger et al., ECCV 2016) via OpenCV.

    Args:
        preset: ``"ultrafast"``, ``"fast"`` (default) or ``"medium"``.
    """

    def __init__(self, preset: str = "fast"):
        if preset not in _PRESETS:
            raise ValueError(f"preset must be one of {sorted(_PRESETS)}, got {preset!r}")
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(_PRESETS[preset])

    def __call__(self, current: np.ndarray, key: np.ndarray) -> np.ndarray:
        """Flow from ``current`` to ``key``, both ``[H, W, 3]`` uint8 RGB (or ``[H, W]`` gray)."""
        if current.shape[:2] != key.shape[:2]:
            raise ValueError(f"current has shape {current.shape} but key {key.shape}")
        a = current if current.ndim == 2 else cv2.cvtColor(current, cv2.COLOR_RGB2GRAY)
        b = key if key.ndim == 2 else cv2.cvtColor(key, cv2.COLOR_RGB2GRAY)
        return self._dis.calc(np.ascontiguousarray(a), np.ascontiguousarray(b), None)

    def __getstate__(self):
        return {"preset": self.preset}

    def __setstate__(self, state):
        self.__init__(**state)

    def __repr__(self) -> str:
        return f"DISFlow(preset={self.preset!r})"
