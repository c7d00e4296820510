"""Data sets for ``adaptive-dff compare``: plain Python objects a user can build too.

A :class:`Dataset` holds two splits of :class:`Clip` objects: ``calibration``
(where each policy's threshold is chosen for a key-frame budget) and
``test`` (where it is scored). Every clip's frames are decoded into memory
before any timing starts, so decoding is never part of a measured time.

Built in:

* :func:`synthetic_datasets` (the default): procedurally generated clips
  with exact labels in three scenarios, each a data set: steady motion,
  motion that varies between clips, and scene cuts;
* :func:`camvid_val_dataset`: CamVid's 15 fps ``val/`` clip, every frame
  labelled, cut in two: the first third calibrates, the rest is scored;
* :func:`camvid_1fps_dataset`: CamVid's ``train/`` and ``test/`` frames,
  labelled at 1 fps, as six streams, each split like labelled video;
* :func:`video_dataset`: any video files without labels; the first 30% of
  each calibrates, the rest is scored, and accuracy means agreement with
  the per-frame prediction of the model;
* :func:`pseudo_labelled_dataset`: video files labelled by a model's own
  per-frame predictions (:mod:`adaptive_dff.data.pseudo_labels`), so every
  oracle arm and the optimal arm run on real footage; the first third of each
  calibrates, the rest is cut into test clips of 100 frames. Scores there are
  agreement with the model's per-frame output, not accuracy against ground
  truth.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np

from schedulers.base import check_int


@dataclass
class Clip:
    """One continuous stream of frames.

    Attributes:
        name: unique within its data set (used in result files).
        frames: ``[H, W, 3]`` uint8 RGB frames, all of one size.
        labels: per frame ``[H, W]`` integer class ids, or ``None`` for an
            unlabelled clip.
        fps: frames per second of the source, when known.
        flow: the clip's exact flow, when known (generated clips):
            ``flow(i, k) -> [H, W, 2]`` float32 from frame ``i`` to frame ``k``
            (``dx, dy`` in pixels, the project's convention), for ``--flow exact``.
    """

    name: str
    frames: Sequence[np.ndarray]
    labels: Optional[Sequence[np.ndarray]] = None
    fps: Optional[float] = None
    flow: Optional[Callable[[int, int], np.ndarray]] = None

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def labelled(self) -> bool:
        return self.labels is not None


@dataclass
class Dataset:
    """Calibration and test clips plus the label space.

    Attributes:
        name: short name, written into every result row.
        calibration: clips the thresholds are calibrated on.
        test: clips the policies are scored on (kept apart from calibration).
        num_classes: class ids are ``0 .. num_classes - 1``.
        ignore_index: a label value left out of metrics (CamVid's void), or ``None``.
        spec: a JSON-able description (what was loaded, from where); it is
            part of the run's configuration, so a changed data set is noticed.
    """

    name: str
    calibration: list
    test: list
    num_classes: int
    ignore_index: Optional[int] = None
    spec: dict = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        return all(c.labelled for c in self.calibration + self.test)

    def fingerprint(self) -> str:
        """SHA-256 over every frame and label of both splits (identifies the data, wherever it lives)."""
        import hashlib

        digest = hashlib.sha256()
        for split in (self.calibration, self.test):
            for clip in split:
                digest.update(clip.name.encode())
                for array in list(clip.frames) + list(clip.labels or []):
                    array = np.ascontiguousarray(array)
                    digest.update(str((array.shape, array.dtype.str)).encode())
                    digest.update(array.data)
        return digest.hexdigest()

    def check(self) -> "Dataset":
        """Name the first problem: an empty split, a clip shorter than 2 frames,
        frames of the wrong layout or size, labels of the wrong shape or range."""
        if not isinstance(self.num_classes, (int, np.integer)) or self.num_classes < 1:
            raise ValueError(f"data set {self.name!r}: num_classes must be a positive integer, got {self.num_classes!r}")
        names = set()
        for split in ("calibration", "test"):
            clips = getattr(self, split)
            if not clips:
                raise ValueError(f"data set {self.name!r} has no {split} clips")
            for clip in clips:
                if clip.name in names:
                    raise ValueError(f"data set {self.name!r}: two clips are named {clip.name!r}")
                names.add(clip.name)
                _check_clip(self, clip)
        labelled = {c.labelled for c in self.calibration + self.test}
        if len(labelled) > 1:
            raise ValueError(f"data set {self.name!r} mixes labelled and unlabelled clips")
        return self


def _check_clip(dataset: Dataset, clip: Clip) -> None:
    where = f"data set {dataset.name!r}, clip {clip.name!r}"
    if len(clip.frames) < 2:
        raise ValueError(f"{where}: needs at least 2 frames, has {len(clip.frames)}")
    shape = None
    for t, frame in enumerate(clip.frames):
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"{where}, frame {t}: must be [H, W, 3] uint8 RGB, got shape {frame.shape} dtype {frame.dtype}")
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise ValueError(f"{where}, frame {t}: shape {frame.shape} differs from frame 0's {shape}")
    if clip.labels is None:
        return
    if len(clip.labels) != len(clip.frames):
        raise ValueError(f"{where}: {len(clip.labels)} labels for {len(clip.frames)} frames")
    for t, label in enumerate(clip.labels):
        label = np.asarray(label)
        if label.shape != shape[:2]:
            raise ValueError(f"{where}, label {t}: shape {label.shape}, expected {shape[:2]}")
        if not np.issubdtype(label.dtype, np.integer):
            raise ValueError(f"{where}, label {t}: must hold integer class ids, got dtype {label.dtype}")
        kept = label if dataset.ignore_index is None else label[label != dataset.ignore_index]
        if kept.size and (kept.min() < 0 or kept.max() >= dataset.num_classes):
            raise ValueError(
                f"{where}, label {t}: values {kept.min()}..{kept.max()} outside 0..{dataset.num_classes - 1}"
                + (f" (ignore_index {dataset.ignore_index})" if dataset.ignore_index is not None else "")
            )


# -- synthetic ---------------------------------------------------------------

# Three scenarios, each its own data set: where a fixed interval is hard to
# beat (steady motion), and where adaptive policies can spend the same budget
# better (motion that varies between clips, scene cuts). Per clip:
# SyntheticVideo arguments; cuts are given as fractions of the clip length.
SYNTHETIC_SCENARIOS = {
    "steady": [dict(camera_speed=2.5, object_speed=0.4), dict(camera_speed=2.5, object_speed=0.3)],
    "varying": [dict(camera_speed=0.3, object_speed=0.1), dict(camera_speed=4.0, object_speed=0.6),
                dict(camera_speed=1.0, object_speed=0.2)],
    "cuts": [dict(camera_speed=1.5, object_speed=0.3, cuts=(0.2, 0.5, 0.65, 0.85)),
             dict(camera_speed=1.5, object_speed=0.3, cuts=(0.1, 0.45, 0.75))],
}
# Every scenario's objects move with the filmed scene (the camera's pan moves
# them too) plus a slower motion of their own, and are large enough for
# OpenCV's DIS flow (patches of 8 px at a quarter of the resolution) to follow
# them: with small objects on their own screen paths, DIS flow carried labels
# barely better than copying them.
SYNTHETIC_OBJECTS = dict(object_size=(0.14, 0.26), object_motion="scene")


def synthetic_dataset(
    scenario: str = "steady", *, frames: int = 48, height: int = 128, width: int = 256, seed: int = 0,
    labels: str = "classes",
) -> Dataset:
    """Generated clips with exact labels for one of :data:`SYNTHETIC_SCENARIOS`.

    Each split holds one ``frames``-long ``height x width`` clip per entry of
    the scenario; calibration and test clips differ only in their seeds.
    Deterministic by ``seed``. ``labels``: ``"classes"`` (semantic classes,
    :data:`adaptive_dff.data.CLASS_NAMES`; data set ``synthetic-<scenario>``)
    or ``"objects"`` (the same clips labelled like object video: 0 the
    background, each moving object its own id, a new one after a cut,
    ``SyntheticVideo.objects``; data set ``synthetic-objects-<scenario>``,
    for ``compare --metric j``).
    """
    from adaptive_dff.data import CLASS_NAMES, SyntheticVideo
    from adaptive_dff.data.synthetic import LABELLINGS

    if scenario not in SYNTHETIC_SCENARIOS:
        raise ValueError(f"unknown synthetic scenario {scenario!r}; choose from {sorted(SYNTHETIC_SCENARIOS)}")
    if labels not in LABELLINGS:
        raise ValueError(f"unknown synthetic labels {labels!r}; choose one of {LABELLINGS}")
    objects = labels == "objects"
    for name, value, minimum in (("frames", frames, 10), ("height", height, 16), ("width", width, 16),
                                 ("seed", seed, 0)):
        check_int(value, f"synthetic data set: {name}", minimum)
    number = list(SYNTHETIC_SCENARIOS).index(scenario)
    splits: dict = {"calibration": [], "test": []}
    ids = 0  # object labels: the most ids a clip uses
    for s, split in enumerate(splits):
        for j, spec in enumerate(SYNTHETIC_SCENARIOS[scenario]):
            spec = dict(spec)
            cuts = sorted({min(max(1, int(round(f * frames))), frames - 1) for f in spec.pop("cuts", ())})
            clip_seed = int(np.random.SeedSequence([seed, number, s, j]).generate_state(1)[0])
            video = SyntheticVideo(height=height, width=width, num_frames=frames, seed=clip_seed,
                                   scene_cuts=cuts, **SYNTHETIC_OBJECTS, **spec)
            splits[split].append(Clip(
                name=f"{split}-{j}",
                frames=[video.frame(t) for t in range(frames)],
                labels=[(video.objects if objects else video.label)(t) for t in range(frames)],
                flow=video.flow,
            ))
            ids = max(ids, video.num_object_ids)
    spec = {"kind": "synthetic", "scenario": scenario, "frames": frames, "height": height, "width": width,
            "seed": seed, **({"labels": labels} if objects else {})}
    return Dataset(name=f"synthetic-{'objects-' if objects else ''}{scenario}",
                   num_classes=ids if objects else len(CLASS_NAMES), spec=spec, **splits)


def synthetic_datasets(**kwargs) -> list:
    """One :func:`synthetic_dataset` per scenario (the default of ``adaptive-dff compare``)."""
    return [synthetic_dataset(name, **kwargs) for name in SYNTHETIC_SCENARIOS]


# -- CamVid ------------------------------------------------------------------

CAMVID_CALIBRATION_FRAMES = 34  # the first third of the 101-frame val clip


def camvid_val_dataset(data_root: str) -> Dataset:
    """CamVid's ``val/`` clip (15 fps, 101 frames at 480x360, every frame labelled).

    Frames ``0..33`` calibrate, ``34..100`` are scored. 11 classes, void (11) ignored.
    """
    from adaptive_dff.data.camvid import NUM_CLASSES, VOID, load_split

    if not data_root:
        raise ValueError("--dataset camvid-val needs the data folder: pass --data-root PATH")
    frames, labels = load_split(data_root, "val")
    if len(frames) <= CAMVID_CALIBRATION_FRAMES + 1:
        raise ValueError(
            f"CamVid val/ under {data_root!r} holds {len(frames)} frames; the clip has 101 "
            f"(at least {CAMVID_CALIBRATION_FRAMES + 2} are needed)"
        )
    n = CAMVID_CALIBRATION_FRAMES
    return Dataset(
        name="camvid-val", num_classes=NUM_CLASSES, ignore_index=VOID,
        calibration=[Clip("val-calibration", frames[:n], labels[:n], fps=15.0)],
        test=[Clip("val-test", frames[n:], labels[n:], fps=15.0)],
        spec={"kind": "camvid-val", "frames": len(frames), "calibration_frames": n},
    )


def split_stream(stem: str, frames: Sequence, labels: Sequence, fps: Optional[float],
                 clip_frames: int) -> tuple[Clip, list, dict]:
    """One labelled stream split in time, as the labelled real data sets (pseudo-labelled video,
    labelled video, ``camvid-1fps``) split it: its
    first third (:func:`adaptive_dff.data.pseudo_labels.calibration_split`) the calibration clip
    ``<stem>-calibration``, the rest test clips ``<stem>-test-<j>`` of ``clip_frames``
    (:func:`adaptive_dff.data.pseudo_labels.clip_spans`). Returns ``(calibration clip, test
    clips, {"calibration_frames", "test_clips": [[first, last], ...]})`` (frame indices of the stream)."""
    from adaptive_dff.data import pseudo_labels as pl

    cut = pl.calibration_split(len(frames))
    spans = pl.clip_spans(len(frames) - cut, clip_frames)
    calibration = Clip(f"{stem}-calibration", frames[:cut], labels[:cut], fps=fps)
    test = [Clip(f"{stem}-test-{j}", frames[cut + first:cut + last], labels[cut + first:cut + last], fps=fps)
            for j, (first, last) in enumerate(spans)]
    return calibration, test, {"calibration_frames": cut, "test_clips": [[cut + a, cut + b] for a, b in spans]}


CAMVID_1FPS = "camvid-1fps"


def camvid_1fps_dataset(data_root: str, clip_frames: Optional[int] = None) -> Dataset:
    """CamVid's ``train/`` and ``test/`` frames as real labelled streams at 1 fps.

    Those splits label every 30th video frame (1 s apart at 30 fps): each run of one sequence
    without a longer gap is a stream (:func:`adaptive_dff.data.camvid.sequence_streams`; six
    streams of 16 to 171 frames, 600 in all; none holds a frame of the ``val/`` clip, though two
    streams of its sequence end 39 video frames before it and start 31 after it). Split as
    labelled video (:func:`labelled_video_dataset`): each stream's first third calibrates, the
    rest is cut into test clips of ``clip_frames`` (default 100). 11 classes, void (11) ignored.
    A second carry covers a second of driving, so losses grow far faster than in the 15 fps
    ``val/`` clip: real footage with true labels, at a coarse time step. The shipped CamVid model
    was fitted on ``train/`` (367 of the 600 frames): in model mode its accuracy here flatters it.
    """
    from adaptive_dff.data import pseudo_labels as pl
    from adaptive_dff.data.camvid import NUM_CLASSES, VOID, read_pair, sequence_streams

    if not data_root:
        raise ValueError(f"--dataset {CAMVID_1FPS} needs the data folder: pass --data-root PATH")
    clip_frames = pl.CLIP_FRAMES if clip_frames is None else check_int(clip_frames, "clip_frames", 2)
    calibration, test, streams = [], [], []
    for name, pairs in sequence_streams(data_root):
        if len(pairs) < 10:
            raise ValueError(f"CamVid stream {name} under {data_root!r} holds {len(pairs)} frames "
                             f"({os.path.basename(pairs[0][0])} to {os.path.basename(pairs[-1][0])}); compare "
                             "needs at least 10 (a gap of more than 1.5 s starts a new stream)")
        frames, labels = map(list, zip(*(read_pair(f, lab) for f, lab in pairs)))
        first, rest, split = split_stream(name, frames, labels, 1.0, clip_frames)
        calibration.append(first)
        test.extend(rest)
        streams.append({"stream": name, "frames": len(frames), **split})
    return Dataset(name=CAMVID_1FPS, num_classes=NUM_CLASSES, ignore_index=VOID,
                   calibration=calibration, test=test,
                   spec={"kind": CAMVID_1FPS, "streams": streams, "clip_frames": clip_frames})


# -- video files ---------------------------------------------------------------

VIDEO_CALIBRATION_SHARE = 0.3


def video_dataset(paths: Sequence[str], *, num_classes: int, max_frames: Optional[int] = None) -> Dataset:
    """Unlabelled video files: each is decoded whole (up to ``max_frames``),
    then split in time: the first 30% calibrates, the rest is scored.

    Raises the reader's named errors for a file that is missing or cannot be
    opened; a file whose decoding stops part-way is used up to that frame,
    with a warning naming the file and frame.
    """
    from adaptive_dff.video import VideoReader

    if not paths:
        raise ValueError("video data set: give at least one video file")
    calibration, test, spec = [], [], []
    for number, path in enumerate(paths):
        reader = VideoReader(path, max_frames=max_frames)
        frames = list(reader)
        if len(frames) < 10:
            raise ValueError(f"video file {path!r} holds {len(frames)} frames; compare needs at least 10")
        cut = max(2, int(round(len(frames) * VIDEO_CALIBRATION_SHARE)))
        stem = f"{number}-{os.path.splitext(os.path.basename(os.path.normpath(path)))[0]}"
        fps = reader.fps or None
        calibration.append(Clip(f"{stem}-calibration", frames[:cut], fps=fps))
        test.append(Clip(f"{stem}-test", frames[cut:], fps=fps))
        spec.append({"file": os.path.basename(path), "frames": len(frames), "truncated": reader.truncated})
    if any(s["truncated"] for s in spec):
        warnings.warn("some videos stopped decoding early; see the warnings above", stacklevel=2)
    return Dataset(name="video", calibration=calibration, test=test, num_classes=num_classes,
                   spec={"kind": "video", "files": spec, "max_frames": max_frames})


PSEUDO_KIND = "video-pseudo"  # spec["kind"] of videos labelled by a model's per-frame predictions
LABELLED_KIND = "video-labelled"  # spec["kind"] of videos with ground-truth label folders
LABEL_SOURCES = ("none", "model")  # compare's --labels for --video, besides label folders


def pseudo_labelled_dataset(
    paths: Sequence[str], model_path: str, *, max_frames: Optional[int] = None,
    clip_frames: Optional[int] = None, scale: Optional[float] = None, cache_dir: Optional[str] = None,
    log: Optional[Callable] = None,
) -> Dataset:
    """Video files (or image folders) labelled by ``model_path``'s per-frame predictions.

    Each video's first third (:func:`adaptive_dff.data.pseudo_labels.calibration_split`)
    is one calibration clip; the rest is cut into test clips of ``clip_frames``
    (default 100; :func:`adaptive_dff.data.pseudo_labels.clip_spans`). ``scale`` shrinks
    every frame first (the model then labels the shrunk frames). Labels are
    computed once per video and model and cached (see that module). Every file is
    opened before any is labelled, so an unreadable one fails first, by name.
    """
    from adaptive_dff.data import pseudo_labels as pl

    if not paths:
        raise ValueError("video data set: give at least one video file")
    clip_frames = pl.CLIP_FRAMES if clip_frames is None else check_int(clip_frames, "clip_frames", 2)
    videos = pl.pseudo_label_videos(paths, model_path, max_frames=max_frames, scale=scale, cache_dir=cache_dir,
                                    log=log or pl.logger.info)
    calibration, test, files = [], [], []
    num_classes = None
    for number, (path, video) in enumerate(zip(paths, videos)):
        if num_classes is not None and video.num_classes != num_classes:
            raise ValueError(f"video {path!r}: {video.num_classes} classes, the others {num_classes}")
        num_classes = video.num_classes
        if len(video) < 10:
            raise ValueError(f"video file {path!r} holds {len(video)} frames; compare needs at least 10")
        stem = f"{number}-{os.path.splitext(os.path.basename(os.path.normpath(path)))[0]}"
        first, rest, split = split_stream(stem, video.frames, video.labels, video.fps, clip_frames)
        calibration.append(first)
        test.extend(rest)
        files.append({"file": os.path.basename(os.path.normpath(path)), "sha256": video.video_sha256,
                      "frames": len(video), "calibration_frames": split["calibration_frames"],
                      "truncated": video.truncated, "test_clips": split["test_clips"]})
    return Dataset(name=PSEUDO_KIND, calibration=calibration, test=test, num_classes=num_classes,
                   spec={"kind": PSEUDO_KIND, "labels": "model per-frame prediction", "files": files,
                         "model_sha256": video.model_sha256, "max_frames": max_frames, "clip_frames": clip_frames,
                         "scale": pl.check_scale(scale)})


def labelled_video_dataset(
    paths: Sequence[str], label_folders: Sequence[str], *, max_frames: Optional[int] = None,
    clip_frames: Optional[int] = None, num_classes: Optional[int] = None,
) -> Dataset:
    """Video files (or image folders) with ground truth: ``label_folders[i]`` holds one label
    image per frame of ``paths[i]`` (:mod:`adaptive_dff.data.label_folders`: class ids 0..254,
    255 void and left out of scores).

    Split as :func:`pseudo_labelled_dataset`: each video's first third is a calibration clip, the
    rest test clips of ``clip_frames`` (default 100). ``num_classes``: a model's (every id must be
    below it), or ``None``: the highest class id found plus one
    (:func:`adaptive_dff.data.label_folders.class_count`). Every video and label folder is read and
    checked before the data set is made; errors name the file and frame.
    """
    from adaptive_dff.data import pseudo_labels as pl
    from adaptive_dff.data.label_folders import VOID, class_count, read_labelled_video

    if not paths:
        raise ValueError("video data set: give at least one video file")
    if len(label_folders) != len(paths):
        raise ValueError(f"--labels gives {len(label_folders)} label folder(s) for {len(paths)} video(s); "
                         "give one folder per --video, in the same order")
    for folder in label_folders:  # named before any video is decoded
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"label folder {folder!r} does not exist or is not a folder (--labels takes "
                                    f"{' or '.join(LABEL_SOURCES)}, or one label folder per --video)")
    clip_frames = pl.CLIP_FRAMES if clip_frames is None else check_int(clip_frames, "clip_frames", 2)
    videos = []
    for path, folder in zip(paths, label_folders):
        reader, frames, labels = read_labelled_video(path, folder, max_frames)
        if len(frames) < 10:
            raise ValueError(f"video file {path!r} holds {len(frames)} frames"
                             + (f" (read up to --frames {max_frames})" if max_frames else "")
                             + "; compare needs at least 10")
        videos.append((path, folder, reader, frames, labels))
    num_classes = class_count([(folder, labels) for _, folder, _, _, labels in videos], num_classes)
    calibration, test, files = [], [], []
    for number, (path, folder, reader, frames, labels) in enumerate(videos):
        stem = f"{number}-{os.path.splitext(os.path.basename(os.path.normpath(path)))[0]}"
        first, rest, split = split_stream(stem, frames, labels, reader.fps or None, clip_frames)
        calibration.append(first)
        test.extend(rest)
        files.append({"file": os.path.basename(os.path.normpath(path)),
                      "labels": os.path.basename(os.path.normpath(folder)), "frames": len(frames),
                      "calibration_frames": split["calibration_frames"], "truncated": reader.truncated,
                      "test_clips": split["test_clips"]})
    return Dataset(name=LABELLED_KIND, calibration=calibration, test=test, num_classes=num_classes,
                   ignore_index=VOID,
                   spec={"kind": LABELLED_KIND, "labels": "label images (ground truth)", "files": files,
                         "max_frames": max_frames, "clip_frames": clip_frames})


def label_source(labels) -> tuple:
    """``(source, folders)`` of compare's ``--labels`` values: ``("none", [])``, ``("model", [])``
    or ``("folders", [folder, ...])`` (``labels`` a string, a list of them, or ``None``)."""
    values = [] if labels is None else [labels] if isinstance(labels, str) else list(labels)
    if not values:
        return "none", []
    if len(values) == 1 and values[0] in LABEL_SOURCES:
        return values[0], []
    named = [v for v in values if v in LABEL_SOURCES]
    if named:
        raise ValueError(f"--labels takes {' or '.join(LABEL_SOURCES)} alone, or label folders; got {values}")
    return "folders", values


# -- by name -----------------------------------------------------------------------


def compare_datasets(
    name: Optional[str] = None, *, videos: Optional[Sequence[str]] = None, data_root: Optional[str] = None,
    frames: Optional[int] = None, seed: int = 0, model: Optional[str] = None,
    labels: Union[str, Sequence[str], None] = None,
    clip_frames: Optional[int] = None, video_scale: Optional[float] = None,
) -> list:
    """The data sets ``adaptive-dff compare`` names: ``"synthetic"`` (the default: the three
    generated scenarios, ``frames`` long, 48 by default), ``"synthetic-objects"`` (the same
    clips labelled by object, :func:`synthetic_dataset`), ``"camvid-val"`` or ``"camvid-1fps"``
    (need ``data_root``; the latter's test clips of ``clip_frames``),
    or the ``videos`` (up to ``frames`` each). Videos are unlabelled (``labels`` ``None`` or
    ``"none"``), their classes those of ``model`` (a ``.keras`` file) or, without one, the
    shipped CamVid model's; or (``labels="model"``) labelled by the per-frame predictions of
    ``model``, by default the shipped one (:func:`pseudo_labelled_dataset`, test clips of
    ``clip_frames``, frames shrunk by ``video_scale``); or (``labels`` a list of folders, one per
    video) labelled by ground-truth label images (:func:`labelled_video_dataset`)."""
    source, folders = label_source(labels)
    if source != "none" and not videos:
        raise ValueError(f"--labels {' '.join(folders) or source} labels --video files; give --video FILE ...")
    if clip_frames is not None and source == "none" and name != CAMVID_1FPS:
        raise ValueError(f"--clip-frames is for labelled videos and --dataset {CAMVID_1FPS}; add --labels model or "
                         "--labels FOLDER ...")
    if video_scale is not None and source == "none":
        raise ValueError("--video-scale is for labelled videos; add --labels model or --labels FOLDER ...")
    if video_scale is not None and source == "folders":
        raise ValueError("--video-scale is for --labels model (label images keep their frames' size)")
    if clip_frames is not None:
        check_int(clip_frames, "--clip-frames", 2)
    if video_scale is not None:  # named before any video is opened
        from adaptive_dff.data.pseudo_labels import check_scale

        try:
            check_scale(video_scale)
        except ValueError:
            raise ValueError(f"--video-scale must be a factor in (0, 1], got {video_scale!r}") from None
    if videos:
        if name:
            raise ValueError("give either --dataset or --video, not both")
        if source == "folders":
            classes = None
            if model:  # the labels must be the model's classes
                from adaptive_dff.model import load_model

                classes = load_model(model).num_classes
            return [labelled_video_dataset(videos, folders, max_frames=frames, clip_frames=clip_frames,
                                           num_classes=classes)]
        if source == "model":
            if not model:
                from adaptive_dff.pretrained import default_model_path

                model = default_model_path()
            return [pseudo_labelled_dataset(videos, model, max_frames=frames, clip_frames=clip_frames,
                                            scale=video_scale)]
        if model:
            from adaptive_dff.model import load_model

            num_classes = load_model(model).num_classes
        else:
            from adaptive_dff.data.camvid import NUM_CLASSES as num_classes
        return [video_dataset(videos, num_classes=num_classes, max_frames=frames)]
    name = name or "synthetic"
    if name in ("synthetic", "synthetic-objects"):
        return synthetic_datasets(frames=frames or 48, seed=max(seed, 0),
                                  labels="objects" if name == "synthetic-objects" else "classes")
    if name in ("camvid-val", CAMVID_1FPS):
        if data_root is None:
            raise ValueError(f"--dataset {name} needs the data folder: pass --data-root PATH")
        if name == CAMVID_1FPS:
            return [camvid_1fps_dataset(data_root, clip_frames)]
        return [camvid_val_dataset(data_root)]
    raise ValueError(f"unknown data set {name!r}; choose synthetic, synthetic-objects, camvid-val or "
                     f"{CAMVID_1FPS}, or pass --video FILE ...")


def dataset_kind(name: Optional[str] = None, videos: Optional[Sequence[str]] = None,
                 labels: Union[str, Sequence[str], None] = None) -> str:
    """The ``spec["kind"]`` of the data sets :func:`compare_datasets` gives for these arguments
    (known before they are loaded, so a configuration can be resolved and checked first)."""
    if videos:
        return {"model": PSEUDO_KIND, "folders": LABELLED_KIND}.get(label_source(labels)[0], "video")
    return "synthetic" if name in (None, "synthetic-objects") else name
