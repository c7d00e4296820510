"""``adaptive-dff train quality``: the propagation-quality predictor from labelled clips.

Data (oracle, exact labels): for key frames ``k`` of each clip (every
``key_stride`` frames) and each later frame ``t = k + 1 .. k + max_offset``,
per region of a 1x1 and a 2x2 grid (``overlap`` px):

* input: the :class:`schedulers.QualitySignals` of the region, computed as a
  pipeline would, frame after frame since the key, along OpenCV DIS flow from
  the current region to the key region (config ``key_labels``: with the key
  labels' colour disagreement too, the key region's labels being the clip's
  labels: true ones, or the video model's predictions);
* target: the accuracy of the key region's true labels carried to ``t``
  along that flow (:func:`adaptive_dff.compare.scoring.carry_labels`)
  against the true labels of ``t``: ``pixel_accuracy`` (void left out) or
  ``miou`` (mean IoU over the classes present in truth or result).

Clips: generated ones (:class:`adaptive_dff.data.SyntheticVideo`, seeds
apart from every seed ``compare`` uses; every motion regime, occlusions by
moving objects, scene cuts, brightness cycles) and, when ``camvid`` is on and
the data folder is found, CamVid's ``val`` clip frames ``0..33`` ONLY (the
calibration part; frames 34..100 are what ``compare`` scores).

Unlabelled videos (``videos``, comma-separated files or image folders): the
targets are the agreement of the key frame's per-frame prediction of
``video_model`` (by default the shipped CamVid model), carried as above, with
that model's per-frame prediction of ``t`` (DVSNet's confidence score),
from :mod:`adaptive_dff.data.pseudo_labels` (computed once per video and
cached). Only each video's calibration part, its first third
(:func:`adaptive_dff.data.pseudo_labels.calibration_split`), is used: the
rest is the test part of ``compare --video ... --labels model`` and stays
unseen. Every video is opened before anything is written or computed.

Labelled videos (``label_folders``, one per entry of ``videos``, in order: ground truth as
``compare --video ... --labels FOLDER ...`` reads it, :mod:`adaptive_dff.data.label_folders`):
the targets are then the true accuracy of the carried labels, as on the generated clips, from
the same calibration part only; no model runs. Every video and label image is read and checked
before anything is written; the rows are then built from what was read.

Held out, by whole source, so the error measures transfer to footage the fit never saw
(:func:`folds`): every fifth generated clip (clips 4, 9, 14, ..); CamVid's pairs whose key is at
frame 22 or later, scored by a fit without any CamVid pair carried into frames 22..33 (one extra fit
per kind); and every video row, scored by a fit on everything but its own video (leave one video
out: one extra fit per video and kind). The fit written (``shipped``) uses every row not held out
plus every video's rows. The report gives each kind's mean absolute error on the held-out rows
(all, and per source and video) against predicting the training mean, and its prediction time.
Kinds (config key ``kinds``): ``ridge``, ``mlp`` (scikit-learn) and ``network`` (DVSNet's decision
network on these signals, fitted with Keras, at most ``network_epochs`` epochs; see
:class:`schedulers.QualityPredictor`). The rule, fixed in advance: the kind with the lowest *mean
over sources* of the held-out error (the mean of the generated, CamVid and video errors, those
present; each source counts once, however many rows it has) is written to ``quality.json``
(nothing measured on CamVid frames 34..100 takes part).

``fit_seed`` seeds the fits alone (``seed`` also seeds the generated clips, and so the rows): a
rerun in the same folder with another ``fit_seed`` refits on the rows already built, which shows
how much a fit's luck moves what it is used for.
"""

from __future__ import annotations

import logging

import os
import time
from typing import Optional

import numpy as np

from adaptive_dff.environment import versions
from adaptive_dff.labels import carry_labels
from adaptive_dff.data import NUM_CLASSES, SyntheticVideo
from adaptive_dff.data.synthetic import LABELLINGS
from schedulers import DISFlow, RegionGrid
from schedulers.files import claim_folder, file_sha256, read_npz, write_json_atomic, write_npz_atomic
from schedulers.quality_signals import DEFAULT_MAX_PIXELS, QualitySignals
from schedulers.quality_predictor import KINDS, QualityPredictor

CAMVID_CALIBRATION_FRAMES = 34  # frames 0..33 only; 34..100 are scored by compare
CAMVID_HELD_OUT_FROM_KEY = 22
DATASET_VERSION = 3  # 2: every video row held out (leave-one-video-out), a ``video`` column; 3: ``frame``
TARGETS = ("pixel_accuracy", "miou")

# (camera_speed, object_speed, cuts as fractions, brightness): every regime, cycled over the clips.
REGIMES = (
    (0.3, 0.3, (), 0.1), (2.0, 2.0, (), 0.2), (4.0, 3.0, (), 0.2), (1.0, 1.0, (0.3, 0.7), 0.2),
    (0.0, 2.0, (), 0.0), (3.0, 0.5, (0.5,), 0.4), (1.0, 4.0, (), 0.2), (6.0, 2.0, (0.4,), 0.1),
)


logger = logging.getLogger(__name__)

def accuracies(truth: np.ndarray, carried: np.ndarray, num_classes: int, ignore_index) -> tuple[float, float]:
    """``(pixel accuracy, mean IoU over the classes present)`` of ``carried`` against ``truth``
    ``[h, w]``; pixels labelled ``ignore_index`` are left out (both NaN when nothing is left)."""
    keep = truth != ignore_index if ignore_index is not None else np.ones(truth.shape, bool)
    t, p = truth[keep].astype(np.int64), carried[keep].astype(np.int64)
    if t.size == 0:
        return float("nan"), float("nan")
    confusion = np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, -1)
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    return float(tp.sum() / t.size), float(np.mean(tp[present] / union[present]))


def signal_set(config: dict) -> QualitySignals:
    """The :class:`schedulers.QualitySignals` of ``config`` (``downsample``, ``key_labels``, and
    ``max_pixels``, 0 for no limit of the signals' grid)."""
    return QualitySignals(downsample=config["downsample"], key_labels=config.get("key_labels", False),
                          max_pixels=config.get("max_pixels", DEFAULT_MAX_PIXELS) or None)


def clip_samples(frames, labels, grids, config: dict, num_classes: int, ignore_index=None, key_limit=None):
    """Rows of one clip: ``(X [N, S], pixel accuracy [N], miou [N], key index [N], carried-to frame
    index [N])``."""
    flow = DISFlow()
    X, pixel, miou, keys, targets = [], [], [], [], []
    last_key = len(frames) - 2 if key_limit is None else min(key_limit, len(frames) - 2)
    for grid in grids:
        for key in range(0, last_key + 1, config["key_stride"]):
            key_crops = [c.copy() for c in grid.split(frames[key])]
            key_labels = grid.split(np.asarray(labels[key]))
            signals = signal_set(config)
            for t in range(key + 1, min(key + config["max_offset"], len(frames) - 1) + 1):
                crops, truths = grid.split(frames[t]), grid.split(np.asarray(labels[t]))
                for r, (crop, truth) in enumerate(zip(crops, truths)):
                    region_flow = flow(crop, key_crops[r])
                    X.append(signals.region(r, crop, key_crops[r], key, t, region_flow, key_labels[r]))
                    carried, _ = carry_labels(key_labels[r], region_flow, num_classes)
                    a, m = accuracies(truth, carried, num_classes, ignore_index)
                    pixel.append(a)
                    miou.append(m)
                    keys.append(key)
                    targets.append(t)
    return np.asarray(X), np.asarray(pixel), np.asarray(miou), np.asarray(keys), np.asarray(targets)


def synthetic_clips(config: dict):
    """``[(name, frames, labels)]``: ``synthetic_clips`` generated clips cycling through :data:`REGIMES`,
    labelled by class or, with ``synthetic_labels="objects"``, by object (``SyntheticVideo.objects``)."""
    by_object = config.get("synthetic_labels", "classes") == "objects"
    clips = []
    n = config["frames"]
    for i in range(config["synthetic_clips"]):
        camera, objects, cuts, brightness = REGIMES[i % len(REGIMES)]
        video = SyntheticVideo(height=config["height"], width=config["width"], num_frames=n,
                               seed=70_000 + 97 * i + config["seed"], camera_speed=camera, object_speed=objects,
                               brightness=brightness,
                               scene_cuts=sorted({min(max(1, round(f * n)), n - 1) for f in cuts}))
        clips.append((f"synthetic-{i}", [video.frame(t) for t in range(n)],
                      [(video.objects if by_object else video.label)(t) for t in range(n)]))
    return clips


def video_list(config: dict) -> list:
    """The paths of config key ``videos`` (comma-separated), in order."""
    return [p.strip() for p in config["videos"].split(",") if p.strip()]


def label_folder_list(config: dict) -> list:
    """The folders of config key ``label_folders`` (comma-separated), in order."""
    return [p.strip() for p in config.get("label_folders", "").split(",") if p.strip()]


def check_videos(config: dict) -> Optional[tuple]:
    """Open every video of ``videos`` and check ``video_model`` (or, for labelled videos, read every
    video and label image): a named error before any work. Returns what
    :func:`read_labelled_videos` read for labelled videos, else ``None``."""
    from adaptive_dff.data import pseudo_labels

    folders = label_folder_list(config)
    if folders and not config["videos"]:
        raise ValueError("config key 'label_folders' labels the files of 'videos'; give videos=FILE,...")
    if not config["videos"]:
        return
    if folders:
        videos = video_list(config)
        if len(folders) != len(videos):
            raise ValueError(f"config key 'label_folders' gives {len(folders)} folder(s) for {len(videos)} "
                             "video(s); give one per video, in the same order")
        if config["video_scale"] != 1.0:
            raise ValueError("config key 'video_scale' is for model-labelled videos; label images keep "
                             "their frames' size (leave it at 1)")
        pseudo_labels.check_sources(videos)
        for folder in folders:
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"config key 'label_folders': label folder {folder!r} does not exist "
                                        "or is not a folder")
        return read_labelled_videos(config)  # every label image checked, before anything is written
    if not config["video_model"]:
        raise ValueError("config key 'videos' needs 'video_model', the DFF model whose per-frame predictions "
                         "are the targets (the command fills in the shipped model)")
    if not os.path.isfile(config["video_model"]):
        raise FileNotFoundError(f"config key 'video_model': model file {config['video_model']!r} does not exist")
    pseudo_labels.check_scale(config["video_scale"])
    pseudo_labels.check_sources(video_list(config))
    return None


def video_parts(config: dict, grids, log=logger.info, labelled: Optional[tuple] = None) -> tuple:
    """``(parts, decoded)`` of the videos of ``videos``, in order. ``parts``: ``[(X, pixel accuracy,
    miou, source 2, held out, carried-to frame)]`` per video, its calibration part only, the targets
    agreement with ``video_model``'s per-frame predictions; every row is held out: it is scored by
    the fold that leaves its whole video out (:func:`folds`). ``decoded``: ``[(frames decoded,
    truncated)]`` per video (truncated: decoding stopped before the frames its file announced)."""
    from adaptive_dff.data import pseudo_labels

    if label_folder_list(config):
        return labelled_video_parts(config, grids, log, labelled)
    parts, decoded = [], []
    for video in pseudo_labels.iter_pseudo_labels(video_list(config), config["video_model"],
                                                  scale=config["video_scale"], log=log):
        cut = pseudo_labels.calibration_split(len(video))  # frames cut.. are compare's test part: never used
        X, a, m, _, carried_to = clip_samples(video.frames[:cut], video.labels[:cut], grids, config,
                                              video.num_classes)
        parts.append((X, a, m, np.full(len(a), 2), np.ones(len(a), bool), carried_to))
        decoded.append((len(video), bool(video.truncated)))
        log(f"video {os.path.basename(os.path.normpath(video.source))} frames 0..{cut - 1} of {len(video)}: "
            f"{len(a)} rows")
    return parts, decoded


def read_labelled_videos(config: dict) -> tuple:
    """``([(path, frame count, frames, labels, truncated)], num_classes)`` of ``videos`` with
    ``label_folders``, the frames and labels of each video's calibration part (its first third) only
    (``truncated``: its decoding stopped before the frames its file announced); every label image of
    the whole video is read and checked (:func:`adaptive_dff.data.label_folders.load_label_folder`,
    ``class_count``)."""
    from adaptive_dff.data import pseudo_labels
    from adaptive_dff.data.label_folders import class_count, read_labelled_video

    videos, checked = [], []
    for path, folder in zip(video_list(config), label_folder_list(config)):
        reader, frames, labels = read_labelled_video(path, folder)
        if len(frames) < 4:
            raise ValueError(f"video {path!r} holds {len(frames)} frames; at least 4 are needed")
        checked.append((folder, labels))
        cut = pseudo_labels.calibration_split(len(frames))  # frames cut.. are compare's test part: never used
        videos.append((path, len(frames), frames[:cut], labels[:cut], bool(reader.truncated)))
    return videos, class_count(checked)


def labelled_video_parts(config: dict, grids, log=logger.info, labelled: Optional[tuple] = None) -> list:
    """:func:`video_parts` for videos with label folders: the targets the true accuracy of the
    carried labels (255 void left out; classes up to the highest id found in any folder), from
    ``labelled`` (what :func:`read_labelled_videos` gave) or, without it, read here."""
    from adaptive_dff.data.label_folders import VOID

    videos, num_classes = labelled if labelled is not None else read_labelled_videos(config)
    parts, decoded = [], []
    for path, length, frames, labels, truncated in videos:
        X, a, m, _, carried_to = clip_samples(frames, labels, grids, config, num_classes, VOID)
        parts.append((X, a, m, np.full(len(a), 2), np.ones(len(a), bool), carried_to))
        decoded.append((length, truncated))
        log(f"labelled video {os.path.basename(os.path.normpath(path))} frames 0..{len(frames) - 1} of {length}: "
            f"{len(a)} rows")
    return parts, decoded


DATASET_KEYS = ("X", "pixel_accuracy", "miou", "source", "held_out", "video", "frame")
VIDEO_KEYS = ("video_frames", "video_truncated")  # one value per video of ``videos``


def build_dataset(config: dict, data_root, log=logger.info, labelled: Optional[tuple] = None) -> dict:
    """Every row, with its source: ``X``, ``pixel_accuracy``, ``miou``, ``source`` (0 generated,
    1 CamVid, 2 unlabelled video), ``held_out`` (bool: scored by a model that never saw its clip or
    video), ``video`` (the index in ``videos``; -1 for the other sources), ``frame`` (the frame the
    key's labels are carried to, in its clip or video). ``labelled``: what
    :func:`check_videos` read of labelled videos (read here when not given)."""
    grids = [RegionGrid(1, 1), RegionGrid(2, 2, config["overlap"])]
    parts = []
    for number, (name, frames, labels) in enumerate(synthetic_clips(config)):
        classes = max(NUM_CLASSES, max(int(label.max()) for label in labels) + 1)  # object ids may pass 7
        X, a, m, _, carried_to = clip_samples(frames, labels, grids, config, classes)
        parts.append((X, a, m, np.zeros(len(a), int), np.full(len(a), number % 5 == 4), carried_to))
    log(f"generated clips: {sum(len(p[1]) for p in parts)} rows from {config['synthetic_clips']} clips")
    if config["camvid"]:
        if not data_root:
            raise ValueError("config key 'camvid' is on but no data folder was found: pass --data-root PATH "
                             "or set camvid=false")
        from adaptive_dff.data.camvid import NUM_CLASSES as CAMVID_CLASSES, VOID, load_split

        frames, labels = load_split(data_root, "val")
        frames, labels = frames[:CAMVID_CALIBRATION_FRAMES], labels[:CAMVID_CALIBRATION_FRAMES]  # never 34..100
        X, a, m, keys, carried_to = clip_samples(frames, labels, grids, config, CAMVID_CLASSES, VOID)
        parts.append((X, a, m, np.ones(len(a), int), keys >= CAMVID_HELD_OUT_FROM_KEY, carried_to))
        log(f"CamVid val frames 0..{CAMVID_CALIBRATION_FRAMES - 1}: {len(a)} rows")
    video = [np.full(len(p[1]), -1) for p in parts]
    decoded = []
    if config["videos"]:
        found, decoded = video_parts(config, grids, log, labelled)
        for number, part in enumerate(found):
            parts.append(part)
            video.append(np.full(len(part[1]), number))
    columns = ([np.concatenate([p[i] for p in parts]) for i in range(5)] + [np.concatenate(video)]
               + [np.concatenate([p[5] for p in parts])])
    data = dict(zip(DATASET_KEYS, columns))
    finite = np.all(np.isfinite(data["X"]), axis=1) & np.isfinite(data["pixel_accuracy"])
    data = {k: v[finite] for k, v in data.items()}
    data["video_frames"] = np.array([n for n, _ in decoded], np.int64)
    data["video_truncated"] = np.array([t for _, t in decoded], bool)
    return data


def _prediction_us(predictor: QualityPredictor, X: np.ndarray) -> float:
    """Microseconds for one 4-region prediction (median of 200)."""
    rows = X[:4]
    times = []
    for _ in range(200):
        start = time.perf_counter()
        predictor.predict(rows)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)


def folds(data: dict) -> list:
    """``[(name, train mask [N], scored mask [N])]``: the fits of the held-out evaluation, each row
    held out scored by exactly one fit that never saw its clip, its video or, for CamVid, its frames.

    ``shipped`` fits on every row not held out plus every video row and scores the held-out generated
    clips; it is the predictor that is written. ``camvid`` fits on the same rows without any CamVid
    row carried to a held-out frame (keys before frame 22 carry their labels into frames 22..33 too)
    and scores the CamVid keys 22..33. ``video V`` (one per video of ``videos``) fits on the
    ``shipped`` rows without video ``V`` and scores all of video ``V``'s rows."""
    source, held, video = data["source"], data["held_out"], data["video"]
    base = ~held & (source != 2)
    is_video = source == 2
    result = [("shipped", base | is_video, held & (source == 0))]
    if (held & (source == 1)).any():
        sees_held_frames = (source == 1) & (data["frame"] >= CAMVID_HELD_OUT_FROM_KEY)
        result.append(("camvid", (base & ~sees_held_frames) | is_video, held & (source == 1)))
    for v in np.unique(video[is_video]):
        result.append((f"video {int(v)}", base | (is_video & (video != v)), is_video & (video == v)))
    return result


def _replicated(X: np.ndarray, y: np.ndarray, source: np.ndarray, camvid_weight: float):
    """The fit rows with CamVid rows repeated ``camvid_weight`` times (scikit-learn's MLP takes no weights)."""
    repeat = np.maximum(np.round(np.where(source == 1, camvid_weight, 1.0)).astype(int), 1)
    return np.repeat(X, repeat, axis=0), np.repeat(y, repeat)


def _errors(y: np.ndarray, predicted: np.ndarray, subsets: dict) -> dict:
    return {k: float(np.abs(y[s] - predicted[s]).mean()) if s.any() else None for k, s in subsets.items()}


def _source_mean(errors: dict) -> float:
    """The selection score: the mean of the held-out errors of the sources present (generated, CamVid, videos)."""
    return float(np.mean([errors[k] for k in ("generated", "camvid", "videos") if errors.get(k) is not None]))


def fit_seed(config: dict) -> int:
    """The seed of the fits: config key ``fit_seed``, or ``seed`` when it is -1 (the default)."""
    return config["seed"] if config["fit_seed"] == -1 else config["fit_seed"]


def fit_and_report(data: dict, config: dict, log=logger.info) -> tuple[QualityPredictor, dict]:
    """Fit every kind in ``config['kinds']`` on each of :func:`folds`, report held-out errors against
    predicting the training mean, and return the ``shipped`` fit of the kind with the lowest mean
    over sources of its held-out error (:func:`_source_mean`)."""
    y = data[config["target"]]
    X, held, source, video = data["X"], data["held_out"], data["source"], data["video"]
    splits = folds(data)
    names = signal_set(config).names
    metrics = {"target": config["target"], "train_rows": int(splits[0][1].sum()), "held_out_rows": int(held.sum()),
               "split": "whole sources: generated clips 4, 9, 14, ..; CamVid val keys 22..33 of frames 0..33 "
                        "by a fit without any row carried into frames 22..33; each video by a fit without it "
                        "(leave one video out)",
               "selection": "lowest mean over sources (generated, camvid, videos) of the held-out MAE",
               "fits": {name: int(train.sum()) for name, train, _ in splits}, "models": {}}
    subsets = {"all": held, "generated": held & (source == 0), "camvid": held & (source == 1)}
    if (source == 2).any():
        subsets["videos"] = held & (source == 2)
    per_video = {f"video {int(v)}": held & (video == v) for v in np.unique(video[source == 2])}
    mean_prediction = np.full(len(y), np.nan)
    for _, train, scored in splits:
        mean_prediction[scored] = _replicated(X[train], y[train], source[train], config["camvid_weight"])[1].mean()
    metrics["mean_predictor_mae"] = _errors(y, mean_prediction, subsets)
    metrics["mean_predictor_mae_per_video"] = _errors(y, mean_prediction, per_video)
    metrics["mean_predictor_source_mean"] = _source_mean(metrics["mean_predictor_mae"])
    best, best_error = None, np.inf
    for kind in [k.strip() for k in config["kinds"].split(",") if k.strip()]:
        if kind not in KINDS:
            raise ValueError(f"config key 'kinds': unknown kind {kind!r}; choose from {KINDS}")
        predicted, shipped, fit_s = np.full(len(y), np.nan), None, 0.0
        for name, train, scored in splits:
            start = time.perf_counter()
            predictor = QualityPredictor(names, QualitySignals.version, kind=kind, seed=fit_seed(config),
                                         signals_downsample=config["downsample"],
                                         signals_max_pixels=signal_set(config).max_pixels,
                                         max_epochs=config["network_epochs"]).fit(
                *_replicated(X[train], y[train], source[train], config["camvid_weight"]))
            if name == "shipped":
                shipped, fit_s = predictor, time.perf_counter() - start
            if scored.any():
                predicted[scored] = predictor.predict(X[scored])
        errors = _errors(y, predicted, subsets)
        score = _source_mean(errors)
        metrics["models"][kind] = {"held_out_mae": errors, "held_out_mae_per_video": _errors(y, predicted, per_video),
                                   "source_mean_mae": score, "fit_seconds": fit_s,
                                   "predict_us_4_regions": _prediction_us(shipped, X)}
        log(f"{kind}: held-out MAE {errors['all']:.4f} (" + ", ".join(
            f"{k} {v:.4f}" for k, v in errors.items() if k != "all" and v is not None)
            + f"; mean over sources {score:.4f}), fit {fit_s:.1f} s, "
            f"predict {metrics['models'][kind]['predict_us_4_regions']:.0f} us / 4 regions")
        if score < best_error:
            best, best_error = shipped, score
    m = metrics["mean_predictor_mae"]
    log(f"predicting the training mean: held-out MAE {m['all']:.4f} (" + ", ".join(
        f"{k} {v:.4f}" for k, v in m.items() if k != "all" and v is not None)
        + f"; mean over sources {metrics['mean_predictor_source_mean']:.4f})")
    metrics["chosen"] = best.kind
    return best, metrics


def data_description(config: dict, data: dict) -> dict:
    """What the written predictor was fitted and scored on: sources, rows and settings (kept in its file)."""
    source, video = data["source"], data["video"]
    names = video_list(config) if config["videos"] else []
    return {
        "generated": {"clips": config["synthetic_clips"], "frames": config["frames"],
                      "labels": config.get("synthetic_labels", "classes"),
                      "size": [config["height"], config["width"]], "rows": int((source == 0).sum()),
                      "held_out_clips": list(range(4, config["synthetic_clips"], 5))},
        "camvid": {"frames": f"val 0..{CAMVID_CALIBRATION_FRAMES - 1}", "held_out_keys_from": CAMVID_HELD_OUT_FROM_KEY,
                   "rows": int((source == 1).sum())} if (source == 1).any() else None,
        "videos": [{"video": os.path.basename(os.path.normpath(p)), "rows": int((video == i).sum()),
                    "frames": "calibration part (first third) only",
                    "frames_decoded": int(data["video_frames"][i]),
                    "truncated": bool(data["video_truncated"][i])} for i, p in enumerate(names)],
        "video_targets": (None if not names else "true accuracy (label folders)" if label_folder_list(config)
                          else "agreement with video_model's per-frame predictions"),
        "video_model": os.path.basename(config["video_model"]) if names and not label_folder_list(config) else None,
        "video_scale": config["video_scale"] if names else None,
        "max_offset": config["max_offset"], "key_stride": config["key_stride"],
        "grids": ["1x1", f"2x2 ({config['overlap']} px overlap)"],
    }


def signature(config: dict) -> dict:
    """What the stored data set depends on: the settings, and the videos and model by content
    (a file replaced under the same path is another data set)."""
    keys = ("frames", "height", "width", "synthetic_clips", "max_offset", "key_stride", "overlap", "downsample",
            "camvid", "seed") + (("video_scale",) if config.get("videos") else ())
    found = {"dataset_version": DATASET_VERSION, **{k: config[k] for k in keys}}
    if config.get("max_pixels", 0):  # folders built before the grid's limit had none: max_pixels=0 continues them
        found["max_pixels"] = config["max_pixels"]
    if config.get("synthetic_labels", "classes") != "classes":  # as before the key: earlier folders continue
        found["synthetic_labels"] = config["synthetic_labels"]
    if config.get("videos"):
        from adaptive_dff.data.pseudo_labels import source_sha256

        found["videos"] = [{"path": p, "sha256": source_sha256(p)} for p in video_list(config)]
        folders = label_folder_list(config)
        if folders:
            found["label_folders"] = [{"path": p, "sha256": source_sha256(p)} for p in folders]
        else:
            found["video_model_sha256"] = file_sha256(config["video_model"])
    return found


def run(config: dict, out: str, data_root=None, log=logger.info) -> dict:
    """Build (or reuse) the data set in ``out``, fit, and write ``quality.json`` and ``metrics.json``."""
    if config["target"] not in TARGETS:
        raise ValueError(f"config key 'target' must be one of {TARGETS}, got {config['target']!r}")
    for key, minimum in (("synthetic_clips", 5), ("frames", 10), ("max_offset", 1), ("key_stride", 1),
                         ("downsample", 1), ("overlap", 0)):
        if config[key] < minimum:
            raise ValueError(f"config key {key!r} must be >= {minimum} (every fifth generated clip is held out), "
                             f"got {config[key]}")
    if config["max_pixels"] < 0:
        raise ValueError(f"config key 'max_pixels' must be >= 1, or 0 for no limit of the signals' grid, "
                         f"got {config['max_pixels']}")
    if config["fit_seed"] < -1:
        raise ValueError(f"config key 'fit_seed' must be -1 (the same as 'seed') or a seed >= 0, "
                         f"got {config['fit_seed']}")
    if config["camvid_weight"] <= 0:
        raise ValueError(f"config key 'camvid_weight' must be > 0, got {config['camvid_weight']}")
    if config["synthetic_labels"] not in LABELLINGS:
        raise ValueError(f"config key 'synthetic_labels' must be one of {LABELLINGS}, "
                         f"got {config['synthetic_labels']!r}")
    if config["synthetic_labels"] == "objects" and config["camvid"]:
        raise ValueError("config key 'synthetic_labels' is 'objects' but CamVid's frames are labelled by class, "
                         "not by object: add --set camvid=false")
    labelled = check_videos(config)
    claim_folder(out, "run.json", {"program": "quality", "signature": signature(config)}, "another data set")
    cache = os.path.join(out, "dataset.npz")
    # What each video decoded is read only for runs with videos (a data set of an earlier version
    # without videos is reused as it is).
    data = read_npz(cache, DATASET_KEYS + (VIDEO_KEYS if config["videos"] else ()), log)
    if data is not None:
        log(f"reusing the data set in {cache} ({len(data['X'])} rows)")
    else:
        data = build_dataset(config, data_root, log=log, labelled=labelled)
        write_npz_atomic(cache, **data)
    predictor, metrics = fit_and_report(data, config, log=log)
    metrics["data"] = data_description(config, data)
    metrics["versions"] = versions()  # a refit gives other weights under other library versions
    predictor.save(os.path.join(out, "quality.json"), target=config["target"], metrics=metrics)
    write_json_atomic(os.path.join(out, "metrics.json"), {"program": "quality", "metrics": metrics, "config": config})
    log(f"wrote {os.path.join(out, 'quality.json')} ({metrics['chosen']})")
    return metrics
