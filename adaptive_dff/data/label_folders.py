"""Ground-truth labels of a real video: a folder with one label image per frame.

A label folder holds one image per frame of its video, each the size of its
frame. Labels are paired with the frames of an image folder by name (the
label ``00015.png`` for the frame ``00015.jpg``; a frame without a label is
named), and with the frames of a video file by their natural name order
(:func:`adaptive_dff.video.image_sequence`: ``00000.png``, ``00001.png``,
...). Pixel values are class ids:

* palette images (``P`` mode PNG, e.g. DAVIS's object annotations) give their
  palette *indices*, not their colours;
* single-channel 8- or 16-bit images give their values;
* colour images are accepted only where the three channels are equal (grey
  saved as RGB); real colours are refused, since a colour has no class id;
* an alpha channel (``LA``, ``PA``, ``RGBA``) is dropped.

Values 0..254 are classes; :data:`VOID` (255) is void, left out of every
score. Binary masks that mark the object 255 (e.g. DAVIS 2016) must be
mapped to 1 first: read as they are, the object would be void, and a data
set with one class only is refused (:func:`class_count`). ``compare --video FRAMES --labels LABELS`` reads them with
:func:`load_label_folder` (see :func:`adaptive_dff.compare.datasets.labelled_video_dataset`).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from adaptive_dff.video import VideoReader, image_sequence

VOID = 255  # the void label value: left out of scores
GREY_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")
WITH_ALPHA = ("LA", "PA")  # one channel of ids plus alpha


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
    if mode in WITH_ALPHA and values.ndim == 3:
        values = values[..., 0]
    elif mode not in GREY_MODES:
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
    low, top = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < 0 or top > VOID:
        raise ValueError(f"label image {path!r} holds value {low if low < 0 else top}; class ids are 0..254 "
                         f"and {VOID} is void")
    return values.astype(np.uint8)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def load_label_folder(folder: str, frame_shapes: list, video: str, video_cut: bool = False,
                      frame_files: Optional[Sequence[str]] = None) -> list:
    """The labels ``[[H, W] uint8]`` of a video's frames from ``folder`` (see the module notes).

    ``frame_shapes`` are the decoded frames' ``(H, W)``; the folder must hold
    a label for each of them, each of its frame's size, and no more unless
    ``video_cut`` (the video was read only in part: a frame limit, or
    decoding that stopped early). ``frame_files``: the frames' files when the
    video is an image folder (:attr:`adaptive_dff.video.VideoReader.images`);
    labels named like them are paired by name, else all by order. Errors
    name the folder, the file and the frame index.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"label folder {folder!r} (for {video!r}) does not exist or is not a folder")
    paths = image_sequence(folder)
    count = len(frame_shapes)
    if len(paths) < count or (not video_cut and len(paths) != count):
        raise ValueError(f"label folder {folder!r} holds {len(paths)} label images for the {count} frames "
                         f"of {video!r}; give one per frame, in the frames' order")
    by_name = {_stem(p): p for p in paths}
    wanted = [_stem(f) for f in (frame_files or [])[:count]]
    if any(name in by_name for name in wanted):  # paired by name
        if len(by_name) != len(paths):
            raise ValueError(f"label folder {folder!r} holds two label images of one name (other extensions)")
        for index, name in enumerate(wanted):
            if name not in by_name:
                raise ValueError(f"label folder {folder!r} has no label for frame {index} "
                                 f"({os.path.basename(frame_files[index])}) of {video!r}: labels are paired "
                                 f"with an image folder's frames by name ({name}.png for its frame)")
        paths = [by_name[name] for name in wanted]
    labels = []
    for index, (path, shape) in enumerate(zip(paths, frame_shapes)):
        label = read_label_image(path)
        if label.shape != tuple(shape):
            raise ValueError(f"label image {path!r} is {label.shape[1]}x{label.shape[0]} but frame {index} of "
                             f"{video!r} is {shape[1]}x{shape[0]}")
        labels.append(label)
    return labels



def read_labelled_video(path: str, folder: str, max_frames: Optional[int] = None) -> tuple:
    """``(reader, frames, labels)``: the video ``path`` decoded (up to ``max_frames``) and its
    labels from ``folder`` (:func:`load_label_folder`; more labels than frames are allowed only
    when the limit or broken decoding cut the video)."""
    reader = VideoReader(path, max_frames=max_frames)
    frames = list(reader)
    cut = reader.truncated or (max_frames is not None and len(frames) == max_frames)
    labels = load_label_folder(folder, [f.shape[:2] for f in frames], path, video_cut=cut, frame_files=reader.images)
    return reader, frames, labels


def class_count(labelled: Sequence[tuple], num_classes: Optional[int] = None) -> int:
    """The number of classes of label folders ``labelled`` ``[(folder, labels)]``: ``num_classes``
    when given (a model's; an id at or above it is refused, naming the folder and frame), else the
    highest id found plus one. Refuses a data set in which one class only is present, without
    ``num_classes`` (nothing to score; e.g. a 0/255 binary mask read as background and void)."""
    top, where, present = -1, None, set()
    for folder, labels in labelled:
        folder_top, voids = -1, 0
        for index, label in enumerate(labels):
            kept = label[label != VOID]
            voids += label.size - kept.size
            high = int(kept.max()) if kept.size else -1
            if len(present) < 2 and kept.size:  # two classes seen settle it
                present.update(np.flatnonzero(np.bincount(kept.ravel().astype(np.int64))).tolist())
            folder_top = max(folder_top, high)
            if high > top:
                top, where = high, (folder, index)
        if folder_top <= 0 and voids:
            raise ValueError(f"label folder {folder!r} holds class 0 and void 255 only: binary masks that mark "
                             "the object 255 must be mapped to 1 first (255 is void)")
    if num_classes is not None and top >= num_classes:
        raise ValueError(f"label folder {where[0]!r}, frame {where[1]}: class id {top}, but the model predicts "
                         f"{num_classes} classes (0..{num_classes - 1})")
    if num_classes is None and len(present) < 2:
        raise ValueError("the label folders hold one class only (" + (f"class {top} everywhere" if present else
                         "void everywhere") + "): there is nothing to score")
    return num_classes if num_classes is not None else top + 1
