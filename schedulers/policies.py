"""The heuristic key-frame policies: fixed interval, frame difference, flow magnitude.

All work region by region on numpy arrays; none imports TensorFlow.
"""

from __future__ import annotations

import cv2
import numpy as np

from schedulers.base import Context, Policy, check_int


class FixedInterval(Policy):
    """Deep Feature Flow's schedule: a region is recomputed every ``interval`` frames.

    Score: frames since the region's key frame; update when it reaches ``interval``.
    """

    threshold_param = "interval"
    integer_threshold = True

    def __init__(self, interval: int = 10):
        self.interval = interval

    def decision_threshold(self) -> float:
        return check_int(self.interval, "interval", 1) - 0.5  # age > interval - 0.5  <=>  age >= interval

    def score(self, context: Context) -> np.ndarray:
        return np.array([context.frame_index - k for k in context.key_indices], dtype=np.float64)


def _gray(image: np.ndarray, downsample: int) -> np.ndarray:
    g = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if downsample > 1:
        h, w = g.shape
        g = cv2.resize(g, (max(w // downsample, 1), max(h // downsample, 1)), interpolation=cv2.INTER_AREA)
    return g


class FrameDifference(Policy):
    """Update a region when it differs from its key frame by more than ``threshold``.

    Args:
        threshold: update when the score exceeds it.
        feature: ``"pixel"``: mean absolute grayscale difference, in grey
            levels 0..255 (the signal DVSNet compares against);
            ``"edge"``: share of pixels, in percent, whose Canny edge maps
            differ (edges shrug off brightness changes, as in Reducto).
        downsample: compare at ``1/downsample`` of the region size (area
            averaging): cheaper and less noisy.

    The key region's signal is cached (``key_cache_``, per region, tied to
    the key array itself), so each frame costs one conversion and one
    difference per region.
    """

    FEATURES = ("pixel", "edge")

    def __init__(self, threshold: float = 10.0, feature: str = "pixel", downsample: int = 2):
        self.threshold = threshold
        self.feature = feature
        self.downsample = downsample

    def _signal(self, region: np.ndarray) -> np.ndarray:
        g = _gray(region, self.downsample)
        if self.feature == "edge":
            return cv2.Canny(g, 50, 150)
        return g

    def score(self, context: Context) -> np.ndarray:
        if self.feature not in self.FEATURES:
            raise ValueError(f"feature must be one of {self.FEATURES}, got {self.feature!r}")
        check_int(self.downsample, "downsample", 1)
        cache = getattr(self, "key_cache_", None)
        if cache is None or len(cache) != context.num_regions:
            cache = self.key_cache_ = [None] * context.num_regions
        scores = np.empty(context.num_regions)
        for r, (current, key) in enumerate(zip(context.regions, context.key_regions)):
            # The very key array, not its index: a policy shared by two streams
            # must not compare one stream's frame with the other's key.
            if cache[r] is None or cache[r][0] is not key:
                cache[r] = (key, self._signal(key))
            diff = cv2.absdiff(self._signal(current), cache[r][1])
            if self.feature == "edge":
                scores[r] = 100.0 * np.count_nonzero(diff) / diff.size
            else:
                scores[r] = float(cv2.mean(diff)[0])
        return scores


class FlowMagnitude(Policy):
    """Update a region when its mean flow magnitude to the key frame exceeds ``threshold``.

    Score: mean of ``sqrt(dx^2 + dy^2)`` over the region, in pixels of the
    flow field given to the policy. Non-finite flow vectors are left out of
    the mean; a region with no finite vector scores ``inf`` (always updated).
    """

    needs_flow = True

    def __init__(self, threshold: float = 2.0):
        self.threshold = threshold

    def score(self, context: Context) -> np.ndarray:
        if context.flow is None:
            raise ValueError("FlowMagnitude needs the flow from the current to the key frame; none was given")
        scores = np.empty(context.num_regions)
        for r, flow in enumerate(context.flow):
            flow = np.asarray(flow)
            if flow.ndim != 3 or flow.shape[-1] != 2:
                raise ValueError(f"flow of region {r} must be [h, w, 2], got shape {flow.shape}")
            vectors = np.ascontiguousarray(flow, dtype=np.float32).view(np.complex64)[..., 0]
            mean = _mean_modulus(vectors)  # finite exactly when every vector is
            if not np.isfinite(mean):
                magnitude = np.abs(vectors)
                finite = np.isfinite(magnitude)
                mean = float(magnitude[finite].mean(dtype=np.float64)) if finite.any() else np.inf
            scores[r] = mean
        return scores


MODULUS_BLOCK = 1 << 17  # vectors per block (512 KB of magnitudes): a block stays in the cache


def _mean_modulus(vectors: np.ndarray) -> float:
    """Mean of ``|v|`` over the complex64 ``vectors`` ``[h, w]`` (each flow vector as ``dx + i dy``:
    its modulus is the magnitude, one pass over the field, 4 to 5 times faster at 1024x2048 than
    splitting the channels for ``cv2.magnitude``, which copies each), summed in float64 by blocks of
    rows of about :data:`MODULUS_BLOCK` vectors into one reused buffer (about a third faster at
    1024x2048 than one field-sized temporary). NaN or inf when any vector is not finite."""
    if vectors.size == 0:
        return float("nan")
    rows = min(max(MODULUS_BLOCK // max(vectors.shape[1], 1), 1), vectors.shape[0])
    buffer = np.empty((rows,) + vectors.shape[1:], np.float32)
    total = 0.0
    for start in range(0, vectors.shape[0], rows):
        block = buffer[: min(rows, vectors.shape[0] - start)]
        np.abs(vectors[start:start + rows], out=block)
        total += float(block.sum(dtype=np.float64))
    return total / vectors.size
