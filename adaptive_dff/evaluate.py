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

import logging

import numpy as np

from adaptive_dff.confusion import interval_confusion, per_frame_confusion
from adaptive_dff.metrics import iou_per_class, mean_iou
from schedulers.base import check_int

logger = logging.getLogger(__name__)


def evaluate_camvid(model, data_root: str, *, split: str = "test", interval: int = 5, log=logger.info) -> dict:
    """Per-frame mIoU on ``split`` and per-frame vs DFF mIoU on the ``val`` clip."""
    from adaptive_dff.data.camvid import CLASS_NAMES, NUM_CLASSES, VOID, load_split
    from adaptive_dff.model import DFFModel

    if not isinstance(model, DFFModel):
        raise ValueError(f"evaluate needs a DFF model (adaptive_dff.DFFModel), got {type(model).__name__}")
    if model.num_classes != NUM_CLASSES:
        raise ValueError(f"the model predicts {model.num_classes} classes; CamVid has {NUM_CLASSES}")
    check_int(interval, "interval", 1)
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
