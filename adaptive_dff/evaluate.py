"""``adaptive-dff evaluate``: the accuracy of a DFF model on CamVid, per frame and under DFF.

Two figures, both at CamVid's own 480x360 resolution, 11 classes, void (11)
ignored, mIoU over the classes present in labels or predictions:

* per-frame mIoU on a split (default ``test``): the feature net and head on
  every frame, as :meth:`adaptive_dff.DFFModel.key_step` runs them;
* on the 15 fps ``val`` clip (every frame labelled): the per-frame mIoU and
  the mIoU of Deep Feature Flow with a key frame every ``interval`` clip
  frames (:class:`adaptive_dff.VideoRunner` under
  :class:`schedulers.FixedInterval`), over the same frames, and their ratio.

The confusion matrices are accumulated over all frames of a split (not
averaged per frame), as the CamVid literature reports mIoU.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from adaptive_dff.metrics import confusion_matrix, iou_per_class, mean_iou


def per_frame_confusion(model, frames: Sequence[np.ndarray], labels: Sequence[np.ndarray], num_classes: int,
                        ignore_index: Optional[int]) -> np.ndarray:
    """Confusion matrix of ``model.key_step`` on every frame."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for frame, label in zip(frames, labels):
        guess = np.argmax(model.key_step(frame)[0].numpy()[0], -1)
        confusion += confusion_matrix(label, guess, num_classes, ignore_index)
    return confusion


def interval_confusion(model, frames: Sequence[np.ndarray], labels: Sequence[np.ndarray], num_classes: int,
                       ignore_index: Optional[int], interval: int) -> np.ndarray:
    """Confusion matrix of DFF over a clip, a key frame every ``interval`` frames."""
    from adaptive_dff.runner import VideoRunner
    from schedulers import FixedInterval

    confusion = np.zeros((num_classes, num_classes), np.int64)
    runner = VideoRunner(model, FixedInterval(interval))
    for step, label in zip(runner.run(frames), labels):
        confusion += confusion_matrix(label, step.labels, num_classes, ignore_index)
    return confusion


def evaluate_camvid(model, data_root: str, *, split: str = "test", interval: int = 5, log=print) -> dict:
    """Per-frame mIoU on ``split`` and per-frame vs DFF mIoU on the ``val`` clip."""
    from adaptive_dff.data.camvid import CLASS_NAMES, NUM_CLASSES, VOID, load_split

    from adaptive_dff.model import DFFModel

    if not isinstance(model, DFFModel):
        raise ValueError(f"evaluate needs a DFF model (adaptive_dff.DFFModel), got {type(model).__name__}")
    classes = model.head.get_config().get("num_classes")
    if classes != NUM_CLASSES:
        raise ValueError(f"the model predicts {classes} classes; CamVid has {NUM_CLASSES}")
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"interval must be a positive integer, got {interval!r}")
    frames, labels = load_split(data_root, split)
    split_confusion = per_frame_confusion(model, frames, labels, NUM_CLASSES, VOID)
    clip_frames, clip_labels = load_split(data_root, "val")
    clip_per_frame = per_frame_confusion(model, clip_frames, clip_labels, NUM_CLASSES, VOID)
    clip_dff = interval_confusion(model, clip_frames, clip_labels, NUM_CLASSES, VOID, interval)
    result = {
        "split": split, "split_frames": len(frames), "per_frame_miou": mean_iou(split_confusion),
        "per_class_iou": {name: (round(float(v), 4) if np.isfinite(v) else None)
                          for name, v in zip(CLASS_NAMES, iou_per_class(split_confusion))},
        "clip_frames": len(clip_frames), "interval": interval,
        "clip_per_frame_miou": mean_iou(clip_per_frame), "clip_dff_miou": mean_iou(clip_dff),
    }
    base = result["clip_per_frame_miou"]
    result["clip_dff_share"] = result["clip_dff_miou"] / base if base > 0 else float("nan")
    log(f"CamVid {split} ({len(frames)} frames at {frames[0].shape[1]}x{frames[0].shape[0]}): "
        f"per-frame mIoU {result['per_frame_miou']:.3f}")
    log("  per class: " + ", ".join(f"{name} {'-' if iou is None else f'{iou:.3f}'}"
                                    for name, iou in result["per_class_iou"].items()))
    log(f"CamVid val clip ({len(clip_frames)} frames, 15 fps): per-frame mIoU {result['clip_per_frame_miou']:.3f}; "
        f"DFF with a key frame every {interval} clip frames {result['clip_dff_miou']:.3f} "
        f"= {result['clip_dff_share']:.1%} of per-frame")
    return result
