"""CamVid (SegNet's 480x360 version): frames and labels, checked up front.

Layout (see the data folder's README): ``camvid/<split>/<seq>_<frame>.png``
RGB frames and ``camvid/<split>annot/<same name>.png`` single-channel labels,
0..10 the 11 classes and 11 void (ignored in losses and metrics). ``val`` is
one continuous 15 fps clip, every frame labelled.

:func:`load_split` decodes every frame and label of a split before any
training starts and names the first problem it finds: a missing folder, a
frame without a label, an image that does not decode, sizes that differ,
label values outside 0..11.
"""

from __future__ import annotations

import glob
import os

import cv2
import numpy as np

CLASS_NAMES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
NUM_CLASSES = len(CLASS_NAMES)
VOID = 11


def split_paths(root: str, split: str) -> list[tuple[str, str]]:
    """``[(frame path, label path)]`` of ``root/camvid/<split>``, sorted by name."""
    images_dir = os.path.join(root, "camvid", split)
    labels_dir = os.path.join(root, "camvid", split + "annot")
    for folder in (images_dir, labels_dir):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"CamVid folder {folder!r} does not exist (data root {root!r})")
    images = sorted(glob.glob(os.path.join(images_dir, "*.png")))
    if not images:
        raise ValueError(f"CamVid folder {images_dir!r} holds no .png frames")
    pairs = []
    for image in images:
        label = os.path.join(labels_dir, os.path.basename(image))
        if not os.path.isfile(label):
            raise ValueError(f"CamVid frame {image!r} has no label {label!r}")
        pairs.append((image, label))
    return pairs


def read_pair(image_path: str, label_path: str) -> tuple[np.ndarray, np.ndarray]:
    """One frame (uint8 RGB ``[H, W, 3]``) and its labels (uint8 ``[H, W]``), checked."""
    image = cv2.imread(image_path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"CamVid image {image_path!r} cannot be decoded")
    label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
    if label is None:
        raise ValueError(f"CamVid label {label_path!r} cannot be decoded")
    if label.ndim != 2:
        raise ValueError(f"CamVid label {label_path!r} must be single-channel, got shape {label.shape}")
    if label.shape != image.shape[:2]:
        raise ValueError(
            f"CamVid image {image_path!r} is {image.shape[1]}x{image.shape[0]} but its label is "
            f"{label.shape[1]}x{label.shape[0]}"
        )
    top = int(label.max())
    if top > VOID:
        raise ValueError(f"CamVid label {label_path!r} holds value {top}; classes are 0..10 and 11 is void")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), label.astype(np.uint8)


def load_split(root: str, split: str, limit: int = 0) -> tuple[list, list]:
    """Frames and labels of a split, all decoded and checked (``limit``: the first n)."""
    pairs = split_paths(root, split)
    if limit:
        pairs = pairs[:limit]
    frames, labels = [], []
    for image_path, label_path in pairs:
        frame, label = read_pair(image_path, label_path)
        frames.append(frame)
        labels.append(label)
    return frames, labels
