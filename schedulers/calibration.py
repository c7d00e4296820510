"""Calibration: choose a policy's threshold on a calibration clip.

Comparing policies is only fair at equal key-frame budgets (as Reducto and
NoScope tune their thresholds to a target). ``calibrate`` replays the clip
with a :class:`Tracker` for each candidate threshold and searches the one
whose key-frame fraction meets a target, or the cheapest one whose accuracy
meets a target.

Key-frame fraction: the share of (frame, region) pairs that are recomputed,
the first frame included (it is always a key frame).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from schedulers.base import Decision, Policy, is_number
from schedulers.regions import RegionGrid
from schedulers.tracker import Tracker


@dataclass
class CalibrationResult:
    """The calibrated policy and how it was found.

    Attributes:
        policy: a new policy of the same class with the chosen threshold.
        threshold: the chosen value of ``policy.threshold_param``.
        key_fraction: its key-frame fraction on the calibration clip.
        accuracy: its accuracy there, when an accuracy function was given.
        met: whether the target was met (key fraction within ``tolerance``,
            or accuracy at least the target).
        trials: every ``(threshold, key_fraction, accuracy)`` evaluated.
    """

    policy: Policy
    threshold: float
    key_fraction: float
    accuracy: Optional[float] = None
    met: bool = True
    trials: list = field(default_factory=list)

    @property
    def starting_price(self) -> Optional[float]:
        """The threshold as a :class:`~schedulers.KeyBudget` starting price (``price=``), or ``None``
        when it cannot serve as one: see :func:`usable_price`."""
        return usable_price(self.met, self.threshold)


def usable_price(met, threshold) -> Optional[float]:
    """``threshold`` as a budget's starting price when a calibration ``met`` its target with a
    positive finite threshold, else ``None`` (a target out of reach leaves the search at an edge)."""
    if not (isinstance(met, (bool, np.bool_)) and met) or not is_number(threshold):
        return None
    return float(threshold) if 0 < threshold < float("inf") else None


class _FlowCache:
    """Least-recently-used flows by (frame, region, key frame), within a memory budget."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.entries: OrderedDict = OrderedDict()

    def get(self, ident, compute):
        if ident in self.entries:
            self.entries.move_to_end(ident)
            return self.entries[ident]
        value = compute()
        size = getattr(value, "nbytes", 0)
        if size <= self.max_bytes:
            self.entries[ident] = value
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self.entries.popitem(last=False)
                self.bytes -= getattr(old, "nbytes", 0)
        return value


class _CachingTracker(Tracker):
    """A tracker whose flows are shared across replays of the same clips."""

    def __init__(self, policy, regions, flow, features, cache: _FlowCache):
        super().__init__(policy, regions=regions, flow=flow, features=features)
        self.cache = cache
        self.clip = 0

    def _flows(self, crops, index):
        return [
            self.cache.get((self.clip, index, r, self.key_indices_[r]), lambda c=current, k=key: self.flow(c, k))
            for r, (current, key) in enumerate(zip(crops, self.key_regions_))
        ]


def replay(policy: Policy, frames: Sequence[np.ndarray], regions: Optional[RegionGrid] = None, flow=None,
           labels: Optional[Sequence[np.ndarray]] = None) -> list[Decision]:
    """Run ``policy`` over ``frames`` with a fresh :class:`Tracker`; return every decision. ``labels``
    (one per frame) go to :meth:`Tracker.step` for policies that read the key frames' labels."""
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"replay got {len(labels)} label maps for {len(frames)} frames; give one per frame")
    tracker = Tracker(policy, regions=regions, flow=flow)
    return [tracker.step(frame, None if labels is None else labels[t]) for t, frame in enumerate(frames)]


def key_fraction(decisions: Sequence[Decision]) -> float:
    """Share of (frame, region) pairs recomputed."""
    decisions = list(decisions)
    if not decisions:
        raise ValueError("key_fraction needs at least one decision")
    return float(np.mean(np.concatenate([d.update for d in decisions])))


def _with_threshold(policy: Policy, value: float) -> Policy:
    return policy.clone().set_params(**{policy.threshold_param: value})


def calibrate(
    policy: Policy,
    frames: Optional[Sequence[np.ndarray]] = None,
    *,
    clips: Optional[Sequence[Sequence[np.ndarray]]] = None,
    target_key_fraction: Optional[float] = None,
    target_accuracy: Optional[float] = None,
    accuracy: Optional[Callable[[list[Decision]], float]] = None,
    regions: Optional[RegionGrid] = None,
    flow=None,
    features=None,
    labels: Optional[Sequence] = None,
    tolerance: float = 0.02,
    max_trials: int = 40,
    max_cache_mb: float = 1024,
) -> CalibrationResult:
    """Choose ``policy``'s threshold on the calibration clip ``frames`` (or several ``clips``).

    Give exactly one target:

    * ``target_key_fraction`` in (0, 1]: the threshold whose key-frame
      fraction is closest to the target;
    * ``target_accuracy`` with ``accuracy(decisions) -> float``: the highest
      threshold (fewest key frames) whose accuracy still meets the target;
      when no threshold meets it, the lowest one tried (check ``accuracy``).

    Policies that update *below* their threshold (``update_when_below``, the
    decision network's ``target``) are searched over ``[0, 1]``.

    Give the calibration data as ``frames`` (one clip) or as ``clips`` (a
    sequence of clips, each a sequence of frames; each starts a new stream
    and the key fraction counts every frame of every clip). With ``clips``,
    ``accuracy`` receives one list of decisions per clip.
    ``flow`` and ``features`` are passed on to each :class:`Tracker`; ``labels``
    (shaped like ``frames``, or like ``clips``: one label map per frame) are the
    frames' labels, for policies that read the key frames' labels
    (:meth:`Tracker.step`).

    Frames must be a sequence (they are replayed many times). Flow, when the
    policy needs it, is computed once per (frame, region, key frame) and
    reused across trials, within ``max_cache_mb`` of memory. The search stops
    once the key fraction is within ``tolerance / 2`` of its target; a target
    that cannot be met within ``tolerance`` (or an accuracy target that no
    threshold meets) gives ``met=False`` and a warning.
    """
    from schedulers.budget import BudgetPolicy

    if isinstance(policy, BudgetPolicy):
        raise TypeError(f"calibrate: {type(policy).__name__} meets its budget by itself, it has no threshold to "
                        "calibrate; calibrate the policy it wraps and give the result's starting_price as its price=")
    if (target_key_fraction is None) == (target_accuracy is None):
        raise ValueError("give exactly one of target_key_fraction and target_accuracy")
    for name, value in (("target_key_fraction", target_key_fraction), ("target_accuracy", target_accuracy)):
        if value is not None and (not is_number(value) or not np.isfinite(value)):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if target_key_fraction is not None and not 0 < target_key_fraction <= 1:
        raise ValueError(f"target_key_fraction must be in (0, 1], got {target_key_fraction}")
    if target_accuracy is not None and accuracy is None:
        raise ValueError("target_accuracy needs an accuracy(decisions) function")
    if (frames is None) == (clips is None):
        raise ValueError("give exactly one of frames (one clip) and clips (several)")
    if clips is not None:
        for number, clip in enumerate(clips):
            shape = np.shape(clip) if isinstance(clip, np.ndarray) else None
            if shape is not None and (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
                raise ValueError(f"clips[{number}] has shape {shape}: one frame, not a clip of frames; give one "
                                 "clip as frames=..., several as clips=[frames_a, frames_b, ...]")
    streams = [list(frames)] if clips is None else [list(c) for c in clips]
    labelled = None
    if labels is not None:
        if clips is not None and any(isinstance(m, np.ndarray) and m.ndim == 2 for m in labels):
            raise ValueError("labels go per clip, as clips do: labels=[[maps of clip 0], [maps of clip 1], ...], "
                             "one map per frame; got label maps where clips' lists were expected")
        labelled = [list(labels)] if clips is None else [list(c) for c in labels]
        if [len(c) for c in labelled] != [len(c) for c in streams]:
            raise ValueError(f"labels give {[len(c) for c in labelled]} label maps per clip for "
                             f"{[len(c) for c in streams]} frames; give one per frame")
        # Checked, and brought to the frames' size, once rather than in every trial.
        checked = []
        for number, (maps, stream) in enumerate(zip(labelled, streams)):
            try:
                checked.append([None if m is None else Tracker._checked_labels(m, t, np.shape(f)[:2])
                                for t, (m, f) in enumerate(zip(maps, stream))])
            except ValueError as error:
                if clips is None:
                    raise
                raise ValueError(f"clip {number}: {error}") from None
        labelled = checked
    total = sum(len(s) for s in streams)
    if not streams or total < 2:
        raise ValueError(f"the calibration data needs at least 2 frames, got {total}")

    if flow is None and getattr(policy, "needs_flow", False):
        from schedulers.flow import default_flow

        flow = default_flow()
    cache = _FlowCache(int(max_cache_mb * 2**20))
    trials: list = []

    # Search variable u: higher u means fewer key frames. For policies that
    # update above their threshold u is the threshold; for those that update
    # below it (the decision network's target, in [0, 1]) u = 1 - target.
    below = bool(getattr(policy, "update_when_below", False))

    def to_value(u):
        return 1.0 - u if below else u

    def evaluate(u):
        value = to_value(u)
        candidate = _with_threshold(policy, value)
        tracker = _CachingTracker(candidate, regions, flow, features, cache)
        per_clip = []
        for number, stream in enumerate(streams):
            tracker.reset()
            tracker.clip = number
            per_clip.append([tracker.step(f, None if labelled is None else labelled[number][t])
                             for t, f in enumerate(stream)])
        fraction = key_fraction([d for decisions in per_clip for d in decisions])
        acc = None
        if accuracy is not None:
            acc = accuracy(per_clip[0] if clips is None else per_clip)
            if not is_number(acc) or not np.isfinite(acc):
                raise ValueError(f"calibrate: accuracy(decisions) returned {acc!r} at {policy.threshold_param}="
                                 f"{value!r}; it must return a finite number (an empty class's IoU, say, is NaN)")
        trials.append((value, fraction, acc))
        return candidate, fraction, acc

    integer = bool(getattr(policy, "integer_threshold", False)) and not below
    # A higher threshold means fewer key frames. ``past(result)`` is True on the
    # high side of the boundary searched: at or below the key-frame budget, or
    # no longer accurate enough. It is monotone in the threshold (up to noise).
    if target_key_fraction is not None:
        def past(result):
            return result[1] <= target_key_fraction

        def close_enough(result):
            return abs(result[1] - target_key_fraction) <= tolerance / 2
    else:
        def past(result):
            return result[2] < target_accuracy

        def close_enough(result):
            return False

    results: dict = {}
    if integer:
        longest = max(len(s) for s in streams)
        low, high = 1, longest
        while low < high and len(trials) < max_trials:  # smallest value that is past
            mid = (low + high) // 2
            results[mid] = evaluate(mid)
            if past(results[mid]):
                high = mid
            else:
                low = mid + 1
        for value in (low - 1, low, low + 1):
            if 1 <= value <= longest and value not in results:
                results[value] = evaluate(value)
    else:
        low, high = 0.0, 1.0
        results[low] = evaluate(low)
        results[high] = evaluate(high)
        while not below and not past(results[high]) and high < 1e9:
            low, high = high, high * 4
            results[high] = evaluate(high)
        while len(trials) < max_trials and high - low > 1e-6 * max(high, 1.0):
            mid = 0.5 * (low + high)
            results[mid] = evaluate(mid)
            if close_enough(results[mid]):
                break
            if past(results[mid]):
                high = mid
            else:
                low = mid

    if target_key_fraction is not None:
        best = min(results, key=lambda v: (abs(results[v][1] - target_key_fraction), -v))
        met = abs(results[best][1] - target_key_fraction) <= tolerance
        target_text = f"key fraction {target_key_fraction:.3f} +- {tolerance:.3f}"
    else:
        accurate = [v for v in results if not past(results[v])]
        best = max(accurate) if accurate else min(results)
        met = bool(accurate)
        target_text = f"accuracy >= {target_accuracy}"
    chosen, fraction, acc = results[best]
    if not met:
        warnings.warn(
            f"calibrate: {type(policy).__name__} cannot meet {target_text} on {len(streams)} clip(s) of {total} "
            f"frames; closest: {policy.threshold_param}={to_value(best)!r} gives key fraction {fraction:.3f}"
            + (f", accuracy {acc:.3f}" if acc is not None else ""),
            stacklevel=2,
        )
    return CalibrationResult(
        policy=chosen, threshold=to_value(best), key_fraction=fraction, accuracy=acc, met=met, trials=trials
    )
