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

    MIN_SIZE = 12  # OpenCV's DIS needs at least this many pixels per side

    def __call__(self, current: np.ndarray, key: np.ndarray) -> np.ndarray:
        """Flow from ``current`` to ``key``, both ``[H, W, 3]`` uint8 RGB (or ``[H, W]`` gray)."""
        a, b = (self._gray(x, name) for x, name in ((current, "current"), (key, "key")))
        if a.shape != b.shape:
            raise ValueError(f"current has shape {current.shape} but key {key.shape}")
        return self._dis.calc(a, b, None)

    def _gray(self, image: np.ndarray, name: str) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise TypeError(f"DISFlow: {name} must be uint8, got dtype {image.dtype}")
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(f"DISFlow: {name} must be [H, W, 3] RGB or [H, W] gray, got shape {image.shape}")
        if min(image.shape[:2]) < self.MIN_SIZE:
            raise ValueError(
                f"DISFlow: {name} of shape {image.shape} is too small; OpenCV's DIS flow needs at least "
                f"{self.MIN_SIZE} px per side (use fewer regions or larger frames)"
            )
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return np.ascontiguousarray(gray)

    def __getstate__(self):
        return {"preset": self.preset}

    def __setstate__(self, state):
        self.__init__(**state)

    def __repr__(self) -> str:
        return f"DISFlow(preset={self.preset!r})"


def default_flow() -> DISFlow:
    """The flow used when a policy needs flow and none was given."""
    return DISFlow()
