"""Propagation quality as a policy: update regions by their predicted propagation quality.

The signals (:class:`schedulers.quality_signals.QualitySignals`) feed a
:class:`schedulers.quality_predictor.QualityPredictor`
(expected carried accuracy of the region). :class:`PropagationQuality` turns
its predictions into decisions with one of three rules:

* ``"greedy"``: score = predicted loss ``1 - q``; update when above the
  threshold. It waits until the carried result is already bad.
* ``"renewal"`` (default): score = ``n * L_n - sum_{i<n} L_i`` over the
  predicted losses ``L_i`` of the ``n`` frames since the key. A key costs a
  price ``lambda`` (the threshold) in frame-losses; the average cost per frame
  of a key's segment, ``(lambda + sum L) / n``, is lowest when the segment
  ends at the first frame whose loss exceeds it, i.e. when the score exceeds
  ``lambda``. This spends keys where losses grow fast and spares them where
  they grow slowly, and matches a fixed interval on steady footage (for a
  loss growing linearly at rate ``g`` it keys every ``sqrt(2 lambda / g)``).
  The score never falls below :data:`RAMP_FLOOR` times ``(n + 1) / 2 * L_n``,
  the loss a segment accumulates whose loss grew linearly to ``L_n``: a loss
  that saturates a frame or two after the key (a second between frames, fast
  motion) makes the renewal score stop growing (it tends to the loss's level
  times the frames it took to saturate), and without the floor such a
  stretch would get no key before ``max_interval`` while the budget went to
  the rest. Where losses keep growing the renewal score is the larger (a
  linear loss: ``g n (n + 1) / 2`` against ``g n (n + 1) / 4``; a cut at
  ``n``: about ``n`` against ``(n + 1) / 4``) and decides alone.
* ``"hindsight"``: score = the most a key placed at one of the ``n`` frames
  since the key would have saved by now, had the frames after it gone stale
  as the segment did after its own key: ``max over m of (L_{n-m+1} + .. +
  L_n) - (L_0 + .. + L_{m-1})`` (``L_0 = 0``; :func:`hindsight_score`),
  floored as the renewal score. A key is due when an earlier one would have
  paid its price. For a loss growing linearly at ``g`` it is ``g (n + 1)^2 /
  4`` (odd ``n``: the best key halfway), about half the renewal score's ``g n
  (n + 1) / 2``; for a jump ``J`` after ``c`` quiet frames it is ``J min(f,
  c + 1)`` ``f`` frames after the jump: it climbs to the renewal score's
  ``(c + 1) J``, which the renewal score reaches at once, and never passes it.

No TensorFlow: numpy and OpenCV only.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from schedulers.base import Context, Decision, Policy
from schedulers.quality_signals import DEFAULT_DOWNSAMPLE, KEY_LABEL_SIGNAL, predicted_quality

RULES = ("renewal", "greedy", "hindsight")
RAMP_FLOOR = 0.5  # the renewal score is at least this share of (n + 1) / 2 * L_n (see the module notes)
_SHIPPED: dict = {}  # key labels read (bool) -> the shipped predictor, loaded once (predicting changes nothing)


def ramp_floor(n: int, loss: float, share: float = RAMP_FLOOR) -> float:
    """The floor of the renewal and hindsight scores ``n`` frames after the key, whose loss is now
    ``loss``: ``share`` of ``(n + 1) / 2 * loss``, the loss a segment accumulates whose loss grew
    linearly to ``loss`` (see the module notes). In frame-losses."""
    return share * 0.5 * (n + 1) * loss


def renewal_score(n: int, loss: float, total: float) -> float:
    """The renewal score of a segment ``n`` frames after its key, whose loss is now ``loss`` and
    whose ``n - 1`` frames before summed ``total``: ``n * loss - total``, floored at
    :func:`ramp_floor` (see the module notes). In frame-losses."""
    return max(n * loss - total, ramp_floor(n, loss))


def hindsight_score(losses, floor: float = RAMP_FLOOR) -> float:
    """The hindsight score of a segment whose frames since the key lost ``losses`` ``[L_1 .. L_n]``
    (``L_0 = 0`` at the key): the most a key placed at one of those frames would have saved by
    now, had the frames after it gone stale as the segment did after its own key,
    ``max over m = 1..n of (L_{n-m+1} + .. + L_n) - (L_0 + .. + L_{m-1})``, floored at
    :func:`ramp_floor` with share ``floor`` as :func:`renewal_score` is (0: no floor).
    In frame-losses."""
    losses = np.asarray(losses, dtype=np.float64)
    n = losses.size
    if n == 0:
        return 0.0
    if not np.all(np.isfinite(losses)):
        return float("inf")  # as renewal_score of an infinite loss: a region whose loss is unknown is keyed
    prefix = np.concatenate([[0.0], np.cumsum(losses)])  # prefix[j] = L_1 + .. + L_j
    m = np.arange(1, n + 1)
    saved = (prefix[n] - prefix[n - m]) - prefix[m - 1]
    return max(float(saved.max()), ramp_floor(n, float(losses[-1]), floor))


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def _as_predictor(predictor):
    """``predictor`` itself (``None`` or an object that predicts from signals), or the
    :class:`schedulers.QualityPredictor` its path names; ``TypeError`` for anything else."""
    if isinstance(predictor, (str, os.PathLike)):
        from schedulers.quality_predictor import load_quality_predictor

        return load_quality_predictor(predictor)
    if predictor is not None and not callable(getattr(predictor, "predict", None)):
        raise TypeError(f"predictor must be a QualityPredictor, the path of its file, or None; "
                        f"got {type(predictor).__name__}")
    return predictor


class PropagationQuality(Policy):
    """Update regions by their predicted propagation quality.

    Args:
        predictor: a fitted :class:`schedulers.QualityPredictor`, or the
            path of its file (loaded at once, as
            :func:`schedulers.load_quality_predictor` loads it); ``None``
            loads the shipped default (:func:`schedulers.load_default_quality`):
            the one that also reads the key frames' labels when the pipeline
            gives them (``Tracker.label_keys``, or ``Tracker.step(frame,
            labels)``; ``compare`` and the video runner always do), else the
            one on the frames and flow alone.
        threshold: update where the score exceeds it. With ``rule="greedy"``
            a predicted loss in [0, 1]; with ``"renewal"`` or ``"hindsight"`` the price of a key
            in frame-losses (see the module notes; calibrated with the shipped predictor,
            about 0.5 to 0.75 for a budget of 10% and 0.05 to 0.08 for 33%).
        rule: ``"renewal"``, ``"hindsight"`` (a price in frame-losses too) or ``"greedy"``
            (a rule set in mid-stream takes effect fully from each region's next key: the
            hindsight rule's loss history is kept only while it is the rule).
        monotone: use the running maximum of the predicted loss since the
            key frame (a carried result does not get better with distance;
            this keeps a predictor's dips, e.g. where the warp error is
            small but the labels have drifted, from postponing a key, and
            makes the renewal score non-decreasing between keys).
        downsample: passed to :class:`schedulers.QualitySignals`; ``None`` (the
            default) takes the predictor's own (``signals_downsample``, the
            one it was fitted at); another value is refused, named, at the first decision.

    Scores are +inf for a region whose signals are not finite (it is
    updated; under a budget, as soon as its credit allows: see
    :class:`schedulers.KeyBudget`). ``decision.extras["quality"]`` holds the
    predicted qualities. It keeps each region's losses since its key, so one
    instance follows one stream (a :class:`Tracker` at a time; ``clone()``
    for another).
    """

    needs_flow = True
    follows_one_stream = True  # the losses and signals since each region's key

    def __init__(self, predictor=None, threshold: float = 1.0, rule: str = "renewal", monotone: bool = True,
                 downsample: Optional[int] = None):
        _check_rule(rule)  # and again at every decision, as it may be set later
        self.predictor = _as_predictor(predictor)
        self.threshold = threshold
        self.rule = rule
        self.monotone = monotone
        self.downsample = downsample

    @property
    def score_is_cost(self) -> bool:
        """The renewal and hindsight scores are costs in frame-losses, compared with a key's price: a budget
        around this policy spends keys by a price (``schedulers.KeyBudget``'s price rule)."""
        return self.rule in ("renewal", "hindsight")

    @property
    def reads_key_labels(self) -> bool:
        """Whether this policy reads the key frames' labels when a pipeline gives them
        (``Context.key_labels``): with the shipped predictors, or a predictor fitted on them."""
        return self.predictor is None or KEY_LABEL_SIGNAL in tuple(getattr(self.predictor, "signal_names", ()))

    def _predictor(self, context: Context):
        """The predictor given, or the shipped one for the stream: the one that reads the key
        frames' labels when the stream's first decided frame (since a reset) carries them, else the
        one that does not (kept for the whole stream, so its signals and losses stay of one kind)."""
        if self.predictor is not None:
            return self.predictor
        choice = getattr(self, "key_labels_choice_", None)
        if choice is None:
            choice = self.key_labels_choice_ = context.key_labels is not None
        if choice not in _SHIPPED:
            from schedulers.quality_predictor import load_default_quality

            _SHIPPED[choice] = load_default_quality(key_labels=choice)
        return _SHIPPED[choice]

    def quality(self, context: Context) -> np.ndarray:
        """``[R]`` predicted carried accuracy of each region in [0, 1] (NaN where signals are not finite)."""
        predictor = self._predictor(context)
        fitted = getattr(predictor, "signals_downsample", None)  # None: a predictor that records none
        downsample = self.downsample if self.downsample is not None else fitted or DEFAULT_DOWNSAMPLE
        if fitted is not None and downsample != fitted:
            raise ValueError(f"PropagationQuality(downsample={downsample}): its predictor was fitted on signals at "
                             f"downsample {fitted}; drop downsample= (None, the default, follows the predictor)")
        return predicted_quality(self, predictor, downsample, context)

    def score(self, context: Context) -> np.ndarray:
        _check_rule(self.rule)
        quality = self.quality(context)
        self.last_quality_ = quality
        raw = np.where(np.isfinite(quality), 1.0 - quality, np.inf)
        # Per region: the key, the frame last seen, and (losses of the frames before it:
        # their sum and running maximum, then its own loss); asking twice about one frame
        # counts it once.
        state = getattr(self, "loss_state_", None)
        if state is None or len(state) != context.num_regions:
            state = self.loss_state_ = [None] * context.num_regions
        frame = int(context.frame_index)
        scores = np.empty(context.num_regions)
        for r, (key_index, loss) in enumerate(zip(context.key_indices, raw)):
            key_index = int(key_index)
            s = state[r]
            if s is None or s["key"] != key_index:
                total, peak, before = 0.0, 0.0, []
            elif s["frame"] == frame:
                total, peak, before = s["total"], s["peak"], s["before"]
            else:  # the hindsight rule's losses before this frame grow in place (the old state is dropped below)
                total, peak, before = s["total"] + s["loss"], max(s["peak"], s["loss"]), s["before"]
                if self.rule == "hindsight":  # the other rules read the sum and peak alone
                    before.append(s["loss"])
            finite = bool(np.isfinite(loss))
            if self.monotone and finite:
                loss = max(loss, peak)
            state[r] = {"key": key_index, "frame": frame, "total": total, "peak": peak, "before": before,
                        "loss": loss if finite else 1.0}
            if not finite:
                scores[r] = np.inf
            elif self.rule == "greedy":
                scores[r] = loss
            elif self.rule == "hindsight":
                scores[r] = hindsight_score(before + [loss])
            else:
                scores[r] = renewal_score(max(frame - key_index, 1), loss, total)
        return scores

    def decide(self, context: Context) -> Decision:
        decision = super().decide(context)
        decision.extras["quality"] = self.last_quality_
        return decision
