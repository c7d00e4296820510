"""How the generated clips look: the classes, their shapes, the background's regions, the textures.

:mod:`adaptive_dff.data.synthetic` moves these through time (cameras, objects,
cuts, brightness); everything here is a closed-form function of its
arguments and a seeded generator, so the clips stay bit-identical.

Shapes are tested analytically in an object's normalised coordinates
``c in [-1, 1]^2`` (:func:`shape_contains`); the background's two regions
are split by a sum of plane waves (:func:`wave_field`); textures
(:func:`background_texture`, :func:`object_texture`) are uint8 in 16..208,
so brightness gains up to 1.2 never saturate. Only numpy and OpenCV are
used.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

#: Class names, indexed by class id (the values of the label maps).
#: 0-1 are background regions painted on the moving background; 2-6 are object
#: classes, told apart by shape family and by texture and colour statistics:
#:
#: ========  ===========================================================
#: ground    brown-grey, multi-scale noise (background)
#: foliage   green, blobby noise (background regions with smooth borders)
#: disc      red-orange ellipse, radial shading and spots
#: box       blue rectangle, straight stripes
#: triangle  yellow triangle, soft checkerboard
#: cross     magenta plus sign (non-convex), fine noise
#: ring      cyan annulus (the background shows through its hole), concentric bands
#: ========  ===========================================================
CLASS_NAMES: tuple[str, ...] = ("ground", "foliage", "disc", "box", "triangle", "cross", "ring")
NUM_CLASSES: int = len(CLASS_NAMES)
BACKGROUND_CLASSES: tuple[int, ...] = (0, 1)
OBJECT_CLASSES: tuple[int, ...] = (2, 3, 4, 5, 6)

_GROUND, _FOLIAGE, _DISC, _BOX, _TRIANGLE, _CROSS, _RING = range(NUM_CLASSES)

# Shape constants, in an object's normalised coordinates c in [-1, 1]^2.
_BOX_HALF = 0.85
_TRI_BASE = 0.8  # the base edge is at c_y = 0.8, the apex at (0, -1)
_TRI_SLOPE = (1.0 + _TRI_BASE) / 0.95  # base corners at (+-0.95, 0.8)
_CROSS_ARM = 0.3
_CROSS_LEN = 0.95
_RING_INNER = 0.45

_OBJECT_COLOURS = {
    _DISC: (200.0, 75.0, 55.0),
    _BOX: (60.0, 95.0, 195.0),
    _TRIANGLE: (205.0, 185.0, 60.0),
    _CROSS: (170.0, 70.0, 175.0),
    _RING: (60.0, 175.0, 185.0),
}
_GROUND_COLOUR = (125.0, 110.0, 90.0)
_FOLIAGE_COLOUR = (70.0, 125.0, 55.0)
_TEXTURE_RANGE = (16.0, 208.0)

# --------------------------------------------------------------------------
# shapes and the background's regions


def shape_contains(cls: int, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Whether normalised object coordinates ``(cx, cy)`` lie inside shape ``cls``."""
    if cls == _DISC:
        return cx * cx + cy * cy <= 1.0
    if cls == _BOX:
        return (np.abs(cx) <= _BOX_HALF) & (np.abs(cy) <= _BOX_HALF)
    if cls == _TRIANGLE:
        return (cy <= _TRI_BASE) & (cy >= _TRI_SLOPE * np.abs(cx) - 1.0)
    if cls == _CROSS:
        ax, ay = np.abs(cx), np.abs(cy)
        return ((ax <= _CROSS_ARM) & (ay <= _CROSS_LEN)) | ((ax <= _CROSS_LEN) & (ay <= _CROSS_ARM))
    if cls == _RING:
        r2 = cx * cx + cy * cy
        return (r2 <= 1.0) & (r2 >= _RING_INNER**2)
    raise AssertionError(f"unknown object class {cls}")








def wave_field(waves: np.ndarray, to_world: np.ndarray, height: int, width: int) -> np.ndarray:
    """The background region function on a pixel grid, float32 ``[height, width]``.

    ``g(w) = sum_k a_k cos(2 pi (m_k w_x / T_x + n_k w_y / T_y) + phi_k)`` at world
    point ``w = to_world @ (x, y, 1)``. The phase is affine in ``(x, y)``, so
    each term is ``cos(alpha x) cos(beta y + gamma) - sin(alpha x) sin(beta y +
    gamma)``, and the whole field is one small matrix product.
    ``waves`` rows: ``(m / T_x, n / T_y, amplitude, phase)``.
    """
    kx, ky, amp, phase = waves.T
    two_pi = 2.0 * math.pi
    alpha = two_pi * (kx * to_world[0, 0] + ky * to_world[1, 0])
    beta = two_pi * (kx * to_world[0, 1] + ky * to_world[1, 1])
    gamma = two_pi * (kx * to_world[0, 2] + ky * to_world[1, 2]) + phase
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)
    row_phase = np.outer(ys, beta) + gamma  # [H, K]
    col_phase = np.outer(alpha, xs)  # [K, W]
    left = np.concatenate([amp * np.cos(row_phase), -amp * np.sin(row_phase)], axis=1)
    right = np.concatenate([np.cos(col_phase), np.sin(col_phase)], axis=0)
    return left.astype(np.float32) @ right.astype(np.float32)


# --------------------------------------------------------------------------
# textures


def _periodic_noise(rng: np.random.Generator, shape: tuple[int, int],
                    filters: Sequence[Sequence[tuple[float, float]]]) -> np.ndarray:
    """Noise fields that tile with period ``shape``: float32 ``[len(filters), *shape]``.

    Each field is white noise filtered in the Fourier domain by a sum of
    Gaussians (``(sigma in texels, weight)`` pairs), normalised to zero mean and
    unit standard deviation.
    """
    h, w = shape
    white = rng.standard_normal((len(filters), h, w), dtype=np.float32)
    spectrum = np.fft.rfft2(white)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f2 = fx * fx + fy * fy
    for n, octaves in enumerate(filters):
        transfer = sum(weight * np.exp(-2.0 * math.pi**2 * sigma**2 * f2) for sigma, weight in octaves)
        spectrum[n] *= transfer.astype(np.float32)
    fields = np.fft.irfft2(spectrum, s=(h, w)).astype(np.float32)
    fields -= fields.mean(axis=(1, 2), keepdims=True)
    fields /= fields.std(axis=(1, 2), keepdims=True) + 1e-12
    return fields


def _blurred_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    field = rng.standard_normal((size, size), dtype=np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    field -= field.mean()
    return field / (field.std() + 1e-12)


def _to_texture(rgb: np.ndarray) -> np.ndarray:
    lo, hi = _TEXTURE_RANGE
    return np.ascontiguousarray(np.clip(np.rint(rgb), lo, hi).astype(np.uint8))


def _jitter(rng: np.random.Generator, colour: Sequence[float]) -> np.ndarray:
    return np.asarray(colour) * rng.uniform(0.85, 1.15, size=3)


def background_texture(rng: np.random.Generator, shape: tuple[int, int], waves: np.ndarray,
                        threshold: float) -> np.ndarray:
    """Ground and foliage split by the region function, tileable with period ``shape``.

    Returns uint8 ``[2 T_y, 2 T_x, 3]``: two periods in each direction, so a
    frame's footprint usually fits without wrapping.
    """
    h, w = shape
    ground_lum, ground_tint, leaf_lum, leaf_tint = _periodic_noise(
        rng, shape,
        [
            [(2.0, 0.5), (5.0, 0.8), (14.0, 1.0)],
            [(24.0, 1.0)],
            [(2.5, 0.6), (6.0, 1.0)],
            [(18.0, 1.0)],
        ],
    )
    tint_g = rng.normal(size=3)
    tint_g /= np.linalg.norm(tint_g)
    tint_f = rng.normal(size=3)
    tint_f /= np.linalg.norm(tint_f)
    ground = (_jitter(rng, _GROUND_COLOUR) * (1.0 + 0.28 * ground_lum[..., None])
              + 12.0 * ground_tint[..., None] * tint_g)
    leaves = (_jitter(rng, _FOLIAGE_COLOUR) * (1.0 + 0.38 * np.tanh(1.3 * leaf_lum)[..., None])
              + 12.0 * leaf_tint[..., None] * tint_f)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    foliage = wave_field(waves, identity, h, w) > threshold
    tile = _to_texture(np.where(foliage[..., None], leaves, ground))
    return np.ascontiguousarray(np.tile(tile, (2, 2, 1)))


def object_texture(rng: np.random.Generator, cls: int, size: int) -> np.ndarray:
    """``[size, size, 3]`` uint8 pattern of an object of class ``cls``."""
    u = np.arange(size, dtype=np.float32)
    centre = (size - 1) / 2.0
    ux, uy = u[None, :] - centre, u[:, None] - centre
    if cls == _DISC:
        r2 = (ux * ux + uy * uy) / (size / 2.0) ** 2
        lum = 1.0 - 0.3 * r2 + 0.15 * _blurred_noise(rng, size, 2.5)
    elif cls == _BOX:
        period, psi, phase = rng.uniform(9.0, 16.0), rng.uniform(0, math.pi), rng.uniform(0, 2 * math.pi)
        stripes = np.sin(2 * math.pi * (ux * math.cos(psi) + uy * math.sin(psi)) / period + phase)
        lum = 1.0 + 0.22 * stripes + 0.08 * _blurred_noise(rng, size, 2.0)
    elif cls == _TRIANGLE:
        period = rng.uniform(10.0, 18.0)
        checks = np.sin(2 * math.pi * ux / period) * np.sin(2 * math.pi * uy / period)
        lum = 1.0 + 0.25 * checks + 0.08 * _blurred_noise(rng, size, 2.0)
    elif cls == _CROSS:
        lum = 1.0 + 0.25 * _blurred_noise(rng, size, 2.0)
    elif cls == _RING:
        period, phase = rng.uniform(6.0, 10.0), rng.uniform(0, 2 * math.pi)
        bands = np.sin(2 * math.pi * np.sqrt(ux * ux + uy * uy) / period + phase)
        lum = 1.0 + 0.22 * bands + 0.08 * _blurred_noise(rng, size, 2.0)
    else:
        raise AssertionError(f"unknown object class {cls}")
    colour = _jitter(rng, _OBJECT_COLOURS[cls])
    return _to_texture(colour * lum[..., None])
