"""``adaptive-dff train decision``: DVSNet's decision network from any videos.

Data set (DVSNet, Xu et al. 2018): for key frames ``t`` of each video and
offsets ``o = 0..max_offset``, per region of a :class:`schedulers.RegionGrid`:

* input: the flow network's ``features`` for (current ``t + o``, key ``t``),
  averaged to a ``feature_size`` grid;
* target: the confidence score, the share of the region's pixels where the
  prediction propagated from ``t`` agrees with the per-frame prediction on
  ``t + o``.

Videos are files or folders of numbered images (``videos`` in the config,
comma-separated), each optionally cut to a frame span ``PATH@FIRST:LAST``.
No labels are needed. The data set is cached in ``--out`` (``dataset.npz``,
written atomically), so a rerun skips building it. A
:class:`schedulers.DecisionModel` is fitted on the training videos and its
mean absolute error reported on the held-out (last) video.

As the other programs, the run folder holds ``run.json``, ``checkpoints/``
(weights, optimizer state and epoch after every epoch: a run killed at any
moment resumes from the last finished epoch and ends with the same model as
an uninterrupted run), ``tensorboard/`` (per epoch: ``loss`` and ``mae`` on
the training samples, ``held_out_mae`` and ``held_out_loss``; at the end
``eval/...``), and at the end ``model.keras`` (with ``model.keras.json``, the
input statistics; load it with :meth:`schedulers.DecisionModel.load`) and
``metrics.json``, written atomically.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Optional

import cv2
import numpy as np

from adaptive_dff.data import SyntheticVideo
from adaptive_dff.video import VideoReader
from schedulers import DecisionModel, RegionGrid
from schedulers.pair_features import resize_features
from schedulers.files import file_sha256, read_npz, write_npz_atomic
from training import runtime

logger = logging.getLogger(__name__)


def signature(config: dict) -> dict:
    """What the stored samples and model depend on: the settings, and the model file and
    videos by content (a file replaced under the same path is another run)."""
    from adaptive_dff.data.pseudo_labels import source_sha256

    found = {k: config[k] for k in ("model", "regions", "overlap", "feature_size", "videos", "max_frames",
                                     "max_offset", "key_stride", "height", "width")}
    if config["model"] and os.path.isfile(config["model"]):
        found["model_sha256"] = file_sha256(config["model"])
    if config["videos"] != "synthetic":
        paths = [parse_video_item(item)[0] for item in config["videos"].split(",") if item]
        found["video_sha256"] = [source_sha256(p) if os.path.exists(p) else None for p in paths]
    return found


def _videos(config: dict) -> list[tuple[str, list]]:
    """``[(name, frames)]`` with frames resized to the configured size."""
    size = (config["width"], config["height"])
    spec = config["videos"]
    if spec == "synthetic":
        clips = []
        for i in range(4):
            video = SyntheticVideo(height=config["height"], width=config["width"], num_frames=config["max_frames"],
                                   seed=500 + i, scene_cuts=(config["max_frames"] // 2,) if i % 2 else ())
            clips.append((f"synthetic-{i}", [video.frame(t) for t in range(len(video))]))
        return clips
    clips = []
    for item in [p for p in spec.split(",") if p]:
        path, first, last = parse_video_item(item)
        limit = min(last, first + config["max_frames"]) if last is not None else first + config["max_frames"]
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in VideoReader(path, max_frames=limit)]
        if last is not None and len(frames) < limit:
            raise ValueError(f"video {item!r}: the span asks for frames up to {limit - 1}, the video has {len(frames)}")
        frames = frames[first:]
        if len(frames) <= config["max_offset"]:
            raise ValueError(f"video {item!r} has {len(frames)} frames; it needs more than max_offset={config['max_offset']}")
        clips.append((os.path.basename(os.path.normpath(path)) + (item[len(path):]), frames))
    if len(clips) < 2:
        raise ValueError(f"config key 'videos' needs at least two videos (one is held out), got {spec!r}")
    return clips


def parse_video_item(item: str) -> tuple[str, int, Optional[int]]:
    """``PATH`` or ``PATH@FIRST:LAST`` (frames ``FIRST..LAST-1`` only, e.g. the calibration
    part of a clip that is scored elsewhere) -> ``(path, first, last or None)``."""
    match = re.fullmatch(r"(.+)@(\d+):(\d+)", item)
    if match is None:
        if os.path.exists(item) or "@" not in os.path.basename(item):
            return item, 0, None
        raise ValueError(f"video {item!r}: a frame span is written PATH@FIRST:LAST, e.g. clip.mp4@0:34")
    path, first, last = match.group(1), int(match.group(2)), int(match.group(3))
    if not 0 <= first < last:
        raise ValueError(f"video {item!r}: the frame span needs 0 <= FIRST < LAST, got {first}:{last}")
    return path, first, last


def build_samples(model, frames: list, grid: RegionGrid, config: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(X [N, rows, cols, C], y [N])`` of one video."""
    boxes = grid.boxes(frames[0].shape[0], frames[0].shape[1])
    per_frame = {}

    def frame_labels(t):
        if t not in per_frame:
            per_frame[t] = [np.argmax(model.key_step(c)[0].numpy()[0], -1) for c in grid.split(frames[t])]
        return per_frame[t]

    X, y = [], []
    for key in range(0, len(frames) - config["max_offset"], config["key_stride"]):
        keys = [model.key_step(c)[1] for c in grid.split(frames[key])]
        for offset in range(config["max_offset"] + 1):
            current = key + offset
            for r, (crop, kf) in enumerate(zip(grid.split(frames[current]), keys)):
                logits, flow_out = model.propagate_step(crop, kf)
                if "features" not in flow_out:  # propagation along DIS flow: the flow net runs for its features
                    flow_out = model.run_flow(model.pad_frames(crop)[1], kf.image)
                agree = np.mean(np.argmax(logits.numpy()[0], -1) == frame_labels(current)[r])
                h, w = boxes[r][1] - boxes[r][0], boxes[r][3] - boxes[r][2]
                features = model.crop_to_grid(flow_out["features"], h, w)
                X.append(resize_features(features, (config["feature_size"],) * 2))
                y.append(agree)
        for t in [t for t in per_frame if t < key]:
            del per_frame[t]  # keep memory flat
    return np.stack(X), np.asarray(y, np.float32)


def run(config: dict, out: str, log=logger.info) -> dict:
    signed = signature(config)  # hashes the model and the videos: once
    runtime.check_run_folder(out, "decision", signed)
    from adaptive_dff.model import compact_dff, load_model

    if config["model"]:
        model = load_model(config["model"])
    else:
        log("note: no DFF model given (config key 'model'); using an untrained compact model, "
            "so the targets only exercise the pipeline")
        model = compact_dff()
    grid = RegionGrid(config["regions"], config["regions"], config["overlap"])
    grid.boxes(config["height"], config["width"])  # fits?
    clips = _videos(config)
    runtime.claim_run_folder(out, "decision", signed)

    cache = os.path.join(out, "dataset.npz")
    data = read_npz(cache, ("X", "y", "video"), log)
    if data is not None:
        X, y, owner = data["X"], data["y"], data["video"]
        log(f"reusing the data set in {cache} ({len(y)} samples)")
    else:
        parts = [build_samples(model, frames, grid, config) for _, frames in clips]
        X = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        owner = np.concatenate([np.full(len(p[1]), i) for i, p in enumerate(parts)])
        write_npz_atomic(cache, X=X, y=y, video=owner)
        log(f"built {len(y)} samples from {len(clips)} videos")
    finished = os.path.join(out, "metrics.json")
    final = os.path.join(out, "model.keras")
    if os.path.exists(final) and os.path.exists(finished):
        import json

        with open(finished) as f:
            metrics = json.load(f)["metrics"]
        log(f"already trained: {final} (held-out MAE {metrics['held_out_mae']:.4f})")
        return metrics
    held_out = owner == owner.max()  # the last video is held out
    decision = DecisionModel(epochs=config["epochs"], seed=config["seed"], learning_rate=config["learning_rate"])
    fit_and_log(decision, X[~held_out], y[~held_out], X[held_out], y[held_out], out, log)
    predicted = decision.predict(X[held_out])
    metrics = {
        "held_out_mae": float(np.abs(predicted - y[held_out]).mean()),
        "mean_predictor_mae": float(np.abs(y[~held_out].mean() - y[held_out]).mean()),
        "train_samples": int((~held_out).sum()), "held_out_samples": int(held_out.sum()),
        "held_out_video": clips[-1][0], "target_mean": float(y.mean()), "epochs": config["epochs"],
        "resumed_from_epoch": decision.resumed_from_,
    }
    log(f"held-out MAE {metrics['held_out_mae']:.4f} (predicting the training mean: {metrics['mean_predictor_mae']:.4f})")
    _write_scalars(_writer(out), {f"eval/{k}": v for k, v in metrics.items()}, config["epochs"])
    decision.save(final)
    runtime.write_metrics(out, "decision", config, metrics)
    return metrics


def fit_and_log(decision: DecisionModel, X, y, X_held, y_held, out: str, log=logger.info) -> DecisionModel:
    """Fit ``decision`` with a checkpoint after every epoch in ``out/checkpoints`` (resuming from the
    last one), per-epoch scalars in ``out/tensorboard`` and a progress line every tenth of the epochs."""
    import time

    total, started = decision.epochs, time.perf_counter()
    writer = _writer(out)
    every = max(1, total // 10)
    first = []

    def epoch_end(epoch: int, logs: dict) -> None:
        if not first:
            first.append(epoch - 1)
            if epoch > 1:
                log(f"resuming from epoch {epoch - 1}")
        named = {"loss": logs["loss"], "mae": logs["mae"]}
        if "val_mae" in logs:
            named.update(held_out_mae=logs["val_mae"], held_out_loss=logs["val_loss"])
        _write_scalars(writer, named, epoch)
        if epoch % every == 0 or epoch == total:
            elapsed = time.perf_counter() - started
            left = elapsed / (epoch - first[0]) * (total - epoch)
            log(f"epoch {epoch}/{total}  loss {logs['loss']:.4f}  held-out MAE {logs.get('val_mae', float('nan')):.4f}"
                f"  {elapsed:.0f}s elapsed, ~{left:.0f}s left")

    decision.fit(X, y, validation_data=(X_held, y_held), checkpoint_dir=os.path.join(out, "checkpoints"),
                 on_epoch_end=epoch_end)
    if not first and decision.resumed_from_:
        log(f"already trained to epoch {decision.resumed_from_} of {total}")
    return decision


def _writer(out: str):
    import tensorflow as tf

    return tf.summary.create_file_writer(os.path.join(out, "tensorboard"))


def _write_scalars(writer, scalars: dict, step: int) -> None:
    import tensorflow as tf

    with writer.as_default():
        for name, value in scalars.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
                tf.summary.scalar(name, value, step=step)
    writer.flush()
