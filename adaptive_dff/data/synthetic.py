"""Procedural video clips with exact optical flow, exact labels and visibility.

Every clip is a stack of planar *layers*: a textured background seen through a
moving camera, and ``num_objects`` textured objects drawn on top of it in a
fixed order (layer 1 is the lowest object, layer ``num_objects`` the highest).
Each layer ``L`` has an affine map ``A_t`` from its own coordinates to frame
pixel coordinates at time ``t``; every map is a closed-form function of the
clip's seed and ``t``, so any frame, label map or flow field can be computed
on its own, in any order, with bit-identical results.

Coordinates: pixel ``(x, y)`` is column ``x``, row ``y``; its centre is at the
integer point ``(x, y)`` (the OpenCV convention). Frames are RGB.

Flow convention (the project's, see the design notes): ``flow(i, k)`` is
float32 ``[H, W, 2]`` with ``flow[..., 0] = dx`` and ``flow[..., 1] = dy`` in
pixels, such that the surface point seen at pixel ``(x, y)`` of frame ``i`` is
at ``(x + dx, y + dy)`` in frame ``k``. Hence ``out[y, x] = frame_k[y + dy,
x + dx]`` (``cv2.remap`` with ``map_x = x + dx``, ``map_y = y + dy``)
reconstructs frame ``i`` where the point is visible in frame ``k``: this is the
"flow from the current frame ``i`` to the key frame ``k``" that Deep Feature
Flow uses to carry key-frame features to the current frame. For a pixel ``p``
of frame ``i`` whose top layer is ``L`` the flow is exactly
``A_k(A_i^{-1}(p)) - p``.

``valid(i, k)`` is True where that point is visible in frame ``k``: the
target ``q = p + flow`` lies inside the frame (``0 <= qx <= W - 1`` and
``0 <= qy <= H - 1``, so all four bilinear neighbours exist), layer ``L`` is
the top layer at the exact point ``q`` in frame ``k`` (tested analytically,
not at a rounded pixel), and no scene cut lies between ``i`` and ``k``.

Labels are class ids (see :data:`CLASS_NAMES`), decided by an analytic test of
each layer's shape (objects) or region function (background) at pixel
centres, so they are exact. Textures are rendered with ``cv2.warpAffine``
(bilinear); object edges are hard (not anti-aliased), so image and label
boundaries coincide.

Brightness: every frame is the rendered scene multiplied by a global gain
``gain(t) = 1 + brightness * sin(...)`` (see :meth:`SyntheticVideo.gain`).
Textures stay within 16..208, so gains up to 1.2 never saturate.

How each class looks (shapes, the background's regions, textures) is in
:mod:`adaptive_dff.data.synthetic_looks`; this module moves it through time.

Only numpy and OpenCV are used; importing this module does not import
TensorFlow.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from adaptive_dff.data.synthetic_looks import (  # the class table is re-exported from here
    BACKGROUND_CLASSES, CLASS_NAMES, NUM_CLASSES, OBJECT_CLASSES, background_texture, object_texture, shape_contains,
    wave_field,
)

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "BACKGROUND_CLASSES",
    "OBJECT_CLASSES",
    "SyntheticVideo",
    "flow_to_grid",
    "make_clips",
]

_MIN_SIZE = 16
#: How a clip can be labelled: by class (:meth:`SyntheticVideo.label`) or, as object video
#: is, by object (:meth:`SyntheticVideo.objects`).
LABELLINGS = ("classes", "objects")

#: How objects move on screen: ``"screen"``: on their own paths in frame
#: coordinates (the camera's pan does not move them); ``"scene"``: their own
#: paths plus the pan of the background (as things in a filmed scene do).
OBJECT_MOTIONS = ("screen", "scene")
_MAX_OBJECTS = 254  # instance ids are uint8
_CACHE_SIZE = 6


# --------------------------------------------------------------------------
# argument checks


def _check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def _check_float(name: str, value: Any, minimum: float, maximum: float | None = None,
                 include_max: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value}")
    if maximum is not None and (value > maximum or (value == maximum and not include_max)):
        bound = "<=" if include_max else "<"
        raise ValueError(f"{name} must be {bound} {maximum}, got {value}")
    return value


def _check_size(value: Any) -> tuple[float, float]:
    """``object_size``: ``(low, high)`` fractions of ``sqrt(H * W)``, ``0 < low <= high <= 0.5``."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"object_size must be a pair (low, high) of fractions, got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 < low <= high <= 0.5):
        raise ValueError(f"object_size must satisfy 0 < low <= high <= 0.5, got {value!r}")
    return low, high


# --------------------------------------------------------------------------
# small geometry helpers

def _rotation(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])

def _affine(linear: np.ndarray, offset: np.ndarray) -> np.ndarray:
    m = np.eye(3)
    m[:2, :2] = linear
    m[:2, 2] = offset
    return m

def _reflect(s: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Triangle wave: ``s`` folded back and forth into ``[lo, hi]`` (a bouncing path)."""
    span = hi - lo
    m = np.mod(s - lo, 2.0 * span)
    return lo + (span - np.abs(m - span))


# --------------------------------------------------------------------------
# scene parameters


@dataclass(frozen=True)
class _Object:
    cls: int
    radius: float  # px, before aspect, pulse and camera zoom
    aspect: float  # width / height of the shape
    theta0: float
    spin: float  # rad / frame
    pulse_amp: float
    pulse_freq: float  # rad / frame
    pulse_phase: float
    start: np.ndarray  # (2,) screen position at the scene's first frame (unfolded)
    velocity: np.ndarray  # (2,) px / frame
    lo: np.ndarray  # (2,) bounce limits
    hi: np.ndarray
    texture: np.ndarray  # [S, S, 3] uint8


@dataclass(frozen=True)
class _Scene:
    start: int  # first frame of the scene
    texture: np.ndarray  # [2 T_y, 2 T_x, 3] uint8, two periods (T_x, T_y) each way
    waves: np.ndarray  # [K, 4] region function, see wave_field
    threshold: float
    origin: np.ndarray  # (2,) world point at the frame centre at tau = 0
    velocity: np.ndarray  # (2,) world units / frame
    wobble_amp: np.ndarray  # (2,)
    wobble_freq: float
    wobble_phase: np.ndarray  # (2,)
    zoom0: float
    rot_amp: float
    rot_freq: float
    rot_phase: float
    zoom_amp: float
    zoom_freq: float
    zoom_phase: float
    gain_freq: float
    gain_phase: float
    objects: tuple[_Object, ...]


@dataclass
class _Render:
    label: np.ndarray  # [H, W] uint8 class ids
    layers: np.ndarray  # [H, W] uint8 top layer (0 background, j object j)
    boxes: dict  # j -> (y0, y1, x0, x1), exclusive ends, for objects that are visible
    image: np.ndarray | None  # [H, W, 3] uint8 (gain applied), if rendered


# --------------------------------------------------------------------------
# the clip


class SyntheticVideo:
    """A procedural video clip with exact labels, flow and visibility.

    Args:
        height, width: frame size in pixels (each >= 16).
        num_frames: clip length (>= 1).
        num_objects: moving objects per scene (0..254). Their classes cycle
            through a random permutation of :data:`OBJECT_CLASSES`, so with 5
            or more objects every object class appears in every scene.
            Objects ``1..n`` do not depend on ``num_objects``: a larger
            value adds objects on top of the same scene.
        seed: non-negative integer. Same seed and arguments -> bit-identical
            clip; a different seed -> a different clip.
        scene_cuts: frame indices (strictly increasing, each in
            ``1..num_frames - 1``) where a new scene starts: new background,
            objects, camera path and brightness cycle.
        brightness: amplitude ``b`` of the global gain, ``gain(t) = 1 + b *
            sin(2 pi t / P + phi)`` with a random period ``P`` of 30..90
            frames; ``0 <= b < 1``.
        camera_speed: typical background motion in pixels per frame (pan
            speed; the small rotation and zoom add about a quarter of it at
            the frame edges). 0 gives a static camera.
        object_speed: typical object motion in pixels per frame on screen
            (each object moves at 0.5..1.5 times it, bouncing off a band a
            little wider than the frame, so objects leave the frame partly
            and come back), plus spin and size pulsation scaled with it.
            0 makes objects still on screen (with ``object_motion="screen"``).
        object_size: ``(low, high)``: each object's radius is drawn uniformly
            between these fractions of ``sqrt(height * width)``.
        object_motion: ``"screen"`` (objects follow their own paths in frame
            coordinates; the camera's pan does not move them) or ``"scene"``
            (their own paths plus the pan of the background at the frame
            centre, as things in a filmed scene; they still bounce at the
            band around the frame, so they stay in view).

    Frame indices must be integers in ``0..num_frames - 1``. Results are
    computed from the seed and the index alone (random access); a small
    cache of recent frames only saves time. Instances are thread-safe and
    picklable.
    """

    def __init__(
        self,
        *,
        height: int = 256,
        width: int = 512,
        num_frames: int = 100,
        num_objects: int = 6,
        seed: int = 0,
        scene_cuts: Sequence[int] = (),
        brightness: float = 0.2,
        camera_speed: float = 2.0,
        object_speed: float = 2.0,
        object_size: tuple = (0.05, 0.13),
        object_motion: str = "screen",
    ) -> None:
        self.height = _check_int("height", height, _MIN_SIZE)
        self.width = _check_int("width", width, _MIN_SIZE)
        self.num_frames = _check_int("num_frames", num_frames, 1)
        self.num_objects = _check_int("num_objects", num_objects, 0, _MAX_OBJECTS)
        self.seed = _check_int("seed", seed, 0)
        self.brightness = _check_float("brightness", brightness, 0.0, 1.0, include_max=False)
        self.camera_speed = _check_float("camera_speed", camera_speed, 0.0)
        self.object_speed = _check_float("object_speed", object_speed, 0.0)
        self.object_size = _check_size(object_size)
        if object_motion not in OBJECT_MOTIONS:
            raise ValueError(f"object_motion must be one of {OBJECT_MOTIONS}, got {object_motion!r}")
        self.object_motion = object_motion
        try:
            cuts = tuple(scene_cuts)
        except TypeError:
            raise ValueError(f"scene_cuts must be a sequence of frame indices, got {scene_cuts!r}") from None
        checked = []
        for cut in cuts:
            if isinstance(cut, bool) or not isinstance(cut, numbers.Integral):
                raise ValueError(f"scene_cuts must hold integer frame indices, got {cut!r} in {cuts!r}")
            cut = int(cut)
            if not 1 <= cut <= self.num_frames - 1:
                raise ValueError(
                    f"scene cut {cut} is out of range for a clip of {self.num_frames} frames "
                    f"(a cut must be in 1..{self.num_frames - 1})"
                )
            if checked and cut <= checked[-1]:
                raise ValueError(f"scene_cuts must be strictly increasing, got {cuts!r}")
            checked.append(cut)
        self.scene_cuts: tuple[int, ...] = tuple(checked)
        self._starts = (0,) + self.scene_cuts
        self._init_caches()

    # -- plumbing ---------------------------------------------------------

    def _init_caches(self) -> None:
        self._lock = threading.Lock()
        self._scenes: dict[int, _Scene] = {}
        self._renders: OrderedDict[int, _Render] = OrderedDict()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_lock", "_scenes", "_renders"):
            del state[key]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_caches()

    def __repr__(self) -> str:
        return (
            f"SyntheticVideo(height={self.height}, width={self.width}, num_frames={self.num_frames}, "
            f"num_objects={self.num_objects}, seed={self.seed}, scene_cuts={self.scene_cuts}, "
            f"brightness={self.brightness}, camera_speed={self.camera_speed}, "
            f"object_speed={self.object_speed}, object_size={self.object_size}, "
            f"object_motion={self.object_motion!r})"
        )

    def __len__(self) -> int:
        return self.num_frames

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(frame(t), label(t))`` for ``t = 0 .. len - 1``."""
        for t in range(self.num_frames):
            yield self.frame(t), self.label(t)

    def _index(self, t: Any, name: str = "t") -> int:
        if isinstance(t, bool) or not isinstance(t, numbers.Integral):
            raise ValueError(f"frame index {name} must be an integer, got {t!r}")
        t = int(t)
        if not 0 <= t < self.num_frames:
            raise ValueError(
                f"frame index {name}={t} is out of range for a clip of {self.num_frames} frames "
                f"(valid indices 0..{self.num_frames - 1})"
            )
        return t

    def scene_index(self, t: int) -> int:
        """The scene (0 = before the first cut) that frame ``t`` belongs to."""
        t = self._index(t)
        return int(np.searchsorted(self.scene_cuts, t, side="right"))

    def _scene(self, s: int) -> _Scene:
        scene = self._scenes.get(s)
        if scene is None:
            scene = self._make_scene(s)
            with self._lock:
                scene = self._scenes.setdefault(s, scene)
        return scene

    def _make_scene(self, s: int) -> _Scene:
        h, w = self.height, self.width
        rng = np.random.default_rng([self.seed, s, 0])
        two_pi = 2.0 * math.pi
        half = 0.5 * max(h, w)
        cam = self.camera_speed

        # Background: a tileable texture twice the frame size and a region
        # function with integer wave numbers over that period.
        tex_shape = (2 * h, 2 * w)
        pairs = [(m, n) for m in range(0, 4) for n in range(-3, 4) if (m, n) != (0, 0) and not (m == 0 and n < 0)]
        chosen = rng.choice(len(pairs), size=3, replace=False)
        amps = rng.uniform(0.5, 1.0, size=3)
        waves = np.array(
            [(pairs[c][0] / tex_shape[1], pairs[c][1] / tex_shape[0], a, rng.uniform(0, two_pi))
             for c, a in zip(chosen, amps)]
        )
        threshold = float(rng.uniform(0.0, 0.6) * math.sqrt(np.sum(amps**2) / 2.0))

        direction = rng.uniform(0, two_pi)
        speed = cam * rng.uniform(0.6, 1.4)
        wobble_freq = two_pi / rng.uniform(40.0, 110.0)
        rot_freq = two_pi / rng.uniform(50.0, 150.0)
        zoom_freq = two_pi / rng.uniform(50.0, 150.0)
        camera = dict(
            origin=rng.uniform(0, 1, size=2) * np.array([tex_shape[1], tex_shape[0]]),
            velocity=speed * np.array([math.cos(direction), math.sin(direction)]),
            wobble_amp=0.25 * cam / wobble_freq * rng.uniform(0.5, 1.0, size=2),
            wobble_freq=wobble_freq,
            wobble_phase=rng.uniform(0, two_pi, size=2),
            zoom0=math.exp(rng.uniform(-0.15, 0.15)),
            rot_amp=min(0.2, 0.25 * cam / (rot_freq * half)),
            rot_freq=rot_freq,
            rot_phase=rng.uniform(0, two_pi),
            zoom_amp=min(0.2, 0.25 * cam / (zoom_freq * half)),
            zoom_freq=zoom_freq,
            zoom_phase=rng.uniform(0, two_pi),
        )
        gain_freq = two_pi / rng.uniform(30.0, 90.0)
        gain_phase = rng.uniform(0, two_pi)

        objects = []
        order = rng.permutation(len(OBJECT_CLASSES))
        size = math.sqrt(h * w)
        lo = np.array([-0.1 * w, -0.1 * h])
        hi = np.array([1.1 * w, 1.1 * h])
        spd = self.object_speed
        for j in range(self.num_objects):
            orng = np.random.default_rng([self.seed, s, 1 + j])
            cls = OBJECT_CLASSES[order[j % len(order)]]
            radius = orng.uniform(*self.object_size) * size
            aspect = math.exp(orng.uniform(-0.3, 0.3))
            direction = orng.uniform(0, two_pi)
            pulse_freq = two_pi / orng.uniform(30.0, 90.0)
            extent = radius * math.sqrt(max(aspect, 1.0 / aspect))
            objects.append(
                _Object(
                    cls=cls,
                    radius=radius,
                    aspect=aspect,
                    theta0=orng.uniform(0, two_pi),
                    spin=orng.uniform(-0.5, 0.5) * spd / radius,
                    pulse_amp=min(0.15, 0.3 * spd / (pulse_freq * radius)),
                    pulse_freq=pulse_freq,
                    pulse_phase=orng.uniform(0, two_pi),
                    start=np.array([orng.uniform(0.05, 0.95) * w, orng.uniform(0.05, 0.95) * h]),
                    velocity=spd * orng.uniform(0.5, 1.5) * np.array([math.cos(direction), math.sin(direction)]),
                    lo=lo,
                    hi=hi,
                    texture=object_texture(orng, cls, max(8, math.ceil(2.0 * extent))),
                )
            )
        texture = background_texture(rng, tex_shape, waves, threshold)
        return _Scene(
            start=self._starts[s], texture=texture, waves=waves, threshold=threshold,
            gain_freq=gain_freq, gain_phase=gain_phase, objects=tuple(objects), **camera,
        )

    def _maps(self, t: int) -> tuple[int, _Scene, list[np.ndarray]]:
        """Scene index, scene and the 3x3 layer->frame maps at frame ``t``.

        Layer 0 maps world (= background texture) coordinates; layer ``j``
        maps object ``j``'s normalised coordinates ``c in [-1, 1]^2``.
        """
        s = int(np.searchsorted(self.scene_cuts, t, side="right"))
        scene = self._scene(s)
        tau = float(t - scene.start)
        theta = scene.rot_amp * math.sin(scene.rot_freq * tau + scene.rot_phase)
        zoom = scene.zoom0 * math.exp(scene.zoom_amp * math.sin(scene.zoom_freq * tau + scene.zoom_phase))
        centre = (scene.origin + scene.velocity * tau
                  + scene.wobble_amp * np.sin(scene.wobble_freq * tau + scene.wobble_phase))
        screen_centre = np.array([(self.width - 1) / 2.0, (self.height - 1) / 2.0])
        linear = zoom * _rotation(theta)
        maps = [_affine(linear, screen_centre - linear @ centre)]
        carried = np.zeros(2)
        if self.object_motion == "scene":
            # the screen shift of the background point seen at the frame centre at tau = 0
            centre0 = scene.origin + scene.wobble_amp * np.sin(scene.wobble_phase)
            carried = maps[0][:2, :2] @ centre0 + maps[0][:2, 2] - screen_centre
        for obj in scene.objects:
            anchor = _reflect(obj.start + obj.velocity * tau + carried, obj.lo, obj.hi)
            scale = zoom * math.exp(obj.pulse_amp * math.sin(obj.pulse_freq * tau + obj.pulse_phase))
            root = math.sqrt(obj.aspect)
            radii = np.diag([obj.radius * scale * root, obj.radius * scale / root])
            maps.append(_affine(_rotation(obj.theta0 + obj.spin * tau + theta) @ radii, anchor))
        return s, scene, maps

    def _bbox(self, m: np.ndarray) -> tuple[int, int, int, int] | None:
        """Pixel rows/cols ``(y0, y1, x0, x1)`` (ends exclusive) that may hold the object."""
        ex = abs(m[0, 0]) + abs(m[0, 1])
        ey = abs(m[1, 0]) + abs(m[1, 1])
        x0 = max(0, math.floor(m[0, 2] - ex))
        x1 = min(self.width - 1, math.ceil(m[0, 2] + ex))
        y0 = max(0, math.floor(m[1, 2] - ey))
        y1 = min(self.height - 1, math.ceil(m[1, 2] + ey))
        if x0 > x1 or y0 > y1:
            return None
        return y0, y1 + 1, x0, x1 + 1

    def _render(self, t: int, image: bool) -> _Render:
        with self._lock:
            cached = self._renders.get(t)
            if cached is not None and (cached.image is not None or not image):
                self._renders.move_to_end(t)
                return cached
        result = self._compute(t, image)
        with self._lock:
            self._renders[t] = result
            self._renders.move_to_end(t)
            while len(self._renders) > _CACHE_SIZE:
                self._renders.popitem(last=False)
        return result

    def _compute(self, t: int, image: bool) -> _Render:
        h, w = self.height, self.width
        _, scene, maps = self._maps(t)
        to_world = np.linalg.inv(maps[0])[:2]
        # The stored texture is 2 x 2 periods of the region function and of the
        # pattern. Shift the offset by whole periods so that the frame's
        # footprint starts inside the first period: it then usually lies
        # inside the stored texture, which OpenCV samples several times faster
        # than wrapped coordinates (BORDER_WRAP stays correct otherwise).
        period = np.array([scene.texture.shape[1] / 2, scene.texture.shape[0] / 2])
        corners = to_world[:, :2] @ np.array([[0.0, w - 1.0, 0.0, w - 1.0], [0.0, 0.0, h - 1.0, h - 1.0]])
        start = to_world[:, 2] + corners.min(axis=1)
        to_world[:, 2] -= np.floor(start / period) * period
        label = (wave_field(scene.waves, to_world, h, w) > scene.threshold).view(np.uint8)
        layers = np.zeros((h, w), np.uint8)
        frame = None
        if image:
            frame = cv2.warpAffine(
                scene.texture, to_world, (w, h),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_WRAP,
            )
        boxes = {}
        for j, obj in enumerate(scene.objects, start=1):
            m = maps[j]
            box = self._bbox(m)
            if box is None:
                continue
            y0, y1, x0, x1 = box
            inv = np.linalg.inv(m[:2, :2])
            xs = np.arange(x0, x1, dtype=np.float64) - m[0, 2]
            ys = np.arange(y0, y1, dtype=np.float64) - m[1, 2]
            cx = (inv[0, 0] * xs)[None, :] + (inv[0, 1] * ys)[:, None]
            cy = (inv[1, 0] * xs)[None, :] + (inv[1, 1] * ys)[:, None]
            mask = shape_contains(obj.cls, cx, cy)
            if not mask.any():
                continue
            boxes[j] = box
            layers[y0:y1, x0:x1][mask] = j
            label[y0:y1, x0:x1][mask] = obj.cls
            if frame is not None:
                size = obj.texture.shape[0]
                # texel u = (size / 2) c + (size - 1) / 2, c = inv (p - anchor)
                k = (size / 2.0) * inv
                offset = k @ (np.array([x0, y0], dtype=np.float64) - m[:2, 2]) + (size - 1) / 2.0
                patch = cv2.warpAffine(
                    obj.texture, np.hstack([k, offset[:, None]]), (x1 - x0, y1 - y0),
                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
                )
                np.copyto(frame[y0:y1, x0:x1], patch, where=mask[..., None])
        if frame is not None and self.brightness > 0.0:
            frame = cv2.convertScaleAbs(frame, alpha=self._gain(scene, t))
        return _Render(label=label, layers=layers, boxes=boxes, image=frame)

    def _gain(self, scene: _Scene, t: int) -> float:
        tau = t - scene.start
        return 1.0 + self.brightness * math.sin(scene.gain_freq * tau + scene.gain_phase)

    def _top_layer_at(self, qx: np.ndarray, qy: np.ndarray, maps: list[np.ndarray], scene: _Scene) -> np.ndarray:
        """Top layer (0 background, ``j`` object ``j``) at exact points ``(qx, qy)``."""
        top = np.zeros(qx.shape, np.int32)
        for j, obj in enumerate(scene.objects, start=1):
            m = maps[j]
            ex = abs(m[0, 0]) + abs(m[0, 1])
            ey = abs(m[1, 0]) + abs(m[1, 1])
            dx = qx - m[0, 2]
            dy = qy - m[1, 2]
            near = np.flatnonzero((np.abs(dx) <= ex) & (np.abs(dy) <= ey))
            if near.size == 0:
                continue
            inv = np.linalg.inv(m[:2, :2])
            dxn, dyn = dx[near], dy[near]
            inside = shape_contains(obj.cls, inv[0, 0] * dxn + inv[0, 1] * dyn, inv[1, 0] * dxn + inv[1, 1] * dyn)
            top[near[inside]] = j
        return top

    def _flow64(self, i: int, k: int) -> np.ndarray | None:
        """Exact flow ``i -> k`` in float64 ``[H, W, 2]``; None across a scene cut."""
        h, w = self.height, self.width
        si, scene, maps_i = self._maps(i)
        sk, _, maps_k = self._maps(k)
        if si != sk:
            return None
        rendered = self._render(i, image=False)
        xs = np.arange(w, dtype=np.float64)
        ys = np.arange(h, dtype=np.float64)
        flow = np.empty((h, w, 2), np.float64)

        def layer_flow(j: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            # q - p = (A_k - A_i) A_i^{-1} p: exactly zero where a layer is still
            m = (maps_k[j] - maps_i[j]) @ np.linalg.inv(maps_i[j])
            x, y = xs[x0:x1], ys[y0:y1]
            fx = (m[0, 0] * x)[None, :] + (m[0, 1] * y + m[0, 2])[:, None]
            fy = (m[1, 0] * x)[None, :] + (m[1, 1] * y + m[1, 2])[:, None]
            return np.stack([fx, fy], axis=-1)

        flow[...] = layer_flow(0, 0, h, 0, w)
        for j, (y0, y1, x0, x1) in rendered.boxes.items():
            mask = rendered.layers[y0:y1, x0:x1] == j
            np.copyto(flow[y0:y1, x0:x1], layer_flow(j, y0, y1, x0, x1), where=mask[..., None])
        return flow

    # -- public API -------------------------------------------------------

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t``: uint8 ``[H, W, 3]`` RGB, global gain applied."""
        t = self._index(t)
        return self._render(t, image=True).image.copy()

    def label(self, t: int) -> np.ndarray:
        """Class ids of frame ``t``: uint8 ``[H, W]``, values index :data:`CLASS_NAMES`."""
        t = self._index(t)
        return self._render(t, image=False).label.copy()

    def instances(self, t: int) -> np.ndarray:
        """Top layer of each pixel of frame ``t``: uint8 ``[H, W]``.

        0 is the background; ``j`` in ``1..num_objects`` is object ``j``.
        Objects with higher ids are drawn over lower ones (the z-order is fixed
        within a scene). Ids are per scene: object ``j`` after a cut is a new
        object.
        """
        t = self._index(t)
        return self._render(t, image=False).layers.copy()

    @property
    def num_object_ids(self) -> int:
        """Ids :meth:`objects` uses, the background's included: ``1 + num_objects * scenes``."""
        return 1 + self.num_objects * (len(self.scene_cuts) + 1)

    def objects(self, t: int) -> np.ndarray:
        """Frame ``t`` labelled like object video: uint8 ``[H, W]``, 0 the background and each
        object of the clip its own id (:meth:`instances`, made unique across scenes: object ``j``
        of scene ``s`` is ``j + s * num_objects``, so an object after a cut is a new one)."""
        layers = self.instances(t)
        return np.where(layers > 0, layers + self.scene_index(t) * self.num_objects, 0).astype(np.uint8)

    def gain(self, t: int) -> float:
        """Global brightness gain of frame ``t`` (``frame = round(gain * rendered scene)``)."""
        t = self._index(t)
        _, scene, _ = self._maps(t)
        return self._gain(scene, t) if self.brightness > 0.0 else 1.0

    def flow(self, i: int, k: int) -> np.ndarray:
        """Exact flow from frame ``i`` to frame ``k``: float32 ``[H, W, 2]`` in pixels.

        ``flow[..., 0] = dx``, ``flow[..., 1] = dy``: the surface point at pixel
        ``(x, y)`` of frame ``i`` is at ``(x + dx, y + dy)`` in frame ``k``, so
        ``out[y, x] = frame(k)[y + dy, x + dx]`` reconstructs frame ``i`` where
        :meth:`valid` is True. The flow follows each pixel's top layer even
        where the point is hidden or outside frame ``k``. ``flow(i, i)`` is
        zero; across a scene cut there is no correspondence and the flow is
        zero (and :meth:`valid` all False).
        """
        i = self._index(i, "i")
        k = self._index(k, "k")
        if i == k:
            return np.zeros((self.height, self.width, 2), np.float32)
        flow = self._flow64(i, k)
        if flow is None:
            return np.zeros((self.height, self.width, 2), np.float32)
        return flow.astype(np.float32)

    def valid(self, i: int, k: int) -> np.ndarray:
        """Where the pixel of frame ``i`` is visible in frame ``k``: bool ``[H, W]``.

        True where ``q = p + flow(i, k)[p]`` satisfies ``0 <= qx <= W - 1`` and
        ``0 <= qy <= H - 1`` and the layer on top at ``p`` in frame ``i`` is
        also on top at the exact point ``q`` in frame ``k``. All True for
        ``i == k``; all False across a scene cut.
        """
        i = self._index(i, "i")
        k = self._index(k, "k")
        return self._flow_and_valid(i, k)[1]

    def _flow_and_valid(self, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.height, self.width
        if i == k:
            return np.zeros((h, w, 2), np.float32), np.ones((h, w), bool)
        flow = self._flow64(i, k)
        if flow is None:
            return np.zeros((h, w, 2), np.float32), np.zeros((h, w), bool)
        qx = (flow[..., 0] + np.arange(w, dtype=np.float64)[None, :]).ravel()
        qy = (flow[..., 1] + np.arange(h, dtype=np.float64)[:, None]).ravel()
        inside = np.flatnonzero((qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1))
        _, scene, maps_k = self._maps(k)
        top = self._top_layer_at(qx[inside], qy[inside], maps_k, scene)
        layers_i = self._render(i, image=False).layers.ravel()
        valid = np.zeros(h * w, bool)
        valid[inside] = top == layers_i[inside]
        return flow.astype(np.float32), valid.reshape(h, w)

    def pair(self, key_index: int, current_index: int) -> dict[str, Any]:
        """A training pair for Deep Feature Flow.

        Returns a dict with ``key`` and ``current`` (uint8 ``[H, W, 3]``),
        ``label_key`` and ``label_current`` (uint8 ``[H, W]``), ``flow`` =
        ``flow(current_index, key_index)`` (float32 ``[H, W, 2]``, current ->
        key, ready to warp key-frame features to the current frame), ``valid``
        = ``valid(current_index, key_index)`` (bool ``[H, W]``), and the two
        indices as ``key_index`` and ``current_index``.
        """
        key_index = self._index(key_index, "key_index")
        current_index = self._index(current_index, "current_index")
        flow, valid = self._flow_and_valid(current_index, key_index)
        return {
            "key": self.frame(key_index),
            "current": self.frame(current_index),
            "label_key": self.label(key_index),
            "label_current": self.label(current_index),
            "flow": flow,
            "valid": valid,
            "key_index": key_index,
            "current_index": current_index,
        }


# --------------------------------------------------------------------------
# helpers


def flow_to_grid(flow: np.ndarray, stride: int) -> np.ndarray:
    """Full-resolution flow ``[..., H, W, 2]`` -> flow on the stride-``stride`` grid.

    Each ``stride x stride`` block is averaged and divided by ``stride``, so
    the result, float32 ``[..., H / stride, W / stride, 2]``, is in grid
    pixels and follows the same convention (``[..., 0] = dx``,
    ``[..., 1] = dy``). For an affine field the block average is the flow at
    the block centre. ``H`` and ``W`` must be multiples of ``stride``.
    """
    stride = _check_int("stride", stride, 1)
    flow = np.asarray(flow)
    if flow.ndim < 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape [..., H, W, 2], got shape {flow.shape}")
    if not np.issubdtype(flow.dtype, np.floating):
        raise ValueError(f"flow must be floating point, got dtype {flow.dtype}")
    h, w = flow.shape[-3], flow.shape[-2]
    if h % stride or w % stride:
        raise ValueError(
            f"flow height and width must be multiples of stride={stride}, got shape {flow.shape}"
        )
    lead = flow.shape[:-3]
    blocks = flow.astype(np.float32, copy=False).reshape(*lead, h // stride, stride, w // stride, stride, 2)
    return (blocks.mean(axis=(-4, -2)) / np.float32(stride)).astype(np.float32)


def make_clips(n: int, *, seed: int, **kwargs: Any) -> list[SyntheticVideo]:
    """``n`` :class:`SyntheticVideo` clips with seeds derived from ``seed``.

    Clip ``j`` depends only on ``seed``, ``j`` and ``kwargs`` (not on ``n``), so
    a longer list extends a shorter one. ``kwargs`` are passed on to
    :class:`SyntheticVideo`.
    """
    n = _check_int("n", n, 1)
    seed = _check_int("seed", seed, 0)
    return [
        SyntheticVideo(seed=int(np.random.SeedSequence([seed, j]).generate_state(1)[0]), **kwargs)
        for j in range(n)
    ]
