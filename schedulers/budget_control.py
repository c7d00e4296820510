"""The control law of a key-frame budget: credit, band, and where keys go (rank or price).

:class:`BudgetController` is shared by :class:`schedulers.KeyBudget` (one stream) and
:class:`schedulers.SharedBudget` (many); the module docstring of :mod:`schedulers.budget`
states the law and its guarantee.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque
from typing import Optional

import numpy as np

GAIN = 1.5  # how strongly the credit balance moves the rank threshold
PRICE_GAIN = 1.5  # how strongly the credit balance moves the price
CALIBRATED_PRICE_GAIN = 0.5  # the same, from a calibrated starting price (see start_price)
PRICE_MEMORY = 5  # the price is the median of the log scores of this many recent keys per region
PROVISIONAL = 4.0  # before the first price: this many times the extrapolated one (a cut jumps far above it)
CUT_LOAN = 1.0  # keys a hard cut may spend beyond the overdraft's depth (price rule), repaid before the next loan
CUT_PRICE = 16.0  # the price rule: a cost this many times the price in force is a hard cut
JUMP = 3.0  # a hard cut's score rises this many times its previous size in one frame (see ranks)
AGE_PRIOR = 1.0  # past the target's interval I, a score counts (age / I) ** AGE_PRIOR times
# Scores this close (relative) count as equal: the last bits of a score depend on how floating-point sums
# happen to be split (OpenCV and NumPy reduce in SIMD blocks that follow the buffer's alignment), and a
# flat run of scores (e.g. a score whose loss stopped growing, before a floor lifts it) must not have its ranks, hard cuts or
# price comparisons decided by them.
EQUAL = 1e-9


def _slack(value: float) -> float:
    """How far from score ``value`` another may lie and still count as equal (:data:`EQUAL`,
    relative; none for an infinite or NaN value, which compares as it is)."""
    return EQUAL * max(abs(value), 1e-300) if math.isfinite(value) else 0.0


def _sorted_median(ordered: list) -> float:
    """``np.median`` of the ascending ``ordered`` (the middle value, or the mean of the middle two)."""
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2.0


def _floats(values) -> list:
    """``values`` (any array-like of numbers) as a flat list of Python floats."""
    return [float(v) for v in np.asarray(values, np.float64).reshape(-1)]


def _is_worst(score: float) -> bool:
    """A NaN or +inf score: no score, or an infinite cost (the worst)."""
    return score != score or score == math.inf


class BudgetController:
    """The credit balance and the recent scores of one budget (one stream, or shared).

    Args:
        target: key fraction of region-frames in (0, 1] (the rank threshold's
            base; with ``keys_per_step`` the caller credits the bucket itself).
        slope: the balance limit ``D`` grows as ``slope * region_frames``.
        history: how many recent scores the ranks are taken against.
        horizon: region-frames of the shortest stream the tolerance is promised
            for (``10 * regions / target``); before it, ``D`` is already
            ``slope * horizon``, so a short stream's keys can still move to
            where the scores are worst (the promise holds from the horizon on).
        early: ``D`` before the horizon is ``early * horizon`` (0.009 keeps the
            long-stream ``D``; the price rule takes 0.018, still within 0.02 at
            the horizon).
        rule: ``"rank"`` or ``"price"`` (see :mod:`schedulers.budget`).
    """

    def __init__(self, target: float, slope: float = 0.009, history: int = 100, horizon: int = 0,
                 early: float = 0.009, rule: str = "rank"):
        self.target = target
        self.rule = rule
        self.log_price = None
        self.prior_log_price = None
        self.calibrated = False  # True from start_price on
        self.provisional = 0.0  # the extrapolated price before the first one (see allocate)
        self.key_prices: deque = deque(maxlen=PRICE_MEMORY)
        self.slope = slope
        self.early = early
        self.horizon = int(horizon)
        self.capped_overdraw = False  # True: an exceptional score overdraws at most 0.019 * max(n, horizon)
        self.recent = deque(maxlen=max(int(history), 8))
        self.recent_cuts = deque(maxlen=self.recent.maxlen)  # per recent score: was it a cut (a jump, see ranks)?
        self.credit = 0.0
        self.keys = 0
        self.region_frames = 0

    def start_price(self, price: float) -> None:
        """Start the price rule at ``price`` (in the scores' units; a threshold calibrated to
        the target on footage like the stream's) instead of guessing it from the first scores.

        The price fills the memory of recent key prices (the median of ``PRICE_MEMORY`` keys per
        region), so the stream's own keys move it only once several are seen, and the credit
        balance moves it by ``exp(-0.5 b / D)`` rather than ``exp(-1.5 b / D)``: a calibrated
        price is nearer right than one guessed from a single score. So that a price set too high
        still comes down, every key spent then enters the memory, those the band forced below
        the price too (a guessed price keeps only keys that passed it)."""
        self.log_price = math.log(price)
        self.prior_log_price = self.log_price  # fills the memory at the first step (its size known then)
        self.calibrated = True

    @property
    def balance(self) -> float:
        """Keys of credit left (negative: spent ahead of the budget)."""
        return self.credit - self.keys

    @property
    def key_fraction(self) -> float:
        return self.keys / self.region_frames if self.region_frames else float("nan")

    def grow_history(self, size: int) -> None:
        if size > self.recent.maxlen:
            self.recent = deque(self.recent, maxlen=int(size))
            self.recent_cuts = deque(self.recent_cuts, maxlen=int(size))

    def charge(self, region_frames: int, keys: int, credit: bool = True) -> None:
        """Count region-frames (crediting ``target`` each unless ``credit`` is False) and keys spent."""
        self.region_frames += int(region_frames)
        self.keys += int(keys)
        if credit:
            self.credit += self.target * region_frames

    def limit(self, regions: int, floor: float = 0.5) -> float:
        """``D``: how far the balance may drift from 0, in keys (at least ``floor``)."""
        drift = max(self.slope * self.region_frames, self.early * self.horizon)
        return float(min(max(drift, floor), max(1.0, 2.0 * regions, floor)))

    def depth(self, bound: float) -> float:
        """How far below 0 an exceptional score (a hard cut, NaN) may take the balance, in keys."""
        if not self.horizon or not self.capped_overdraw:
            return 2.0 * bound
        return max(bound, min(2.0 * bound, 0.019 * max(self.region_frames, self.horizon)))

    def ranks(self, scores: np.ndarray, previous: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """Rank in [0, 1] of each score among the recent ones (mid-rank for ties; 0.5
        with no history), and whether it is exceptional: NaN or +inf, or far above them (above
        ``max + (max - median)``), or a *jump*: far above the recent scores that were not
        exceptional themselves, and up from the region's ``previous`` score (its score on the frame before,
        since the same key; ``-inf``: its key is new, so the rise counts from the base below; NaN:
        none) by more than their spread ``max - median`` and more than :data:`JUMP` times that
        score's size. Sizes count from a *base*: 0, or the lowest of the recent scores that were not
        exceptional when it is below 0 (as negated scores are). An earlier cut's score then does not hide the next
        cut, and a score growing from frame to frame (a renewal score since a key: ``a (a + 1) / 2``
        rises by ``a``, less than three times ``a (a - 1) / 2`` from the second frame on) is no jump."""
        scores = _floats(scores)
        ranks, exceptional = self._ranks(scores, None if previous is None else _floats(previous),
                                         [_is_worst(score) for score in scores])
        return np.asarray(ranks, np.float64), np.asarray(exceptional, bool)

    def _ranks(self, scores: list, previous: Optional[list], nan: list) -> tuple[list, list]:
        """:meth:`ranks` on plain floats (a budget has a few regions a step: a loop over them costs
        far less than array operations, above all right after a key-frame step has evicted the caches);
        ``nan``: which scores are NaN or +inf (:func:`_is_worst`)."""
        if not self.recent:
            return [1.0 if worst else 0.5 for worst in nan], nan
        history = sorted(self.recent)
        size = len(history)
        ranks = []
        for score, worst in zip(scores, nan):
            if worst:
                ranks.append(1.0)
                continue
            slack = _slack(score)
            below = bisect_left(history, score - slack)
            at_or_below = bisect_right(history, score + slack)
            ranks.append((below + at_or_below) / (2.0 * size))
        if size < 8:
            return ranks, nan
        high, median = history[-1], history[size // 2]
        bar = high + max(high - median, _slack(high))
        far = [score > bar for score in scores]
        if previous is not None:
            ordered = sorted(score for score, cut in zip(self.recent, self.recent_cuts) if not cut)
            if len(ordered) >= 8:
                ordinary_high = ordered[-1]
                spread = max(ordinary_high - _sorted_median(ordered), _slack(ordinary_high))
                # A score's size is measured from 0, or from the lowest ordinary score when scores go
                # below 0 (a policy updated where its score is low is ranked on the negated score);
                # a region whose key is new (previous -inf) starts there.
                base = min(0.0, ordered[0])
                for i, (score, before) in enumerate(zip(scores, previous)):
                    fresh = before == -math.inf
                    known = base if fresh else before if math.isfinite(before) else 0.0
                    rise = score - known
                    jump = ((math.isfinite(before) or fresh) and rise > spread
                            and rise > JUMP * abs(known - base))
                    far[i] = far[i] or (jump and score > ordinary_high + spread)
        return ranks, [worst or away for worst, away in zip(nan, far)]

    def allocate(self, scores: np.ndarray, eligible: np.ndarray, forced: np.ndarray, regions: int,
                 target: Optional[float] = None, floor: float = 0.5,
                 ages: Optional[np.ndarray] = None, previous: Optional[np.ndarray] = None) -> tuple[np.ndarray, dict]:
        """Choose the regions to update among ``scores`` (``[N]``, higher = worse, NaN and +inf = worst).

        ``eligible``: regions past ``min_interval``; ``forced``: regions at
        ``max_interval`` (updated whatever the credit). The credit for these
        region-frames must already be charged. Returns the ``[N]`` update mask
        and the state (``ranks``, ``balance`` before spending, ``limit`` D, ``depth`` (how far
        below 0 an exceptional score may take the balance, a hard cut under the price rule one
        key further), ``cuts`` (``[N]`` bool: the regions whose score counts as a hard cut),
        ``threshold`` = the rank ``1 - p``, ``forced``, ``key_fraction`` so far).
        ``floor``: the least ``D`` (a shared budget whose streams decide one at a
        time gives each open stream half a key of room, so the stream that happens
        to decide when the credit overflows is not the one that always spends).
        ``ages``: frames since each region's key (the price rule sets its first
        price from the score a region reaches at the target's interval).
        ``previous``: each region's score on its frame before, since the same key (``-inf``: its key
        is new; NaN: none), for the hard-cut test (:meth:`ranks`).
        """
        scores = _floats(scores)
        count = len(scores)
        nan = [_is_worst(score) for score in scores]
        ranks, exceptional = self._ranks(scores, None if previous is None else _floats(previous), nan)
        forced = np.asarray(forced, bool).reshape(-1)
        update = forced.tolist()
        before = self.balance
        balance = before - sum(update)
        bound = self.limit(regions, floor)
        candidates = [i for i, (ok, now) in enumerate(zip(np.asarray(eligible, bool).reshape(-1).tolist(), update))
                      if ok and not now]
        share = self.target if target is None else target
        priced_cut = [False] * count
        if self.rule == "price":
            memory = PRICE_MEMORY * max(1, int(regions))  # a step may key every region: keep 5 steps' worth
            if self.key_prices.maxlen < memory:
                self.key_prices = deque(self.key_prices, maxlen=memory)
            if self.prior_log_price is not None:
                self.key_prices.extend([self.prior_log_price] * memory)
                self.prior_log_price = None
            interval = round(1.0 / share)
            ages = [0.0] * count if ages is None else _floats(ages)
            # Past the target's interval a score counts (age / interval) times: a region overdue
            # for its key gets cheaper, so an uninformative score drifts to the interval, not the band.
            effective = [(math.inf if worst else score) * max(age / interval, 1.0) ** AGE_PRIOR
                         for score, worst, age in zip(scores, nan, ages)]
            if self.log_price is None:
                ripe = [scores[i] for i in candidates
                        if ages[i] >= interval and not exceptional[i] and math.isfinite(scores[i]) and scores[i] > 0
                        and (self.provisional <= 0 or scores[i] < CUT_PRICE * self.provisional)]
                if ripe:  # (a cut on that frame must not become the first price)
                    self.log_price = float(np.log(max(ripe)))
                    self.key_prices.append(self.log_price)
            if self.log_price is not None:
                gain = CALIBRATED_PRICE_GAIN if self.calibrated else PRICE_GAIN
                price = math.exp(self.log_price - gain * max(-2.0, min(1.0, balance / bound)))
            else:
                price = PROVISIONAL * self.provisional if self.provisional > 0 else math.inf
            reaching = price - _slack(price)  # a score at the price, to rounding, reaches it
            # A cost far above the price in force is a hard cut too, whatever the recent scores (an
            # earlier cut among them, or too few of them yet, can hide it from ranks).
            priced_cut = [math.isfinite(value) and value >= CUT_PRICE * price and not away
                          for value, away in zip(effective, exceptional)]
            exceptional = [away or cut for away, cut in zip(exceptional, priced_cut)]
            order = sorted(candidates, key=lambda i: (not exceptional[i], nan[i], -effective[i]))
            wanted = sum(1 for i in order if effective[i] >= reaching)
            p = float("nan")
        else:
            order = sorted(candidates, key=lambda i: (not exceptional[i], nan[i], -ranks[i]))
            p = min(1.0, share * math.exp(GAIN * max(-2.0, min(1.0, balance / bound))))
            wanted = sum(1 for i in order if ranks[i] >= 1.0 - p)
            price = float("nan")
        most = max(0, math.floor(balance + bound + 1e-9))
        least = max(0, math.ceil(balance - bound - 1e-9))
        keyed = min(len(order), max(least, min(wanted, most)))
        # Exceptional scores come first in the order, hard cuts before NaN scores. They may overdraw the
        # balance down to the depth; under the price rule a hard cut one key further (CUT_LOAN): a short
        # stream whose band is under a key would otherwise make a cut a frame after a key wait for
        # credit. A NaN score (which can last) gets no loan, nor the rank rule (the cuts a rank finds in
        # a score that is no cost, like a frame difference, are less sure: see schedulers.budget).
        depth = self.depth(bound)
        room = balance + depth + 1e-9
        loan = CUT_LOAN if self.rule == "price" else 0.0
        cuts = sum(1 for i in order if exceptional[i] and not nan[i])
        keyed_cuts = min(cuts, max(0, math.floor(room + loan)))
        keyed_nan = min(sum(1 for i in order if exceptional[i] and nan[i]), max(0, math.floor(room) - keyed_cuts))
        keyed = max(keyed, keyed_cuts + keyed_nan)
        for i in order[:keyed]:
            update[i] = True
        if self.rule == "price" and self.log_price is None:
            # Until the first price: the price a loss growing linearly since the key would reach at
            # the target's interval, extrapolated from the scores seen so far (a renewal score then
            # grows as age * (age + 1)); a hard cut jumps far above PROVISIONAL times it.
            reach = [score * interval * (interval + 1) / (age * (age + 1))
                     for score, age, away in zip(scores, ages, exceptional)
                     if math.isfinite(score) and score > 0 and age >= 1 and not away]
            if reach:
                self.provisional = max(self.provisional, max(reach))
        elif self.rule == "price":
            # A cut's score is left out of the price, but for one far above the price alone: were
            # those left out, a price set far too low for the stream could never rise. A guessed
            # price follows the keys that passed it (the credit does the rest).
            chosen = [effective[i] for i in order[:keyed]
                      if math.isfinite(effective[i]) and (not exceptional[i] or priced_cut[i]) and effective[i] > 0
                      and (self.calibrated or effective[i] >= reaching)]
            if chosen:  # the price follows the (effective) scores of the keys it chose
                self.key_prices.extend(math.log(value) for value in chosen)
                self.log_price = _sorted_median(sorted(self.key_prices))
        for score, away in zip(scores, exceptional):
            if math.isfinite(score):
                self.recent.append(score)
                self.recent_cuts.append(away)
        self.keys += sum(update)
        update = np.asarray(update, bool)
        state = {"ranks": np.asarray(ranks, np.float64), "balance": before, "limit": bound, "depth": depth,
                 "cuts": np.asarray([away and not worst for away, worst in zip(exceptional, nan)], bool),
                 "threshold": 1.0 - p, "price": price, "forced": forced.copy(), "key_fraction": self.key_fraction}
        return update, state
