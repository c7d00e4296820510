"""The optimal key-frame schedule, the phase-fair fixed interval and headroom, against brute force."""

import itertools

import numpy as np
import pytest

from adaptive_dff.compare.ceiling import (
    PhaseLuck, clip_targets, headroom_captured, interpolate, optimal_curve, phase_fair_fixed, same_share_curve,
    same_share_fractions, score,
)
from adaptive_dff.compare.optimal import (
    PairTable, best_schedules, build_pair_table, check_schedule, check_window, fixed_schedule, knapsack,
    lagrangian_curve, miou,
)
from adaptive_dff.metrics import confusion_matrix, mean_iou


def random_table(rng, frames, window, classes=4):
    """A pair table with consistent counts: tp <= truth of the frame, tp <= predicted."""
    truth = rng.integers(0, 50, size=(frames, classes))
    truth[:, 0] += 1
    tp = np.zeros((frames, window + 1, classes), np.int64)
    predicted = np.zeros_like(tp)
    for k in range(frames):
        for d in range(window + 1):
            if k + d >= frames:
                continue
            t = k + d
            if d == 0:
                tp[k, d] = predicted[k, d] = truth[t]
                continue
            tp[k, d] = rng.integers(0, truth[t] + 1)
            wrong = truth[t].sum() - tp[k, d].sum()
            predicted[k, d] = tp[k, d] + rng.multinomial(wrong, np.ones(classes) / classes)
    return PairTable(tp=tp, predicted=predicted, truth=truth)


def all_schedules(frames, window):
    for n in range(1, frames + 1):
        for rest in itertools.combinations(range(1, frames), n - 1):
            keys = [0, *rest]
            if np.diff(keys + [frames]).max() <= window + 1:
                yield keys


def brute_values(values, frames, window):
    best = {}
    for keys in all_schedules(frames, window):
        ends = keys[1:] + [frames]
        value = sum(values[k, : e - k].sum() for k, e in zip(keys, ends))
        if len(keys) not in best or value > best[len(keys)][0]:
            best[len(keys)] = (value, keys)
    return best


@pytest.mark.parametrize("seed", range(4))
def test_dp_matches_brute_force_for_every_number_of_keys(seed):
    rng = np.random.default_rng(seed)
    frames, window = 9, 3
    table = random_table(rng, frames, window)
    values = rng.normal(size=(frames, window + 1))
    values[np.arange(frames)[:, None] + np.arange(window + 1) >= frames] = -np.inf
    curve = best_schedules(values, table)
    truth = brute_values(values, frames, window)
    assert sorted(curve.value) == sorted(truth) and min(truth) == 3  # ceil(9 / 4)
    for n, (value, _) in truth.items():
        assert curve.value[n] == pytest.approx(value)
        keys = curve.keys(n)
        assert len(keys) == n and keys[0] == 0
        ends = keys[1:] + [frames]
        assert sum(values[k, : e - k].sum() for k, e in zip(keys, ends)) == pytest.approx(value)
        tp, predicted = table.counts(keys)
        np.testing.assert_array_equal(curve.tp[n], tp)
        np.testing.assert_array_equal(curve.predicted[n], predicted)


def upper_hull(points):
    """Indices n of the upper concave hull of {(n, v)}."""
    hull = []
    for p in sorted(points.items()):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (y2 - y1) * (p[0] - x1) <= (p[1] - y1) * (x2 - x1):
                hull.pop()
            else:
                break
        hull.append(p)
    return [x for x, _ in hull]


@pytest.mark.parametrize("seed", range(3))
def test_lagrangian_reaches_the_exact_curve_at_its_hull_points(seed):
    rng = np.random.default_rng(10 + seed)
    frames, window = 40, 6
    table = random_table(rng, frames, window)
    values = rng.random(size=(frames, window + 1)) * np.linspace(1.0, 0.2, window + 1)
    values[np.arange(frames)[:, None] + np.arange(window + 1) >= frames] = -np.inf
    exact = best_schedules(values, table)
    hull = upper_hull(exact.value)
    relaxed = lagrangian_curve(values, table, targets=hull)
    for n in hull:
        assert n in relaxed.value
        assert relaxed.value[n] == pytest.approx(exact.value[n])
    for n, value in relaxed.value.items():  # whatever it found is a real schedule of that value
        assert value <= exact.value[n] + 1e-9
        np.testing.assert_array_equal(relaxed.tp[n], table.counts(relaxed.keys(n))[0])


def test_knapsack_matches_brute_force():
    rng = np.random.default_rng(3)
    curves = [{n: float(v) for n, v in zip(range(lo, lo + size), rng.normal(size=size))}
              for lo, size in ((1, 5), (2, 4), (1, 3))]
    split = knapsack(curves)
    best = {}
    for choice in itertools.product(*(sorted(c) for c in curves)):
        value = sum(c[n] for c, n in zip(curves, choice))
        if sum(choice) not in best or value > best[sum(choice)]:
            best[sum(choice)] = value
    assert sorted(split) == sorted(best)
    for total, ns in split.items():
        assert sum(ns) == total
        assert sum(c[n] for c, n in zip(curves, ns)) == pytest.approx(best[total])


def test_miou_from_counts_is_mean_iou_of_the_confusion():
    rng = np.random.default_rng(0)
    truth, guess = rng.integers(0, 5, size=(2, 30, 40))
    guess[guess == 4] = 3  # class 4 never predicted; class 2 kept both sides
    confusion = confusion_matrix(truth, guess, 6)
    assert miou(np.diag(confusion), confusion.sum(0), confusion.sum(1)) == pytest.approx(mean_iou(confusion))


def explicit_phases(tables, interval):
    """Per phase ``first = 1..interval``, ``(key fraction, mIoU)`` of the data set, each frame's
    counts looked up one by one."""
    out = []
    for first in range(1, interval + 1):
        tp = predicted = 0
        keys_total = frames = 0
        for table in tables:
            key = 0
            for t in range(table.frames):
                if t == 0 or (t >= first and (t - first) % interval == 0):
                    key = t
                    keys_total += 1
                tp = tp + table.tp[key, t - key]
                predicted = predicted + table.predicted[key, t - key]
            frames += table.frames
        out.append((keys_total / frames, miou(tp, predicted, sum(t.truth.sum(0) for t in tables))))
    return out


def explicit_phase_fair(tables, interval):
    """Mean over phases of the data set's mIoU; phase 0's figures; the lowest and highest phase's mIoU."""
    fractions, accuracies = zip(*explicit_phases(tables, interval))
    return np.mean(fractions), np.mean(accuracies), fractions[-1], accuracies[-1], min(accuracies), max(accuracies)


def test_phase_fair_fixed_against_an_explicit_loop():
    rng = np.random.default_rng(5)
    tables = [random_table(rng, 23, 7), random_table(rng, 17, 7)]
    rows = phase_fair_fixed(tables)
    assert [r["interval"] for r in rows] == list(range(1, 9))
    for row in rows:
        fraction, accuracy, fraction0, accuracy0, low, high = explicit_phase_fair(tables, row["interval"])
        assert row["key_fraction"] == pytest.approx(fraction)
        assert row["accuracy"] == pytest.approx(accuracy)
        assert row["phase0_key_fraction"] == pytest.approx(fraction0)
        assert row["phase0_accuracy"] == pytest.approx(accuracy0)
        assert min(a for _, a in row["phases"]) == pytest.approx(low) and max(a for _, a in row["phases"]) == pytest.approx(high)
        assert row["phases"][-1] == [pytest.approx(fraction0), pytest.approx(accuracy0)]
    assert rows[0]["accuracy"] == pytest.approx(1.0)
    assert fixed_schedule(10, 4) == [0, 4, 8] and fixed_schedule(10, 4, 1) == [0, 1, 5, 9]


def test_optimal_curve_is_never_below_any_fixed_schedule_and_rescored_exactly():
    rng = np.random.default_rng(8)
    tables = [random_table(rng, 14, 5), random_table(rng, 11, 5)]
    curve, budget, same = optimal_curve(tables, [0.2, 0.34])
    best = {p.keys: p.accuracy for p in curve}
    for interval in range(1, 7):
        for first in range(1, interval + 1):
            schedules = [fixed_schedule(t.frames, interval, first) for t in tables]
            keys = sum(len(s) for s in schedules)
            assert best[keys] >= score(tables, schedules) - 1e-12
    for fraction, point in budget.items():
        assert point.keys == round(fraction * 25)
        assert sum(len(s) for s in point.schedules) == point.keys
        assert point.accuracy == pytest.approx(score(tables, point.schedules))
        assert point.accuracy == pytest.approx(best[point.keys])
    for fraction, point in same.items():
        assert [len(s) for s in point.schedules] == [max(-(-t.frames // 6), round(fraction * t.frames)) for t in tables]
        assert point.accuracy == pytest.approx(score(tables, point.schedules))
        assert point.accuracy <= best[point.keys] + 1e-12


def test_same_share_points_are_real_schedules_below_the_shared_optimum():
    """The dense per-clip ceiling: every point gives each clip its share, is a real schedule's
    score, never passes the shared optimum at its number of keys; refined at the budgets only."""
    rng = np.random.default_rng(11)
    tables = [random_table(rng, 19, 5), random_table(rng, 13, 5), random_table(rng, 16, 5)]
    dense = same_share_fractions(tables)
    assert min(dense) >= 1 / 6 - 1e-12 and max(dense) == 1.0
    assert {n for t in tables for n in range(t.frames + 1) if -(-t.frames // 6) <= n} <= {
        c for f in dense for c in clip_targets(tables, f)}  # every count a clip can spend is traced
    curve, _, same = optimal_curve(tables, [0.3], same_fractions=dense)
    best = {p.keys: p.accuracy for p in curve}
    assert set(same) == set(dense) | {0.3}
    for fraction, point in same.items():
        assert [len(s) for s in point.schedules] == clip_targets(tables, fraction)
        assert point.accuracy == pytest.approx(score(tables, point.schedules))
        assert point.accuracy <= best[point.keys] + 1e-12
    unrefined = optimal_curve(tables, [], same_fractions=[0.3])[2][0.3]
    assert same[0.3].accuracy >= unrefined.accuracy - 1e-12
    traced = same_share_curve(same)
    assert [x for x, _ in traced] == sorted({p.key_fraction for p in same.values()})
    assert traced[-1] == (1.0, pytest.approx(1.0))  # every frame a key: the labels themselves


def test_with_one_clip_the_per_clip_ceiling_is_the_shared_one():
    """One clip: every share is the data set's share, so the two ceilings are one curve, point by
    point and wherever they are interpolated."""
    rng = np.random.default_rng(12)
    tables = [random_table(rng, 26, 6)]
    curve, _, same = optimal_curve(tables, [0.2], same_fractions=same_share_fractions(tables))
    shared = [(p.key_fraction, p.accuracy) for p in curve if p.keys >= -(-26 // 7)]
    per_clip = same_share_curve(same)
    assert [x for x, _ in per_clip] == pytest.approx([x for x, _ in shared])
    assert [y for _, y in per_clip] == pytest.approx([y for _, y in shared])
    for fraction in np.linspace(0.15, 1.0, 23):
        assert interpolate(per_clip, fraction) == pytest.approx(interpolate(shared, fraction))


def test_optimal_curve_matches_brute_force_on_a_tiny_clip():
    """The proxy search is a heuristic on mIoU; on a clip small enough to try every schedule it
    should find the true optimum, or come within a whisker of it."""
    rng = np.random.default_rng(2)
    table = random_table(rng, 10, 4)
    curve, _, _ = optimal_curve([table])
    truth = {}
    for keys in all_schedules(10, 4):
        truth[len(keys)] = max(truth.get(len(keys), 0.0), score([table], [keys]))
    for point in curve:
        assert point.accuracy <= truth[point.keys] + 1e-12
        assert point.accuracy >= truth[point.keys] - 0.01


def test_phase_luck_covers_every_single_phase_at_its_own_key_fraction_and_nothing_wider():
    """The band at a key fraction: the phase-fair curve there plus the lowest and highest gain (each
    phase against the curve at the key fraction it spent) of the phases of the two intervals around
    it and of any phase spending between their means; checked against an independent loop with
    ``np.interp``, and every single-phase schedule lies inside the band at its own key fraction."""
    rng = np.random.default_rng(12)
    tables = [random_table(rng, 29, 9), random_table(rng, 31, 9), random_table(rng, 19, 9)]
    luck = PhaseLuck(phase_fair_fixed(tables))
    per_interval = {l: explicit_phases(tables, l) for l in range(1, 11)}
    means = {l: np.mean([f for f, _ in p]) for l, p in per_interval.items()}
    xs, ys = np.array(sorted((means[l], np.mean([a for _, a in p])) for l, p in per_interval.items())).T
    points = [(f, a, l) for l, p in per_interval.items() for f, a in p if xs[0] <= f <= xs[-1]]
    for x in [*means.values(), *(f for f, _, _ in points), *rng.uniform(xs[0], xs[-1], 20)]:
        below = max(m for m in means.values() if m <= x + 1e-12)
        above = min(m for m in means.values() if m >= x - 1e-12)
        gains = [a - np.interp(f, xs, ys) for f, a, l in points
                 if means[l] in (below, above) or below - 1e-12 <= f <= above + 1e-12]
        fair = np.interp(x, xs, ys)
        low, high = luck.band(x)
        assert low == pytest.approx(fair + min(0.0, min(gains))) and high == pytest.approx(fair + max(0.0, max(gains)))
    for fraction, accuracy, _ in points:  # no single phase is luckier than the band at its own cost
        low, high = luck.band(fraction)
        assert low - 1e-12 <= accuracy <= high + 1e-12
    assert luck.band(1.0) == (pytest.approx(1.0), pytest.approx(1.0))  # interval 1: every frame a key
    assert luck.band(xs[0] / 2) is None  # outside the curve
    widths = [high - low for _, low, high in luck.curves()]
    assert max(widths) > 0.02 and min(widths) >= 0.0  # the phases do differ here
    # Hand-made: where every phase near it gains, the band still reaches down to the phase-fair figure.
    made = PhaseLuck([{"key_fraction": 0.5, "accuracy": 0.8, "phases": [[0.5, 0.85], [0.5, 0.9]]},
                      {"key_fraction": 1.0, "accuracy": 1.0, "phases": [[1.0, 1.0]]}])
    assert made.band(0.5) == (pytest.approx(0.8), pytest.approx(0.9))
    assert made.band(0.75) == (pytest.approx(0.9), pytest.approx(0.9 + 0.1))


def test_headroom_on_hand_made_curves():
    fixed = [(0.1, 0.6), (0.2, 0.7), (0.5, 0.9)]
    optimal = [(0.1, 0.7), (0.2, 0.8), (0.5, 0.95)]
    assert interpolate(fixed, 0.15) == pytest.approx(0.65)
    assert headroom_captured(0.70, 0.15, fixed, optimal) == pytest.approx(0.5)
    assert headroom_captured(0.65, 0.15, fixed, optimal) == pytest.approx(0.0)
    assert headroom_captured(0.60, 0.15, fixed, optimal) == pytest.approx(-0.5)
    assert headroom_captured(0.875, 0.35, fixed, optimal) == pytest.approx(1.0)  # 0.8 and 0.875 there
    assert headroom_captured(0.8, 0.05, fixed, optimal) is None  # outside the curves
    assert headroom_captured(0.8, 0.2, fixed, [(0.1, 0.6), (0.2, 0.7)]) is None  # no headroom there


def test_bad_windows_and_schedules_are_named():
    for bad in (0, -3, 2.5, "30", True, None):
        with pytest.raises(ValueError, match="window"):
            check_window(bad)
    assert check_window(30.0) == 30
    with pytest.raises(ValueError, match="starting with 0"):
        check_schedule([1, 3], 10, 5)
    with pytest.raises(ValueError, match="more than the window"):
        check_schedule([0, 8], 10, 5)


def test_pair_table_carries_exactly_as_the_oracle_arms():
    """The table's fixed-interval score is the oracle cell's, pixel for pixel (same DIS flow, same carrying)."""
    from schedulers import DISFlow, FixedInterval

    from adaptive_dff.compare.scoring import oracle_cell
    from adaptive_dff.data import SyntheticVideo

    video = SyntheticVideo(height=48, width=64, num_frames=9, seed=3)
    frames = [video.frame(t) for t in range(9)]
    labels = [video.label(t) for t in range(9)]
    labels[4] = labels[4].copy()
    labels[4][:5] = 255  # void rows, ignored
    flow = DISFlow()
    for propagation in ("warp", "copy"):
        table = build_pair_table(frames, labels, num_classes=7, ignore_index=255, flow=flow, window=4,
                                 propagation=propagation)
        cell = oracle_cell(FixedInterval(3), None, frames, labels, num_classes=7, ignore_index=255, flow=flow,
                           propagation=propagation)
        tp, predicted = table.counts(fixed_schedule(9, 3))
        np.testing.assert_array_equal(tp, np.diag(cell.confusion))
        np.testing.assert_array_equal(predicted, cell.confusion.sum(0))
        np.testing.assert_array_equal(table.truth.sum(0), cell.confusion.sum(1))


def test_cells_scored_from_the_pair_confusions_equal_cells_that_carry():
    """A whole-frame cell scored from the pair table's confusions, for keys within the window,
    gives the confusion and key count of the cell that carries every frame itself; keys older
    than the window (interval 6 on a window of 4) are carried as before."""
    from schedulers import DISFlow, FixedInterval, FrameDifference, RegionGrid

    from adaptive_dff.compare.scoring import oracle_cell
    from adaptive_dff.data import SyntheticVideo

    video = SyntheticVideo(height=48, width=64, num_frames=14, seed=5, camera_speed=3.0, object_speed=2.0)
    frames = [video.frame(t) for t in range(14)]
    labels = [video.label(t).copy() for t in range(14)]
    labels[6][:7] = 255  # void rows, ignored
    flow = DISFlow()
    options = dict(num_classes=7, ignore_index=255, flow=flow)
    for propagation in ("warp", "copy"):
        table = build_pair_table(frames, labels, window=4, propagation=propagation, confusions=True, **options)
        assert table.carried.confusion.shape == (14, 5, 7, 7) and table.carried.flow_ms.shape == (14, 5)
        np.testing.assert_array_equal(np.einsum("tdkk->tdk", table.carried.confusion), table.tp)
        k, d = np.meshgrid(np.arange(14), np.arange(5), indexing="ij")
        pairs = (d > 0) & (k + d < 14)
        assert (table.carried.flow_ms[pairs] > 0).all() == (propagation == "warp")
        assert not table.carried.flow_ms[~pairs].any() and not table.carried.carry_ms[~pairs].any()
        for make in (lambda: FixedInterval(3), lambda: FixedInterval(6),
                     lambda: FrameDifference(threshold=16.0)):  # 7 keys of 14
            carried = oracle_cell(make(), None, frames, labels, propagation=propagation, **options)
            looked_up = oracle_cell(make(), None, frames, labels, propagation=propagation,
                                    pairs=table.carried, **options)
            np.testing.assert_array_equal(looked_up.confusion, carried.confusion)
            assert (looked_up.updates, looked_up.frames) == (carried.updates, carried.frames)
            if propagation == "warp":  # charged what carrying cost in the table, not nothing
                assert looked_up.ms["flow"] > 0 and looked_up.ms["carry"] > 0
        calls = []
        counted = dict(options, flow=lambda current, key: calls.append(1) or flow(current, key))
        oracle_cell(FixedInterval(3), None, frames, labels, propagation=propagation,
                    pairs=table.carried, **counted)
        assert not calls  # every frame within the window: nothing carried again
        oracle_cell(FixedInterval(6), None, frames, labels, propagation=propagation,
                    pairs=table.carried, **counted)
        assert len(calls) == (2 if propagation == "warp" else 0)  # frames 5 and 11, five frames after their key
        with pytest.raises(ValueError, match="whole frames"):
            oracle_cell(FixedInterval(3), RegionGrid(2, 2), frames, labels, propagation=propagation,
                        pairs=table.carried, **options)
        with pytest.raises(ValueError, match="13 frames"):
            oracle_cell(FixedInterval(3), None, frames[:13], labels[:13], propagation=propagation,
                        pairs=table.carried, **options)


def test_long_clips_use_the_lagrangian_relaxation_and_stay_real_schedules():
    rng = np.random.default_rng(4)
    tables = [random_table(rng, 30, 6), random_table(rng, 26, 6)]
    exact, _, _ = optimal_curve(tables, [0.2])
    relaxed, budget, same = optimal_curve(tables, [0.2], exact_limit=10)  # both clips above the limit
    best = {p.keys: p.accuracy for p in exact}
    assert len(relaxed) >= 5
    for point in relaxed:  # every point the relaxation reports is a schedule's real score, at most the DP's best
        assert point.accuracy <= best[point.keys] + 0.01
    assert budget[0.2].accuracy == pytest.approx(score(tables, budget[0.2].schedules))
    assert abs(budget[0.2].keys - round(0.2 * 56)) <= 2  # the nearest hull point found
    assert budget[0.2].accuracy >= best[budget[0.2].keys] - 0.02
