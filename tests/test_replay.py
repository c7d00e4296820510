"""Replaying a compare run's propagation-quality budget arms on its stored pair signals."""

import logging
import os

import numpy as np
import pytest

from adaptive_dff.bench import replay as replay_module
from adaptive_dff.bench.online_bound import pair_qualities
from adaptive_dff.bench.replay import StoredQuality, replay_clip, replay_shared
from schedulers import KeyBudget


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from adaptive_dff.cli import main

    run = tmp_path_factory.mktemp("replay") / "run"
    assert main(["compare", "--frames", "16", "--budgets", "0.2", "0.33", "--sweep", "--regions", "1x1",
                 "--policies", "fixed_interval", "propagation_quality@budget",
                 "propagation_quality_hindsight@budget", "propagation_quality@shared",
                 "propagation_quality_hindsight@shared", "optimal", "--out", str(run)]) == 0
    return run


def _rows(run, arm, rule, predictor=None):
    from adaptive_dff.compare import ceiling_rows
    from adaptive_dff.compare.store import ResultFolder
    from schedulers.quality_predictor import load_default_quality

    folder = ResultFolder(str(run))
    signature = folder.signature()
    found = ceiling_rows.pair_tables(folder.cells(), signature)
    predictor = predictor or load_default_quality(key_labels=True)
    return {dataset: replay_module.replay(folder, signature, dataset, tables["warp"], arm, [0.2, 0.33], predictor,
                                          rule) for dataset, tables in found.items()}


@pytest.mark.parametrize("arm, rule", [("propagation_quality@budget", "renewal"),
                                       ("propagation_quality_hindsight@budget", "hindsight"),
                                       ("propagation_quality@shared", "renewal"),
                                       ("propagation_quality_hindsight@shared", "hindsight")])
def test_replay_places_the_keys_compare_placed(small_run, arm, rule):
    found = _rows(small_run, arm, rule)
    assert len(found) == 3  # the three generated sets
    for rows in found.values():
        for row in rows:
            assert row["compare"] is not None and row["at_window"] == 0
            assert row["key_fraction"] == pytest.approx(row["compare"]["key_fraction"], abs=1e-12)
            assert row["accuracy"] == pytest.approx(row["compare"]["accuracy"], abs=1e-9)
    other = _rows(small_run, arm, "greedy")  # another rule places other keys somewhere
    assert any(a["key_fraction"] != b["key_fraction"] or a["accuracy"] != b["accuracy"]
               for d in found for a, b in zip(found[d], other[d]))


def test_pair_qualities_are_the_predictors_on_each_pairs_signals():
    from adaptive_dff.compare.optimal import PairSignals
    from schedulers.quality_predictor import load_default_quality

    predictor = load_default_quality()
    rng = np.random.default_rng(4)
    T, width, names = 6, 4, predictor.signal_names
    values = np.full((T, width, len(names)), np.nan)
    for k in range(T):
        for d in range(1, min(width, T - k)):
            values[k, d] = rng.uniform(0, 1, len(names))
    values[2, 1, 0] = np.inf  # a pair whose signals are not finite: unknown, so keyed
    signals = PairSignals(values, tuple(names), predictor.signals_version, predictor.signals_downsample,
                          predictor.signals_max_pixels)
    table = pair_qualities(signals, predictor)
    for k in range(T):
        for d in range(width):
            if d == 0 or k + d >= T or (k, d) == (2, 1):
                assert np.isnan(table[k, d])
            else:
                assert table[k, d] == pytest.approx(float(predictor.predict(values[k, d][None])[0]))


def test_past_the_window_the_replay_keys_and_counts_it():
    # quality 0.99 at every distance: the price is never reached, so only the table's end keys
    table = np.full((20, 4), 0.99)
    table[:, 0] = np.nan
    keys, at_window = replay_clip(table, 0.25, 1e6, "renewal")
    assert keys == [0, 4, 8, 12, 16] and at_window == 4
    policy = StoredQuality(table)
    assert policy.clone().table is table and not KeyBudget(policy, target=0.2).policy.reads_key_labels


def test_shared_replay_runs_every_clip_to_its_own_end():
    # two clips of 20 and 10 frames whose quality never reaches the price: only each table's end keys,
    # and the short clip's end does not stop the long one's stream
    long, short = np.full((20, 4), 0.99), np.full((10, 4), 0.99)
    long[:, 0] = short[:, 0] = np.nan
    schedules, at_window = replay_shared([long, short], 0.25, 1e6, "renewal")
    assert schedules == [[0, 4, 8, 12, 16], [0, 4, 8]] and at_window == 6
    with pytest.raises(ValueError, match="below 1 / 4"):
        replay_shared([long, short], 0.2, 1e6, "renewal")
    with pytest.raises(ValueError, match="at least one"):
        replay_shared([], 0.25, 1e6, "renewal")


def test_the_command_prints_the_run_and_names_bad_input(small_run, tmp_path, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="adaptive_dff.bench.replay"):
        assert replay_module.main([str(small_run)]) == 0
    assert "synthetic-cuts:" in caplog.text and "rule renewal" in caplog.text and "per-clip optimum" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="adaptive_dff.bench.replay"):
        assert replay_module.main([str(small_run), "--arm", "propagation_quality_hindsight@shared"]) == 0
    assert "propagation_quality_hindsight@shared replayed" in caplog.text and "shared optimum" in caplog.text
    for argv, message in (([str(tmp_path / "nowhere")], "does not exist"),
                          ([str(small_run), "--arm", "frame_difference@budget"], "--arm must be one of"),
                          ([str(small_run), "--arm", "propagation_quality"], "--arm must be one of"),
                          ([str(small_run), "--rule", "bogus"], "--rule must be one of"),
                          ([str(small_run), "--quality-model", str(tmp_path / "no.json")], "--quality-model"),
                          ([str(small_run), "--budgets", "0.1"], "has no cell of propagation_quality@budget at "
                                                                  "budget 0.1"),
                          ([str(small_run), "--arm", "propagation_quality@shared", "--budgets", "0.1"],
                           "has no cell of propagation_quality@shared at budget 0.1; replay")):
        with pytest.raises(SystemExit):
            replay_module.main(argv)
        assert message in capsys.readouterr().err
    for name in os.listdir(small_run / "cells"):  # signals gone: the clip is named
        if name.endswith(".signals.npz"):
            os.rename(small_run / "cells" / name, small_run / name)
    try:
        with pytest.raises(SystemExit):
            replay_module.main([str(small_run)])
        assert "has no stored pair signals" in capsys.readouterr().err
    finally:
        for name in os.listdir(small_run):
            if name.endswith(".signals.npz"):
                os.rename(small_run / name, small_run / "cells" / name)


@pytest.mark.parametrize("width", [2, 6, 31])
def test_a_budget_fits_the_window_from_one_key_per_width_on(width):
    from adaptive_dff.bench.replay import fits_window

    assert fits_window(1 / width, width) and fits_window(0.5, width)
    assert not fits_window(1 / width - 1e-9, width)
    table = np.full((3 * width, width), 0.9)
    table[:, 0] = np.nan
    with pytest.raises(ValueError, match=f"below 1 / {width}"):
        replay_clip(table, 1 / width - 1e-9, None, "renewal")
    keys, _ = replay_clip(table, 1 / width, None, "renewal")  # accepted where it fits
    assert keys[0] == 0 and np.diff(keys).max() <= width
