"""Ground-truth labels of a real video: a folder with one label image per frame.

A label folder holds one image per frame of its video, in the same natural
name order as a folder of frames (:func:`adaptive_dff.video.image_sequence`:
``00000.png``, ``00001.png``, ...), each the size of its frame. Pixel values
are class ids:

* palette images (``P`` mode PNG, e.g. DAVIS's object annotations) give their
  palette *indices*, not their colours;
* single-channel 8- or 16-bit images give their values;
* colour images are accepted only where the three channels are equal (grey
  saved as RGB); real colours are refused, since a colour has no class id.

Values 0..254 are classes; :data:`VOID` (255) is void, left out of every
score. ``compare --video FRAMES --labels LABELS`` reads them with
:func:`load_label_folder` (see :func:`adaptive_dff.compare.datasets.labelled_video_dataset`).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from adaptive_dff.video import image_sequence

VOID = 255  # the void label value: left out of scores
GREY_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")


def read_label_image(path: str) -> np.ndarray:
    """One label image as ``[H, W]`` uint8 class ids (``VOID`` = void), checked.

    Raises ``ValueError`` naming ``path`` when it does not decode, holds
    colours rather than class ids, or a value above 255.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mode = image.mode
            values = np.array(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"label image {path!r} cannot be decoded: {error}") from None
    if mode not in GREY_MODES:
        if values.ndim != 3 or values.shape[2] < 3:
            raise ValueError(f"label image {path!r}: image mode {mode!r} holds no class ids")
        rgb = values[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise ValueError(
                f"label image {path!r} holds colours ({mode}), not class ids: save labels as palette (P) or "
                "single-channel images whose values are the classes"
            )
        values = rgb[..., 0]
    values = np.asarray(values)
    if values.dtype == bool:
        values = values.astype(np.uint8)
    if values.ndim != 2:
        raise ValueError(f"label image {path!r} must be one channel of class ids, got shape {values.shape}")
    top = int(values.max()) if values.size else 0
    if int(values.min(initial=0)) < 0 or top > VOID:
        raise ValueError(f"label image {path!r} holds value {top}; class ids are 0..254 and {VOID} is void")
    return values.astype(np.uint8)


def load_label_folder(folder: str, frame_shapes: list, video: str, max_frames: Optional[int] = None) -> list:
    """The labels ``[[H, W] uint8]`` of a video's frames from ``folder`` (see the module notes).

    ``frame_shapes`` are the decoded frames' ``(H, W)`` (the video read up to
    ``max_frames``); the folder must hold a label for each of them (it may
    hold more when ``max_frames`` cut the video), each of its frame's size.
    Errors name the folder, the file and the frame index.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"label folder {folder!r} (for {video!r}) does not exist")
    paths = image_sequence(folder)
    count = len(frame_shapes)
    if len(paths) < count or (max_frames is None and len(paths) != count):
        raise ValueError(f"label folder {folder!r} holds {len(paths)} label images for the {count} frames "
                         f"of {video!r}; give one per frame, in the frames' order")
    labels = []
    for index, (path, shape) in enumerate(zip(paths, frame_shapes)):
        label = read_label_image(path)
        if label.shape != tuple(shape):
            raise ValueError(f"label image {path!r} is {label.shape[1]}x{label.shape[0]} but frame {index} of "
                             f"{video!r} is {shape[1]}x{shape[0]}")
        labels.append(label)
    return labels
