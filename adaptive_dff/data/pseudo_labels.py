"""Pseudo-labels: a DFF model's own per-frame predictions on unlabelled video.

For a video file (or a folder of numbered images) and a DFF model file,
:func:`pseudo_label` returns the frames and, per frame, the model's label map:
the arg-max over classes of the key-frame step (``model.key_step``, the
feature net and head on the whole frame), at the frame's own resolution, as
``adaptive-dff compare`` and ``adaptive-dff segment`` run the model per frame.
Agreement of a label map carried from a key frame with these maps is DVSNet's
confidence score; they are not ground truth.

The model runs once per video: the label maps are cached on disk
(:func:`default_cache_dir`), one compressed ``.npz`` per (video bytes, model
bytes, settings), keyed by the SHA-256 of the video file (of every image of a
folder, in order), the SHA-256 of the model file and the settings
(``max_frames``, ``stride``, ``scale``), and written atomically. Frames are decoded
again on every call (decoding is cheap next to the model; keeping them would
take gigabytes). A cache file that cannot be read or does not fit the frames
is recomputed.

:func:`calibration_split` and :func:`clip_spans` are the one place that
says which frames of a pseudo-labelled video calibrate and which are scored,
so ``compare`` and ``train quality`` keep the scored part apart alike.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from schedulers.base import check_int
from schedulers.files import file_sha256, read_npz, write_bytes_atomic

logger = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when what is cached changes meaning
CALIBRATION_SHARE = 1 / 3  # the first third of a video calibrates (as CamVid val: frames 0..33 of 101)
CLIP_FRAMES = 100  # test parts are cut into clips of this many frames


@dataclass
class PseudoLabels:
    """A video's frames and its model's per-frame label maps.

    Attributes:
        source: the video file or image folder.
        frames: ``[H, W, 3]`` uint8 RGB frames (after ``max_frames`` and ``stride``).
        labels: per frame ``[H, W]`` uint8 (uint16 past 256 classes) class ids, the
            model's arg-max on that frame alone.
        indices: each frame's index in the source.
        fps: the source's frame rate divided by ``stride`` (``None`` when unknown).
        num_classes: the model's classes.
        video_sha256, model_sha256: what the labels were computed from.
        truncated: the source stopped decoding before the frames its container announced.
        cached: the labels came from the cache (the model did not run).
        seconds: time spent running the model (0 when cached).
        settings: what keyed the cache besides the two SHA-256 (``max_frames``,
            ``stride``, and ``scale`` when the frames were shrunk).
    """

    source: str
    frames: list
    labels: list
    indices: list
    fps: Optional[float]
    num_classes: int
    video_sha256: str
    model_sha256: str
    truncated: bool = False
    cached: bool = False
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


def default_cache_dir() -> str:
    """``$ADAPTIVE_DFF_CACHE/pseudo-labels``, else ``$XDG_CACHE_HOME/adaptive-dff/pseudo-labels``,
    else ``~/.cache/adaptive-dff/pseudo-labels``."""
    root = os.environ.get("ADAPTIVE_DFF_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "adaptive-dff")
    return os.path.join(root, "pseudo-labels")


def source_sha256(source: str) -> str:
    """SHA-256 of a video file's bytes, or of a folder's image names and bytes in reading order."""
    from adaptive_dff.video import image_sequence

    source = os.fspath(source)
    if os.path.isdir(source):
        digest = hashlib.sha256()
        for path in image_sequence(source):
            digest.update(os.path.basename(path).encode() + b"\0" + file_sha256(path).encode())
        return digest.hexdigest()
    if not os.path.isfile(source):
        raise FileNotFoundError(f"video file {source!r} does not exist")
    return file_sha256(source)


def check_sources(sources: Sequence[str]) -> None:
    """Open every video (file or folder) and decode its first frame, so a list with an
    unreadable one fails, naming it, before any long work starts."""
    from adaptive_dff.video import VideoReader

    if not sources:
        raise ValueError("give at least one video file or image folder")
    for source in sources:
        next(iter(VideoReader(source, max_frames=1)))


def check_scale(scale: Optional[float]) -> Optional[float]:
    """``None`` (the source's size) or a factor in (0, 1]; 1 means ``None``."""
    if scale is None:
        return None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise ValueError(f"scale must be a factor in (0, 1], got {scale!r}")
    return None if scale == 1 else float(scale)


def decode(source: str, *, max_frames: Optional[int] = None, stride: int = 1,
           scale: Optional[float] = None) -> tuple[list, list, Optional[float], bool]:
    """``(frames, source indices, fps, truncated)``: the first ``max_frames`` frames of
    ``source`` (all when ``None``), every ``stride``-th of them, all of frame 0's size,
    shrunk by ``scale`` (area interpolation; ``None``: as decoded)."""
    import cv2

    from adaptive_dff.video import VideoReader

    check_int(stride, "stride", 1)
    scale = check_scale(scale)
    reader = VideoReader(source, max_frames=max_frames)
    frames, indices, first = [], [], None
    for index, frame in enumerate(reader):
        if index % stride:
            continue
        if first is None:
            first = frame.shape
        elif frame.shape != first:
            raise ValueError(f"video {source!r}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                             f"frame 0 is {first[1]}x{first[0]}")
        if scale is not None:
            size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        frames.append(frame)
        indices.append(index)
    fps = reader.fps / stride if reader.fps else None
    return frames, indices, fps, reader.truncated


def predict_labels(model, frames: Sequence[np.ndarray], log: Callable = logger.info, name: str = "") -> list:
    """The arg-max label map ``[H, W]`` of ``model.key_step`` on each frame alone."""
    dtype = np.uint8 if model.num_classes <= 256 else np.uint16
    labels, started = [], time.perf_counter()
    every = max(1, len(frames) // 5)
    for t, frame in enumerate(frames):
        logits, _ = model.key_step(frame)
        label = np.argmax(np.asarray(logits)[0], axis=-1).astype(dtype)
        if label.shape != frame.shape[:2]:
            raise ValueError(f"video {name!r}, frame {t}: the model's labels are {label.shape}, "
                             f"the frame {frame.shape[:2]}")
        labels.append(label)
        if (t + 1) % every == 0 and t + 1 < len(frames):
            log(f"pseudo-labels {name}: {t + 1}/{len(frames)} frames, {time.perf_counter() - started:.0f} s")
    return labels


def cache_key(video_sha: str, model_sha: str, settings: dict) -> str:
    """The cache file's stem: SHA-256 of the video's and model's SHA-256 and the settings."""
    text = json.dumps({"video": video_sha, "model": model_sha, "settings": settings, "version": CACHE_VERSION},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_cache(path: str, frames: list, indices: list, log: Callable):
    """The cached labels when the file is readable and fits ``frames``; otherwise ``None``."""
    stored = read_npz(path, ("labels", "indices", "num_classes"), log)
    if stored is None:
        return None
    labels, stored_indices, num_classes = stored["labels"], stored["indices"], int(stored["num_classes"])
    if labels.shape != (len(frames),) + frames[0].shape[:2] or list(stored_indices) != list(indices):
        log(f"pseudo-label cache {path!r} does not fit the decoded frames; recomputing it")
        return None
    return list(labels), num_classes


def pseudo_label(
    source: str, model_path: str, *, max_frames: Optional[int] = None, stride: int = 1,
    scale: Optional[float] = None, cache_dir: Optional[str] = None, model=None, log: Callable = logger.info,
) -> PseudoLabels:
    """Frames of ``source`` and ``model_path``'s per-frame label maps (see the module notes).

    Args:
        source: a video file or a folder of numbered images.
        model_path: a ``.keras`` :class:`adaptive_dff.DFFModel` file (the shipped
            one is ``adaptive_dff.pretrained.default_model_path()``).
        max_frames: read at most this many frames of the source (``None``: all).
        stride: keep every ``stride``-th frame read.
        scale: shrink every frame by this factor in (0, 1] before the model sees
            it (``None``: the source's size, as ``compare`` and ``segment`` run it).
        cache_dir: where label maps are kept (default :func:`default_cache_dir`).
        model: the model loaded from ``model_path`` already, or a function
            without arguments returning it; by default it is loaded here. Either
            way the model runs (and a function is called) only when the cache misses.

    Raises:
        FileNotFoundError: the video or the model file does not exist.
        ValueError: the video cannot be opened or holds no frame, a frame has
            another size (named by index), the model file is no DFF model.
    """
    if max_frames is not None:
        check_int(max_frames, "max_frames", 1)
    check_int(stride, "stride", 1)
    scale = check_scale(scale)
    if not os.path.isfile(os.fspath(model_path)):
        raise FileNotFoundError(f"model file {os.fspath(model_path)!r} does not exist")
    source = os.fspath(source)
    video_sha, model_sha = source_sha256(source), file_sha256(model_path)
    frames, indices, fps, truncated = decode(source, max_frames=max_frames, stride=stride, scale=scale)
    settings = {"max_frames": max_frames, "stride": stride}
    if scale is not None:  # absent at full size, so earlier cache keys stay valid
        settings["scale"] = scale
    path = os.path.join(cache_dir or default_cache_dir(), cache_key(video_sha, model_sha, settings) + ".npz")
    found = _read_cache(path, frames, indices, log)
    common = dict(source=source, frames=frames, indices=indices, fps=fps, video_sha256=video_sha,
                  model_sha256=model_sha, truncated=truncated, settings=settings)
    if found is not None:
        return PseudoLabels(labels=found[0], num_classes=found[1], cached=True, **common)
    if model is None:
        model = load_dff_model(model_path)
    elif not hasattr(model, "key_step"):
        model = model()
    started = time.perf_counter()
    labels = predict_labels(model, frames, log=log, name=os.path.basename(os.path.normpath(source)))
    seconds = time.perf_counter() - started
    buffer = io.BytesIO()
    np.savez_compressed(buffer, labels=np.stack(labels), indices=np.asarray(indices, np.int64),
                        num_classes=np.int64(model.num_classes), video_sha256=video_sha, model_sha256=model_sha,
                        settings=json.dumps(settings, sort_keys=True))
    write_bytes_atomic(path, buffer.getvalue())
    log(f"pseudo-labels {os.path.basename(os.path.normpath(source))}: {len(frames)} frames in {seconds:.1f} s "
        f"({seconds / len(frames) * 1e3:.0f} ms per frame), cached in {path}")
    return PseudoLabels(labels=labels, num_classes=int(model.num_classes), seconds=seconds, **common)


def load_dff_model(model_path: str):
    """The :class:`adaptive_dff.DFFModel` in ``model_path``; a named error for another kind of model."""
    from adaptive_dff.model import DFFModel, load_model

    model = load_model(model_path)
    if not isinstance(model, DFFModel):
        raise ValueError(f"model file {os.fspath(model_path)!r} holds a {type(model).__name__}, not a DFF model")
    return model


def iter_pseudo_labels(
    sources: Sequence[str], model_path: str, *, max_frames: Optional[int] = None, stride: int = 1,
    scale: Optional[float] = None, cache_dir: Optional[str] = None, log: Callable = logger.info,
) -> Iterator[PseudoLabels]:
    """:func:`pseudo_label` of each source in turn (one video in memory at a time). Every
    source is opened and the model file checked first, when this is called, so an unreadable
    one fails, by name, before any work; the model is loaded once, only when some source is
    not cached yet."""
    check_sources(sources)
    check_scale(scale)
    if not os.path.isfile(os.fspath(model_path)):
        raise FileNotFoundError(f"model file {os.fspath(model_path)!r} does not exist")
    loaded: list = []

    def model():
        if not loaded:
            loaded.append(load_dff_model(model_path))
        return loaded[0]

    return (pseudo_label(source, model_path, max_frames=max_frames, stride=stride, scale=scale,
                         cache_dir=cache_dir, model=model, log=log) for source in sources)


def pseudo_label_videos(sources: Sequence[str], model_path: str, **options) -> list:
    """``list(iter_pseudo_labels(sources, model_path, **options))``: every video in memory."""
    return list(iter_pseudo_labels(sources, model_path, **options))


def calibration_split(num_frames: int) -> int:
    """How many leading frames of a ``num_frames``-long pseudo-labelled video calibrate
    (a third, at least 2); the rest is the test part, never used to fit or tune."""
    check_int(num_frames, "num_frames", 4)
    return min(max(2, int(round(num_frames * CALIBRATION_SHARE))), num_frames - 2)


def clip_spans(num_frames: int, clip_frames: int = CLIP_FRAMES) -> list:
    """``[(first, last)]`` (``last`` excluded) cutting frames ``0..num_frames-1`` of a
    test part into clips of ``clip_frames``; a rest shorter than half a clip, or than 2 frames,
    joins the clip before it (so every clip has at least half a clip and 2 frames, or the whole
    part)."""
    check_int(num_frames, "num_frames", 1)
    check_int(clip_frames, "clip_frames", 2)
    starts = list(range(0, num_frames, clip_frames))
    if len(starts) > 1 and num_frames - starts[-1] < max(clip_frames // 2, 2):
        starts.pop()
    return [(s, starts[i + 1] if i + 1 < len(starts) else num_frames) for i, s in enumerate(starts)]
