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
  one pixel (costs a second flow per region);
* optionally (``key_labels=True``; the key region's labels, the model's
  prediction or the ground truth, then come with every region) the key
  labels' colour disagreement: the key labels carried along the flow
  (nearest) against the class the key region's colours predict at each pixel
  (:class:`schedulers.key_colours.KeyColours`), the share of pixels where
  they differ. It sees labels carried across a boundary, new content and
  cuts, which the grey-level signals confuse with texture.

Every signal is computed on a small grid: ``1/downsample`` of the region
size (default 4), shrunk further, by the smallest integer factor that does
it, to at most :data:`DEFAULT_MAX_PIXELS` pixels (``max_pixels``; 90x120, a
360x480 region at a quarter of its size, the largest grid of the shipped
predictors' training data, so none of their rows is affected). Above
360x480 only shrinking the region and checking the flow's finiteness still
grow with its size (:func:`signal_grid`: a 480x640 region is read at 1/6,
80x106; a 1024x2048 one at 1/14), and the signals see every size at about
the scale the predictors were fitted at. ``adaptive-dff bench schedulers``
times a decision: 1.3% to 1.5% of a compact-model key-frame step at
480x640, 1.9% to 2.5% with the key labels. The signals feed a :class:`schedulers.quality_predictor.QualityPredictor`
(expected carried accuracy of the region); :func:`predicted_quality` runs
both for a policy (:class:`schedulers.PropagationQuality`,
:class:`schedulers.DecisionNetworkScheduler`). No TensorFlow: numpy and
OpenCV only.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Optional

import cv2
import numpy as np

from schedulers.base import Context, Policy, check_int

SIGNALS_VERSION = 2  # 2: bilinear shrinking, forward-difference flow gradient, downsample 4
DEFAULT_DOWNSAMPLE = 4
# The largest signal grid, in pixels: 90x120, a 360x480 region (CamVid's frames, the largest of the shipped
# predictors' training data) at 1/4. Recorded in a predictor file beside the downsample (files without it:
# no limit).
DEFAULT_MAX_PIXELS = 90 * 120
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
KEY_LABEL_SIGNAL = "key_label_disagreement"


def _resize(image: np.ndarray, shape: tuple) -> np.ndarray:
    """``image`` resized to ``shape`` (h, w) bilinearly (``cv2.INTER_LINEAR``): shrinking by an even
    integer factor ``d`` makes each output pixel the mean of the 2x2 input pixels at the centre of its
    ``d x d`` block, by an odd one the block's centre pixel (cheap, unlike area averaging, and enough
    for the smooth fields measured here)."""
    if image.shape[:2] == tuple(shape):
        return image
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


@lru_cache(maxsize=64)
def signal_grid(height: int, width: int, downsample: int, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> tuple:
    """``(h, w)``: the grid the signals of a ``height`` x ``width`` region are computed on, ``1/f`` of
    its size (each side floored, at least 1), ``f`` the smallest integer factor ``>= downsample`` that
    leaves at most ``max_pixels`` pixels (``None``: ``f = downsample``; a region that cannot shrink
    further, one pixel on each side, stops there)."""
    check_int(downsample, "downsample", 1)
    if max_pixels is not None:
        check_int(max_pixels, "max_pixels", 1)
    factor = downsample
    shape = max(height // factor, 1), max(width // factor, 1)
    while max_pixels is not None and shape[0] * shape[1] > max_pixels and shape != (1, 1):
        factor += 1
        shape = max(height // factor, 1), max(width // factor, 1)
    return shape


def _gray(image: np.ndarray) -> np.ndarray:
    """Grey levels 0..255 (float32) of an RGB ``image``."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _flow_small(flow: np.ndarray, shape: tuple, region_shape: tuple) -> np.ndarray:
    """``flow`` (on any grid, vectors in pixels of a region of ``region_shape`` (h, w)) resized to
    ``shape`` (h, w), its vectors scaled to that grid's pixels (values beyond float32's range become
    infinite, without a warning: the caller checks)."""
    with np.errstate(over="ignore"):
        flow = np.asarray(flow, np.float32)
    sy, sx = shape[0] / region_shape[0], shape[1] / region_shape[1]
    if flow.shape[:2] == tuple(shape) and sx == sy == 1:
        return flow
    small = _resize(np.ascontiguousarray(flow), shape)
    if small is flow:
        small = small.copy()
    if sx == sy:  # one contiguous product (the usual case: a region a multiple of the downsample)
        small *= np.float32(sx)
    else:
        small[..., 0] *= np.float32(sx)
        small[..., 1] *= np.float32(sy)
    return small


def _mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    """``mean(|a - b|)`` over every element (OpenCV's L1 norm: no temporary array)."""
    return float(cv2.norm(a, b, cv2.NORM_L1)) / a.size


def _all_finite(values: np.ndarray) -> bool:
    """Whether every element of ``values`` is finite. A contiguous float32 image is read once, without
    a temporary (OpenCV's L1 norm, summed in float64: NaN or inf whenever any element is, and no finite
    float32 values overflow it); anything else by ``np.isfinite``."""
    if (values.dtype == np.float32 and values.flags.c_contiguous and values.size
            and (values.ndim == 2 or (values.ndim == 3 and values.shape[2] <= 4))):
        return math.isfinite(cv2.norm(values, cv2.NORM_L1))
    return bool(np.isfinite(values).all())


def _flow_gradient(flow: np.ndarray) -> float:
    """Mean of ``|d flow / dx| + |d flow / dy|`` summed over both components, by forward differences
    (pixels of flow per pixel); 0 for a grid one pixel wide or high in that direction."""
    h, w = flow.shape[:2]
    dx = _mean_abs_difference(flow[:, 1:], flow[:, :-1]) * 2 if w > 1 else 0.0
    dy = _mean_abs_difference(flow[1:], flow[:-1]) * 2 if h > 1 else 0.0
    return dx + dy


def sample_maps(flow: np.ndarray) -> np.ndarray:
    """``[h, w, 2]`` float32: ``(x + dx, y + dy)`` at each pixel, the ``cv2.remap`` map of ``flow``
    ``[h, w, 2]`` (from the current frame to the key frame, in pixels of that grid) as one two-channel
    map (one addition, no strided copies; remapped exactly as the two one-channel maps)."""
    return cv2.add(flow, _pixel_grid(flow.shape[:2]))


def warp_to_current(key_gray: np.ndarray, flow: np.ndarray, maps: Optional[np.ndarray] = None) -> np.ndarray:
    """``out[y, x] = key_gray[y + dy, x + dx]`` (bilinear, ``cv2.remap``; edges replicated),
    ``flow`` ``[h, w, 2]`` from the current frame to the key frame in pixels of that grid
    (``maps``: its :func:`sample_maps`, when already made)."""
    if key_gray.shape[:2] != flow.shape[:2]:
        raise ValueError(f"a key of shape {key_gray.shape[:2]} cannot be warped along a flow of shape {flow.shape[:2]}; "
                         "give the flow on the key's grid")
    return cv2.remap(key_gray, sample_maps(flow) if maps is None else maps, None, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


_GRIDS: dict = {}


def _pixel_grid(shape: tuple) -> np.ndarray:
    """``[h, w, 2]`` float32 ``(x, y)`` coordinates of each pixel of an ``(h, w)`` image, kept for
    reuse (read-only)."""
    if shape not in _GRIDS:
        if len(_GRIDS) > 16:
            _GRIDS.clear()
        gx, gy = np.meshgrid(np.arange(shape[1], dtype=np.float32), np.arange(shape[0], dtype=np.float32))
        grid = np.dstack([gx, gy])
        grid.flags.writeable = False
        _GRIDS[shape] = grid
    return _GRIDS[shape]


def _p90(values: np.ndarray) -> float:
    """The element of rank ``int(0.9 * (n - 1))`` (0-based, ascending) of the ``n`` finite ``values``
    (``np.partition``: a vectorised selection, faster here than pre-selecting candidates by a sample)."""
    flat = values.reshape(-1)
    k = int(0.9 * (flat.size - 1))
    return float(np.partition(flat, k)[k])


class QualitySignals:
    """The named signal vector of each region, plus the running state it needs.

    Args:
        downsample: signals are computed at ``1/downsample`` of the region
            size (bilinear shrinking, see :func:`_resize`; flow vectors
            scaled alike, so flow signals are in pixels of that grid), or
            coarser (``max_pixels``). A predictor is fitted for one
            downsample and one ``max_pixels`` and refuses others.
        backward_flow: ``flow(key, current) -> [h, w, 2]`` for the
            forward-backward check (adds ``fb_inconsistency``); ``None``
            leaves that signal out (the default: it costs a second flow).
        key_labels: add ``key_label_disagreement`` (after ``fb_inconsistency``);
            every region then needs its key's labels (``Context.key_labels``,
            or ``key_labels=`` of :meth:`region`).
        max_pixels: the most pixels of the signals' grid; a larger region is
            shrunk by the smallest integer factor at or above ``downsample`` that
            keeps within it (:func:`signal_grid`). ``None``: always
            ``1/downsample`` (the signals of predictor files written before
            the limit).

    ``names`` is the fixed order of the vector; ``version`` changes whenever
    a signal's definition does, so a predictor fitted on other signals is
    refused. State (per region): the key it refers to and the warp error
    summed since it; a new key (another key array or index) resets it. The
    sum is only right when every frame since the key is passed, in order.
    """

    version = SIGNALS_VERSION

    def __init__(self, downsample: int = DEFAULT_DOWNSAMPLE, backward_flow: Optional[Callable] = None,
                 key_labels: bool = False, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS):
        self.downsample = check_int(downsample, "downsample", 1)
        self.backward_flow = backward_flow
        self.key_labels = bool(key_labels)
        self.max_pixels = None if max_pixels is None else check_int(max_pixels, "max_pixels", 1)
        self.reset()

    def grid(self, shape: tuple) -> tuple:
        """``(h, w)`` of the signals' grid for a region of ``shape`` (``(h, w, ...)``)."""
        return signal_grid(int(shape[0]), int(shape[1]), self.downsample, self.max_pixels)

    @classmethod
    def for_predictor(cls, predictor, downsample: Optional[int] = None) -> "QualitySignals":
        """The signal set a policy computes for ``predictor`` (a
        :class:`schedulers.QualityPredictor`): its downsample (or ``downsample``) and grid limit,
        with ``key_label_disagreement`` when it was fitted on it (no backward flow: a policy does not
        compute a second flow)."""
        names = tuple(getattr(predictor, "signal_names", ()))
        return cls(downsample=getattr(predictor, "signals_downsample", DEFAULT_DOWNSAMPLE) if downsample is None
                   else downsample, key_labels=KEY_LABEL_SIGNAL in names,
                   max_pixels=getattr(predictor, "signals_max_pixels", DEFAULT_MAX_PIXELS))

    @property
    def names(self) -> tuple:
        return (BASE_SIGNALS + ((BACKWARD_SIGNAL,) if self.backward_flow is not None else ())
                + ((KEY_LABEL_SIGNAL,) if self.key_labels else ()))

    def reset(self) -> "QualitySignals":
        self.state_: list = []
        return self

    def _key_state(self, r: int, key: np.ndarray, key_index: int, grid: tuple) -> dict:
        """Region ``r``'s state for this key, its grey image on ``grid`` (the current region's signal
        grid, so that a key of another shape is compared on the same grid)."""
        while len(self.state_) <= r:
            self.state_.append(None)
        state = self.state_[r]
        if state is None or state["key"] is not key or state["index"] != key_index:
            state = self.state_[r] = {"key": key, "index": key_index, "error_sum": 0.0, "last_frame": key_index}
        if state.get("grid") != grid:
            gray = _gray(_resize(np.ascontiguousarray(key), grid))
            gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
            gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
            state.update(grid=grid, gray=gray, mean=cv2.mean(gray)[0],
                         gradient=float(np.mean(np.abs(gx) + np.abs(gy))) / 8.0)
            state.pop("labels", None)  # the key labels' colour table is made on the grid too
        return state

    def region(self, r: int, current: np.ndarray, key: np.ndarray, key_index: int, frame_index: int,
               flow: np.ndarray, key_labels: Optional[np.ndarray] = None) -> np.ndarray:
        """The signal vector ``[len(names)]`` float64 of region ``r`` of frame ``frame_index``.

        ``flow`` is ``[h', w', 2]`` from the current region to the key region,
        its vectors in pixels of the region whatever its grid (full size, or
        a network's coarser grid, as :class:`schedulers.Context` carries
        it); resized here. Flow with any non-finite value, even one the
        shrinking would not sample, makes the warp signals non-finite (the
        policy then updates).
        ``key_labels`` (needed with ``key_labels=True``): the key region's
        labels ``[h, w]`` int (negative = unknown), or ``[h, w, C]`` class
        scores (their argmax).
        """
        if self.key_labels and key_labels is None:
            raise ValueError(f"region {r}, frame {frame_index}: the signal {KEY_LABEL_SIGNAL} needs the labels of "
                             f"the key frame ({key_index}); none were given")
        current = np.ascontiguousarray(current)
        grid = self.grid(current.shape)
        state = self._key_state(r, key, key_index, grid)
        current_small = _resize(current, grid)
        current_gray = _gray(current_small)
        flow = np.asarray(flow)
        if flow.ndim != 3 or flow.shape[-1] != 2:
            raise ValueError(f"flow of region {r}, frame {frame_index} must be [h, w, 2], got shape {flow.shape}")
        # Every value finite, of the flow as given (shrinking samples only some of its pixels) and shrunk
        # (a float64 flow beyond float32's range, or float32 values next to its limit, may overflow);
        # the flow as given is checked first, so that shrinking it reads from the cache.
        finite = _all_finite(flow)
        small = _flow_small(flow, current_gray.shape, current.shape[:2])
        maps = None
        if finite and cv2.checkRange(small)[0]:
            maps = sample_maps(small)
            error = cv2.absdiff(current_gray, warp_to_current(state["gray"], small, maps))
            error_mean, error_p90 = cv2.mean(error)[0], _p90(error)
            error_share = float(np.count_nonzero(error > OFF_LEVELS)) / error.size
            magnitude = cv2.magnitude(*cv2.split(small))
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
            values.append(self._inconsistency(current, key, small, maps))
        if self.key_labels:
            values.append(np.nan if maps is None else
                          self._label_disagreement(state, r, current_small, key, key_labels, maps))
        return np.asarray(values, np.float64)

    def _label_disagreement(self, state: dict, r: int, current_small, key, key_labels, maps: np.ndarray) -> float:
        """The key labels carried to the current region (``current_small``: shrunk to the signals'
        grid) along the flow (nearest; ``maps``: its :func:`sample_maps` on that grid), against the
        class the key region's colours predict at each pixel (:class:`KeyColours`): the share that
        differ."""
        from schedulers.key_colours import KeyColours

        shape = current_small.shape[:2]
        if state.get("labels") is not key_labels:
            labels = np.asarray(key_labels)
            if labels.ndim == 3:
                labels = labels.argmax(-1)
            if labels.shape != key.shape[:2]:
                raise ValueError(f"region {r}: key labels of shape {labels.shape} do not fit the key region of "
                                 f"shape {key.shape[:2]}")
            if labels.size and int(labels.max()) > np.iinfo(np.int32).max:
                raise ValueError(f"region {r}: key labels hold class {int(labels.max())}; class ids must fit int32")
            labels = cv2.resize(np.where(labels < 0, -1, labels).astype(np.int32), (shape[1], shape[0]),
                                interpolation=cv2.INTER_NEAREST)
            state["labels"], state["labels_small"] = key_labels, labels
            state["colours"] = KeyColours(_resize(np.ascontiguousarray(key), shape), labels)
        carried = cv2.remap(state["labels_small"], maps, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        return state["colours"].disagreement(current_small, carried)

    def _inconsistency(self, current, key, forward_small, maps: Optional[np.ndarray] = None) -> float:
        """Share of pixels whose flow to the key and back misses by more than a pixel (``maps``: the
        forward flow's :func:`sample_maps`, when ``region`` made them)."""
        backward = _flow_small(self.backward_flow(key, current), forward_small.shape[:2], current.shape[:2])
        back_at_target = np.dstack([warp_to_current(np.ascontiguousarray(backward[..., c]), forward_small, maps)
                                    for c in (0, 1)])
        roundtrip = forward_small + back_at_target
        return float(np.mean(np.hypot(roundtrip[..., 0], roundtrip[..., 1]) > 1.0))

    def __call__(self, context: Context) -> np.ndarray:
        """``[R, len(names)]`` float64: the signals of every region of ``context`` (which needs flow)."""
        if context.flow is None:
            raise ValueError("QualitySignals needs the flow from the current to the key frame; none was given")
        labels = getattr(context, "key_labels", None)
        if self.key_labels and labels is None:
            raise ValueError(f"frame {context.frame_index}: the signal {KEY_LABEL_SIGNAL} needs the key frames' "
                             "labels (Context.key_labels; with a Tracker, give each key frame's labels to "
                             "Tracker.label_keys after its step)")
        return np.stack([
            self.region(r, context.regions[r], context.key_regions[r], int(context.key_indices[r]),
                        int(context.frame_index), context.flow[r], None if labels is None else labels[r])
            for r in range(context.num_regions)
        ])


def predicted_quality(policy: Policy, predictor, downsample: int, context: Context) -> np.ndarray:
    """``[R]`` ``predictor``'s expected carried accuracy of each region of ``context`` (NaN where the
    signals are not finite), from the :class:`QualitySignals` at ``downsample`` (and the predictor's
    limit of the grid) that ``policy`` keeps
    as run-time state (``policy.signals_``: made on first use or when the downsample changes, cleared
    by ``reset()``; with ``key_label_disagreement`` when ``predictor`` was fitted on it, and ``context``
    must then carry the key labels). Raises ``ValueError`` when ``predictor`` was fitted on other
    signals."""
    signals = getattr(policy, "signals_", None)
    # The same set, predictor (and its signals) and downsample as on the last frame: no new set to build.
    names = tuple(getattr(predictor, "signal_names", ()))
    max_pixels = getattr(predictor, "signals_max_pixels", DEFAULT_MAX_PIXELS)
    last = getattr(policy, "signals_made_for_", None)
    if (last is None or last[0] is not signals or last[1] is not predictor
            or last[2:] != (names, downsample, max_pixels)):
        wanted = QualitySignals.for_predictor(predictor, downsample=downsample)
        if (signals is None or signals.names != wanted.names or signals.downsample != downsample
                or signals.max_pixels != wanted.max_pixels):
            signals = policy.signals_ = wanted
        policy.signals_made_for_ = (signals, predictor, names, downsample, max_pixels)
    predictor.check_signals(signals)
    return predictor.predict(signals(context))
