"""``KeyBudget``: keep a stream's key-frame fraction on a target, whatever its content.

A threshold calibrated on some clips drifts far off budget on others (a
static camera spends almost nothing, a hand-held one far too much). Video
encoders solve the same problem for I-frames with rate control; ``KeyBudget``
does it for any score-based policy::

    from schedulers import KeyBudget, PropagationQuality, Tracker

    tracker = Tracker(KeyBudget(PropagationQuality(), target=0.1, max_interval=30))
    for frame in frames:
        if tracker.step(frame).any_update:
            run_the_expensive_model(frame)   # on ~10% of the frames, on any video

How it decides, per frame (counting region-frames: a ``2x2`` grid spends up
to 4 keys per frame; the fraction is keys / region-frames):

* **Credit** (a token bucket): each region-frame adds ``target`` keys of
  credit, each key spends 1. The stream's frame 0 is a key of every region
  (as in :class:`Tracker` and ``VideoRunner``) and is charged too. The
  balance ``target * region_frames - keys`` is kept within ``[-D, D]`` with
  ``D = clip(max(0.009 * region_frames, e * H), 0.5, 2 * regions)``, ``H =
  10 * regions / target`` the region-frames of the shortest stream the
  tolerance is promised for, ``e`` = 0.009 (rank rule) or 0.018 (price
  rule): a key is spent only when the balance stays at or above ``-D``
  afterwards, and keys must be spent while it is above ``D``. So after ``n
  >= H`` region-frames the key fraction is within ``D / n`` of the target:
  at most 0.009 (rank) or 0.018 (price) once ``D`` left its floor, ``0.5 /
  n`` before (a 1x1 stream of ``10 / target`` frames is within 0.02 for
  targets up to 0.4; at 0.5 the 1/n granularity of whole keys allows no
  better than 0.025). Before ``H``, ``D`` is already what it will be at
  ``H``, so on a short stream keys can still move to where the scores are
  worst (without it, a 1x1 stream at 10% would be a fixed interval for its
  first 55 frames; with the rank rule's band, a 1x1 stream at 20% is one
  anyway: its keys can move by one frame).
* **Where to spend**, one of two rules (``rule``; ``"auto"`` takes the price
  rule when the wrapped policy's ``score_is_cost`` is true, as for
  :class:`~schedulers.quality.PropagationQuality`'s renewal score, and the
  rank rule otherwise):

  - **rank** (any score): each region's score is ranked among the stream's
    recent scores (the last ``max(100, 5 * regions / target)``, all regions
    pooled): ``rank`` in [0, 1], scale-free. The regions ranked highest are
    updated while their rank is at least ``1 - p``, with ``p = target *
    exp(1.5 * balance / D)`` (spend more freely when credit has built up).
  - **price** (scores that are costs in frame-losses, compared with the
    price of a key, like the renewal score): a region is updated when its
    score is at least ``lambda * exp(-1.5 * balance / D)``: a Lagrangian
    price, lowered while credit builds up and raised while the stream is in
    debt. ``lambda`` starts at ``price`` when one is given (the policy's
    threshold calibrated to the target on footage like the stream's; the
    credit then moves it by ``exp(-0.5 * balance / D)``, and the stream's keys
    move it only once several are seen); otherwise it starts as the score the
    first region reaches ``I = 1 / target`` frames after its key (the price that keys that content at the
    target's interval; before that, four times the price a loss growing
    linearly would reach at ``I``, extrapolated from the scores so far, so
    a cut in the first interval gets its key) and then follows the scores
    of the keys it chose (the median of the last five per region, in logs; the
    hard cuts that the recent scores show are left out, those found only by
    their price kept, so a price far too low for the stream still rises).
    Past ``I`` frames since its key, a region's score counts
    ``age / I`` times: an uninformative score (flat, or near 0) then keys
    near the target's interval instead of wandering from one edge of the
    band to the other. A price keeps its meaning when the content changes:
    a stretch of fast motion reaches it sooner and gets more keys, a static
    one fewer, within the band. Scores at or below 0 never reach a price
    (their keys come from the band alone).

  Both rules act within the credit limits above.
* **A hard cut**: a score above ``max + (max - median)`` of the recent
  scores, or one that jumps there from the region's score on the frame before
  (on the first frame after its key from a *base*: 0, or, when recent scores
  that were no cut go below 0, as a score updated where low does once
  negated, the lowest of them; the jump's size is measured from the base
  too) while the scores that were no cut stay
  below (so an earlier cut's score does not hide the next one; see
  :meth:`BudgetController.ranks`), or, under the price rule, a cost at least
  ``CUT_PRICE`` (16) times the price in force (which the recent scores
  cannot hide: before eight of them are seen, or after a cut among them that
  the test above missed; on the development data's real footage no score
  reached 10.4 times its price, and generated cuts lay between 20 and 92
  times), or a score that is NaN or +inf (``PropagationQuality``'s score where
  the signals are not finite), counts as worst (rank 1, above any price) and may
  overdraw the balance down to the *depth* ``-2 D`` (the price rule, whose ``D`` is
  wider: ``-max(D, min(2 D, 0.019 * max(n, H)))``, so the promise at ``H``
  holds). Under the price rule a hard cut (not a NaN score, which can last)
  may go one key below the depth, on *loan*
  (:data:`~schedulers.budget_control.CUT_LOAN`): on a short stream the band
  is under a key, and a cut a frame or two after an ordinary key would
  otherwise wait for credit. The rank rule gives no loan: the cuts it finds
  in a score that is no cost are less sure (given one, ``FrameDifference``
  lost 0.004 at 20% on CamVid's 1 fps streams, and gained on generated
  cuts only between the fair budgets). So a cut gets a key at once unless the balance is
  already below the depth (an earlier loan not yet repaid, or just after
  frame 0). No ordinary key is spent until the credit has brought the
  balance back to ``-D``, and no further cut until it is back at the
  depth: but for the keys ``max_interval`` forces, a loan is repaid within
  ``1 / target`` region-frames. While a loan is open the key fraction may
  lie one key (``1 / n``) beyond the promise above; with a cut every few
  key intervals, that is most of the time. A region whose score is not
  finite (NaN or infinite: its signals could not be computed) that the
  credit cannot key at once waits like any other; the stream's count of
  such waits is in ``Decision.extras["budget"]["kept_non_finite"]``, and a
  warning of ``schedulers.budget`` is logged when it reaches 1, 10, 100, ...
* **Intervals**, per region: no key before ``min_interval`` frames since the
  region's last one; a key whenever ``max_interval`` frames have passed,
  whatever the credit (then the balance may stay below ``-D`` for a while).
  A target below ``1 / max_interval`` or above ``1 / min_interval`` cannot be
  met and is refused.

Only the wrapped policy's scores are used (its threshold, and a dynamic
target of the decision network, are ignored). Policies that update where
their score is *low* (``update_when_below``, the decision network's
confidence) are ranked on the negated score. ``Decision.scores`` holds the
wrapped policy's own scores; ``Decision.extras["budget"]`` the controller
state (see :meth:`BudgetController.allocate`).
"""

from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np

from schedulers.base import Context, Decision, Policy, check_int, is_number
from schedulers.budget_control import BudgetController

logger = logging.getLogger(__name__)
SLOPE = 0.009  # D / region-frames of a long stream
EARLY = {"rank": 0.009, "price": 0.018}  # D / horizon before the horizon, per rule
RULES = ("auto", "rank", "price")


def check_target(target) -> float:
    """``target`` as a float in (0, 1], or ``ValueError`` naming it."""
    if not is_number(target) or not 0 < target <= 1:
        raise ValueError(f"target must be a key-frame fraction in (0, 1], got {target!r}")
    return float(target)


def check_price(price, policy, rule: str, auto: bool = True) -> Optional[float]:
    """``price`` as a positive finite float (or ``None``); a price where ``rule`` (resolved;
    ``auto``: from ``policy``'s scores) is the rank rule is a ``ValueError`` naming why."""
    if price is None:
        return None
    if not is_number(price) or not 0 < price < math.inf:
        raise ValueError(f"price must be a positive finite number (a key's price in the policy's score units), "
                         f"got {price!r}")
    if rule != "price":
        why = f"{type(policy).__name__}'s scores take the rank rule (they are no cost)" if auto \
            else f"rule={rule!r}"
        raise ValueError(f"price={price} starts the price rule, but {why}; drop the price, or pass rule='price'")
    return float(price)


def check_intervals(target: float, min_interval, max_interval) -> tuple[int, Optional[int]]:
    """Validate ``min_interval`` and ``max_interval`` against each other and ``target``."""
    low = check_int(min_interval, "min_interval", 1)
    high = None if max_interval is None else check_int(max_interval, "max_interval", 1)
    if high is not None and low > high:
        raise ValueError(f"min_interval ({low}) must not exceed max_interval ({high})")
    if target * low > 1 + 1e-9:
        raise ValueError(
            f"target {target} cannot be spent with min_interval {low}: at most 1/{low} = {1 / low:.3f} of the frames"
        )
    if high is not None and target * high < 1 - 1e-9:
        raise ValueError(
            f"target {target} is below 1/max_interval = {1 / high:.3f}: max_interval {high} forces more keys"
        )
    return low, high


def scoring_function(policy):
    """``f(context) -> [R]`` float64 scores, higher = more change, of a score-based policy.

    Raises ``TypeError`` for a policy class, an object without ``score``, or
    a policy that decides without a score (only the base ``Policy.score``).
    """
    if isinstance(policy, type):
        raise TypeError(f"policy must be a policy instance, got the class {policy.__name__}")
    score = getattr(policy, "score", None)
    if not callable(score) or getattr(type(policy), "score", None) is Policy.score:
        raise TypeError(f"{type(policy).__name__} has no score(context) to rank; a budget needs a score-based policy")
    sign = -1.0 if getattr(policy, "update_when_below", False) else 1.0
    region_scores = getattr(policy, "region_scores", None)

    def scores(context: Context) -> np.ndarray:
        if callable(region_scores):
            raw = region_scores(context)
        else:
            raw = np.asarray(score(context), dtype=np.float64).reshape(-1)
            if raw.shape != (context.num_regions,):
                raise ValueError(f"{type(policy).__name__}.score returned {raw.size} scores for {context.num_regions} regions")
        return raw, sign * raw

    return scores


def resolve_rule(policy, rule: str) -> str:
    """``"rank"`` or ``"price"``: ``rule`` itself, or for ``"auto"`` the price rule when ``policy``
    says its scores are costs in frame-losses (``policy.score_is_cost``), else the rank rule."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if rule == "auto":
        return "price" if getattr(policy, "score_is_cost", False) is True else "rank"
    return rule


def interval_masks(context: Context, min_interval: int, max_interval: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(eligible, forced)`` per region: past ``min_interval`` since its key, at ``max_interval``."""
    ages = context.frame_index - np.asarray(context.key_indices, dtype=np.int64)
    eligible = ages >= min_interval
    forced = ages >= max_interval if max_interval is not None else np.zeros(ages.shape, bool)
    return eligible, forced


def previous_scores(last: Optional[tuple], context: Context) -> np.ndarray:
    """Each region's score on the stream's frame before (``last`` = (key indices, scores) then), for
    the hard-cut test's jump: ``-inf`` where its key has changed since (the key frame itself, which
    differs from nothing, is where its scores start: the jump then counts from the base, see
    :meth:`~schedulers.budget_control.BudgetController.ranks`; a score of ``-inf`` on the frame
    before counts alike), NaN with no frame before."""
    keys = np.asarray(context.key_indices, np.int64)
    if last is None or last[0].shape != keys.shape:
        return np.full(keys.shape, np.nan)
    return np.where(last[0] == keys, last[1], -np.inf)


def warn_kept_non_finite(raw: np.ndarray, update: np.ndarray, frame_index: int, kept_before: int = 0,
                         stream: str = "the stream") -> int:
    """Count the regions whose wrapped score is not finite (``raw``: NaN or infinite: their signals
    could not be computed) that were kept on frame ``frame_index``: the budget holds them to its
    credit, so such a region waits for a key as the credit allows instead of getting one at once.
    Returns the stream's running count (``kept_before`` plus these) and logs a warning each time it
    reaches 1, 10, 100, ... region-frames, so a stream whose input stays broken is not kept
    silently."""
    kept = ~np.isfinite(np.asarray(raw, np.float64)) & ~np.asarray(update, bool)
    total = int(kept_before) + int(np.count_nonzero(kept))
    if total > kept_before and int(math.log10(total)) > (int(math.log10(kept_before)) if kept_before else -1):
        logger.warning(f"{stream}, frame {frame_index}: region(s) {np.flatnonzero(kept).tolist()} have scores that "
                       "are not finite and were kept: the budget's credit allows no more keys now (they get theirs "
                       "as credit comes; a score that stays non-finite points at broken input, e.g. the flow). "
                       f"{total} such region-frame(s) kept on this stream so far (warned at 1, 10, 100, ...).")
    return total


def promised_horizon(regions: int, target: float) -> int:
    """Region-frames of the shortest stream the +-0.02 promise covers: ten key intervals."""
    return int(math.ceil(10 * regions / target))


def history_size(regions: int, target: float) -> int:
    """Recent scores kept: about five key intervals of every region, at least 100."""
    return max(100, int(math.ceil(5 * regions / target)))


class BudgetPolicy(Policy):
    """A policy that spends a budget on the scores of the policy it wraps (``self.policy``):
    the wrapped policy's flow needs pass through, ``reset()`` resets it too, and there is no
    threshold to calibrate (the budget is met by the wrapper itself)."""

    policy: Policy
    follows_one_stream = True  # the credit, price and recent scores of its stream

    @property
    def needs_flow(self) -> bool:
        return bool(getattr(self.policy, "needs_flow", False))

    @property
    def needs_flow_features(self) -> bool:
        return bool(getattr(self.policy, "needs_flow_features", False))

    def clone(self) -> "BudgetPolicy":
        """A new budget with the same parameters around a clone of the wrapped policy (whose
        run-time state belongs to one stream, as the budget's does)."""
        params = self.get_params()
        inner = params["policy"]
        params["policy"] = inner.clone() if hasattr(inner, "clone") else inner
        return type(self)(**params)

    def reset(self) -> "BudgetPolicy":
        """Forget the stream (and the wrapped policy's run-time state)."""
        super().reset()
        if hasattr(self.policy, "reset"):
            self.policy.reset()
        return self

    def decision_threshold(self) -> float:
        raise TypeError(f"{type(self).__name__} meets its budget by itself: there is no threshold to calibrate")


class KeyBudget(BudgetPolicy):
    """Keep one stream's key-frame fraction within 0.02 of ``target`` (about 0.01 on long
    streams; under the price rule a hard cut's key may lie one key beyond until repaid), spending keys where
    ``policy``'s score ranks worst among the stream's recent
    scores or, for a cost, where it passes a price.

    Args:
        policy: a score-based policy (``FrameDifference``, ``FlowMagnitude``,
            ``DecisionNetworkScheduler``, ``FixedInterval``, ...); its flow
            needs pass through.
        target: key fraction of region-frames in (0, 1], frame 0 included.
        min_interval: frames a region waits after its key before the next.
        max_interval: a region gets a key at least every this many frames
            (``None``: no maximum).
        rule: where keys go: ``"rank"`` (the score ranks worst among recent
            scores; any score), ``"price"`` (the score passes a price moved by
            the credit; scores that are costs in frame-losses) or ``"auto"``
            (the price rule when ``policy.score_is_cost`` is true).
        price: the price rule's starting price of a key, in the policy's
            score units: the policy's threshold calibrated to ``target`` on
            footage like the stream's (``schedulers.calibrate``). ``None``:
            guessed from the stream's first scores. Either way the price then
            follows the stream's keys (see :meth:`BudgetController.start_price`).

    See the module docstring for the control law and its guarantee. One
    ``KeyBudget`` follows one stream (``reset()`` between streams; a
    :class:`Tracker` does it); frame indices must increase. A ``target``,
    ``min_interval`` or ``max_interval`` set mid-stream (``set_params``)
    applies from the next frame on: the credit grows at the new target from
    there, the frames before keep theirs, so the stream's key fraction moves
    toward the new target over the following key intervals. ``rule`` and
    ``price`` apply from the next ``reset()``.
    """

    threshold_param = "target"

    def __init__(self, policy: Policy, target: float = 0.1, min_interval: int = 1, max_interval: Optional[int] = None,
                 rule: str = "auto", price: Optional[float] = None):
        self.policy = policy
        self.target = target
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.rule = rule
        self.price = price
        self._check()

    def _check(self):
        target = check_target(self.target)
        low, high = check_intervals(target, self.min_interval, self.max_interval)
        rule = resolve_rule(self.policy, self.rule)
        price = check_price(self.price, self.policy, rule, auto=self.rule == "auto")
        return scoring_function(self.policy), target, low, high, rule, price

    def decide(self, context: Context) -> Decision:
        scoring, target, low, high, rule, price = self._check()
        regions = context.num_regions
        controller = getattr(self, "controller_", None)
        last = getattr(self, "frame_index_", None)
        if controller is not None and last is not None and context.frame_index <= last:
            raise ValueError(
                f"frame {context.frame_index} comes after frame {last}: a KeyBudget follows one stream; "
                "call reset() before a new one (a Tracker does) or give each stream its own KeyBudget"
            )
        if controller is not None and regions != self.regions_:
            raise ValueError(f"frame {context.frame_index} has {regions} regions, the stream had {self.regions_}")
        # Scored before the budget is charged: a frame whose score fails charges nothing, and a retry of
        # it is charged once.
        raw, worse = scoring(context)
        if controller is None:
            controller = self.controller_ = BudgetController(
                target, slope=SLOPE, early=EARLY[rule], rule=rule, history=history_size(regions, target),
                horizon=promised_horizon(regions, target))
            # The price rule's wider band must not let a hard cut's overdraft break the promise at H.
            controller.capped_overdraw = rule == "price"
            if price is not None:
                controller.start_price(price)
            # Frames before this one: frame 0 a key of every region, later keys as the key indices show.
            earlier_keys = regions + int(np.count_nonzero(np.asarray(context.key_indices) > 0))
            controller.charge(regions * context.frame_index, earlier_keys)
            self.regions_ = regions
        elif target != controller.target:  # set_params(target=...) mid-stream: the new target from here on
            controller.target = target
            controller.horizon = promised_horizon(regions, target)
            controller.grow_history(history_size(regions, target))
        elapsed = context.frame_index - (context.frame_index - 1 if last is None else last)
        controller.charge(regions * elapsed, 0)
        eligible, forced = interval_masks(context, low, high)
        ages = context.frame_index - np.asarray(context.key_indices, dtype=np.int64)
        update, state = controller.allocate(worse, eligible, forced, regions, ages=ages,
                                            previous=previous_scores(getattr(self, "last_scores_", None), context))
        self.last_scores_ = (np.asarray(context.key_indices, np.int64).copy(), worse)
        self.frame_index_ = context.frame_index
        self.kept_non_finite_ = warn_kept_non_finite(raw, update, context.frame_index,
                                                     getattr(self, "kept_non_finite_", 0))
        state["kept_non_finite"] = self.kept_non_finite_
        return Decision(update=update, scores=raw, frame_index=context.frame_index, extras={"budget": state})
