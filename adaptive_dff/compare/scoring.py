"""Scoring one policy on one clip: the two modes of ``adaptive-dff compare``.

* **oracle** (:func:`oracle_cell`): key regions take the true labels; other
  regions carry their key region's labels along the flow from the current
  region to the key region (OpenCV DIS, or the model's flow network). This
  measures the policy's choices alone, apart from any model's quality.
* **model** (:func:`model_cell`): a DFF model runs under the policy with
  :class:`adaptive_dff.VideoRunner`; its predictions are scored.

Both return a :class:`CellResult` of sums (a confusion matrix, update counts,
milliseconds per stage), so cells over several clips add up exactly. Frame 0
of every clip is a key frame and is left out of the timings (DVSNet's
protocol); it is scored like any other frame.

Labels are carried by bilinear interpolation of their one-hot encoding
(``cv2.remap``, ``BORDER_REPLICATE``: a pixel whose source lies outside the
region takes the nearest edge) and an argmax over the classes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from adaptive_dff.compare.objects import ObjectScore, check_metric
from adaptive_dff.labels import carry_labels, copy_labels
from adaptive_dff.metrics import confusion_matrix, mean_iou


@dataclass
class CellResult:
    """Sums over the frames of one or more clips.

    Attributes:
        confusion: ``[K, K]`` int64 confusion matrix (rows: truth).
        frames: frames scored.
        timed_frames: frames timed (each clip's frame 0 left out).
        updates: (frame, region) pairs recomputed; ``region_frames`` all pairs.
        ms: milliseconds per stage, summed over the timed frames.
        agree_pixels, pixels: pixels equal to the reference prediction and
            all pixels (model mode on unlabelled clips; else 0).
        object_iou, objects: the sum over the clips' objects of their mean IoU
            over the frames, and their number (region similarity ``J``,
            :mod:`adaptive_dff.compare.objects`; 0 in cells stored before it).
    """

    confusion: np.ndarray
    frames: int = 0
    timed_frames: int = 0
    updates: int = 0
    region_frames: int = 0
    ms: dict = field(default_factory=dict)
    agree_pixels: int = 0
    pixels: int = 0
    object_iou: float = 0.0
    objects: int = 0

    @property
    def key_fraction(self) -> float:
        return self.updates / self.region_frames if self.region_frames else float("nan")

    @property
    def accuracy(self) -> float:
        return mean_iou(self.confusion)

    @property
    def region_similarity(self) -> float:
        """``J``: the mean over the clips' objects of their mean IoU over the frames (NaN without objects)."""
        return self.object_iou / self.objects if self.objects else float("nan")

    def score(self, metric: str = "miou") -> float:
        """The accuracy by ``metric``: ``"miou"`` (:attr:`accuracy`) or ``"j"`` (:attr:`region_similarity`)."""
        return self.region_similarity if check_metric(metric) == "j" else self.accuracy

    @property
    def ms_per_frame(self) -> float:
        return sum(self.ms.values()) / self.timed_frames if self.timed_frames else float("nan")

    @property
    def fps(self) -> float:
        total = sum(self.ms.values())
        return 1e3 * self.timed_frames / total if total > 0 else float("nan")

    def __add__(self, other: "CellResult") -> "CellResult":
        ms = dict(self.ms)
        for stage, value in other.ms.items():
            ms[stage] = ms.get(stage, 0.0) + value
        return CellResult(
            confusion=self.confusion + other.confusion, frames=self.frames + other.frames,
            timed_frames=self.timed_frames + other.timed_frames, updates=self.updates + other.updates,
            region_frames=self.region_frames + other.region_frames, ms=ms,
            agree_pixels=self.agree_pixels + other.agree_pixels, pixels=self.pixels + other.pixels,
            object_iou=self.object_iou + other.object_iou, objects=self.objects + other.objects,
        )

    def to_json(self) -> dict:
        return {
            "confusion": self.confusion.tolist(), "frames": self.frames, "timed_frames": self.timed_frames,
            "updates": self.updates, "region_frames": self.region_frames, "ms": self.ms,
            "agree_pixels": self.agree_pixels, "pixels": self.pixels,
            "object_iou": self.object_iou, "objects": self.objects,
        }

    @classmethod
    def from_json(cls, data: dict) -> "CellResult":
        data = dict(data)
        data["confusion"] = np.asarray(data["confusion"], dtype=np.int64)
        return cls(**data)


class _Stopwatch:
    """Milliseconds spent inside a wrapped function (a flow function here)."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.ms = 0.0

    def __call__(self, *args):
        start = time.perf_counter()
        try:
            return self.fn(*args)
        finally:
            self.ms += (time.perf_counter() - start) * 1e3


ORACLE_STAGES = ("decision", "flow", "carry", "merge")


def oracle_cell(policy, regions, frames: Sequence[np.ndarray], labels: Sequence[np.ndarray], **options) -> CellResult:
    """Replay ``policy`` on one clip (:func:`oracle_steps` run to the end); see there."""
    return run_steps(oracle_steps(policy, regions, frames, labels, **options))


def run_steps(steps):
    """Run a ``*_steps`` generator to its end and return what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def side_by_side(step_generators: Sequence) -> list:
    """Advance several ``*_steps`` generators one frame each in turn (clips side by side,
    e.g. under one shared key-frame budget) until all end; their results in order."""
    results: list = [None] * len(step_generators)
    running = dict(enumerate(step_generators))
    while running:
        for i in list(running):
            try:
                next(running[i])
            except StopIteration as done:
                results[i] = done.value
                del running[i]
    return results


def oracle_steps(
    policy, regions, frames: Sequence[np.ndarray], labels: Sequence[np.ndarray], *,
    num_classes: int, ignore_index: Optional[int], flow: Callable, propagation: str = "warp",
    pairs=None,
):
    """A generator: one ``yield`` per frame, returning the :class:`CellResult`.

    Replay ``policy`` on one clip with true labels on key regions, carried labels elsewhere.

    Args:
        flow: ``flow(current, key) -> [h, w, 2]`` for a region pair; a policy
            that needs flow gets the same function, and its flow is reused
            for carrying, never computed twice.
        propagation: ``"warp"`` carries labels along the flow; ``"copy"``
            reuses the key labels as they are.
        pairs: whole frames only (one region): the
            :class:`~adaptive_dff.compare.optimal.CarriedPairs` of the clip's
            pair table for ``propagation`` (same flow and labels). A frame whose
            key lies within its window is then scored from it without carrying
            again, and charged the flow and carrying time the table measured
            for that pair; the result is the same.

    Timed stages (ms, frame 0 left out): ``decision`` (the policy, without
    its flow), ``flow``, ``carry``, ``merge``.
    """
    from schedulers import Tracker

    from schedulers.base import reads_key_labels

    timed_flow = _Stopwatch(flow)
    tracker = Tracker(policy, regions=regions, flow=timed_flow)
    reads_labels = reads_key_labels(policy)
    grid = tracker.regions
    if pairs is not None:
        if len(grid) != 1:
            raise ValueError("carried pairs score whole frames only; this cell has regions")
        if pairs.confusion.shape[0] != len(frames) or pairs.confusion.shape[2:] != (num_classes, num_classes):
            raise ValueError(f"carried pairs of shape {pairs.confusion.shape} do not fit a clip of {len(frames)} "
                             f"frames and {num_classes} classes")
    ms = {stage: 0.0 for stage in ORACLE_STAGES}
    confusion = np.zeros((num_classes, num_classes), np.int64)
    objects = ObjectScore(num_classes)
    key_labels: list = []
    updates = region_frames = 0
    for t, (frame, truth) in enumerate(zip(frames, labels)):
        truth = np.asarray(truth)
        flow_before = timed_flow.ms
        start = time.perf_counter()
        decision = tracker.step(frame, truth if reads_labels else None)  # the key labels a policy may read
        decided = time.perf_counter()
        flow_in_decision = timed_flow.ms - flow_before
        key, age = tracker.key_indices_[0], t - tracker.key_indices_[0]
        if pairs is not None and 0 < age < pairs.confusion.shape[1]:  # carried before, in the table
            confusion += pairs.confusion[key, age]
            objects.add(pairs.confusion[key, age])
            updates += int(np.count_nonzero(decision.update))
            region_frames += len(decision.update)
            ms["decision"] += (decided - start) * 1e3 - flow_in_decision
            # a policy's own flow is the pair's flow, which a cell reuses for carrying
            policy_flowed = decision.extras.get("flow") is not None
            ms["flow"] += flow_in_decision if policy_flowed else float(pairs.flow_ms[key, age])
            ms["carry"] += float(pairs.carry_ms[key, age])
            yield t
            continue
        crops = grid.split(frame)
        truth_crops = grid.split(truth)
        policy_flows = decision.extras.get("flow")
        outputs, confidences = [], []
        carry_ms = 0.0
        flow_ms = timed_flow.ms
        if not key_labels:
            key_labels = [None] * len(crops)
        for r, (crop, truth_crop) in enumerate(zip(crops, truth_crops)):
            if decision.update[r]:  # always on frame 0
                key_labels[r] = truth_crop
                outputs.append(truth_crop.astype(np.int32))
                confidences.append(np.inf)  # true labels win over carried ones in overlaps
                continue
            if propagation == "copy":
                copied, confidence = copy_labels(key_labels[r], num_classes)
                outputs.append(copied)
                confidences.append(confidence)
                continue
            if policy_flows is not None:
                region_flow = policy_flows[r]
            else:
                region_flow = timed_flow(crop, tracker.key_regions_[r])
            begin = time.perf_counter()
            carried, confidence = carry_labels(key_labels[r], region_flow, num_classes)
            carry_ms += (time.perf_counter() - begin) * 1e3
            outputs.append(carried)
            confidences.append(confidence)
        flow_ms = timed_flow.ms - flow_ms
        begin = time.perf_counter()
        prediction = outputs[0] if len(outputs) == 1 else grid.merge(outputs, confidences, *truth.shape[:2])
        merge_ms = (time.perf_counter() - begin) * 1e3
        frame_confusion = confusion_matrix(truth, prediction, num_classes, ignore_index)
        confusion += frame_confusion
        objects.add(frame_confusion)
        updates += int(np.count_nonzero(decision.update))
        region_frames += len(decision.update)
        if t > 0:
            ms["decision"] += (decided - start) * 1e3 - flow_in_decision
            ms["flow"] += flow_in_decision + flow_ms
            ms["carry"] += carry_ms
            ms["merge"] += merge_ms
        yield t
    n = len(frames)
    object_iou, object_count = objects.result()
    return CellResult(confusion=confusion, frames=n, timed_frames=n - 1, updates=updates,
                      region_frames=region_frames, ms=ms, object_iou=object_iou, objects=object_count)


def model_cell(model, policy, regions, frames: Sequence[np.ndarray], reference: Sequence[np.ndarray],
               **options) -> tuple[CellResult, list]:
    """Run ``model`` under ``policy`` over one clip (:func:`model_steps` run to the end); see there."""
    return run_steps(model_steps(model, policy, regions, frames, reference, **options))


def model_steps(
    model, policy, regions, frames: Sequence[np.ndarray], reference: Sequence[np.ndarray], *,
    num_classes: int, ignore_index: Optional[int], labelled: bool, propagation: str = "warp",
):
    """A generator: one ``yield`` per frame, returning ``(CellResult, predicted labels per frame)``.

    Run ``model`` under ``policy`` over one clip with :class:`adaptive_dff.VideoRunner`.

    ``reference`` holds the true labels (``labelled``) or the per-frame
    predictions of the same model, which the result is scored against.
    Timed stages are the runner's (prepare, flow, decision, feature, warp,
    head, merge). Returns the result and the predicted labels per frame.
    """
    from adaptive_dff.runner import STAGES, VideoRunner

    runner = VideoRunner(model, policy, regions=regions, propagation=propagation)
    ms = {stage: 0.0 for stage in STAGES}
    confusion = np.zeros((num_classes, num_classes), np.int64)
    objects = ObjectScore(num_classes)
    updates = region_frames = agree = pixels = 0
    predictions = []
    for t, (frame, truth) in enumerate(zip(frames, reference)):
        result = runner.step(frame)
        predictions.append(result.labels)
        frame_confusion = confusion_matrix(truth, result.labels, num_classes, ignore_index if labelled else None)
        confusion += frame_confusion
        objects.add(frame_confusion)
        if not labelled:
            agree += int(np.count_nonzero(result.labels == truth))
            pixels += truth.size
        updates += int(np.count_nonzero(result.update))
        region_frames += len(result.update)
        if t > 0:
            for stage, value in result.timings.items():
                ms[stage] += value
        yield t
    n = len(frames)
    object_iou, object_count = objects.result()
    return CellResult(confusion=confusion, frames=n, timed_frames=n - 1, updates=updates,
                      region_frames=region_frames, ms=ms, agree_pixels=agree, pixels=pixels,
                      object_iou=object_iou, objects=object_count), predictions


def model_flow(model) -> Callable:
    """``flow(current, key) -> [h, w, 2]`` from ``model``'s flow network, in pixels of the
    region, upsampled bilinearly from the feature grid (for policies and calibration)."""

    def flow(current: np.ndarray, key: np.ndarray) -> np.ndarray:
        _, current_p = model.pad_frames(current)
        _, key_p = model.pad_frames(key)
        out = model.run_flow(current_p, key_p)
        h, w = current.shape[:2]
        grid = model.crop_to_grid(out["flow"], h, w) * model.output_stride
        return cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)

    return flow


def model_pair_features(model) -> Callable:
    """``features(current, key, flow) -> [h', w', C]``: the flow network's features of a region pair."""

    def features(current: np.ndarray, key: np.ndarray, flow=None) -> np.ndarray:
        _, current_p = model.pad_frames(current)
        _, key_p = model.pad_frames(key)
        out = model.run_flow(current_p, key_p)
        return model.crop_to_grid(out["features"], *current.shape[:2])

    return features
