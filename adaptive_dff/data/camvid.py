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
import re

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


SOURCE_FPS = 30  # CamVid's video frame rate; train/ and test/ are labelled every 30th frame (1 fps)
STREAM_GAP = 45  # video frames: consecutive labelled frames further apart start a new stream


def frame_number(path: str) -> tuple[str, int]:
    """``(sequence, video frame number)`` of a CamVid file name ``<seq>_<frame>.png`` (the frame
    number may carry a letter prefix: ``0006R0_f00930.png`` is frame 930 of ``0006R0``)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    sequence, _, number = stem.rpartition("_")
    found = re.fullmatch(r"[A-Za-z]*([0-9]+)", number)
    if not sequence or found is None:
        raise ValueError(f"CamVid file {path!r} is not named <sequence>_<frame number>.png")
    return sequence, int(found.group(1))


def sequence_streams(root: str, splits: tuple = ("train", "test")) -> list[tuple[str, list[tuple[str, str]]]]:
    """CamVid's labelled frames of ``splits`` as streams: ``[(name, [(frame path, label path)])]``.

    Frames of one sequence are ordered by their video frame number across the splits (``0001TP``
    runs on from ``train/`` into ``test/``); a gap of more than :data:`STREAM_GAP` video frames
    (1.5 s) starts a new stream, named ``<seq>-<first frame number>``. In ``train/`` and ``test/``
    consecutive labelled frames are :data:`SOURCE_FPS` video frames apart: 1 fps streams.
    """
    by_sequence: dict = {}
    for split in splits:
        for frame_path, label_path in split_paths(root, split):
            sequence, number = frame_number(frame_path)
            by_sequence.setdefault(sequence, []).append((number, frame_path, label_path))
    streams = []
    for sequence in sorted(by_sequence):
        run: list = []
        previous = None
        for number, frame_path, label_path in sorted(by_sequence[sequence]):
            if previous is not None and number == previous:
                raise ValueError(f"CamVid frame {number} of sequence {sequence} appears twice "
                                 f"(splits {', '.join(splits)})")
            if previous is not None and number - previous > STREAM_GAP:
                streams.append((f"{sequence}-{run[0][0]}", [(f, lab) for _, f, lab in run]))
                run = []
            run.append((number, frame_path, label_path))
            previous = number
        streams.append((f"{sequence}-{run[0][0]}", [(f, lab) for _, f, lab in run]))
    return streams
