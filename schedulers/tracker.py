"""``Tracker``: embed a policy in any video pipeline, with numpy frames.

::

    tracker = Tracker(FrameDifference(threshold=12))
    for frame in frames:                      # [H, W, 3] uint8 RGB
        if tracker.step(frame).any_update:
            run_the_expensive_model(frame)

The tracker keeps each region's key frame (a copy of the region's crop, the
only per-stream state), computes the flow from the current region to its key
region only when the policy asks for it (OpenCV DIS by default, no
TensorFlow), and returns that flow in ``decision.extras["flow"]`` so the
pipeline can reuse it for warping. Nothing per frame is kept.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from schedulers.base import Context, Decision, Policy
from schedulers.regions import RegionGrid

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def check_frame(frame, index: int, name: str = "frame") -> np.ndarray:
    """Return ``frame`` as ``[H, W, 3]`` uint8 RGB; grayscale ``[H, W]`` is repeated.

    Raises ``ValueError``/``TypeError`` naming the frame index, shape or dtype.
    """
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise TypeError(f"{name} {index} must be uint8 RGB, got dtype {frame.dtype}")
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{name} {index} must be [H, W, 3] RGB (or [H, W] gray), got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{name} {index} is empty: shape {frame.shape}")
    return frame


class Tracker:
    """Keeps key frames per region and asks ``policy`` about each new frame.

    Args:
        policy: a :class:`schedulers.Policy`.
        regions: a :class:`RegionGrid` (default: the whole frame).
        flow: ``flow(current, key) -> [h, w, 2]`` float32, called per region
            only when ``policy.needs_flow``; default :class:`DISFlow`.

    The first frame, and every region the policy updates, become key frames.
    """

    def __init__(self, policy: Policy, regions: Optional[RegionGrid] = None, flow: Optional[FlowFn] = None):
        if not hasattr(policy, "decide"):
            raise TypeError(f"policy must have a decide(context) method, got {type(policy).__name__}")
        self.policy = policy
        self.regions = regions if regions is not None else RegionGrid(1, 1)
        if flow is None and getattr(policy, "needs_flow", False):
            from schedulers.flow import DISFlow

            flow = DISFlow()
        self.flow = flow
        self.reset()

    def reset(self) -> "Tracker":
        """Forget the stream: the next frame is frame 0 and a key frame."""
        self.frame_index_ = -1
        self.shape_ = None
        self.key_regions_: list[np.ndarray] = []
        self.key_indices_: list[int] = []
        if hasattr(self.policy, "reset"):
            self.policy.reset()
        return self

    def step(self, frame) -> Decision:
        """Decide for the next frame of the stream; updated regions become key regions."""
        index = self.frame_index_ + 1
        frame = check_frame(frame, index)
        if self.shape_ is None:
            self.regions.boxes(frame.shape[0], frame.shape[1])  # fits? raises otherwise
            self.shape_ = frame.shape
        elif frame.shape != self.shape_:
            raise ValueError(
                f"frame {index} has shape {frame.shape} but the stream started with {self.shape_}; "
                "call reset() to start a new stream"
            )
        crops = self.regions.split(frame)
        if index == 0:
            decision = Decision(
                update=np.ones(len(crops), bool), scores=np.full(len(crops), np.nan), frame_index=0,
                extras={"reason": "first frame"},
            )
        else:
            flows = self._flows(crops, index) if getattr(self.policy, "needs_flow", False) else None
            context = Context(
                frame_index=index, regions=crops, key_regions=self.key_regions_,
                key_indices=self.key_indices_, flow=flows,
            )
            decision = self.policy.decide(context)
            if flows is not None:
                decision.extras["flow"] = flows
        self._remember(crops, decision.update, index)
        self.frame_index_ = index
        return decision

    def _flows(self, crops, index: int) -> list[np.ndarray]:
        """Flow from each current region to its key region."""
        return [self.flow(c, k) for c, k in zip(crops, self.key_regions_)]

    def _remember(self, crops, update, index) -> None:
        if not self.key_regions_:
            self.key_regions_ = [c.copy() for c in crops]
            self.key_indices_ = [index] * len(crops)
            return
        for r in np.flatnonzero(update):
            self.key_regions_[r] = crops[r].copy()
            self.key_indices_[r] = index
