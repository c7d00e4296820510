"""OpenCV DIS flow on downscaled frames as the propagation flow of a DFF model.

The flow net of the shipped CPU model costs about a third of its feature
net, which caps Deep Feature Flow's speedup on a CPU near 2x. For CPU
inference the propagation flow can instead come from OpenCV's Dense Inverse
Search (Kroeger et al., ECCV 2016) on frames downscaled by ``downscale``:
no network runs on a propagated frame, and the scale field is one (the
key features are warped, not rescaled).

Convention (as :mod:`adaptive_dff.warp`): the flow goes from the current
frame to the key frame, ``flow[..., 0] = dx`` and ``flow[..., 1] = dy`` in
pixels of the feature grid (frame pixels / ``stride``). The grid is the
padded frame's: cell ``(i, j)`` covers frame pixels ``stride*i ..
stride*(i+1)-1`` (rows) and ``stride*j ..`` (columns); its flow is the mean
of the DIS flow over those pixels, computed on the downscaled frame (area
averaging); cells in the padding take the flow of the nearest frame pixel.
"""

from __future__ import annotations

import cv2
import numpy as np

from schedulers.flow import DISFlow

__all__ = ["DISGridFlow", "PROPAGATION_FLOWS"]

PROPAGATION_FLOWS = ("network", "dis")


class DISGridFlow:
    """DIS flow between downscaled grayscale frames, averaged to a feature grid.

    Args:
        downscale: frames are shrunk by this factor (area averaging) before
            DIS; a divisor of the grid stride (1, 2, 4, 8 or 16 for stride 16).
        preset: OpenCV DIS preset, ``"ultrafast"``, ``"fast"`` or ``"medium"``.
        stride: frame pixels per grid cell (the feature net's output stride).
    """

    def __init__(self, downscale: int = 4, preset: str = "ultrafast", stride: int = 16):
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive integer, got {stride!r}")
        if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1 or stride % downscale:
            raise ValueError(f"downscale must be a positive divisor of the grid stride {stride}, got {downscale!r}")
        self.downscale = downscale
        self.stride = stride
        DISFlow(preset)  # checks the preset
        self.preset = preset

    def small(self, frame: np.ndarray) -> np.ndarray:
        """``[H, W, 3]`` uint8 RGB (or ``[H, W]`` gray) -> gray ``[ceil(H/d), ceil(W/d)]`` uint8."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            frame = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[..., 0]
        if frame.ndim == 3 and frame.shape[2] == 4:
            frame = frame[..., :3]
        if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)):
            raise ValueError(f"DIS propagation flow needs an [H, W, 3] RGB or [H, W] gray frame, got shape {frame.shape}")
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        d = self.downscale
        if d == 1:
            return np.ascontiguousarray(gray)
        height, width = gray.shape
        return cv2.resize(gray, (-(-width // d), -(-height // d)), interpolation=cv2.INTER_AREA)

    def grid_flow(self, current_small: np.ndarray, key_small: np.ndarray, grid_hw: tuple) -> np.ndarray:
        """Flow ``[grid_h, grid_w, 2]`` float32 from the current to the key frame, in grid pixels.

        Args:
            current_small, key_small: outputs of :meth:`small` for the two frames.
            grid_hw: the padded feature grid, ``(H' / stride, W' / stride)``.
        """
        if current_small.shape != key_small.shape:
            raise ValueError(f"current frame ({current_small.shape}) and key frame ({key_small.shape}) differ in size")
        flow = self._flow(current_small, key_small)  # small-frame pixels
        cells = self.stride // self.downscale  # small pixels per grid cell
        grid_h, grid_w = grid_hw
        pad_h = grid_h * cells - flow.shape[0]
        pad_w = grid_w * cells - flow.shape[1]
        if pad_h < 0 or pad_w < 0:
            raise ValueError(f"grid {grid_hw} is smaller than the frame ({flow.shape[0] * self.downscale}x"
                             f"{flow.shape[1] * self.downscale} px at stride {self.stride})")
        if pad_h or pad_w:
            flow = cv2.copyMakeBorder(flow, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        if cells > 1:
            flow = cv2.resize(flow, (grid_w, grid_h), interpolation=cv2.INTER_AREA)
        return (flow * (self.downscale / self.stride)).astype(np.float32)

    def _flow(self, current_small: np.ndarray, key_small: np.ndarray) -> np.ndarray:
        # A new OpenCV DIS object per pair (about 10 us): one reused keeps state
        # from its last call, and its flow would depend on the frames before.
        if min(current_small.shape[:2]) < DISFlow.MIN_SIZE:
            raise ValueError(f"DIS propagation flow shrinks frames {self.downscale}x and needs at least "
                             f"{DISFlow.MIN_SIZE} px per side after that: frames (or regions) of at least "
                             f"{DISFlow.MIN_SIZE * self.downscale} px per side; this one is about {current_small.shape[0] * self.downscale}x"
                             f"{current_small.shape[1] * self.downscale}")
        return DISFlow(self.preset)(current_small, key_small)

    def __repr__(self) -> str:
        return f"DISGridFlow(downscale={self.downscale}, preset={self.preset!r}, stride={self.stride})"
