"""Which learned decision model ranks regions better: one common held-out set for both.

The ``decision_network`` arm can run on the shipped flow-feature
:class:`schedulers.DecisionModel` or on the shipped
:class:`schedulers.QualityPredictor`. Each reports its error on its own
held-out data, with its own target; this puts both on the same rows.

Rows: for key frames ``k`` of a video (every ``key_stride`` frames) and
frames ``t = k + 1 .. k + max_offset``, per region of a 2x2 grid (64 px
overlap, as ``train decision`` builds them): the target is DVSNet's
confidence score, the share of the region's pixels where the DFF model's
propagated prediction agrees with its per-frame prediction; the decision
model reads the flow network's features (8x8 cells), the quality predictor
its :class:`schedulers.QualitySignals` along OpenCV DIS flow, frame after
frame since the key.

Reported per model: the mean absolute error against the target (the quality
predictor is fitted on another target, the accuracy against true labels, so
its level may be off) and the Spearman rank correlation with it. A threshold
calibrated to a key-frame budget only uses the ranking, so the rank
correlation is what decides which model serves the decision rule better.

Run on frames neither model was fitted on (``cup.mp4`` is the decision
model's held-out video; the shipped quality predictor saw its first third,
frames 0..71, and never frames 72 on)::

    python -m adaptive_dff.bench.decision_evidence ../shared/data/videos/cup.mp4 --start 72
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging

import cv2
import numpy as np

from schedulers import DISFlow, RegionGrid, QualitySignals
from schedulers.base import check_int
from schedulers.pair_features import resize_features

logger = logging.getLogger(__name__)
KEY_STRIDE = 6  # frames between the keys rows are taken from
MAX_OFFSET = 12  # frames carried from each key


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with ties given their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two ``[N]`` arrays (NaN when either is constant)."""
    ra, rb = _ranks(np.asarray(a, np.float64)), _ranks(np.asarray(b, np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def common_rows(model, decision, quality, frames: list, key_stride: int = KEY_STRIDE, max_offset: int = MAX_OFFSET,
                grid: RegionGrid | None = None) -> np.ndarray:
    """``[N, 3]``: (target, decision model's prediction, quality predictor's prediction) per row;
    ``grid`` defaults to 2x2 regions with 64 px overlap."""
    check_int(key_stride, "key_stride", 1)
    check_int(max_offset, "max_offset", 1)
    if len(frames) <= max_offset:
        raise ValueError(f"{len(frames)} frames give no row: need more than max_offset={max_offset}")
    grid = RegionGrid(2, 2, 64) if grid is None else grid
    boxes = grid.boxes(*frames[0].shape[:2])
    flow = DISFlow()
    per_frame: dict = {}

    def labels(t):
        if t not in per_frame:
            per_frame[t] = [np.argmax(model.key_step(c)[0].numpy()[0], -1) for c in grid.split(frames[t])]
        return per_frame[t]

    rows = []
    for key in range(0, len(frames) - max_offset, key_stride):
        key_crops = [c.copy() for c in grid.split(frames[key])]
        keys = [model.key_step(c)[1] for c in key_crops]
        signals = QualitySignals(downsample=quality.signals_downsample, max_pixels=quality.signals_max_pixels)
        for t in range(key + 1, key + max_offset + 1):
            for r, (crop, key_frame) in enumerate(zip(grid.split(frames[t]), keys)):
                logits, flow_out = model.propagate_step(crop, key_frame)
                if "features" not in flow_out:  # propagation along DIS flow: run the flow net for its features
                    flow_out = model.run_flow(model.pad_frames(crop)[1], key_frame.image)
                target = float(np.mean(np.argmax(logits.numpy()[0], -1) == labels(t)[r]))
                h, w = boxes[r][1] - boxes[r][0], boxes[r][3] - boxes[r][2]
                features = resize_features(model.crop_to_grid(flow_out["features"], h, w), (8, 8))
                predicted = float(decision.predict(features[None])[0])
                vector = signals.region(r, crop, key_crops[r], key, t, flow(crop, key_crops[r]))
                rows.append((target, predicted, float(quality.predict(vector[None])[0])))
        for t in [t for t in per_frame if t < key]:
            del per_frame[t]
    return np.asarray(rows, np.float64)


def summarise(rows: np.ndarray) -> dict:
    """Errors and rank correlations of both models on ``rows`` (see :func:`common_rows`)."""
    rows = rows[np.all(np.isfinite(rows), axis=1)]
    y = rows[:, 0]
    out = {"rows": int(len(y)), "target_mean": float(y.mean()),
           "constant_at_target_mean_mae": float(np.abs(y - y.mean()).mean())}
    for name, column in (("decision_model", 1), ("quality_predictor", 2)):
        out[name] = {"mae": float(np.abs(rows[:, column] - y).mean()), "mean": float(rows[:, column].mean()),
                     "spearman": spearman(rows[:, column], y)}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("video", help="a video file or folder of numbered images neither model was fitted on")
    parser.add_argument("--frames", type=int, default=120, help="frames read from --start on (default 120)")
    parser.add_argument("--start", type=int, default=0,
                        help="first frame read (default 0); skip a part a model was fitted on")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error(f"--frames must be a positive integer, got {args.frames}")
    if args.start < 0:
        parser.error(f"--start must be a frame index >= 0, got {args.start}")
    from adaptive_dff.pretrained import load_default, load_default_decision
    from adaptive_dff.video import VideoReader
    from schedulers import load_default_quality

    frames = [cv2.resize(f, (480, 360), interpolation=cv2.INTER_AREA)
              for f in itertools.islice(VideoReader(args.video, max_frames=args.start + args.frames), args.start, None)]
    if len(frames) <= MAX_OFFSET:
        parser.error(f"{args.video}: {len(frames)} frames read from frame {args.start}; need more than {MAX_OFFSET}, the frames carried "
                     "from each key")
    result = summarise(common_rows(load_default(), load_default_decision(), load_default_quality(), frames))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
