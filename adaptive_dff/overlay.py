"""Drawing segmentation results over video frames: palettes, blending, a legend, key-frame marks.

Everything works on ``[H, W, 3]`` uint8 **RGB** frames (convert to BGR only
when writing with OpenCV) with numpy and OpenCV; no TensorFlow.

Colours: a class whose name has an entry in :data:`KNOWN_COLOURS` (CamVid's
11 classes, in SegNet's colours) gets that colour; any other class gets a
generated colour (:func:`generated_colours`: evenly spread hues, alternating
brightness, far from each other and from the known colours' order), so a
model of any number of classes can be drawn.
"""

from __future__ import annotations

import colorsys
from typing import Optional, Sequence

import cv2
import numpy as np

# SegNet's CamVid colours (RGB), by class name.
KNOWN_COLOURS = {
    "Sky": (128, 128, 128), "Building": (128, 0, 0), "Pole": (192, 192, 128), "Road": (128, 64, 128),
    "Pavement": (60, 40, 222), "Tree": (128, 128, 0), "SignSymbol": (192, 128, 128), "Fence": (64, 64, 128),
    "Car": (64, 0, 128), "Pedestrian": (64, 64, 0), "Bicyclist": (0, 128, 192),
}

KEY_COLOUR = (255, 40, 40)  # RGB: the mark of a key frame (or of a recomputed region)
TEXT_COLOUR = (255, 255, 255)


def generated_colours(count: int) -> np.ndarray:
    """``[count, 3]`` uint8 RGB colours: hues by the golden ratio, alternating saturation and value."""
    colours = []
    for k in range(count):
        hue = (k * 0.618033988749895) % 1.0
        saturation = (0.85, 0.55)[k % 2]
        value = (0.95, 0.7, 0.85)[k % 3]
        colours.append([round(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation, value)])
    return np.asarray(colours, np.uint8).reshape(count, 3)


def class_palette(names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``(palette [K, 3] uint8 RGB, names without a known colour)`` for classes ``names``."""
    generated = generated_colours(len(names))
    palette = np.array([KNOWN_COLOURS.get(name, tuple(generated[k])) for k, name in enumerate(names)], np.uint8)
    return palette.reshape(len(names), 3), [n for n in names if n not in KNOWN_COLOURS]


def blend_labels(frame: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``frame`` ``[H, W, 3]`` uint8 with the colour of ``labels`` ``[H, W]`` (class ids) blended in:
    ``(1 - alpha) * frame + alpha * palette[labels]``, rounded."""
    if labels.shape != frame.shape[:2]:
        raise ValueError(f"labels {labels.shape} do not match the frame {frame.shape[:2]}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(palette)):
        raise ValueError(f"labels hold class ids {labels.min()}..{labels.max()}; the palette has {len(palette)} colours")
    colours = palette[labels]
    return cv2.addWeighted(frame, 1.0 - alpha, colours, alpha, 0.0)


def _scale(image: np.ndarray) -> float:
    """Font scale for an image: readable from 240 px to 4K."""
    return float(np.clip(min(image.shape[:2]) / 720.0, 0.35, 1.5))


def put_label(image: np.ndarray, text: str, origin: tuple[int, int], colour=TEXT_COLOUR,
              background=(0, 0, 0), scale: Optional[float] = None) -> tuple[int, int]:
    """Write ``text`` on a filled box with its top-left corner at ``origin`` (x, y), in place;
    returns the box's ``(width, height)``."""
    scale = _scale(image) if scale is None else scale
    thickness = max(1, int(round(scale * 1.6)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, int(4 * scale))
    x, y = origin
    cv2.rectangle(image, (x, y), (x + w + 2 * pad, y + h + base + 2 * pad), background, cv2.FILLED)
    cv2.putText(image, text, (x + pad, y + pad + h), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)
    return w + 2 * pad, h + base + 2 * pad


def draw_legend(image: np.ndarray, names: Sequence[str], palette: np.ndarray,
                present: Optional[Sequence[int]] = None) -> None:
    """A swatch and a name per class in the top-right corner, in place.

    When the classes do not all fit in the frame's height, only those in
    ``present`` (class ids seen in this frame) are listed.
    """
    scale = _scale(image) * 0.85
    thickness = max(1, int(round(scale * 1.6)))
    line = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][1] + int(10 * scale) + 2
    ids = list(range(len(names)))
    if len(ids) * line + 8 > image.shape[0] and present is not None:
        ids = sorted(set(int(k) for k in present))
    ids = ids[: max(1, (image.shape[0] - 8) // line)]
    width = max(cv2.getTextSize(names[k], cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] for k in ids)
    swatch = line - 4
    x0 = image.shape[1] - width - swatch - 16
    region = image[2 : 6 + len(ids) * line, max(x0 - 4, 0) : image.shape[1] - 2]
    region[:] = (region * 0.4).astype(np.uint8)  # darken the panel behind the legend
    for row, k in enumerate(ids):
        y = 4 + row * line
        colour = tuple(int(c) for c in palette[k])
        cv2.rectangle(image, (x0, y + 1), (x0 + swatch, y + swatch), colour, cv2.FILLED)
        cv2.rectangle(image, (x0, y + 1), (x0 + swatch, y + swatch), (200, 200, 200), 1)  # dark colours stay visible
        cv2.putText(image, names[k], (x0 + swatch + 6, y + swatch - 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    TEXT_COLOUR, thickness, cv2.LINE_AA)


def draw_regions(image: np.ndarray, boxes: Sequence[tuple[int, int, int, int]], update: np.ndarray) -> None:
    """Mark key frames, in place: with one region, a thick border round the frame and ``KEY``;
    with several, each region's outline (thin) and a thick border and ``KEY`` on those recomputed.

    ``boxes`` are ``(y0, y1, x0, x1)``, end exclusive (:meth:`schedulers.RegionGrid.boxes`);
    ``update`` is ``[R]`` bool.
    """
    scale = _scale(image)
    thick = max(3, int(round(6 * scale)))
    for (y0, y1, x0, x1), recomputed in zip(boxes, np.asarray(update, bool)):
        if len(boxes) > 1:
            cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), (230, 230, 230), 1, cv2.LINE_AA)
        if recomputed:
            inset = thick // 2
            cv2.rectangle(image, (x0 + inset, y0 + inset), (x1 - 1 - inset, y1 - 1 - inset), KEY_COLOUR, thick)
            put_label(image, "KEY", (x0 + thick, y1 - thick - int(40 * scale)), background=KEY_COLOUR,
                      scale=scale * 1.1)
