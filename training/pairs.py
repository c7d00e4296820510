"""FlyingChairs-style image pairs made on the fly, with exact flow.

Like FlyingChairs (Dosovitskiy et al., ICCV 2015): a background image moved by
a random affine motion, with several crops pasted over it, each moved by an
affine motion of its own. Crops and backgrounds come from any set of RGB
images (CamVid frames, or the procedural clips of :mod:`adaptive_dff.data`).

Flow convention (the project's): ``flow[y, x] = (dx, dy)`` such that the
surface seen at ``(x, y)`` in ``image0`` is at ``(x + dx, y + dy)`` in
``image1``, i.e. ``image0[y, x] ~ image1[y + dy, x + dx]``: the flow from the
current frame (``image0``) to the key frame (``image1``). It is exact at pixel
centres for the surface on top in ``image0`` (occluded or not in ``image1``).

Every pair is a function of ``(seed, index)`` only, so a data pipeline that
resumes at step ``s`` sees the same pairs as one that never stopped.
"""

from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np


def _affine(angle_deg: float, scale: float, tx: float, ty: float, cx: float, cy: float) -> np.ndarray:
    """2x3 matrix: rotate by ``angle_deg`` and scale about ``(cx, cy)``, then translate."""
    m = cv2.getRotationMatrix2D((cx, cy), angle_deg, scale)
    m[:, 2] += (tx, ty)
    return m


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` after ``b`` for 2x3 affine matrices."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]


class ChairsPairs:
    """Random-access FlyingChairs-style pairs.

    Args:
        images: source RGB images (uint8 ``[h, w, 3]``), at least one.
        height, width: size of the pairs.
        num_crops: ``(min, max)`` crops pasted per pair.
        crop_size: ``(min, max)`` side of a crop in pixels.
        max_shift: largest translation of a crop between the two images (px).
        background_shift: largest translation of the background (px; default
            half of ``max_shift``).
        motion_scale: ``(min, max)``; the background and each crop draw their
            own factor log-uniformly in this range, which multiplies their
            translation, so one data set holds small and large displacements,
            and fast crops over a nearly still background as in FlyingChairs
            (default ``(1, 1)``).
        photometric: largest relative brightness, contrast and per-channel
            gain change of ``image1`` against ``image0``, plus Gaussian noise of
            ``photometric * 10`` grey levels on both; 0 (the default) keeps
            the pair exact in colour.
        max_rotation: largest rotation of a crop (degrees; background: a third).
        max_zoom: largest relative scale change of a crop (background: a third).
        seed: pairs are a function of ``(seed, index)``.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        *,
        height: int = 256,
        width: int = 384,
        num_crops: Sequence[int] = (3, 8),
        crop_size: Sequence[int] = (48, 160),
        max_shift: float = 24.0,
        max_rotation: float = 15.0,
        max_zoom: float = 0.1,
        background_shift: Optional[float] = None,
        motion_scale: Sequence[float] = (1.0, 1.0),
        photometric: float = 0.0,
        seed: int = 0,
    ):
        images = list(images)
        if not images:
            raise ValueError("ChairsPairs needs at least one source image")
        for i, image in enumerate(images):
            if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
                raise ValueError(
                    f"source image {i} must be uint8 [h, w, 3] RGB, got "
                    f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}"
                )
            if min(image.shape[:2]) < 32:
                raise ValueError(f"source image {i} is too small: shape {image.shape}")
        if height < 32 or width < 32:
            raise ValueError(f"height and width must be at least 32, got {height}x{width}")
        if not 1 <= num_crops[0] <= num_crops[1]:
            raise ValueError(f"num_crops must be (min, max) with 1 <= min <= max, got {tuple(num_crops)}")
        if not 8 <= crop_size[0] <= crop_size[1]:
            raise ValueError(f"crop_size must be (min, max) with 8 <= min <= max, got {tuple(crop_size)}")
        if not 0 < motion_scale[0] <= motion_scale[1]:
            raise ValueError(f"motion_scale must be (min, max) with 0 < min <= max, got {tuple(motion_scale)}")
        if not 0 <= photometric < 1:
            raise ValueError(f"photometric must be in [0, 1), got {photometric}")
        self.images = images
        self.height, self.width = int(height), int(width)
        self.num_crops = (int(num_crops[0]), int(num_crops[1]))
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.max_shift = float(max_shift)
        self.max_rotation = float(max_rotation)
        self.max_zoom = float(max_zoom)
        self.background_shift = self.max_shift / 2 if background_shift is None else float(background_shift)
        self.motion_scale = (float(motion_scale[0]), float(motion_scale[1]))
        self.photometric = float(photometric)
        self.seed = int(seed)

    def _background(self, rng) -> np.ndarray:
        src = self.images[rng.integers(len(self.images))]
        h, w = src.shape[:2]
        scale = max(self.height / h, self.width / w) * rng.uniform(1.0, 1.5)
        resized = cv2.resize(src, (max(int(w * scale), self.width), max(int(h * scale), self.height)),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        y = rng.integers(0, resized.shape[0] - self.height + 1)
        x = rng.integers(0, resized.shape[1] - self.width + 1)
        return np.ascontiguousarray(resized[y : y + self.height, x : x + self.width])

    def _crop(self, rng):
        src = self.images[rng.integers(len(self.images))]
        side = int(rng.integers(self.crop_size[0], self.crop_size[1] + 1))
        side = min(side, min(src.shape[:2]))
        y = rng.integers(0, src.shape[0] - side + 1)
        x = rng.integers(0, src.shape[1] - side + 1)
        patch = np.ascontiguousarray(src[y : y + side, x : x + side])
        mask = np.zeros((side, side), np.uint8)
        c = side / 2
        if rng.random() < 0.5:
            axes = (int(c * rng.uniform(0.5, 0.95)), int(c * rng.uniform(0.5, 0.95)))
            cv2.ellipse(mask, (int(c), int(c)), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
            radius = c * rng.uniform(0.5, 0.95, angles.size)
            points = np.stack([c + radius * np.cos(angles), c + radius * np.sin(angles)], 1)
            cv2.fillPoly(mask, [points.astype(np.int32)], 1)
        return patch, mask

    def __getitem__(self, index: int) -> dict:
        """``{"image0", "image1": uint8 [H, W, 3], "flow": float32 [H, W, 2]}`` (image0 -> image1)."""
        if index < 0:
            raise IndexError(f"index must be >= 0, got {index}")
        rng = np.random.default_rng([self.seed, int(index)])
        h, w = self.height, self.width
        cx, cy = w / 2, h / 2
        background = self._background(rng)
        low, high = np.log(self.motion_scale)

        def shift_scale():
            return float(np.exp(rng.uniform(low, high))) if high > low else self.motion_scale[0]

        motion_bg = _affine(
            rng.uniform(-1, 1) * self.max_rotation / 3, 1 + rng.uniform(-1, 1) * self.max_zoom / 3,
            *(rng.uniform(-1, 1, 2) * self.background_shift * shift_scale()), cx, cy,
        )
        image0 = background.copy()
        image1 = cv2.warpAffine(background, motion_bg, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        motions = [motion_bg]
        layer0 = np.zeros((h, w), np.int32)  # which motion is on top in image0
        for k in range(int(rng.integers(self.num_crops[0], self.num_crops[1] + 1))):
            patch, mask = self._crop(rng)
            side = patch.shape[0]
            place = _affine(rng.uniform(0, 360), rng.uniform(0.7, 1.3), rng.uniform(0, w) - side / 2,
                            rng.uniform(0, h) - side / 2, side / 2, side / 2)
            centre = place @ np.array([side / 2, side / 2, 1.0])
            motion = _affine(rng.uniform(-1, 1) * self.max_rotation, 1 + rng.uniform(-1, 1) * self.max_zoom,
                             *(rng.uniform(-1, 1, 2) * self.max_shift * shift_scale()), centre[0], centre[1])
            for image, matrix, layer in ((image0, place, layer0), (image1, _compose(motion, place), None)):
                warped = cv2.warpAffine(patch, matrix, (w, h), flags=cv2.INTER_LINEAR)
                covered = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_NEAREST).astype(bool)
                image[covered] = warped[covered]
                if layer is not None:
                    layer[covered] = len(motions)
            motions.append(motion)
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        flow = np.zeros((h, w, 2), np.float32)
        for k, m in enumerate(motions):
            on_top = layer0 == k
            if on_top.any():
                x, y = grid_x[on_top], grid_y[on_top]
                flow[on_top, 0] = m[0, 0] * x + m[0, 1] * y + m[0, 2] - x
                flow[on_top, 1] = m[1, 0] * x + m[1, 1] * y + m[1, 2] - y
        if self.photometric:
            image0, image1 = self._photometric(rng, image0, image1)
        return {"image0": image0, "image1": image1, "flow": flow}

    def _photometric(self, rng, image0: np.ndarray, image1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``image1`` with its brightness, contrast and channel gains changed; noise on both."""
        p = self.photometric
        out1 = image1.astype(np.float32)
        mean = out1.mean()
        out1 = (out1 - mean) * rng.uniform(1 - p, 1 + p) + mean * rng.uniform(1 - p, 1 + p)
        out1 *= rng.uniform(1 - p / 2, 1 + p / 2, 3).astype(np.float32)
        noisy = []
        for image in (image0.astype(np.float32), out1):
            noise = rng.normal(0.0, 10.0 * p, image.shape).astype(np.float32)
            noisy.append(np.clip(image + noise, 0, 255).round().astype(np.uint8))
        return noisy[0], noisy[1]


def moved_pair(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *, strength: float = 1.0,
               max_shift: float = 24.0, max_rotation: float = 4.0, max_zoom: float = 0.06,
               void: int = 255) -> dict:
    """A (key, current) pair from one labelled image by a known camera motion.

    The key is ``(image, label)``; the current frame is the key seen through a
    random affine motion whose size is scaled by ``strength`` (e.g. the frame
    offset / 9). The flow from current to key is exact by construction
    (``current[y, x] = key[y + dy, x + dx]``); current pixels that come from
    outside the key frame get the ``void`` label.

    Returns ``{"key", "current": uint8 [H, W, 3], "label_key", "label_current":
    uint8 [H, W], "flow": float32 [H, W, 2]}``.
    """
    h, w = label.shape
    matrix = _affine(
        rng.uniform(-1, 1) * max_rotation * strength, 1 + rng.uniform(-1, 1) * max_zoom * strength,
        *(rng.uniform(-1, 1, 2) * max_shift * strength), w / 2, h / 2,
    )
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = (matrix[0, 0] * grid_x + matrix[0, 1] * grid_y + matrix[0, 2]).astype(np.float32)
    map_y = (matrix[1, 0] * grid_x + matrix[1, 1] * grid_y + matrix[1, 2]).astype(np.float32)
    current = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    label_current = cv2.remap(label, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=void)
    flow = np.dstack([map_x - grid_x, map_y - grid_y]).astype(np.float32)
    return {"key": image, "current": current, "label_key": label, "label_current": label_current, "flow": flow}
