"""Propagation-quality signals: what a pipeline that carries results along the flow knows, per region.

A pipeline that carries a key frame's result along the flow has, per region
and at no extra cost beyond the flow it computes anyway, a few signals of how
well that works (:class:`QualitySignals`):

* ``frames_since_key``;
* the *warp error*: the key region warped to the current one along the flow
  from the current region to the key region (the project's convention,
  ``cv2.remap``), compared with the current region in grey levels 0..255:
  its mean, its 90th percentile and the share of pixels off by more than
  :data:`OFF_LEVELS` grey levels (occluded or badly matched pixels);
* that mean warp error summed over every frame since the key frame, and its
  average per frame (the strongest single signal known here);
* the flow magnitude (mean and 90th percentile, pixels) and its spatial
  gradient (mean of ``|d flow / dx| + |d flow / dy|`` by forward differences,
  summed over both components: motion boundaries);
* the frame difference to the key (mean absolute grey difference), the change
  of mean brightness, and the key region's mean grey gradient (how much
  structure there is to misplace);
* optionally (``backward_flow`` given) the forward-backward inconsistency:
  the share of pixels whose flow to the key and back does not return within
  one pixel (costs a second flow per region).

Every signal is computed at ``1/downsample`` of the region size (default 4):
the decision then costs about 1% of a key-frame step of the compact model
(``adaptive-dff bench schedulers``). The signals feed a :class:`schedulers.quality_predictor.QualityPredictor`
(expected carried accuracy of the region); :func:`predicted_quality` runs
both for a policy (:class:`schedulers.PropagationQuality`,
:class:`schedulers.DecisionNetworkScheduler`). No TensorFlow: numpy and
OpenCV only.
"""

from __future__ import annotations

from typing import Callable, Optional

import cv2
import numpy as np

from schedulers.base import Context, Policy, check_int

SIGNALS_VERSION = 2  # 2: bilinear shrinking, forward-difference flow gradient, downsample 4
DEFAULT_DOWNSAMPLE = 4
OFF_LEVELS = 24.0  # grey levels: a warped pixel off by more counts as badly matched
BASE_SIGNALS = (
    "frames_since_key",
    "warp_error_mean",
    "warp_error_p90",
    "warp_error_share",
    "warp_error_sum",
    "warp_error_avg",
    "flow_mean",
    "flow_p90",
    "flow_gradient",
    "frame_difference",
    "brightness_change",
    "key_gradient",
)
BACKWARD_SIGNAL = "fb_inconsistency"


def _resize(image: np.ndarray, shape: tuple) -> np.ndarray:
    """``image`` resized to ``shape`` (h, w) bilinearly (``cv2.INTER_LINEAR``): shrinking by an even
    integer factor ``d`` makes each output pixel the mean of the 2x2 input pixels at the centre of its
    ``d x d`` block, by an odd one the block's centre pixel (cheap, unlike area averaging, and enough
    for the smooth fields measured here)."""
    if image.shape[:2] == tuple(shape):
        return image
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _small_shape(shape: tuple, downsample: int) -> tuple:
    return max(shape[0] // downsample, 1), max(shape[1] // downsample, 1)


def _gray_small(image: np.ndarray, downsample: int) -> np.ndarray:
    """Grey levels 0..255 (float32) of an RGB ``image`` at ``1/downsample`` of its size (resized first)."""
    image = np.ascontiguousarray(image)
    small = _resize(image, _small_shape(image.shape, downsample))
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _flow_small(flow: np.ndarray, shape: tuple, region_shape: tuple) -> np.ndarray:
    """``flow`` (on any grid, vectors in pixels of a region of ``region_shape`` (h, w)) resized to
    ``shape`` (h, w), its vectors scaled to that grid's pixels."""
    flow = np.asarray(flow, np.float32)
    sy, sx = shape[0] / region_shape[0], shape[1] / region_shape[1]
    if flow.shape[:2] == tuple(shape) and sx == sy == 1:
        return flow
    small = _resize(np.ascontiguousarray(flow), shape)
    if small is flow:
        small = small.copy()
    small[..., 0] *= np.float32(sx)
    small[..., 1] *= np.float32(sy)
    return small


def _mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    """``mean(|a - b|)`` over every element (OpenCV's L1 norm: no temporary array)."""
    return float(cv2.norm(a, b, cv2.NORM_L1)) / a.size


def _flow_gradient(flow: np.ndarray) -> float:
    """Mean of ``|d flow / dx| + |d flow / dy|`` summed over both components, by forward differences
    (pixels of flow per pixel); 0 for a grid one pixel wide or high in that direction."""
    h, w = flow.shape[:2]
    dx = _mean_abs_difference(flow[:, 1:], flow[:, :-1]) * 2 if w > 1 else 0.0
    dy = _mean_abs_difference(flow[1:], flow[:-1]) * 2 if h > 1 else 0.0
    return dx + dy


def warp_to_current(key_gray: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``out[y, x] = key_gray[y + dy, x + dx]`` (bilinear, ``cv2.remap``; edges replicated),
    ``flow`` ``[h, w, 2]`` from the current frame to the key frame in pixels of that grid."""
    gx, gy = _pixel_grid(key_gray.shape)
    return cv2.remap(key_gray, cv2.add(gx, flow[..., 0]), cv2.add(gy, flow[..., 1]), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


_GRIDS: dict = {}


def _pixel_grid(shape: tuple) -> tuple:
    """``(x, y)`` float32 coordinate grids of an ``(h, w)`` image, kept for reuse (read-only)."""
    if shape not in _GRIDS:
        if len(_GRIDS) > 16:
            _GRIDS.clear()
        gx, gy = np.meshgrid(np.arange(shape[1], dtype=np.float32), np.arange(shape[0], dtype=np.float32))
        gx.flags.writeable = gy.flags.writeable = False
        _GRIDS[shape] = (gx, gy)
    return _GRIDS[shape]


def _p90(values: np.ndarray) -> float:
    flat = values.reshape(-1)
    k = int(0.9 * (flat.size - 1))
    return float(np.partition(flat, k)[k])


class QualitySignals:
    """The named signal vector of each region, plus the running state it needs.

    Args:
        downsample: signals are computed at ``1/downsample`` of the region
            size (bilinear shrinking, see :func:`_resize`; flow vectors
            scaled alike, so flow signals are in pixels of that grid). A
            predictor is fitted for one downsample and refuses another.
        backward_flow: ``flow(key, current) -> [h, w, 2]`` for the
            forward-backward check (adds ``fb_inconsistency``); ``None``
            leaves that signal out (the default: it costs a second flow).

    ``names`` is the fixed order of the vector; ``version`` changes whenever
    a signal's definition does, so a predictor fitted on other signals is
    refused. State (per region): the key it refers to and the warp error
    summed since it; a new key (another key array or index) resets it. The
    sum is only right when every frame since the key is passed, in order.
    """

    version = SIGNALS_VERSION

    def __init__(self, downsample: int = DEFAULT_DOWNSAMPLE, backward_flow: Optional[Callable] = None):
        self.downsample = check_int(downsample, "downsample", 1)
        self.backward_flow = backward_flow
        self.reset()

    @property
    def names(self) -> tuple:
        return BASE_SIGNALS + ((BACKWARD_SIGNAL,) if self.backward_flow is not None else ())

    def reset(self) -> "QualitySignals":
        self.state_: list = []
        return self

    def _key_state(self, r: int, key: np.ndarray, key_index: int) -> dict:
        while len(self.state_) <= r:
            self.state_.append(None)
        state = self.state_[r]
        if state is None or state["key"] is not key or state["index"] != key_index:
            gray = _gray_small(key, self.downsample)
            gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
            gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
            state = self.state_[r] = {
                "key": key, "index": key_index, "gray": gray, "mean": cv2.mean(gray)[0], "error_sum": 0.0,
                "gradient": float(np.mean(np.abs(gx) + np.abs(gy))) / 8.0, "last_frame": key_index,
            }
        return state

    def region(self, r: int, current: np.ndarray, key: np.ndarray, key_index: int, frame_index: int,
               flow: np.ndarray) -> np.ndarray:
        """The signal vector ``[len(names)]`` float64 of region ``r`` of frame ``frame_index``.

        ``flow`` is ``[h', w', 2]`` from the current region to the key region,
        its vectors in pixels of the region whatever its grid (full size, or
        a network's coarser grid, as :class:`schedulers.Context` carries
        it); resized here. Non-finite flow
        makes the warp signals non-finite (the policy then updates).
        """
        state = self._key_state(r, key, key_index)
        current_gray = _gray_small(current, self.downsample)
        flow = np.asarray(flow)
        if flow.ndim != 3 or flow.shape[-1] != 2:
            raise ValueError(f"flow of region {r}, frame {frame_index} must be [h, w, 2], got shape {flow.shape}")
        small = _flow_small(flow, current_gray.shape, current.shape[:2])
        if cv2.checkRange(small)[0]:  # every value finite
            error = cv2.absdiff(current_gray, warp_to_current(state["gray"], small))
            error_mean, error_p90 = cv2.mean(error)[0], _p90(error)
            error_share = float(np.count_nonzero(error > OFF_LEVELS)) / error.size
            magnitude = cv2.magnitude(small[..., 0], small[..., 1])
            flow_mean, flow_p90 = cv2.mean(magnitude)[0], _p90(magnitude)
            grad = _flow_gradient(small)
        else:
            error_mean = error_p90 = error_share = flow_mean = flow_p90 = grad = np.nan
        if frame_index != state["last_frame"]:  # count each frame once, even when asked twice
            state["error_sum"] += error_mean
            state["last_frame"] = frame_index
        n = max(frame_index - key_index, 0)
        values = [
            float(n), error_mean, error_p90, error_share, state["error_sum"],
            state["error_sum"] / max(n, 1), flow_mean, flow_p90, grad,
            _mean_abs_difference(current_gray, state["gray"]),
            abs(cv2.mean(current_gray)[0] - state["mean"]), state["gradient"],
        ]
        if self.backward_flow is not None:
            values.append(self._inconsistency(current, key, small))
        return np.asarray(values, np.float64)

    def _inconsistency(self, current, key, forward_small) -> float:
        backward = _flow_small(self.backward_flow(key, current), forward_small.shape[:2], current.shape[:2])
        back_at_target = np.dstack([warp_to_current(np.ascontiguousarray(backward[..., c]), forward_small)
                                    for c in (0, 1)])
        roundtrip = forward_small + back_at_target
        return float(np.mean(np.hypot(roundtrip[..., 0], roundtrip[..., 1]) > 1.0))

    def __call__(self, context: Context) -> np.ndarray:
        """``[R, len(names)]`` float64: the signals of every region of ``context`` (which needs flow)."""
        if context.flow is None:
            raise ValueError("QualitySignals needs the flow from the current to the key frame; none was given")
        return np.stack([
            self.region(r, context.regions[r], context.key_regions[r], int(context.key_indices[r]),
                        int(context.frame_index), context.flow[r])
            for r in range(context.num_regions)
        ])


def predicted_quality(policy: Policy, predictor, downsample: int, context: Context) -> np.ndarray:
    """``[R]`` ``predictor``'s expected carried accuracy of each region of ``context`` (NaN where the
    signals are not finite), from the :class:`QualitySignals` at ``downsample`` that ``policy`` keeps
    as run-time state (``policy.signals_``: made on first use or when the downsample changes, cleared
    by ``reset()``). Raises ``ValueError`` when ``predictor`` was fitted on other signals."""
    signals = getattr(policy, "signals_", None)
    if signals is None or signals.downsample != downsample:
        signals = policy.signals_ = QualitySignals(downsample=downsample)
    predictor.check_signals(signals)
    return predictor.predict(signals(context))
