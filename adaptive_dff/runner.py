"""``VideoRunner``: a DFF model driven by a key-frame policy over a stream.

Per frame and per region (a :class:`schedulers.RegionGrid`, each region with
its own key frame, as DVSNet):

1. if the policy needs flow, the model's flow net computes it from the
   current region to its key region (and its features, if asked for);
2. the policy decides: update (feature net + head on the region crop) or
   propagate (warp the region's key features along the flow, scale, head);
   flow computed for the decision is reused for the warp, never computed
   twice;
3. region logits merge by the higher confidence (max softmax) in overlaps.

Per-stage wall times (ms) are measured around each stage: ``prepare``
(checks, crops, padding), ``flow``, ``decision``, ``feature``, ``warp``,
``head``, ``merge`` (on the fused path of one region, a propagated
frame's warp, head, upsampling and argmax are one XLA program, timed as
``warp``). Only the key
features and key frame of each region are kept; per-frame outputs are
returned, never stored (memory stays flat over long streams).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Union

import cv2
import numpy as np
import tensorflow as tf

from adaptive_dff.warp import bilinear_warp
from schedulers.base import Context, Policy, reads_key_labels
from schedulers.regions import RegionGrid
from schedulers.tracker import StreamCheck, check_policy_and_regions, first_frame_decision

STAGES = ("prepare", "flow", "decision", "feature", "warp", "head", "merge")


@dataclass
class StepResult:
    """What :meth:`VideoRunner.step` returns for one frame.

    Attributes:
        frame_index: index of the frame in the stream.
        labels: ``[H, W]`` int32 class ids (argmax of the merged logits).
        update: ``[R]`` bool, regions recomputed on this frame.
        scores: ``[R]`` the policy's scores (NaN on the first frame).
        timings: milliseconds per stage (see :data:`STAGES`).
        logits: ``[H, W, K]`` float32 merged logits when ``keep_logits``.
        extras: what the policy reported besides its scores (e.g. the
            decision network's current targets).
    """

    frame_index: int
    labels: np.ndarray
    update: np.ndarray
    scores: np.ndarray
    timings: dict = field(default_factory=dict)
    logits: Optional[np.ndarray] = None
    extras: dict = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        """Milliseconds of the frame over all stages."""
        return float(sum(self.timings.values()))


class _Timer:
    def __init__(self):
        self.ms = {stage: 0.0 for stage in STAGES}

    def run(self, stage, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        self.ms[stage] += (time.perf_counter() - start) * 1e3
        return out


def _softmax_confidence(logits: np.ndarray) -> np.ndarray:
    """Max softmax probability per pixel of ``[h, w, K]`` logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return 1.0 / e.sum(axis=-1)


class VideoRunner:
    """Run ``model`` (a :class:`adaptive_dff.DFFModel`) over a stream, scheduled by ``policy``.

    Args:
        model: the DFF model.
        policy: a :class:`schedulers.Policy`.
        regions: a :class:`schedulers.RegionGrid` (default: whole frame).
        keep_logits: also return merged logits with each step.
        propagation: ``"warp"`` (Deep Feature Flow: key features warped along
            the flow and scaled) or ``"copy"`` (the key features reused as
            they are, Clockwork-style; no flow is computed unless the policy
            asks for it).
        fused: run a frame's head, bilinear upsampling and argmax as one
            XLA program (:class:`adaptive_dff.fused.FusedHead`), with the
            warp and scale in the same program on a propagated frame (its
            time then counts as ``warp``, and ``head`` stays 0), and skip the
            padded frame when nothing needs it; one region and ``"warp"``
            only. ``None`` (default): fused whenever that applies.

    Propagated frames take their flow from the model's ``propagation_flow``
    (the flow net, or OpenCV DIS on downscaled frames; see
    :class:`adaptive_dff.DFFModel`). A policy that asks for flow gets that
    same flow; one that asks for flow-net features gets the flow net run for
    them.
    """

    PROPAGATIONS = ("warp", "copy")

    def __init__(self, model, policy: Policy, regions: Optional[RegionGrid] = None, keep_logits: bool = False,
                 propagation: str = "warp", fused: Optional[bool] = None):
        for method in ("pad_frames", "run_features", "run_flow", "run_warp", "run_head"):
            if not hasattr(model, method):
                raise TypeError(f"model must be an adaptive_dff.DFFModel (missing {method}), got {type(model).__name__}")
        if propagation not in self.PROPAGATIONS:
            raise ValueError(f"propagation must be one of {self.PROPAGATIONS}, got {propagation!r}")
        self.propagation = propagation
        self.regions = check_policy_and_regions(policy, regions)
        self.model = model
        self.policy = policy
        self.keep_logits = keep_logits
        self._full_resolution = bool(getattr(policy, "needs_full_resolution_flow", False))
        can_fuse = propagation == "warp" and len(self.regions) == 1
        if fused and not can_fuse:
            raise ValueError(f"fused=True needs one region and propagation='warp', got {self.regions} and "
                             f"{propagation!r}")
        self.fused = can_fuse if fused is None else bool(fused)
        self._fused_head = None
        if self.fused:
            from adaptive_dff.fused import FusedHead

            self._fused_head = FusedHead(model.head)
        self.reset()

    def reset(self) -> "VideoRunner":
        """Forget the stream: the next frame is frame 0."""
        self.frame_index_ = -1
        self._stream = StreamCheck(self.regions)
        self.keys_: list = []  # per region: (key features, key padded frame, key index, key crop)
        self._key_small = None  # the key frame downscaled for DIS propagation flow (fused path)
        self.key_labels_: list = []  # per region: the key's predicted classes [h, w] (Context.key_labels)
        if hasattr(self.policy, "reset"):
            self.policy.reset()
        return self

    def _flow_for_policy(self, flow_out, crop: np.ndarray) -> np.ndarray:
        """Flow-net output for a region, in region pixels: on the region's feature grid
        ``[ceil(h/s), ceil(w/s), 2]``, or upsampled bilinearly to ``[h, w, 2]`` for a policy
        that reads flow at full resolution (``needs_full_resolution_flow``)."""
        grid = self.model.crop_to_grid(flow_out["flow"], *crop.shape[:2]) * self.model.output_stride
        if self._full_resolution:
            return cv2.resize(grid, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
        return grid

    def step(self, frame) -> StepResult:
        if self.fused:
            return self._step_fused(frame)
        index = self.frame_index_ + 1
        timer = _Timer()
        model = self.model

        def prepare():
            crops = self.regions.split(self._stream(frame, index))
            return crops, [model.pad_frames(c)[1] for c in crops]

        crops, prepared = timer.run("prepare", prepare)
        flows: list = [None] * len(crops)

        if index == 0:
            decision = first_frame_decision(len(crops))
        else:
            context = Context(
                frame_index=index, regions=crops,
                key_regions=[None] * len(crops), key_indices=[k[2] for k in self.keys_],
                key_labels=self.key_labels_ or None,
            )
            if getattr(self.policy, "needs_flow", False) or getattr(self.policy, "needs_flow_features", False):
                for r, padded in enumerate(prepared):
                    flows[r] = self._region_flow(timer, r, padded, crops[r])
                context.flow = [self._flow_for_policy(f, c) for f, c in zip(flows, crops)]
                context.flow_stride = 1 if self._full_resolution else model.output_stride
                if getattr(self.policy, "needs_flow_features", False):
                    # Under DIS propagation flow the flow net has not run yet: run it for its features.
                    nets = [f if "features" in f else timer.run("flow", model.run_flow, p, k[1])
                            for f, p, k in zip(flows, prepared, self.keys_)]
                    context.flow_features = [model.crop_to_grid(f["features"], *c.shape[:2])
                                             for f, c in zip(nets, crops)]
            context.key_regions = [k[3] for k in self.keys_]
            decision = timer.run("decision", self.policy.decide, context)

        region_logits = []
        new_keys = list(self.keys_) if self.keys_ else [None] * len(crops)
        new_key_labels = list(self.key_labels_) if self.key_labels_ else [None] * len(crops)
        for r, (padded, crop) in enumerate(zip(prepared, crops)):
            h, w = crop.shape[:2]
            if decision.update[r]:
                features = timer.run("feature", model.run_features, padded)
                new_keys[r] = (features, padded, index, crop.copy())
            elif self.propagation == "copy":
                features = self.keys_[r][0]
            else:
                if flows[r] is None:
                    flows[r] = self._region_flow(timer, r, padded, crop)
                if flows[r]["scale"] is None:
                    features = timer.run("warp", bilinear_warp, self.keys_[r][0], flows[r]["flow"])
                else:
                    features = timer.run("warp", model.run_warp, self.keys_[r][0], flows[r])
            logits = timer.run("head", model.run_head, features, tuple(padded.shape), h, w)
            region_logits.append(np.asarray(logits)[0])

        def merge():
            if len(region_logits) == 1:
                merged = region_logits[0]
            else:
                confidences = [_softmax_confidence(lg) for lg in region_logits]
                merged = self.regions.merge(region_logits, confidences, frame.shape[0], frame.shape[1])
            return merged, np.argmax(merged, axis=-1).astype(np.int32)

        merged, labels = timer.run("merge", merge)
        reads_labels = reads_key_labels(self.policy)
        if reads_labels:  # each new key region's predicted classes, for the policy
            def key_labels():
                for r in np.flatnonzero(decision.update):
                    new_key_labels[r] = labels if len(region_logits) == 1 else \
                        np.argmax(region_logits[r], axis=-1).astype(np.int32)
            timer.run("merge", key_labels)
        # Commit the new key frames only now: a failure part-way through a
        # frame leaves the stream as it was.
        self.keys_ = new_keys
        if reads_labels:
            self.key_labels_ = new_key_labels
        self.frame_index_ = index
        extras = {k: v for k, v in decision.extras.items() if k != "flow"}
        return StepResult(
            frame_index=index, labels=labels, update=decision.update, scores=decision.scores,
            timings=timer.ms, logits=merged if self.keep_logits else None, extras=extras,
        )

    def _region_flow(self, timer: _Timer, r: int, padded, crop: np.ndarray) -> dict:
        """Propagation flow of region ``r`` to its key: the flow net's outputs, or DIS flow (scale ``None``)."""
        dis = getattr(self.model, "dis_flow", None)
        key = self.keys_[r]
        if dis is None:
            return timer.run("flow", self.model.run_flow, padded, key[1])
        grid = tuple(key[0].shape[1:3])
        flow = timer.run("flow", lambda: tf.constant(dis.grid_flow(dis.small(crop), dis.small(key[3]), grid)[None]))
        return {"flow": flow, "scale": None}

    def _padded_size(self, height: int, width: int) -> tuple[int, int]:
        d = self.model.size_divisor
        return -(-height // d) * d, -(-width // d) * d

    def _step_fused(self, frame) -> StepResult:
        """One region, ``"warp"``: as :meth:`step`, with the head, upsampling and argmax fused."""
        index = self.frame_index_ + 1
        timer = _Timer()
        model = self.model
        dis = getattr(model, "dis_flow", None)
        crop = timer.run("prepare", lambda: self.regions.split(self._stream(frame, index))[0])
        height, width = crop.shape[:2]
        padded_hw = self._padded_size(height, width)
        padded = None  # the padded frame, made only when a network needs it

        def padded_frame():
            nonlocal padded
            if padded is None:
                padded = timer.run("prepare", lambda: model.pad_frames(crop)[1])
            return padded

        flow_out = None
        small = timer.run("flow", dis.small, crop) if dis is not None else None

        def propagation_flow():
            key = self.keys_[0]
            if dis is None:
                return timer.run("flow", model.run_flow, padded_frame(), key[1])
            grid = tuple(key[0].shape[1:3])
            flow = timer.run("flow", lambda: tf.constant(dis.grid_flow(small, self._key_small, grid)[None]))
            return {"flow": flow, "scale": None}

        if index == 0:
            decision = first_frame_decision(1)
        else:
            context = Context(frame_index=index, regions=[crop], key_regions=[self.keys_[0][3]],
                              key_indices=[self.keys_[0][2]], key_labels=self.key_labels_ or None)
            if getattr(self.policy, "needs_flow", False) or getattr(self.policy, "needs_flow_features", False):
                flow_out = propagation_flow()
                context.flow = [self._flow_for_policy(flow_out, crop)]
                context.flow_stride = 1 if self._full_resolution else model.output_stride
                if getattr(self.policy, "needs_flow_features", False):
                    net = flow_out if dis is None else timer.run(
                        "flow", model.run_flow, padded_frame(), self.keys_[0][1])
                    context.flow_features = [model.crop_to_grid(net["features"], *crop.shape[:2])]
            decision = timer.run("decision", self.policy.decide, context)

        new_keys, key_small = self.keys_, self._key_small
        if decision.update[0]:
            features = timer.run("feature", model.run_features, padded_frame())
            new_keys, key_small = [(features, padded, index, crop.copy())], small
            out = timer.run("head", self._fused_head.labels, features, padded_hw, (height, width), self.keep_logits)
        else:  # warp, scale, head, upsampling and argmax: one XLA program, timed as "warp"
            flow_out = flow_out or propagation_flow()
            out = timer.run("warp", self._fused_head.propagate, self.keys_[0][0], flow_out["flow"], flow_out["scale"],
                            padded_hw, (height, width), self.keep_logits)

        def merge():
            if self.keep_logits:
                return np.asarray(out[0])[0], np.asarray(out[1])[0]
            return np.asarray(out)[0], None

        labels, logits = timer.run("merge", merge)
        self.keys_, self._key_small = new_keys, key_small
        if decision.update[0] and reads_key_labels(self.policy):
            self.key_labels_ = [labels]
        self.frame_index_ = index
        extras = {k: v for k, v in decision.extras.items() if k != "flow"}
        return StepResult(frame_index=index, labels=labels, update=decision.update, scores=decision.scores,
                          timings=timer.ms, logits=logits, extras=extras)

    def run(self, source: Union[str, Iterable], max_frames: Optional[int] = None) -> Iterator[StepResult]:
        """Step through ``source``: a video file path (read with OpenCV) or any iterable of frames."""
        if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
            from adaptive_dff.video import VideoReader

            source = VideoReader(source, max_frames=max_frames)
            max_frames = None
        for n, frame in enumerate(source):
            if max_frames is not None and n >= max_frames:
                return
            yield self.step(frame)
