"""Reading video files, or folders of numbered images, as RGB frames with
OpenCV (no TensorFlow).

A file that cannot be opened is an error up front. A file whose decoding
stops part-way (truncated or corrupt) yields the frames decoded so far and
then warns with the index of the first frame it could not decode; the reader
keeps ``frames_read`` and ``truncated`` so callers can report it too.
Containers often announce one frame more than they hold, so a shortfall of
one frame (or 1%) is not reported. Damage that the decoder conceals (a
corrupt frame that still decodes) cannot be seen here.

A folder is read as an image sequence: its image files (``.png``, ``.jpg``,
``.jpeg``, ``.bmp``, ``.ppm``, ``.tif``, ``.tiff``) in natural name order
(runs of digits compare as numbers, so ``img2`` comes before ``img10``, with
or without zero padding), e.g. CamVid's 15 fps ``val/`` clip. An image that does not decode, or whose size
differs from the first, is an error naming the file and its frame index.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Iterator, Optional

import cv2
import numpy as np

from schedulers.base import check_int


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")


def natural_key(name: str) -> tuple:
    """Sort key comparing runs of digits as numbers: ``img2 < img10``, ``f_9.png < f_10.png``.

    Text parts compare case-insensitively, then as written; equal numbers
    with different padding (``7`` and ``007``) order by their text.
    """
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p), p) if i % 2 else (1, p.lower(), p) for i, p in enumerate(parts))


def image_sequence(folder: str) -> list[str]:
    """The image files of ``folder`` in natural name order (see :func:`natural_key`);
    an error when it holds none."""
    names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith(".")
             and os.path.isfile(os.path.join(folder, n))]
    paths = [os.path.join(folder, n) for n in sorted(names, key=natural_key)]
    if not paths:
        raise ValueError(f"folder {folder!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return paths


class VideoDecodeWarning(UserWarning):
    """Decoding stopped before the frame count the container announced."""


class VideoReader:
    """Iterate over a video file's frames (or a folder's images) as ``[H, W, 3]`` uint8 RGB.

    Args:
        path: the video file, or a folder of numbered images.
        max_frames: stop after this many frames (``None``: all).

    Attributes (after iterating): ``frames_read``; ``frames_expected`` (the
    container's count, 0 when unknown); ``truncated`` (decoding stopped early).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: OpenCV cannot open it, or it holds no decodable frame;
            for a folder: no images, an image that does not decode, or one
            of another size.
    """

    def __init__(self, path, max_frames: Optional[int] = None):
        self.path = os.fspath(path)
        if max_frames is not None:
            check_int(max_frames, "max_frames", 1)
        self.max_frames = max_frames
        self.frames_read = 0
        self.truncated = False
        self.images = image_sequence(self.path) if os.path.isdir(self.path) else None
        if self.images is not None:
            self.frames_expected = len(self.images)
            self.fps = 0.0
            return
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"video file {self.path!r} does not exist")
        capture = cv2.VideoCapture(self.path)
        opened = capture.isOpened()
        self.frames_expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if opened else 0
        self.fps = float(capture.get(cv2.CAP_PROP_FPS)) if opened else 0.0
        capture.release()
        if not opened:
            raise ValueError(f"video file {self.path!r} cannot be opened by OpenCV (not a video, or an unsupported codec)")

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.images is not None:
            yield from self._iter_images()
            return
        capture = cv2.VideoCapture(self.path)
        self.frames_read = 0
        self.truncated = False
        try:
            while self.max_frames is None or self.frames_read < self.max_frames:
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                self.frames_read += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()
        if self.frames_read == 0:
            raise ValueError(f"video file {self.path!r} holds no decodable frame")
        wanted = self.frames_expected if self.max_frames is None else min(self.max_frames, self.frames_expected)
        # Containers often announce a frame or so more than they hold: allow 1 frame or 1%.
        slack = max(1, self.frames_expected // 100)
        if self.frames_expected > 0 and self.frames_read < wanted - slack:
            self.truncated = True
            warnings.warn(
                f"video file {self.path!r}: decoding stopped at frame {self.frames_read} of "
                f"{self.frames_expected} announced; the {self.frames_read} frames decoded were used",
                VideoDecodeWarning,
                stacklevel=2,
            )

    def _iter_images(self) -> Iterator[np.ndarray]:
        self.frames_read = 0
        first_shape = None
        for index, path in enumerate(self.images[: self.max_frames]):
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"image {path!r} (frame {index} of folder {self.path!r}) cannot be decoded")
            if first_shape is None:
                first_shape = image.shape
            elif image.shape != first_shape:
                raise ValueError(
                    f"image {path!r} (frame {index} of folder {self.path!r}) is {image.shape[1]}x{image.shape[0]}; "
                    f"the sequence started at {first_shape[1]}x{first_shape[0]}"
                )
            self.frames_read += 1
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
