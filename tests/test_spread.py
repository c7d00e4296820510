"""Several compare runs read side by side (adaptive_dff.compare.spread)."""

import csv
import os
import re

import numpy as np
import pytest

from adaptive_dff.compare import spread
from schedulers.files import write_json_atomic
from schedulers.quality_predictor import DEFAULT_FILE

RUN = ["compare", "--frames", "12", "--budgets", "0.3", "--regions", "1x1",
       "--policies", "fixed_interval", "propagation_quality@budget", "optimal"]


@pytest.fixture(scope="module")
def two_fits(tmp_path_factory):
    """Two compare runs of the same generated clips: the shipped predictor, and the shipped one
    that reads no key labels given as ``--quality-model`` (a second predictor, as a refit is)."""
    from adaptive_dff.cli import main

    root = tmp_path_factory.mktemp("spread")
    first, second = str(root / "shipped"), str(root / "other")
    assert main(RUN + ["--out", first]) == 0
    assert main(RUN + ["--quality-model", DEFAULT_FILE, "--out", second]) == 0
    return root, first, second


def _csv_rows(folder):
    with open(os.path.join(folder, "results.csv")) as f:
        return {(r["dataset"], r["policy"], r["kind"], float(r["budget"])): r for r in csv.DictReader(f)
                if r["regions"] == "1x1"}


def test_each_runs_figures_and_their_summaries_are_those_of_the_runs_results(two_fits, capsys):
    root, first, second = two_fits
    runs = [spread.read_run(first), spread.read_run(second)]
    rows, missing = spread.spread(runs)
    assert missing == []
    assert {r["policy"] for r in rows} == {"propagation_quality@budget", "optimal", "optimal_per_clip"}  # no fixed
    datasets = {r["dataset"] for r in rows}
    assert datasets == {"synthetic-steady", "synthetic-varying", "synthetic-cuts"}
    tables = [_csv_rows(first), _csv_rows(second)]
    moved = False
    for row in rows:
        gains, shares = [], []
        for table, figures in zip(tables, row["runs"]):
            written = table[(row["dataset"], row["policy"], row["kind"], row["budget"])]  # results.csv, read independently (6 digits)
            if written["fixed_at_key_fraction"] == "":  # a key fraction below the fixed interval's curve
                assert figures["gain"] is None and figures["headroom_captured"] is None
                continue
            gain = float(written["accuracy"]) - float(written["fixed_at_key_fraction"])
            assert figures["gain"] == pytest.approx(gain, abs=2e-6)
            assert figures["key_fraction"] == pytest.approx(float(written["key_fraction"]), rel=1e-5)
            share = written["headroom_captured"]
            assert (figures["headroom_captured"] is None) == (share == "")
            gains.append(figures["gain"])
            if share:
                shares.append(figures["headroom_captured"])
                assert figures["headroom_captured"] == pytest.approx(float(share), rel=1e-5, abs=1e-6)
        if not gains:
            assert row["gain"] == dict.fromkeys(spread.SUMMARIES)
            continue
        assert row["gain"]["mean"] == pytest.approx(np.mean(gains))
        assert (row["gain"]["lowest"], row["gain"]["highest"]) == (min(gains), max(gains))
        if shares:
            assert row["headroom_captured"]["mean"] == pytest.approx(np.mean(shares))
        moved |= row["policy"] == "propagation_quality@budget" and len(set(gains)) == 2
    assert moved  # the two predictors place keys differently somewhere: the runs are not one run twice
    assert list(spread.differences(runs)) == ["quality_model", "quality_model file", "shipped_quality"]

    out_csv = root / "spread.csv"
    assert spread.main([first, second, "--policies", "propagation_quality@budget", "--csv", str(out_csv)]) == 0
    text = capsys.readouterr().out
    assert f"R1 = {first}" in text and f"R2 = {second}" in text
    assert "quality_model file differs: R1 None, R2 " + DEFAULT_FILE in text
    assert "synthetic-cuts, 1x1, propagation_quality@budget" in text and "optimal" not in text
    with open(out_csv) as f:
        written = list(csv.DictReader(f))
    shown = [r for r in rows if r["policy"] == "propagation_quality@budget"]
    assert len(shown) == 3 * 5  # three data sets, the budget and compare's four sweep points
    assert len(written) == len(shown) * (2 + 3)  # two runs and three summaries each
    assert [w["run"] for w in written[:5]] == [first, second, "mean", "lowest", "highest"]
    for row in shown:
        mean = next(w for w in written if (w["dataset"], w["kind"], float(w["budget"]), w["run"])
                    == (row["dataset"], row["kind"], row["budget"], "mean"))
        assert float(mean["gain"]) == pytest.approx(row["gain"]["mean"], rel=1e-5, abs=1e-7)


def test_runs_of_other_clips_or_no_run_at_all_are_named_and_nothing_is_written(two_fits, tmp_path, capsys):
    from adaptive_dff.cli import main

    root, first, second = two_fits
    out_csv = tmp_path / "spread.csv"
    other = str(tmp_path / "seed-1")
    assert main(RUN + ["--seed", "1", "--out", other]) == 0
    cases = [
        ([first, str(tmp_path / "missing")], "missing' does not exist"),
        ([first, str(tmp_path)], "holds no results.json"),
        ([first, other], "data set 'synthetic-steady' has other frames or labels than in"),
        ([first, second, "--policies", "flow_magnitude@budget"], "no run holds the policies ['flow_magnitude@budget']"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit):
            spread.main(argv + ["--csv", str(out_csv)])
        assert message in capsys.readouterr().err
        assert not out_csv.exists()


def test_summaries_leave_out_runs_without_a_figure_and_rows_some_runs_lack(tmp_path, capsys):
    def run(folder, rows, fingerprint="f", **config):
        datasets = [{"name": "d", "fingerprint": fingerprint, "test_clips": ["a", "b"]}]
        config = {"seed": 0, "mode": "oracle", **config}
        return spread.Run(folder, {"signature": {"config": config, "datasets": datasets}, "rows": rows})

    def row(budget, accuracy, fixed, share, policy="p"):
        return {"dataset": "d", "regions": "1x1", "policy": policy, "kind": "budget", "budget": budget,
                "ceiling": "per_clip", "key_fraction": budget, "accuracy": accuracy,
                "fixed_at_key_fraction": fixed, "headroom_captured": share}

    runs = [run("A", [row(0.1, 0.7, 0.6, 0.5), row(0.2, 0.8, None, None)]),
            run("B", [row(0.1, 0.5, 0.6, None), row(0.2, 0.9, 0.85, 0.25), row(0.3, 0.9, 0.9, 0.0)]),
            run("C", [row(0.1, 0.62, 0.6, 0.1), row(0.2, 0.8, 0.7, 0.75)], seed=1)]
    rows, missing = spread.spread(runs)
    assert missing == [("d", "1x1", "p", "budget", 0.3)]
    first, second = rows
    assert first["gain"]["mean"] == pytest.approx((0.1 - 0.1 + 0.02) / 3)
    assert (first["gain"]["lowest"], first["gain"]["highest"]) == (pytest.approx(-0.1), pytest.approx(0.1))
    assert first["headroom_captured"] == {"mean": pytest.approx(0.3), "lowest": 0.1, "highest": 0.5}
    assert second["runs"][0]["gain"] is None and second["gain"]["mean"] == pytest.approx(0.075)
    assert spread.spread(runs[:1])[0][0]["gain"]["mean"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="'B': data set 'd' has other frames or labels than in 'A'"):
        spread.check_same_data([runs[0], run("B", [], fingerprint="g")])
    assert spread.differences(runs) == {"seed": [0, 0, 1]}
    with pytest.raises(ValueError, match="'B' is a run of mode 'model', 'A' of mode 'oracle'"):
        spread.check_same_data([runs[0], run("B", [], mode="model")])
    with pytest.raises(ValueError, match="'B' is a run of metric 'j', 'A' of metric 'miou'"):
        spread.check_same_data([runs[0], run("B", [], metric="j")])
    with pytest.raises(ValueError, match="hold no .* in common"):
        spread.spread([runs[0], run("B", [row(0.1, 0.7, 0.6, 0.5, policy="q")])])
    assert first["accuracy"] == {"mean": pytest.approx(0.6066666), "lowest": 0.5, "highest": 0.7}
    no_curve = [run(r.folder, [{**row(0.1, a, None, None), "ceiling": None, "budget": None}])
                for r, a in zip(runs, (0.5, 0.6, 0.7))]
    lines = spread.table_lines(spread.spread(no_curve)[0], no_curve)
    assert lines[1] == "d, 1x1, p:"  # no ceiling named
    assert lines[3].split() == ["-", "0.500", "(0.100)", "0.600", "(0.100)", "0.700", "(0.100)", "0.600", "0.500",
                                "0.700"]  # no run has a gain: accuracy (key fraction), then its summaries
    folders = []
    for r in runs:  # the command on the same runs as folders: the row only B holds is named as left out
        folders.append(str(tmp_path / r.folder))
        write_json_atomic(os.path.join(folders[-1], "results.json"), r.report)
    assert spread.main(folders) == 0
    text = capsys.readouterr().out
    assert "left out, not held by every run: d 1x1 p 0.3 budget" in text
    assert re.search(r"0\.10 +\+0\.100 \(50%\) +-0\.100 +\+0\.020 \(10%\) +\+0\.007 \(30%\)", text)
    damaged = [("not json", b'{"rows": [', "cannot be read"), ("binary", bytes(range(128, 256)), "cannot be read"),
               ("no signature", b'{"rows": [], "signature": null}', "no signature with a configuration"),
               ("bad row", b'{"rows": [{"dataset": "d"}], "signature": {"config": {}, "datasets": []}}',
                "row 0 lacks one of dataset, regions")]
    for name, content, message in damaged:
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_bytes(content)
        with pytest.raises(SystemExit):
            spread.main([folders[0], str(tmp_path / name)])
        err = capsys.readouterr().err
        assert message in err and os.path.join(str(tmp_path / name), "results.json") in err
