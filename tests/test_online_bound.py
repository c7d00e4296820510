"""The online bound: the renewal rule fed the true loss, priced to a budget."""

import copy
import os
import re

import numpy as np
import pytest
from test_optimal import random_table

from adaptive_dff.bench import online_bound
from adaptive_dff.bench.online_bound import (
    bounds, carried_losses, hindsight_schedule, loss_correlation, pair_hindsight_schedule, predicted_values, price_range,
    priced, priced_together, renewal_schedule, schedule_value, unit_correlations,
)
from adaptive_dff.compare.ceiling import MeanIoU, clip_targets, score
from adaptive_dff.compare.optimal import fixed_schedule, pair_values
from schedulers import KeyBudget
from schedulers.base import Context, Policy


def linear_loss_values(frames, window, c):
    """Values whose carried loss grows linearly: ``L_d = c * d`` from every key."""
    values = -c * np.tile(np.arange(window + 1, dtype=float), (frames, 1))
    values[np.arange(frames)[:, None] + np.arange(window + 1)[None, :] >= frames] = -np.inf
    return values


def test_renewal_keys_where_the_average_cost_is_lowest_on_a_hand_made_loss():
    # L_d = c d: the renewal score d L_d - sum_{i<d} L_i = c d (d + 1) / 2
    values = linear_loss_values(20, 6, 0.1)
    assert renewal_schedule(values, 0.3) == list(range(0, 20, 2))  # d (d + 1) / 2 >= 3 at d = 2
    assert renewal_schedule(values, 0.6) == list(range(0, 20, 3))  # >= 6 at d = 3
    assert renewal_schedule(values, 1e9) == list(range(0, 20, 7))  # only the window (6) forces keys


def test_a_saturated_loss_still_reaches_the_price_by_the_floor():
    # L_d = 0.2 from d = 1 on: the renewal score d L_d - sum_{i<d} L_i stays 0.2; its floor
    # 0.25 (d + 1) 0.2 reaches 0.5 at d = 9
    values = np.full((40, 16), -0.2)
    values[:, 0] = 0.0
    values[np.arange(40)[:, None] + np.arange(16)[None, :] >= 40] = -np.inf
    assert renewal_schedule(values, 0.5) == list(range(0, 40, 9))
    assert renewal_schedule(values, 0.2) == list(range(0, 40, 1))  # the renewal score itself passes it


def test_renewal_rule_matches_its_definition_on_random_tables():
    """Replayed by hand: keys where the renewal score of the losses since the key reaches the price."""
    rng = np.random.default_rng(3)
    table = random_table(rng, 30, 6)
    values = pair_values(table, rng.uniform(0.5, 2, 4), rng.uniform(0, 0.5, 4))
    for price in (0.5, 5.0, 50.0):
        keys = renewal_schedule(values, price)
        assert keys[0] == 0 and keys == sorted(set(keys))
        for previous, key in zip(keys, keys[1:] + [30]):
            losses = np.maximum.accumulate([max(values[previous + d, 0] - values[previous, d], 0.0)
                                            for d in range(1, min(7, 30 - previous))])
            scores = [max(d * losses[d - 1] - losses[: d - 1].sum(), 0.25 * (d + 1) * losses[d - 1])
                      for d in range(1, len(losses) + 1)]  # floored at half of (d + 1) / 2 * L_d
            passed = [d for d, s in enumerate(scores, 1) if s >= price]
            expected = min(passed[0] if passed else 7, 7)  # the window of 6 forces a key at d = 7
            assert key - previous == expected or (key == 30 and 30 - previous <= expected)


def _replayed(values, price, score):
    """Keys where ``score(key, t)`` first reaches ``price`` after each key, or the window ends."""
    T, width = values.shape
    keys = [0]
    for t in range(1, T):
        if t - keys[-1] >= width or score(keys[-1], t) >= price:
            keys.append(t)
    return keys


def test_hindsight_rules_match_their_definitions_on_random_tables():
    """Replayed by hand: the hindsight score of the kept losses since the key, and, told every
    pair's loss, the most a key at one of the frames since the key would have saved by now."""
    rng = np.random.default_rng(13)
    table = random_table(rng, 36, 7)
    values = pair_values(table, rng.uniform(0.5, 2, 4), rng.uniform(0, 0.5, 4))

    def loss(s, u):  # carrying frame s to frame u instead of recomputing u
        return values[u, 0] - values[s, u - s]

    def kept(k, t):
        return np.maximum.accumulate([max(loss(k, u), 0.0) for u in range(k + 1, t + 1)])

    def one_key(k, t):  # the hindsight score, spelled out: the best single key at s, shifted curve
        curve = np.concatenate([[0.0], kept(k, t)])
        d = t - k
        saved = max(sum(curve[u] - curve[u - s] for u in range(s, d + 1)) for s in range(1, d + 1))
        return max(saved, 0.25 * (d + 1) * curve[-1])

    def every_pair(k, t):  # each frame s's own kept losses K(s, u), K(s, s) = 0
        saved = max(kept(k, t)[s - k - 1:].sum() - np.concatenate([[0.0], kept(s, t)]).sum()
                    for s in range(k + 1, t + 1))
        return max(saved, 0.25 * (t - k + 1) * kept(k, t)[-1])

    counts = set()
    for price in (0.05, 0.5, 5.0, 50.0, 150.0, 400.0, 1000.0, 2500.0):  # the losses here are ~40 to 120 a frame
        keys = hindsight_schedule(values, price)
        assert keys == _replayed(values, price, one_key)
        assert pair_hindsight_schedule(values, price) == _replayed(values, price, every_pair)
        counts.add(len(keys))
    assert len(counts) >= 4  # from a key every frame to the window's
    # a saturated loss (0.2 from d = 1 on): a key anywhere would have saved 0.2, so both key by the
    # floor 0.25 (d + 1) 0.2, which reaches 0.5 at d = 9
    saturated = np.full((40, 16), -0.2)
    saturated[:, 0] = 0.0
    saturated[np.arange(40)[:, None] + np.arange(16)[None, :] >= 40] = -np.inf
    assert hindsight_schedule(saturated, 0.5) == pair_hindsight_schedule(saturated, 0.5) == list(range(0, 40, 9))
    # a loss that peaks a frame after the key and dips (0.4, then 0.2): both keep 0.4, and the floor
    # 0.25 (d + 1) 0.4 reaches 1.0 at d = 9 (from the dipped 0.2 it would take d = 19)
    dipping = np.full((60, 31), -0.2)
    dipping[:, 0], dipping[:, 1] = 0.0, -0.4
    dipping[np.arange(60)[:, None] + np.arange(31)[None, :] >= 60] = -np.inf
    assert hindsight_schedule(dipping, 1.0) == pair_hindsight_schedule(dipping, 1.0) == list(range(0, 60, 9))
    # without the floor only the window (15) keys it
    assert hindsight_schedule(saturated, 0.5, 0.0) == pair_hindsight_schedule(saturated, 0.5, 0.0) == [0, 16, 32]
    # where every frame carries alike (L(s, u) depends on u - s alone) knowing every pair adds nothing
    linear = linear_loss_values(30, 8, 0.07)
    for price in (0.2, 1.0, 3.0):
        assert pair_hindsight_schedule(linear, price) == hindsight_schedule(linear, price)


def test_prices_meet_the_clip_targets():
    rng = np.random.default_rng(5)
    tables = [random_table(rng, 24, 6), random_table(rng, 17, 6)]
    values = [pair_values(t, np.ones(4), np.zeros(4)) for t in tables]
    targets = clip_targets(tables, 0.25)
    prices = price_range(values)
    for v, n in zip(values, targets):
        assert len(priced(lambda p, v=v: renewal_schedule(v, p), n, prices)) == n
    together = priced_together([lambda p, v=v: renewal_schedule(v, p) for v in values], sum(targets), prices)
    assert sum(len(s) for s in together) == sum(targets)
    # the highest price is above every renewal score: only the window forces keys there
    assert [renewal_schedule(v, prices[1]) for v in values] == [list(range(0, t.frames, 7)) for t in tables]


def test_among_the_prices_that_spend_the_target_the_best_schedule_is_kept():
    rng = np.random.default_rng(7)
    table = random_table(rng, 40, 6)
    values = pair_values(table, rng.uniform(0.5, 2, 4), rng.uniform(0, 0.5, 4))
    prices = price_range([values])

    def rule(price):
        return renewal_schedule(values, price)

    def worth(keys):
        return schedule_value(values, keys)

    best = priced(rule, 10, prices, worth)
    assert len(best) == 10
    assert worth(best) >= worth(priced(rule, 10, prices)) - 1e-9  # the first price bisection hits
    for price in np.geomspace(*prices, 400):  # and every price of a fine grid that spends 10 keys
        keys = rule(price)
        if len(keys) == 10:
            assert worth(best) >= worth(keys) - 1e-9
    # the value of a schedule: each frame carried from its last key
    short = values[:12]
    short = np.where(np.arange(12)[:, None] + np.arange(7)[None, :] >= 12, -np.inf, short)
    assert schedule_value(short, [0, 4, 9]) == pytest.approx(
        short[0, :4].sum() + short[4, :5].sum() + short[9, :3].sum(), rel=1e-12)
    with pytest.raises(ValueError, match="more than the window"):
        schedule_value(short, [0, 8])


def test_bounds_report_every_rule_against_the_per_clip_optimum():
    rng = np.random.default_rng(9)
    tables = [random_table(rng, 22, 5), random_table(rng, 19, 5)]
    rows = bounds(tables, [0.25])
    assert [r["rule"] for r in rows] == ["renewal", "renewal, median price", "renewal, one price",
                                         "renewal, pixel loss", "KeyBudget, true loss", "KeyBudget, pixel loss",
                                         "hindsight", "hindsight, every pair", "optimal_per_clip"]
    assert [r["ceiling"] for r in rows] == ["per_clip", "per_clip", "shared"] + ["per_clip"] * 6
    by_rule = {r["rule"]: r for r in rows}
    assert by_rule["optimal_per_clip"]["headroom_captured"] == pytest.approx(1.0)
    targets = clip_targets(tables, 0.25)
    for row in rows:
        assert abs(row["key_fraction"] * 41 - sum(targets)) <= 1  # a price may not reach every count
        assert row["accuracy"] <= by_rule["optimal_per_clip"]["accuracy"] + 0.02
    values = [pair_values(t, np.ones(4), np.zeros(4)) for t in tables]
    units = online_bound.benchmark_values(tables, MeanIoU(tables), 0.25)  # the best of the prices, in these
    pixel = [priced(lambda p, v=v: renewal_schedule(v, p), n, price_range(values),
                    lambda keys, u=u: schedule_value(u, keys)) for v, u, n in zip(values, units, targets)]
    assert by_rule["renewal, pixel loss"]["accuracy"] == pytest.approx(score(tables, pixel))
    typical = [priced(lambda p, u=u: renewal_schedule(u, p), n, price_range(units),
                      lambda keys, u=u: schedule_value(u, keys), "median") for u, n in zip(units, targets)]
    assert by_rule["renewal, median price"]["accuracy"] == pytest.approx(score(tables, typical))
    online = [online_bound.budget_schedule(u, 0.25) for u in units]
    assert by_rule["KeyBudget, true loss"]["accuracy"] == pytest.approx(score(tables, online))
    assert by_rule["KeyBudget, true loss"]["key_fraction"] == sum(len(k) for k in online) / 41
    assert by_rule["KeyBudget, pixel loss"]["accuracy"] == pytest.approx(
        score(tables, [online_bound.budget_schedule(v, 0.25) for v in values]))
    # below 1 / (window + 1) a key is due past the window: no KeyBudget rows (the window is 5)
    assert "KeyBudget, true loss" not in {r["rule"] for r in bounds(tables, [0.15])}
    assert "KeyBudget, true loss" in {r["rule"] for r in bounds(tables, [1 / 6])}
    # a predictor that predicts the pixel loss exactly gives the pixel-loss row
    exact = bounds(tables, [0.25], predicted=values)
    assert [r["rule"] for r in exact] == ["renewal", "renewal, median price", "renewal, one price",
                                          "renewal, pixel loss", "KeyBudget, true loss", "KeyBudget, pixel loss",
                                          "hindsight", "hindsight, every pair", "renewal, predicted loss",
                                          "predicted, median price", "hindsight, predicted", "every pair, predicted",
                                          "optimal_per_clip"]
    named = {r["rule"]: r for r in exact}
    predicted, pixel = named["renewal, predicted loss"], named["renewal, pixel loss"]
    assert predicted["accuracy"] == pixel["accuracy"] and predicted["key_fraction"] == pixel["key_fraction"]
    median, best = named["predicted, median price"], named["renewal, predicted loss"]
    assert median["key_fraction"] == best["key_fraction"] and median["accuracy"] <= best["accuracy"]
    pixel_hindsight = [priced(lambda p, v=v: hindsight_schedule(v, p), n, price_range(values),
                              lambda keys, u=u: schedule_value(u, keys)) for v, u, n in zip(values, units, targets)]
    assert named["hindsight, predicted"]["accuracy"] == pytest.approx(score(tables, pixel_hindsight))
    unfloored = {r["rule"]: r for r in bounds(tables, [0.25], predicted=values, hindsight_floor=0.0)}
    pixel_unfloored = [priced(lambda p, v=v: hindsight_schedule(v, p, 0.0), n, price_range(values),
                              lambda keys, u=u: schedule_value(u, keys)) for v, u, n in zip(values, units, targets)]
    assert unfloored["hindsight, predicted"]["accuracy"] == pytest.approx(score(tables, pixel_unfloored))
    assert unfloored["renewal"] == named["renewal"]  # the floor is the hindsight rules' alone
    for rows, floor in ((named, 0.5), (unfloored, 0.0)):
        pair = [priced(lambda p, v=v: pair_hindsight_schedule(v, p, floor), n, price_range(values),
                       lambda keys, u=u: schedule_value(u, keys)) for v, u, n in zip(values, units, targets)]
        assert rows["every pair, predicted"]["accuracy"] == pytest.approx(score(tables, pair))
    with pytest.raises(ValueError, match="hindsight_floor must be a share in"):
        bounds(tables, [0.25], hindsight_floor=1.5)


def _within_distance_reference(u, v):
    """Pearson r of the carried losses of two pair-value arrays of one clip, each less its mean at
    its distance: written pair by pair, apart from :func:`loss_correlation`."""
    by_d = {}
    for k in range(u.shape[0]):
        for d in range(1, min(u.shape[1], u.shape[0] - k)):
            by_d.setdefault(d, []).append((u[k + d, 0] - u[k, d], v[k + d, 0] - v[k, d]))
    x, y = [], []
    for pairs in by_d.values():
        mx, my = np.mean([p[0] for p in pairs]), np.mean([p[1] for p in pairs])
        x += [p[0] - mx for p in pairs]
        y += [p[1] - my for p in pairs]
    return np.corrcoef(x, y)[0, 1]


@pytest.mark.parametrize("seed", range(3))
def test_pixel_and_benchmark_losses_are_correlated_beyond_their_growth_with_distance(seed):
    rng = np.random.default_rng(seed)
    tables = [random_table(rng, 17, 6), random_table(rng, 13, 6)]
    classes = tables[0].tp.shape[2]
    pixels = [pair_values(t, np.ones(classes), np.zeros(classes)) for t in tables]
    got = unit_correlations(tables, [0.2, 0.5])
    for budget, interval in ((0.2, 5), (0.5, 2)):
        # reference: the weights at the phase-0 fixed interval, losses gathered pair by pair
        counts = [t.counts(fixed_schedule(t.frames, interval)) for t in tables]
        a, b = MeanIoU(tables).weights(sum(c[0] for c in counts), sum(c[1] for c in counts))
        units = [pair_values(t, a, b) for t in tables]
        for clip, (p, u) in enumerate(zip(pixels, units)):
            assert got[budget][clip] == pytest.approx(_within_distance_reference(p, u), abs=1e-12)
            assert -1 <= got[budget][clip] <= 1
    assert loss_correlation(pixels, pixels) == pytest.approx(1.0)
    assert loss_correlation(pixels, [-2 * p for p in pixels]) == pytest.approx(-1.0)
    flat = [np.zeros_like(p) for p in pixels]
    assert np.isnan(loss_correlation(pixels, flat))  # no loss to follow
    with pytest.raises(ValueError, match="same clips"):
        loss_correlation(pixels, pixels[:1])
    with pytest.raises(ValueError, match="same clips"):
        loss_correlation([], [])
    with pytest.raises(ValueError, match="at least one pair table"):
        unit_correlations([], [0.2])


def test_a_shared_growth_with_distance_alone_does_not_correlate_the_losses():
    rng = np.random.default_rng(3)
    frames, window = 60, 8
    d = np.arange(window + 1, dtype=float)
    trend = np.tile(-0.05 * d, (frames, 1))  # both lose 0.05 more per frame of distance ...
    first = trend + rng.normal(0, 0.01, (frames, window + 1))  # ... and differ only by independent noise
    second = trend + rng.normal(0, 0.01, (frames, window + 1))
    first[:, 0] = second[:, 0] = 0.0
    pooled = np.corrcoef(np.concatenate([carried_losses(first, k) for k in range(frames)]),
                         np.concatenate([carried_losses(second, k) for k in range(frames)]))[0, 1]
    assert pooled > 0.8  # what a plain correlation would report
    assert abs(loss_correlation([first], [second])) < 0.15
    # noise shared beyond the trend is seen
    shared = rng.normal(0, 0.01, (frames, window + 1))
    assert loss_correlation([first + 5 * shared], [second + 5 * shared]) > 0.8
    nan = first.copy()
    nan[3, 2] = np.nan  # a pair without a value is left out, not propagated
    assert np.isfinite(loss_correlation([nan], [second]))


def test_the_median_price_takes_the_middle_schedule_of_those_that_spend_the_target():
    rng = np.random.default_rng(11)
    values = pair_values(random_table(rng, 40, 6), rng.uniform(0.5, 2, 4), rng.uniform(0, 0.5, 4))
    prices = price_range([values])

    def worth(keys):
        return schedule_value(values, keys)

    def rule(price):
        return renewal_schedule(values, price)

    best, median = priced(rule, 10, prices, worth), priced(rule, 10, prices, worth, pick="median")
    assert len(median) == 10 and worth(median) <= worth(best)
    spending = {tuple(rule(p)) for p in np.geomspace(*prices, 400) if len(rule(p)) == 10}
    assert min(map(worth, spending)) - 1e-9 <= worth(median)  # one of the schedules that spend 10 keys
    with pytest.raises(ValueError, match="pick must be one of"):
        priced(rule, 10, prices, worth, pick="mean")


def test_the_command_reads_a_compare_run_and_names_a_folder_without_pair_tables(tmp_path, capsys, caplog):
    import logging

    from adaptive_dff.cli import main

    with pytest.raises(SystemExit):
        online_bound.main([str(tmp_path / "missing")])
    assert "missing' does not exist" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    with pytest.raises(SystemExit):  # a folder, but no compare run: named, no traceback
        online_bound.main([str(tmp_path / "notes")])
    assert "is not a compare results folder (no compare.json)" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["compare", "--frames", "12", "--budgets", "0.3", "--regions", "1x1",
                 "--policies", "frame_difference", "--out", str(run)]) == 0
    with pytest.raises(SystemExit):
        online_bound.main([str(run)])
    assert "holds no data set whose test clips all have pair tables" in capsys.readouterr().err
    run = tmp_path / "with-optimal"
    assert main(["compare", "--frames", "12", "--budgets", "0.3", "--regions", "1x1",
                 "--policies", "fixed_interval", "optimal", "--out", str(run)]) == 0
    with caplog.at_level(logging.INFO, logger="adaptive_dff.bench.online_bound"):
        assert online_bound.main([str(run), "--budgets", "0.3"]) == 0
    text = caplog.text
    assert "a bound on the rule, not a policy" in text
    assert re.search(r"median and lowest over the clips\): -?[01]\.\d\d and -?[01]\.\d\d at 0\.3", text)
    assert "synthetic-cuts" in text and "renewal, one price" in text and "optimal_per_clip" in text
    assert re.search(r"0\.30  renewal, predicted loss", text)  # compare kept each pair's signals beside the pair tables
    assert re.search(r"0\.30  hindsight, every pair", text) and re.search(r"0\.30  every pair, predicted", text)
    for floor in ("-0.5", "nan", "1.5"):
        with pytest.raises(SystemExit):
            online_bound.main([str(run), "--hindsight-floor", floor])
        assert f"--hindsight-floor must be a share in [0, 1], got {float(floor)}" in capsys.readouterr().err
    floors = []

    def bounds_seen(*args, **kwargs):
        floors.append(args[4] if len(args) > 4 else kwargs["hindsight_floor"])
        return bounds(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(online_bound, "bounds", bounds_seen)
        assert online_bound.main([str(run), "--budgets", "0.3", "--hindsight-floor", "0"]) == 0
        assert online_bound.main([str(run), "--budgets", "0.3"]) == 0
    assert floors[0] == 0.0 and floors[-1] == 0.5
    with pytest.raises(SystemExit):
        online_bound.main([str(run), "--quality-model", str(tmp_path / "nowhere.json")])
    assert "--quality-model" in capsys.readouterr().err
    # A predictor of other signals (another downsample) is named, file and run, before any row is printed.
    import schedulers
    from schedulers import QualityPredictor

    other = QualityPredictor.load(os.path.join(os.path.dirname(schedulers.__file__), "weights",
                                               "quality_labels_default.json"))
    other.signals_downsample = 2
    other.save(tmp_path / "d2.json")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="adaptive_dff.bench.online_bound"), pytest.raises(SystemExit):
        online_bound.main([str(run), "--quality-model", str(tmp_path / "d2.json")])
    err = capsys.readouterr().err
    assert "d2.json' cannot be judged on the signals" in err and "run compare with --quality-model" in err
    assert not caplog.text  # nothing printed before the error
    for name in os.listdir(run / "cells"):  # a run made before pair signals were kept
        if name.endswith(".signals.npz"):
            os.remove(run / "cells" / name)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="adaptive_dff.bench.online_bound"):
        assert online_bound.main([str(run), "--budgets", "0.3"]) == 0
    assert "keep no signals" in caplog.text
    assert not re.search(r"0\.30  renewal, predicted loss", caplog.text)  # no such row, the others stay
    assert re.search(r"0\.30  renewal, pixel loss", caplog.text)


def test_predicted_losses_from_the_pair_signals_are_those_the_policy_predicts_online():
    """The losses the stored signals give (``predicted_values``) are the ``1 - quality`` that
    ``PropagationQuality`` predicts frame after frame in a Tracker from keys 0 and 3, and a pair with
    non-finite signals loses 1."""
    from schedulers import DISFlow, PropagationQuality, QualitySignals, Tracker
    from schedulers.quality_predictor import load_default_quality

    from adaptive_dff.compare.optimal import build_pair_table
    from adaptive_dff.data import SyntheticVideo

    video = SyntheticVideo(height=64, width=96, num_frames=10, seed=4, camera_speed=2.0, object_speed=3.0)
    frames = [video.frame(t) for t in range(10)]
    labels = [video.label(t) for t in range(10)]
    table = build_pair_table(frames, labels, num_classes=7, ignore_index=None, flow=DISFlow(), window=4,
                             signals=QualitySignals())
    assert table.signals.values.shape == (10, 5, len(QualitySignals().names))
    k, d = np.meshgrid(np.arange(10), np.arange(5), indexing="ij")
    pairs = (d > 0) & (k + d < 10)
    assert np.isfinite(table.signals.values[pairs]).all() and np.isnan(table.signals.values[~pairs]).all()
    predictor = load_default_quality()
    values = predicted_values(table.signals, predictor)
    for key in (0, 3):
        tracker = Tracker(PropagationQuality(threshold=1e9))  # never keys: every frame carried from the key
        online = [tracker.step(frame).extras.get("quality") for frame in frames[key:key + 5]][1:]
        np.testing.assert_allclose(carried_losses(values, key), 1.0 - np.concatenate(online), rtol=0, atol=1e-9)  # sums split by alignment
    damaged = copy.deepcopy(table.signals)
    damaged.values[2, 1, 1] = np.nan  # a non-finite warp error
    assert carried_losses(predicted_values(damaged, predictor), 2)[0] == 1.0
    other = copy.deepcopy(table.signals)
    other.downsample = 2
    with pytest.raises(ValueError, match="refit it on them"):
        predicted_values(other, predictor)


def test_pair_signals_keep_their_grid_limit_and_those_written_before_it_have_none(tmp_path):
    from adaptive_dff.compare.optimal import PairSignals, read_pair_signals, write_pair_signals
    from schedulers.files import write_npz_atomic
    from schedulers.quality_predictor import load_default_quality

    predictor = load_default_quality(key_labels=True)
    names = predictor.signal_names
    values = np.full((3, 4, len(names)), np.nan)
    values[:, 1:] = np.random.default_rng(2).uniform(0, 5, (3, 3, len(names)))
    signals = PairSignals(values, names, predictor.signals_version, predictor.signals_downsample,
                          predictor.signals_max_pixels)
    write_pair_signals(str(tmp_path / "a.signals.npz"), signals)
    read = read_pair_signals(str(tmp_path / "a.signals.npz"))
    assert read.max_pixels == predictor.signals_max_pixels
    np.testing.assert_array_equal(online_bound.pair_qualities(read, predictor),
                                  online_bound.pair_qualities(signals, predictor))
    write_npz_atomic(str(tmp_path / "old.signals.npz"), values=values, names=np.asarray(names, dtype=str),
                     version=np.int64(2), downsample=np.int64(4))  # as written before the limit
    old = read_pair_signals(str(tmp_path / "old.signals.npz"))
    assert old.max_pixels is None
    with pytest.raises(ValueError, match="no limit of the grid"):
        online_bound.pair_qualities(old, predictor)


class _TrueRenewal(Policy):
    """The renewal score of the true losses of a values table, written apart from ``PropagationQuality``:
    ``d * L_d - sum_{i<d} L_i`` of the losses kept non-decreasing from 0, floored at ``0.5 * (d + 1) / 2 * L_d``."""

    score_is_cost = True

    def __init__(self, values):
        self.values = values

    def score(self, context):
        key, t = int(context.key_indices[0]), int(context.frame_index)
        d = t - key
        if d >= self.values.shape[1]:
            return np.array([np.inf])
        kept = np.maximum.accumulate(np.maximum([self.values[key + i, 0] - self.values[key, i]
                                                 for i in range(1, d + 1)], 0.0))
        return np.array([max(d * kept[-1] - kept[:-1].sum(), 0.25 * (d + 1) * kept[-1])])


@pytest.mark.parametrize("seed, budget", [(0, 0.2), (1, 0.33), (2, 0.1)])
def test_the_budget_rows_are_key_budget_around_the_renewal_rule_fed_the_true_loss(seed, budget):
    rng = np.random.default_rng(seed)
    window = 12
    table = random_table(rng, 60, window)
    values = pair_values(table, np.ones(4), np.zeros(4))
    budgeted = KeyBudget(_TrueRenewal(values), target=budget, max_interval=window + 1)
    keys = [0]
    for t in range(1, 60):
        frame = [np.zeros((1, 1, 3), np.uint8)]
        context = Context(frame_index=t, regions=frame, key_regions=frame, key_indices=[keys[-1]])
        if budgeted.decide(context).update.any():
            keys.append(t)
    assert online_bound.budget_schedule(values, budget) == keys
    assert abs(len(keys) / 60 - budget) <= 1.5 / 60 + 0.02  # within the budget's promise, give or take a key
    table_ = online_bound.quality_table(values)
    assert np.isnan(table_[:, 0]).all() and np.isnan(table_[59, 1:]).all()
    assert table_[3, 2] == pytest.approx(1 - (values[5, 0] - values[3, 2]))


def test_the_median_price_and_pixel_rows_differ_from_their_twins_where_the_clips_allow():
    rng = np.random.default_rng(4)
    tables = [random_table(rng, 40, 8), random_table(rng, 36, 8)]
    budget = 0.2
    rows = {r["rule"]: r for r in bounds(tables, [budget])}
    units = online_bound.benchmark_values(tables, MeanIoU(tables), budget)
    targets = clip_targets(tables, budget)

    def schedules(pick):
        return [priced(lambda p, u=u: renewal_schedule(u, p), n, price_range(units),
                       lambda keys, u=u: schedule_value(u, keys), pick) for u, n in zip(units, targets)]

    median, best = score(tables, schedules("median")), score(tables, schedules("best"))
    assert median < best - 1e-6  # these clips spend their share in several ways of different worth
    assert rows["renewal, median price"]["accuracy"] == pytest.approx(median)
    assert rows["renewal"]["accuracy"] == pytest.approx(best)
    in_units = [online_bound.budget_schedule(u, budget) for u in units]
    in_pixels = [online_bound.budget_schedule(pair_values(t, np.ones(4), np.zeros(4)), budget) for t in tables]
    assert in_pixels != in_units  # the two losses key these clips differently
    assert rows["KeyBudget, true loss"]["accuracy"] == pytest.approx(score(tables, in_units))
    assert rows["KeyBudget, pixel loss"]["accuracy"] == pytest.approx(score(tables, in_pixels))
