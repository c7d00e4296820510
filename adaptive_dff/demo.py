"""``adaptive-dff demo``: Deep Feature Flow on a generated clip, in about a minute.

Two parts, both on a procedurally generated clip (exact labels and flow):

1. *Propagation*: every ``l``-th frame is a key frame whose true labels are
   carried to the following frames, either copied or warped along the exact
   flow with :func:`adaptive_dff.bilinear_warp`. The mIoU against the true
   labels shows what warping buys and how accuracy falls with the key-frame
   distance.
2. *Speed*: a compact DFF model (compact feature net, FlowNet-Inception,
   segmentation head) runs the clip per frame and with a fixed key interval.
   Its weights are untrained, so only the timings mean something here; the
   measured speedup is printed beside DFF's ideal ``l / (1 + (l - 1) r)``.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from adaptive_dff.bench.model import ideal_speedup
from adaptive_dff.bench.timing import format_table
from adaptive_dff.data import CLASS_NAMES, SyntheticVideo
from adaptive_dff.metrics import confusion_matrix, mean_iou
from adaptive_dff.warp import bilinear_warp

logger = logging.getLogger(__name__)


def propagate_labels(video: SyntheticVideo, interval: int, warp: bool) -> float:
    """mIoU of key-frame labels carried over ``interval``-frame segments."""
    num_classes = len(CLASS_NAMES)
    conf = np.zeros((num_classes, num_classes), np.int64)
    key = 0
    for t in range(len(video)):
        if t % interval == 0:
            key = t
        truth = video.label(t)
        if t == key or not warp:
            guess = video.label(key)
        else:
            one_hot = np.eye(num_classes, dtype=np.float32)[video.label(key)][None]
            flow = video.flow(t, key)[None]
            guess = np.argmax(bilinear_warp(one_hot, flow).numpy()[0], axis=-1)
        conf += confusion_matrix(truth, guess, num_classes)
    return mean_iou(conf)


def _time_model(model, frames, interval: int) -> float:
    """Seconds per frame over the clip, first frame excluded (DVSNet's protocol).

    ``interval=0`` propagates every frame from frame 0 (the cost of propagation alone).
    """
    seconds = []
    key = None
    for t, frame in enumerate(frames):
        start = time.perf_counter()
        if (interval and t % interval == 0) or key is None:
            logits, key = model.key_step(frame)
        else:
            logits, _ = model.propagate_step(frame, key)
        logits.numpy()
        seconds.append(time.perf_counter() - start)
    return float(np.mean(seconds[1:]))


def run_demo(frames: int = 60, height: int = 256, width: int = 512, seed: int = 0) -> dict:
    """Run both parts and print their tables; returns the figures."""
    from adaptive_dff.model import compact_dff

    video = SyntheticVideo(height=height, width=width, num_frames=frames, seed=seed)
    logger.info(f"Generated clip: {frames} frames of {height}x{width}, {len(CLASS_NAMES)} classes, seed {seed}\n")

    logger.info("1. Key-frame labels carried to the other frames (exact flow), mIoU against the true labels")
    rows, propagation = [], {}
    for interval in (1, 5, 10):
        copy = propagate_labels(video, interval, warp=False)
        warped = propagate_labels(video, interval, warp=True)
        propagation[interval] = {"copy": copy, "warp": warped}
        rows.append((interval, f"{copy:.3f}", f"{warped:.3f}"))
    logger.info(format_table(rows, ("key interval", "copy", "warp (bilinear_warp)")))

    logger.info("\n2. Speed of a compact DFF model (untrained weights: timings only)")
    model = compact_dff(num_classes=len(CLASS_NAMES))
    clip = [video.frame(t) for t in range(frames)]
    # Warm up both paths so tracing and XLA compilation are not timed.
    _, key = model.key_step(clip[0])
    model.propagate_step(clip[1], key)
    per_frame = _time_model(model, clip, 1)
    r = _time_model(model, clip, 0) / per_frame
    rows, speed = [], {"per_frame_ms": per_frame * 1e3, "r": r}
    rows.append(("per frame", f"{per_frame * 1e3:.1f}", "1.00", "1.00"))
    for interval in (5, 10):
        spf = _time_model(model, clip, interval)
        measured = per_frame / spf
        speed[interval] = {"ms_per_frame": spf * 1e3, "speedup": measured, "ideal": ideal_speedup(interval, r)}
        rows.append((f"key every {interval}", f"{spf * 1e3:.1f}", f"{measured:.2f}", f"{ideal_speedup(interval, r):.2f}"))
    logger.info(format_table(rows, ("schedule", "ms / frame", "speedup", "ideal l/(1+(l-1)r)")))
    logger.info(f"\nmeasured r = propagation step / key-frame step = {r:.3f}")
    return {"propagation": propagation, "speed": speed}
