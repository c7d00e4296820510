"""The price rule of KeyBudget and SharedBudget: scores that are costs in frame-losses (the
renewal score of PropagationQuality) are keyed where they pass a price moved by the credit.

A scripted cost policy stands in for the renewal score: the carried loss of a region grows
linearly with the frames since its key at a rate that may change over the stream, so its
renewal score is ``rate * age * (age + 1) / 2`` frame-losses; the best schedule keys every
``sqrt(2 * price / rate)`` frames, more often where the rate is higher.
"""

from __future__ import annotations

import numpy as np
import pytest

from schedulers import Context, FrameDifference, KeyBudget, Policy, PropagationQuality, SharedBudget
from schedulers.budget import resolve_rule


class GrowingCost(Policy):
    """Renewal score of a loss growing at ``rates[t]`` per frame since the key (rate per frame index)."""

    score_is_cost = True

    def __init__(self, rates=None, cuts=()):
        self.rates = rates
        self.cuts = cuts

    def score(self, context):
        ages = context.frame_index - np.asarray(context.key_indices)
        rate = float(np.asarray(self.rates)[context.frame_index])
        scores = rate * ages * (ages + 1) / 2.0
        if any(k < c <= context.frame_index for c in self.cuts for k in context.key_indices):
            scores = scores + 50.0  # a scene cut since the key: every later frame is lost
        return scores.astype(float)


def drive(policy, frames, regions=1):
    """Keys of ``policy`` over ``frames`` frames like a Tracker (frame 0 a key of every region)."""
    img = np.zeros((8, 8, 3), np.uint8)
    keys = [0] * regions
    updates = [np.ones(regions, bool)]
    decisions = []
    for t in range(1, frames):
        decision = policy.decide(Context(t, [img] * regions, [img] * regions, list(keys)))
        keys = [t if u else k for u, k in zip(decision.update, keys)]
        updates.append(decision.update)
        decisions.append(decision)
    return np.array(updates), decisions


def test_auto_takes_the_price_rule_for_costs_only():
    assert resolve_rule(GrowingCost(np.ones(5)), "auto") == "price"
    assert resolve_rule(FrameDifference(), "auto") == "rank"
    assert resolve_rule(PropagationQuality(rule="renewal"), "auto") == "price"
    assert resolve_rule(PropagationQuality(rule="greedy"), "auto") == "rank"
    assert resolve_rule(FrameDifference(), "price") == "price"
    with pytest.raises(ValueError, match="rule must be one of"):
        KeyBudget(FrameDifference(), 0.1, rule="cheapest")
    with pytest.raises(ValueError, match="rule must be one of"):
        SharedBudget(FrameDifference(), target=0.1, rule="cheapest")


def test_steady_costs_get_a_steady_interval():
    frames = 300
    updates, decisions = drive(KeyBudget(GrowingCost(np.full(frames, 0.02)), 0.1), frames)
    keys = np.flatnonzero(updates[:, 0])
    gaps = np.diff(keys)[3:]  # after the first prices
    assert gaps.min() >= 9 and gaps.max() <= 11, gaps
    assert abs(updates.mean() - 0.1) <= 0.01
    assert np.isfinite(decisions[-1].extras["budget"]["price"])


@pytest.mark.parametrize("rule", ["price", "rank"])
def test_keys_go_where_the_costs_grow_faster(rule):
    """Four times the loss rate halves the best interval (stretches of 30 frames, so the band
    allows the spend to move that much)."""
    frames = 400
    rates = np.where((np.arange(frames) // 30) % 2 == 0, 0.01, 0.04)
    updates, _ = drive(KeyBudget(GrowingCost(rates), 0.1, rule=rule), frames)
    slow = updates[:, 0][rates == 0.01][10:].mean()
    fast = updates[:, 0][rates == 0.04].mean()
    assert abs(updates.mean() - 0.1) <= 0.02
    assert fast > 1.5 * slow, (fast, slow)


def test_a_cut_after_the_first_price_gets_a_key_at_once():
    frames = 200
    cuts = (57, 121, 170)
    updates, _ = drive(KeyBudget(GrowingCost(np.full(frames, 0.02), cuts=cuts), 0.1), frames)
    assert updates[list(cuts), 0].all()
    assert abs(updates.mean() - 0.1) <= 0.02


def cuts_after_keys(budget, frames, earliest, count=4):
    """Cut frames, each one frame after an ordinary key: the first after the first key at or past
    frame ``earliest``, each later one after the first key at least 8 frames past the cut before,
    ``count`` at most. ``budget(cuts)`` makes the budget policy for a stream with those cuts."""
    cuts: list = []
    while len(cuts) < count:
        updates, _ = drive(budget(tuple(cuts)), frames)
        later = [t for t in np.flatnonzero(updates[1:, 0]) + 1
                 if t >= (cuts[-1] + 8 if cuts else earliest) and t + 1 < frames]
        if not later:
            break
        cuts.append(int(later[0]) + 1)
    return cuts


@pytest.mark.parametrize("target", [0.2, 0.33, 0.5])
def test_a_cut_a_frame_after_a_key_is_keyed_at_once_on_a_short_stream(target):
    """On a 48-frame stream the band is under a key: a cut one frame after an ordinary key takes a
    key on loan (one below the overdraft's depth) instead of waiting for credit, and the loan is
    repaid before the next one, so the spend stays within a key of the promise."""
    frames, rates = 48, np.full(48, 0.05)
    cuts = cuts_after_keys(lambda cuts: KeyBudget(GrowingCost(rates, cuts=cuts), target), frames, earliest=8)
    assert len(cuts) >= 3, cuts
    updates, _ = drive(KeyBudget(GrowingCost(rates, cuts=tuple(cuts)), target), frames)
    keyed = np.flatnonzero(updates[:, 0])
    assert updates[cuts, 0].all(), (cuts, keyed)
    assert abs(updates.mean() - target) <= 0.02 + 1.5 / frames, (cuts, keyed)


@pytest.mark.parametrize("target", [0.2, 0.33, 0.5])
def test_a_cost_far_above_the_price_is_a_cut_before_eight_scores_and_after_an_unseen_cut(target):
    """With a starting price, a cut's cost far above the price in force (``CUT_PRICE`` times) is a
    cut: one frame after the first key, before the recent scores can tell it, and after it, when
    that cut among the recent scores would hide the next ones."""
    frames, rates = 48, np.full(48, 0.05)
    interval = round(1 / target)
    price = rates[0] * interval * (interval + 1) / 2  # the steady interval's renewal score

    cuts = cuts_after_keys(lambda cuts: KeyBudget(GrowingCost(rates, cuts=cuts), target, price=price), frames,
                           earliest=1)
    assert cuts[0] < 8 and len(cuts) >= 3, cuts
    policy = KeyBudget(GrowingCost(rates, cuts=tuple(cuts)), target, price=price)
    updates, decisions = drive(policy, frames)
    assert updates[cuts, 0].all(), (cuts, np.flatnonzero(updates[:, 0]))
    flagged = [d.frame_index for d in decisions if d.extras["budget"]["cuts"][0]]
    assert flagged == cuts, (flagged, cuts)  # the state names the cuts, and only them
    assert abs(updates.mean() - target) <= 0.02 + 1.5 / frames


def test_a_cut_on_the_frame_that_sets_the_first_price_does_not_become_it():
    """Without a starting price the first price is a score one interval (5 frames at 20%) after the key;
    a cut on that very frame is keyed but is no price: the price stays that of the steady costs."""
    frames = 120
    updates, decisions = drive(KeyBudget(GrowingCost(np.full(frames, 0.05), cuts=(5,)), 0.2), frames)
    assert updates[5, 0]
    prices = np.array([d.extras["budget"]["price"] for d in decisions])
    assert np.median(prices[20:]) < 2.0, prices[[9, 59, -1]]  # a cut's price would be about 36
    assert abs(np.diff(np.flatnonzero(updates[20:, 0])).mean() - 5) <= 0.5


def test_a_nan_score_never_takes_the_loan_that_a_cut_beside_it_gets():
    """Two regions, a NaN in one and a cut in the other on the same frame: the cut is keyed whenever it
    would be without the NaN beside it, and the NaN region only within the depth (no loan)."""

    class CutBesideNaN(Policy):
        score_is_cost = True

        def __init__(self, at, nan):
            self.at, self.nan = at, nan

        def score(self, context):
            ages = context.frame_index - np.asarray(context.key_indices)
            scores = 0.05 * ages * (ages + 1) / 2.0
            if context.frame_index == self.at:
                scores[0] = np.nan if self.nan else scores[0]
                scores[1] += 50.0
            return scores

    for at in range(2, 47):
        runs = {}
        for nan in (True, False):
            policy = KeyBudget(CutBesideNaN(at, nan), 0.2)
            updates, decisions = drive(policy, 48, regions=2)
            state = decisions[at - 1].extras["budget"]
            runs[nan] = (updates[at], state["balance"], state["depth"])
        (with_nan, balance, depth), (alone, _, _) = runs[True], runs[False]
        assert with_nan[1] == alone[1], at
        if with_nan[0]:
            assert balance - with_nan.sum() >= -depth - 1e-9 or with_nan[1] and balance - 1 >= -depth - 1e-9, at


@pytest.mark.parametrize("rule", ["price", "rank"])
def test_only_a_cut_under_the_price_rule_overdraws_past_the_depth_and_by_one_key_at_most(rule):
    """Pairs of cuts a frame apart on a 48-frame stream at 20%: under the rank rule the balance never
    falls below the overdraft's depth; under the price rule a cut may go one key below it, never more
    (the second cut of a pair waits until the first one's loan is repaid)."""
    frames, target = 48, 0.2
    cuts = tuple(c + d for c in range(9, frames - 2, 9) for d in (0, 1))
    policy = KeyBudget(GrowingCost(np.full(frames, 0.05), cuts=cuts), target, rule=rule)
    updates, decisions = drive(policy, frames)
    lowest = min(d.extras["budget"]["balance"] - d.update.sum() + d.extras["budget"]["depth"] for d in decisions)
    if rule == "rank":
        assert lowest >= -1e-9
    else:
        assert -1.0 - 1e-9 <= lowest < 0.0, lowest  # the loan was taken, and no more than it


@pytest.mark.parametrize("target", [0.05, 0.1, 0.2, 0.33, 0.5])
def test_the_spend_holds_with_two_by_two_regions_and_changing_costs(target):
    rng = np.random.default_rng(7)
    frames = int(np.ceil(10 / target)) + 7
    rates = np.exp(rng.normal(-3.0, 1.0, frames))
    updates, _ = drive(KeyBudget(GrowingCost(rates), target), frames, regions=4)
    assert abs(updates.mean() - target) <= 0.02 + 0.5 / updates.size


def test_shared_budget_prices_streams_together():
    """One price across streams: the stream whose costs grow faster gets more keys, the total holds,
    and the streams' frame-0 keys (charged together) do not hold back every stream's next key."""
    frames = 200
    rates = {"slow": np.full(frames, 0.005), "fast": np.full(frames, 0.05), "mid": np.full(frames, 0.02)}
    made = iter(rates)
    shared = SharedBudget(lambda: GrowingCost(rates[next(made)]), target=0.1)
    streams = {name: shared.stream(name) for name in rates}
    img = np.zeros((8, 8, 3), np.uint8)
    keys = dict.fromkeys(rates, 0)
    first = {}
    for t in range(1, frames):
        for name, stream in streams.items():
            decision = stream.decide(Context(t, [img], [img], [keys[name]]))
            if decision.update[0]:
                first.setdefault(name, t)
                keys[name] = t
    assert abs(shared.key_fraction - 0.1) <= 0.01
    assert shared.stream_key_fraction("fast") > shared.stream_key_fraction("mid") > shared.stream_key_fraction("slow")
    assert first["fast"] <= 10, first


def test_a_calibrated_price_places_keys_from_the_first_interval_on():
    """Costs grow as 0.5 a (a + 1): a price of 15 is reached at age 5. Given as the starting
    price, the first keys come about every 5 frames; guessed from the first scores, the first
    key waits for the target's interval (10). The spend still holds on a long stream."""
    frames = 300
    started, _ = drive(KeyBudget(GrowingCost(np.ones(frames)), 0.1, price=15.0), frames)
    guessed, _ = drive(KeyBudget(GrowingCost(np.ones(frames)), 0.1), frames)
    first_started, first_guessed = np.flatnonzero(started[1:, 0])[0] + 1, np.flatnonzero(guessed[1:, 0])[0] + 1
    assert 4 <= first_started <= 6 and first_guessed >= 9, (first_started, first_guessed)
    assert abs(started.mean() - 0.1) <= 0.02  # the band still brings the spend back to the target


def test_a_starting_price_set_far_too_low_rises_though_its_costs_count_as_cuts():
    """Costs grow as 0.5 a (a + 1) (the target's interval of 10 reaches 55). From a price 500 times
    too low every cost soon lies 16 times above it and counts as a cut; those keys still move the
    price, so it rises to where the keys come about every 10 frames, and the spend holds."""
    frames = 400
    updates, decisions = drive(KeyBudget(GrowingCost(np.ones(frames)), 0.1, price=0.11), frames)
    prices = np.array([d.extras["budget"]["price"] for d in decisions])
    gaps = np.diff(np.flatnonzero(updates[:, 0]))
    assert prices[:5].max() < 1.0 and 20.0 < np.median(prices[-100:]) < 150.0, prices[[0, -1]]
    assert 8 <= np.median(gaps[-10:]) <= 12, gaps
    assert abs(updates.mean() - 0.1) <= 0.02


def test_shared_budget_starts_from_its_price_and_a_price_needs_the_price_rule():
    import math

    shared = SharedBudget(lambda: GrowingCost(np.ones(50)), target=0.1, price=15.0)
    streams = [shared.stream(name) for name in "ab"]
    img = np.zeros((8, 8, 3), np.uint8)
    for stream in streams:
        stream.decide(Context(1, [img], [img], [0]))
    assert shared.controller.log_price == pytest.approx(math.log(15.0))
    for bad in (0.0, -2.0, float("inf"), float("nan"), True, "1"):
        with pytest.raises(ValueError, match="price must be a positive finite number"):
            KeyBudget(GrowingCost(np.ones(5)), 0.1, price=bad)
        with pytest.raises(ValueError, match="price must be a positive finite number"):
            SharedBudget(GrowingCost(np.ones(5)), target=0.1, price=bad)
    with pytest.raises(ValueError, match="FrameDifference's scores take the rank rule"):
        KeyBudget(FrameDifference(), 0.1, price=2.0)
    with pytest.raises(ValueError, match="rule='rank'"):
        SharedBudget(FrameDifference(), target=0.1, rule="rank", price=2.0)
    later = SharedBudget(FrameDifference(), target=0.1, price=2.0)  # "auto": known at the first step
    with pytest.raises(ValueError, match="FrameDifference's scores take the rank rule"):
        later.stream("a").decide(Context(1, [img], [img], [0]))


def test_a_starting_price_set_far_too_high_comes_down_and_keys_per_step_hold():
    """Costs 0.5 a (a + 1): the price of keys every 10 frames is 55. Three streams sharing a budget
    from a price of 300: the keys the band forces below it pull it back within twice 55."""
    import math

    steps = 300
    shared = SharedBudget(lambda: GrowingCost(np.ones(steps)), target=0.1, price=300.0)
    streams = [shared.stream(name) for name in "abc"]
    img = np.zeros((8, 8, 3), np.uint8)
    keys = [0, 0, 0]
    for t in range(1, steps):
        for i, stream in enumerate(streams):
            if stream.decide(Context(t, [img], [img], [keys[i]])).update[0]:
                keys[i] = t
    assert 27.5 <= math.exp(shared.controller.log_price) <= 110.0, math.exp(shared.controller.log_price)
    assert abs(shared.key_fraction - 0.1) <= 0.01
    per_step = SharedBudget(lambda: GrowingCost(np.ones(steps)), keys_per_step=1, price=15.0)
    frames = {name: img for name in "abcde"}
    spent = [sum(int(d.update.sum()) for d in per_step.step(frames).values()) for _ in range(120)]
    assert abs(np.mean(spent[1:]) - 1.0) <= 0.1, np.mean(spent[1:])  # after frame 0 (a key of every stream)


def test_a_starting_price_fills_a_memory_of_five_keys_per_region():
    """With 2x2 regions a step may key all four: the memory keeps five keys per region, so the
    first steps do not replace the starting price (it still holds after the first keys)."""
    import math

    frames = 15
    policy = KeyBudget(GrowingCost(np.ones(frames)), 0.1, price=55.0)
    updates, decisions = drive(policy, frames, regions=4)
    assert policy.controller_.key_prices.maxlen == 20
    assert updates[1:].sum() >= 4  # every region was keyed once
    assert math.exp(policy.controller_.log_price) == pytest.approx(55.0, rel=1e-9)


def test_a_cut_in_the_first_interval_gets_a_key_before_any_price():
    """Before the first price (the target's interval not yet reached), a cut's jump passes the
    price extrapolated from the scores so far."""
    frames = 60
    updates, decisions = drive(KeyBudget(GrowingCost(np.full(frames, 0.02), cuts=(5,)), 0.1), frames)
    assert updates[5, 0]
    assert not updates[1:5, 0].any()


@pytest.mark.parametrize("seed", [0, 1])
def test_uninformative_costs_key_near_the_target_interval(seed):
    """Flat scores near 0 carry no information: overdue regions getting cheaper keeps the keys near
    the target's interval instead of long gaps and bursts at the band's edges."""
    frames = 300
    rng = np.random.default_rng(seed)
    table = np.abs(rng.normal(0.0, 0.01, frames))

    class Flat(Policy):
        score_is_cost = True

        def score(self, context):
            return np.array([table[context.frame_index]])

    updates, _ = drive(KeyBudget(Flat(), 0.1), frames)
    gaps = np.diff(np.flatnonzero(updates[:, 0]))
    assert gaps.max() <= 20 and np.abs(gaps - 10).mean() <= 4.0, gaps  # without it: gaps of 21-25
    assert abs(updates.mean() - 0.1) <= 0.01


@pytest.mark.data
@pytest.mark.parametrize("name", ["box.mp4", "cup.mp4"])
def test_propagation_quality_spend_holds_on_real_video(data_root, name):
    """The shipped predictor's renewal score under the price rule (``rule="auto"``) on hand-held
    video (downscaled to 160x120, the first 200 frames): the spend holds at every target."""
    import cv2

    from schedulers import Tracker

    capture = cv2.VideoCapture(str(data_root / "videos" / name))
    frames = []
    while len(frames) < 200:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(cv2.resize(bgr, (160, 120), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    capture.release()
    if len(frames) < 200:
        pytest.fail(f"could not read 200 frames of {name} from {data_root}")
    for target in (0.1, 0.2, 0.33):
        budget = KeyBudget(PropagationQuality(), target)
        tracker = Tracker(budget)
        spent = np.mean([tracker.step(frame).update[0] for frame in frames])
        assert budget.controller_.rule == "price"
        assert abs(spent - target) <= 0.02, (name, target, spent)


def test_a_calibration_serves_as_a_starting_price_only_when_met_with_a_positive_finite_threshold():
    from schedulers.calibration import CalibrationResult, usable_price

    rng = np.random.default_rng(4)
    for threshold in rng.uniform(1e-4, 50.0, 20):
        assert usable_price(True, threshold) == threshold
        assert usable_price(np.bool_(True), np.float32(threshold)) == pytest.approx(threshold, rel=1e-6)
        assert usable_price(False, threshold) is None and usable_price(np.bool_(False), threshold) is None
    for bad in (0.0, -1.0, float("inf"), float("nan"), True, None, "1.5"):
        assert usable_price(True, bad) is None
    assert usable_price(1, 1.5) is None  # met must be a boolean, not a count
    found = CalibrationResult(policy=None, threshold=2.5, key_fraction=0.1, met=True)
    assert found.starting_price == 2.5
    assert CalibrationResult(policy=None, threshold=2.5, key_fraction=0.3, met=False).starting_price is None
