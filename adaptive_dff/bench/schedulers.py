"""``adaptive-dff bench schedulers``: per-frame decision cost of each policy.

Each policy decides on the same (current, key) pair, flow excluded: the flow
(and, for the decision network, the pair features built from it) is computed
once beforehand and handed over in the context, as a pipeline that reuses its
flow does. Costs are compared with one key-frame step of the compact DFF
model at the same frame size, timed in the same run. A last table times the
default decision with the key labels by what ran before it
(:func:`decision_states`): the same call, other memory written, a key-frame
step; a small decision costs several times more after other work.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time

import numpy as np

from adaptive_dff.bench.timing import format_table, time_interleaved
from adaptive_dff.data import SyntheticVideo
from schedulers import (
    Context,
    DecisionModel,
    DecisionNetworkScheduler,
    DISFlow,
    FixedInterval,
    FlowMagnitude,
    FrameDifference,
    KeyBudget,
    OpenCVPairFeatures,
    PropagationQuality,
    load_default_quality,
)

logger = logging.getLogger(__name__)


def _decision_scheduler(features: np.ndarray) -> DecisionNetworkScheduler:
    """A decision network fitted briefly on random grids (its cost does not depend on training)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 8, 8, features.shape[-1])).astype(np.float32)
    model = DecisionModel(epochs=1).fit(X, rng.random(64))
    return DecisionNetworkScheduler(model=model, target=0.8)


def _one_stream(policy, context: Context, calls: int):
    """``() -> policy.decide(...)`` on ``context``'s pair at its next frames, one per call: a
    budget follows one stream, so each call needs a later frame. The ``calls`` contexts are made
    beforehand, outside the timing."""
    contexts = iter([dataclasses.replace(context, frame_index=context.frame_index + 1 + i) for i in range(calls)])
    return lambda: policy.decide(next(contexts))


STATE_BUFFER_BYTES = 50_000_000  # other memory written before a call "after other work"


def decision_states(policy, context, key_step, repeats: int = 20) -> dict:
    """Median ms of ``policy.decide(context)`` in three states of the machine, drawn in turn each
    round: ``"in a tight loop"`` (right after the same call), ``"after writing 50 MB"`` (other
    memory written first: data and code out of the caches) and ``"after a key-frame step"``
    (``key_step()`` run first, as a pipeline runs one). The interleaved figures of :func:`run` lie
    in between: a call there follows another candidate."""
    buffer = np.zeros(STATE_BUFFER_BYTES // 8)
    preludes = {
        "in a tight loop": lambda: policy.decide(context),
        "after writing 50 MB": lambda: buffer.fill(1.0),
        "after a key-frame step": key_step,
    }
    samples = {name: [] for name in preludes}
    policy.decide(context)
    for _ in range(repeats):
        for name, prelude in preludes.items():
            prelude()
            start = time.perf_counter()
            policy.decide(context)
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def run(sizes=((480, 640), (1024, 2048)), repeats: int = 20) -> dict:
    """Time every policy's ``decide`` and a compact key-frame step at each ``(height, width)``.

    Returns ``{"HxW": {"ms": {candidate: median ms}, "share_of_key_frame_step": {candidate: ms / key ms}}}``.
    """
    from adaptive_dff.model import compact_dff

    model = compact_dff(num_classes=11)
    results = {}
    for height, width in sizes:
        video = SyntheticVideo(height=height, width=width, num_frames=8, seed=0)
        current, key = video.frame(6), video.frame(0)
        flow = DISFlow()(current, key)
        pair_features = OpenCVPairFeatures()(current, key, flow)
        context = Context(6, [current], [key], [0], flow=[flow], flow_features=[pair_features])
        labelled = Context(6, [current], [key], [0], flow=[flow], key_labels=[video.label(0)])
        learned = _decision_scheduler(pair_features)
        policies = {
            "FixedInterval(10)": FixedInterval(10),
            "FrameDifference(pixel)": FrameDifference(threshold=10.0),
            "FrameDifference(edge)": FrameDifference(threshold=5.0, feature="edge"),
            "FlowMagnitude": FlowMagnitude(threshold=2.0),
            "DecisionNetworkScheduler(features)": learned,
            "DecisionNetworkScheduler(quality)": DecisionNetworkScheduler(model=load_default_quality(), target=0.8),
            "PropagationQuality": PropagationQuality(load_default_quality(), threshold=1.0),
        }
        candidates = {name: (lambda p=p: p.decide(context)) for name, p in policies.items()}
        # The key labels' colour model is built once per key: this times the frames after it.
        with_labels = PropagationQuality(load_default_quality(key_labels=True), threshold=1.0)
        candidates["PropagationQuality(key labels)"] = lambda: with_labels.decide(labelled)
        # The default of the README: the same policy under a per-stream budget (its price rule).
        budgeted = KeyBudget(PropagationQuality(load_default_quality(key_labels=True)), 0.1, price=1.0)
        candidates["KeyBudget(PropagationQuality(key labels))"] = _one_stream(budgeted, labelled, repeats + 10)
        candidates["key-frame step, compact model"] = lambda: model.key_step(current)[0]
        times = time_interleaved(candidates, repeats=repeats)
        key_ms = times["key-frame step, compact model"]
        targeted = ("FrameDifference(pixel)", "FlowMagnitude")
        limits = {name: 0.01 for name in targeted}
        limits["PropagationQuality"] = limits["DecisionNetworkScheduler(quality)"] = 0.02
        limits["PropagationQuality(key labels)"] = limits["KeyBudget(PropagationQuality(key labels))"] = 0.02
        rows = [
            (name, f"{ms:.3f}", f"{100 * ms / key_ms:.3f}%",
             (f"{'meets' if ms / key_ms < limits[name] else 'MISSES'} < {limits[name]:.0%}") if name in limits else "")
            for name, ms in times.items()
        ]
        logger.info(f"\nscheduler decision cost at {height}x{width} (flow excluded), median of {repeats} interleaved rounds")
        logger.info(format_table(rows, ("candidate", "ms", "of a key-frame step", "target")))
        results[f"{height}x{width}"] = {
            "ms": times, "share_of_key_frame_step": {name: ms / key_ms for name, ms in times.items()},
        }
        if (height, width) == sizes[0]:  # why a decision's cost moves: the state the machine is in
            states = decision_states(with_labels, labelled, candidates["key-frame step, compact model"], repeats)
            logger.info(f"\nPropagationQuality(key labels) at {height}x{width} by what ran before it, median of "
                        f"{repeats} rounds")
            logger.info(format_table([(name, f"{ms:.3f}", f"{100 * ms / key_ms:.3f}%") for name, ms in states.items()],
                                     ("state", "ms", "of a key-frame step")))
            results[f"{height}x{width}"]["key_labels_decision_by_state_ms"] = states
    logger.info("\ntargets: FrameDifference and FlowMagnitude below 1% of a key-frame step of the compact model, "
                "PropagationQuality (on either shipped quality predictor: without and with the key frame's labels, "
                "and under KeyBudget, the default) and the decision network on the shipped quality predictor "
                "(signals and prediction) below 2%; DecisionNetworkScheduler(features): a Keras DecisionModel on "
                "OpenCV pair features")
    return results
