"""``adaptive-dff compare``: label carrying, cell bookkeeping, resumable folders, shards, bad input."""

import csv
import json
import os
import pathlib

import cv2
import numpy as np
import pytest

from adaptive_dff.compare import (
    CellResult,
    Clip,
    CompareConfig,
    Dataset,
    camvid_val_dataset,
    carry_labels,
    merge,
    oracle_cell,
    run_compare,
    synthetic_dataset,
)
from adaptive_dff.compare import workspace as compare_workspace
from adaptive_dff.compare.ceiling import headroom_captured
from adaptive_dff.compare.ceiling_rows import ceiling_of
from adaptive_dff.compare.planning import Cell
from adaptive_dff.metrics import confusion_matrix, mean_iou
from adaptive_dff.data import SyntheticVideo
from schedulers import DISFlow, FixedInterval, FrameDifference, RegionGrid


def quiet(_):
    pass


def numpy_carry(key_label, flow, num_classes):
    """Independent reference: bilinear weights of the four neighbours, border replicated."""
    h, w = key_label.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    x = np.clip(xs + flow[..., 0], 0, w - 1)
    y = np.clip(ys + flow[..., 1], 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    scores = np.zeros((h, w, num_classes))
    for yy, xx, weight in ((y0, x0, (1 - fx) * (1 - fy)), (y0, x1, fx * (1 - fy)),
                           (y1, x0, (1 - fx) * fy), (y1, x1, fx * fy)):
        label = key_label[yy, xx]
        for c in range(num_classes):
            scores[..., c] += weight * (label == c)
    return scores


@pytest.mark.parametrize("num_classes", [2, 6, 9])  # 2 and 6: OpenCV's remap of two channels is coarser
def test_carry_labels_matches_a_numpy_bilinear_reference_on_random_data(num_classes):
    rng = np.random.default_rng(0)
    # Blocky random labels (so carried boundaries matter) and a smooth random flow reaching outside.
    key = cv2.resize(rng.integers(0, num_classes, (6, 10)).astype(np.uint8), (50, 30),
                     interpolation=cv2.INTER_NEAREST)
    flow = cv2.resize(rng.normal(0, 6, (4, 5, 2)).astype(np.float32), (50, 30))
    labels, confidence = carry_labels(key, flow, num_classes)
    reference = numpy_carry(key, flow, num_classes)
    np.testing.assert_allclose(confidence, reference.max(-1), atol=1e-5)
    top2 = np.sort(reference, axis=-1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 1e-3
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(labels[clear], reference.argmax(-1)[clear])
    assert (labels != key).mean() > 0.1  # the flow really moved something


def test_carry_labels_treats_void_and_non_finite_flow_safely():
    key = np.full((8, 8), 11, np.uint8)
    key[:, :4] = 2
    flow = np.zeros((8, 8, 2), np.float32)
    flow[0, 0] = np.nan
    labels, confidence = carry_labels(key, flow, 11)
    assert labels.max() < 11 and labels[0, 0] == 2
    assert np.all(confidence[:, 4:] == 0)  # void carries no class evidence


@pytest.fixture(scope="module")
def tiny_dataset():
    def clips(split, seeds, cuts):
        out = []
        for j, seed in enumerate(seeds):
            video = SyntheticVideo(height=48, width=64, num_frames=14, seed=seed, scene_cuts=cuts[j], camera_speed=2.0)
            out.append(Clip(f"{split}-{j}", [video.frame(t) for t in range(14)], [video.label(t) for t in range(14)]))
        return out

    return Dataset("tiny", clips("cal", [1, 2], [(), (7,)]), clips("test", [3, 4], [(5,), ()]), num_classes=7)


def copy_miou(clip, interval, num_classes=7):
    """What FixedInterval(interval) with copied labels must score, computed directly."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for t, truth in enumerate(clip.labels):
        confusion += confusion_matrix(truth, clip.labels[t - t % interval], num_classes)
    return mean_iou(confusion)


def test_oracle_cell_bookkeeping_against_a_direct_computation(tiny_dataset):
    clip = tiny_dataset.test[0]
    zero = lambda c, k: np.zeros(c.shape[:2] + (2,), np.float32)  # noqa: E731
    copied = oracle_cell(FixedInterval(4), None, clip.frames, clip.labels, num_classes=7, ignore_index=None,
                         flow=zero, propagation="copy")
    assert copied.updates == 4 and copied.region_frames == 14 and copied.timed_frames == 13
    assert copied.accuracy == pytest.approx(copy_miou(clip, 4))
    warped_by_zero = oracle_cell(FixedInterval(4), None, clip.frames, clip.labels, num_classes=7, ignore_index=None,
                                 flow=zero)
    np.testing.assert_array_equal(warped_by_zero.confusion, copied.confusion)
    every = oracle_cell(FixedInterval(1), RegionGrid(2, 2, 8), clip.frames, clip.labels, num_classes=7,
                        ignore_index=None, flow=DISFlow())
    assert every.accuracy == 1.0 and every.key_fraction == 1.0
    with_flow = oracle_cell(FixedInterval(4), None, clip.frames, clip.labels, num_classes=7, ignore_index=None,
                            flow=DISFlow())
    assert with_flow.accuracy != copied.accuracy and with_flow.ms["flow"] > 0
    summed = copied + with_flow
    assert summed.frames == 28 and np.array_equal(summed.confusion, copied.confusion + with_flow.confusion)
    assert CellResult.from_json(json.loads(json.dumps(summed.to_json()))).accuracy == summed.accuracy


def test_copy_equals_carrying_along_a_zero_flow_with_void_labels(tiny_dataset):
    clip = tiny_dataset.test[1]
    labels = [np.where(label == 6, 11, label).astype(np.uint8) for label in clip.labels]  # class 6 becomes void
    zero = lambda c, k: np.zeros(c.shape[:2] + (2,), np.float32)  # noqa: E731
    for grid in (None, RegionGrid(2, 2, 8)):
        results = [oracle_cell(FrameDifference(threshold=6.0), grid, clip.frames, labels, num_classes=6,
                               ignore_index=11, flow=zero, propagation=p) for p in ("copy", "warp")]
        assert results[0].updates == results[1].updates < results[0].region_frames
        np.testing.assert_array_equal(results[0].confusion, results[1].confusion)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


SMALL = dict(policies=("fixed_interval", "copy", "frame_difference"), budgets=(0.2, 0.5), sweep=(0.35,),
             regions=("1x1", "2x2"), overlap=8)


def test_compare_writes_every_output_and_a_rerun_does_no_work(tiny_dataset, tmp_path):
    out = str(tmp_path / "run")
    lines = []
    report = run_compare(CompareConfig(**SMALL), tiny_dataset, out, log=lines.append)
    # Progress lines of whole-frame fixed interval and copy are phase 0; they say so (the table is phase-fair).
    progress = [line for line in lines if "s left)" in line and "pair table" not in line]
    for line in progress:
        assert ("at phase 0" in line) == (("fixed_interval 1x1" in line) or ("copy 1x1" in line)), line
    assert sum("at phase 0" in line for line in progress) == 2 * 3 * 2  # 2 arms x 3 budgets (sweep too) x 2 clips
    # A shard without a pair table still reports phase-fair rows once merged: its lines say so too.
    for i in range(1, 5):
        lines = []
        run_compare(CompareConfig(policies=("fixed_interval",), budgets=(0.3,), sweep=(), regions=("1x1",)),
                    tiny_dataset, str(tmp_path / f"shard{i}"), shard=(i, 4), log=lines.append)
        assert all("at phase 0" in line for line in lines if "fixed_interval 1x1" in line), lines
    rows = read_csv(os.path.join(out, "results.csv"))
    # 36 policy cells and one pair table per test clip (fixed interval and copy are read phase-fair from it)
    assert len(rows) == 3 * 2 * 3 and report["cells_done"] == report["cells_planned"] == 38
    for column in ("policy", "budget", "key_fraction", "accuracy", "fps"):
        assert column in rows[0]
    for name in ("results.json", "pareto.png", "summary.md"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    fixed = {(r["regions"], float(r["budget"])): r for r in rows if r["policy"] == "fixed_interval"}
    # On 14-frame clips intervals 5 and 6 both give 3/14 key frames (the larger is kept); 2 gives 7/14.
    assert fixed[("1x1", 0.2)]["threshold"] == "6" and fixed[("1x1", 0.5)]["threshold"] == "2"
    assert float(fixed[("1x1", 0.5)]["key_fraction_phase0"]) == 0.5  # phase 0; phase-fair: (8 + 7) / 28
    assert float(fixed[("1x1", 0.5)]["key_fraction"]) == pytest.approx(15 / 28, abs=1e-5)
    copy = {float(r["budget"]): r for r in rows if r["policy"] == "copy" and r["regions"] == "1x1"}
    confusion = sum(confusion_matrix(t, c.labels[i - i % 6], 7) for c in tiny_dataset.test for i, t in enumerate(c.labels))
    assert float(copy[0.2]["accuracy_phase0"]) == pytest.approx(mean_iou(confusion))
    phases = []  # phase-fair: the first key after frame 0 at frame 1..6, then every 6
    for first in range(1, 7):
        confusion = 0
        for c in tiny_dataset.test:
            keys = [0] + list(range(first, len(c.labels), 6))
            confusion = confusion + sum(confusion_matrix(t, c.labels[max(k for k in keys if k <= i)], 7)
                                        for i, t in enumerate(c.labels))
        phases.append(mean_iou(confusion))
    assert float(copy[0.2]["accuracy"]) == pytest.approx(np.mean(phases), abs=1e-5)
    assert copy[0.2]["phase_fair"] == "True" and copy[0.2]["regions"] == "1x1"
    summary = open(os.path.join(out, "summary.md")).read()
    assert "budget 0.20" in summary and "fixed_interval" in summary
    stamp = {n: os.path.getmtime(os.path.join(out, "cells", n)) for n in os.listdir(os.path.join(out, "cells"))}
    messages = []
    run_compare(CompareConfig(**SMALL), tiny_dataset, out, log=messages.append)
    assert "38 already done" in messages[0]
    assert stamp == {n: os.path.getmtime(os.path.join(out, "cells", n)) for n in os.listdir(os.path.join(out, "cells"))}


def test_an_interrupted_compare_keeps_finished_cells_and_continues(tiny_dataset, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    config = CompareConfig(policies=("frame_difference",), budgets=(0.3,), sweep=(), regions=("1x1",))
    original = compare_workspace.Workspace.run_cell
    calls = []

    def crash_on_second(self, cell):
        calls.append(cell)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, cell)

    monkeypatch.setattr(compare_workspace.Workspace, "run_cell", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_compare(config, tiny_dataset, out, log=quiet)
    assert len(os.listdir(os.path.join(out, "cells"))) == 1
    monkeypatch.setattr(compare_workspace.Workspace, "run_cell", original)
    messages = []
    report = run_compare(config, tiny_dataset, out, log=messages.append)
    assert "1 already done" in messages[0] and report["cells_done"] == 2


def test_a_folder_of_another_configuration_is_refused_before_any_work(tiny_dataset, tmp_path):
    out = str(tmp_path / "run")
    config = CompareConfig(policies=("fixed_interval",), budgets=(0.3,), sweep=(), regions=("1x1",))
    run_compare(config, tiny_dataset, out, log=quiet)
    before = sorted(os.listdir(os.path.join(out, "cells")))
    other = CompareConfig(policies=("fixed_interval",), budgets=(0.25,), sweep=(), regions=("1x1",))
    with pytest.raises(ValueError, match="different configuration.*budgets"):
        run_compare(other, tiny_dataset, out, log=quiet)
    assert sorted(os.listdir(os.path.join(out, "cells"))) == before
    # Only the policies differ (say, the defaults changed since): the message gives the ones that continue it.
    policies = CompareConfig(policies=("fixed_interval", "copy"), budgets=(0.3,), sweep=(), regions=("1x1",))
    with pytest.raises(ValueError, match="policies fixed_interval \\(now fixed_interval copy\\); rerun with "
                                         "--policies fixed_interval to continue"):
        run_compare(policies, tiny_dataset, out, log=quiet)
    # adding an arm whose signature records more (the shipped predictor's digest, the renewal floor) too
    learned = CompareConfig(policies=("fixed_interval", "propagation_quality@budget"), budgets=(0.3,), sweep=(),
                            regions=("1x1",))
    with pytest.raises(ValueError, match="rerun with --policies fixed_interval to continue"):
        run_compare(learned, tiny_dataset, out, log=quiet)
    assert sorted(os.listdir(os.path.join(out, "cells"))) == before
    run_compare(config, tiny_dataset, out, log=quiet)  # the same configuration continues


def test_shards_merge_into_the_results_of_one_run(tiny_dataset, tmp_path):
    config = dict(policies=("fixed_interval", "frame_difference"), budgets=(0.2,), sweep=(), regions=("1x1",))
    whole = run_compare(CompareConfig(**config), tiny_dataset, str(tmp_path / "whole"), log=quiet)
    parts = [str(tmp_path / f"part{i}") for i in (1, 2)]
    for i, part in enumerate(parts, 1):
        half = run_compare(CompareConfig(**config), tiny_dataset, part, shard=(i, 2), log=quiet)
        assert half["cells_done"] == 3  # of 4 policy cells and 2 pair tables
    merged = merge(parts, str(tmp_path / "merged"), log=quiet)
    assert merged["cells_done"] == 6

    def figures(report):
        return [(r["policy"], r["key_fraction"], r["accuracy"], r["threshold"]) for r in report["rows"]]

    assert figures(merged) == figures(whole)
    shard_files = {n: os.path.join(p, "cells", n) for p in parts for n in os.listdir(os.path.join(p, "cells"))
                   if n.endswith(compare_workspace.CELL_COMPANIONS)}
    assert any(n.endswith(".signals.npz") for n in shard_files) and any(n.endswith(".carried.npz") for n in shard_files)
    for name, path in shard_files.items():  # each pair table's companions come along, byte for byte
        assert (tmp_path / "merged" / "cells" / name).read_bytes() == pathlib.Path(path).read_bytes()
    # a cost policy's budget cell stored before budgets took a starting price is left out of a merge
    config = dict(policies=("propagation_quality@budget",), budgets=(0.2,), sweep=(), regions=("1x1",))
    old = str(tmp_path / "old")
    run_compare(CompareConfig(**config), tiny_dataset, old, log=quiet)
    names = [n for n in os.listdir(os.path.join(old, "cells")) if "@budget" in n]
    assert len(names) == 2  # one per test clip
    path = os.path.join(old, "cells", names[0])
    payload = json.load(open(path))
    del payload["starting_price"]
    json.dump(payload, open(path, "w"))
    messages = []
    merged = merge([old], str(tmp_path / "merged-old"), log=messages.append)
    assert merged["cells_done"] == 1 and "1 budget cells stored before" in messages[0]  # the other clip's cell stays
    other = str(tmp_path / "other")
    run_compare(CompareConfig(**{**config, "budgets": (0.3,)}), tiny_dataset, other, shard=(1, 4), log=quiet)
    with pytest.raises(ValueError, match="only shards of one run merge"):
        merge([parts[0], other], str(tmp_path / "m2"), log=quiet)


def test_whole_frame_cells_scored_from_the_pair_tables_give_the_figures_of_carrying(tiny_dataset, tmp_path,
                                                                                    monkeypatch):
    from adaptive_dff.compare import workspace

    config = CompareConfig(policies=("fixed_interval", "copy", "frame_difference@budget"), budgets=(0.2, 0.4),
                           sweep=(), regions=("1x1",), window=6)
    from adaptive_dff.compare import scoring

    calls = []
    counted = scoring.carry_labels
    monkeypatch.setattr(scoring, "carry_labels", lambda *a: calls.append(1) or counted(*a))
    reused = run_compare(config, tiny_dataset, str(tmp_path / "reused"), log=quiet)
    kept = [n for n in os.listdir(tmp_path / "reused" / "cells") if n.endswith(workspace.CARRIED_SUFFIX)]
    assert len(kept) == 2  # one per test clip, beside its pair-table cell
    carried_by_reused = len(calls)
    monkeypatch.setattr(workspace, "STORED_CONFUSION_CLASSES", 0)  # nothing kept: every cell carries
    carried = run_compare(config, tiny_dataset, str(tmp_path / "carried"), log=quiet)
    assert not [n for n in os.listdir(tmp_path / "carried" / "cells") if n.endswith(workspace.CARRIED_SUFFIX)]
    assert carried_by_reused < len(calls) - carried_by_reused  # the test clips' frames were not carried again

    def figures(report):
        return [(r["policy"], r["budget"], r["key_fraction"], r["accuracy"], r.get("accuracy_phase0"))
                for r in report["rows"]]

    assert figures(reused) == figures(carried)


def test_parallel_jobs_give_the_same_figures(tiny_dataset, tmp_path):
    config = dict(policies=("fixed_interval", "frame_difference"), budgets=(0.2, 0.4), sweep=(), regions=("1x1",))
    one = run_compare(CompareConfig(**config), tiny_dataset, str(tmp_path / "one"), log=quiet)
    two = run_compare(CompareConfig(**config), tiny_dataset, str(tmp_path / "two"), jobs=2, log=quiet)
    assert [(r["key_fraction"], r["accuracy"]) for r in one["rows"]] == \
           [(r["key_fraction"], r["accuracy"]) for r in two["rows"]]


def test_model_mode_on_unlabelled_clips_scores_agreement_with_the_per_frame_model(tmp_path):
    from helpers import tiny_dff

    model = tiny_dff(classes=7)
    model.key_step(np.zeros((64, 64, 3), np.uint8))
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    video = SyntheticVideo(height=64, width=128, num_frames=16, seed=5)
    frames = [video.frame(t) for t in range(16)]
    dataset = Dataset("unlabelled", [Clip("cal", frames[:8])], [Clip("test", frames[8:])], num_classes=7)
    config = CompareConfig(mode="model", model=path, policies=("fixed_interval", "copy"), budgets=(0.5,),
                           sweep=(), regions=("1x1",))
    report = run_compare(config, dataset, str(tmp_path / "run"), log=quiet)
    rows = {r["policy"]: r for r in report["rows"]}
    assert rows["per_frame"]["accuracy"] == 1.0 and rows["per_frame"]["agreement"] == 1.0
    assert rows["per_frame"]["key_fraction"] == 1.0 and rows["fixed_interval"]["key_fraction"] == 0.5
    assert rows["fixed_interval"]["ms_warp"] > 0 and rows["copy"]["ms_warp"] == 0
    # the feature net ran in both (which is faster is a benchmark's to say, not a timed test's: under load
    # the per-frame mean of half the frames can exceed that of all of them)
    assert rows["per_frame"]["ms_feature"] > 0 and rows["fixed_interval"]["ms_feature"] > 0
    assert 0 < rows["copy"]["agreement"] <= 1
    assert os.path.exists(str(tmp_path / "run" / "reference" / "unlabelled" / "test.npz"))
    # A different model saved under the same path is a different comparison.
    tiny_dff(classes=7).save(path)
    with pytest.raises(ValueError, match="config.model"):
        run_compare(config, dataset, str(tmp_path / "run"), log=quiet)


@pytest.mark.parametrize("change, message", [
    (dict(policies=("nope",)), "unknown arm 'nope'"),
    (dict(policies=("optimal",), mode="model"), "optimal arm runs in oracle mode only"),
    (dict(window=0), "window must be a whole number of frames >= 1, got 0"),
    (dict(window=2.5), "got 2.5"),
    (dict(flow="exact", mode="model"), "--flow exact is oracle mode's"),
    (dict(budgets=(0.0,)), r"budget must be a key-frame fraction in \(0, 1\], got 0.0"),
    (dict(budgets=(0.2,), sweep=(1.5,)), "got 1.5"),
    (dict(regions=("2by2",)), "written RxC"),
    (dict(regions=("0x2",)), "rows must be an integer >= 1"),
    (dict(mode="fast"), "unknown mode"),
    (dict(budgets=(0.2, 0.20001)), "budgets repeat"),
    (dict(policies=("decision_network",), decision_model="missing.json"), "missing.json"),
    (dict(policies=("flow_magnitude@nope",)), "unknown budget mode in policy 'flow_magnitude@nope'"),
    (dict(policies=("nope@budget",)), "unknown arm 'nope@budget'"),
    (dict(model="missing.keras", mode="model"), "missing.keras"),
])
def test_bad_configurations_are_named(change, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        CompareConfig(**change).check()


def test_bad_data_sets_are_named(tmp_path):
    frames = [np.zeros((16, 16, 3), np.uint8)] * 3
    labels = [np.zeros((16, 16), np.uint8)] * 2 + [np.full((16, 16), 9, np.uint8)]
    with pytest.raises(ValueError, match="clip 'b', label 2: values 9..9 outside 0..6"):
        Dataset("d", [Clip("a", frames)], [Clip("b", frames, labels)], num_classes=7).check()
    with pytest.raises(ValueError, match="clip 'a', frame 1: shape"):
        Dataset("d", [Clip("a", [frames[0], np.zeros((8, 16, 3), np.uint8)])], [Clip("b", frames)], 7).check()
    with pytest.raises(ValueError, match="no test clips"):
        Dataset("d", [Clip("a", frames)], [], 7).check()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        camvid_val_dataset(str(tmp_path))


def test_cli_errors_are_clear_and_early(tmp_path, capsys):
    from adaptive_dff.cli import main

    assert main(["compare", "--dataset", "kitti", "--out", str(tmp_path / "a")]) == 2
    assert "unknown data set 'kitti'" in capsys.readouterr().err
    assert main(["compare", "--budgets", "1.2", "--out", str(tmp_path / "b")]) == 2
    assert "got 1.2" in capsys.readouterr().err
    assert main(["compare", "--video", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["compare", "--frames", "10", "--regions", "8x8", "--out", str(tmp_path / "e")]) == 2
    assert "regions 8x8: overlap 16 px is larger than a region" in capsys.readouterr().err
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert main(["compare", "--video", str(broken), "--out", str(tmp_path / "d")]) == 2
    assert "cannot be opened" in capsys.readouterr().err
    assert not any(os.path.exists(tmp_path / x) for x in "abcde")


def test_the_synthetic_scenarios_are_deterministic_and_distinct():
    a = synthetic_dataset("cuts", frames=12, height=32, width=48)
    b = synthetic_dataset("cuts", frames=12, height=32, width=48)
    assert all(np.array_equal(x, y) for x, y in zip(a.test[0].frames, b.test[0].frames))
    assert not np.array_equal(a.test[0].frames[0], a.calibration[0].frames[0])
    with pytest.raises(ValueError, match="unknown synthetic scenario"):
        synthetic_dataset("rain")


def test_camvid_val_splits_the_clip_in_time(data_root):
    dataset = camvid_val_dataset(str(data_root)).check()
    assert [len(c) for c in dataset.calibration + dataset.test] == [34, 67]
    assert dataset.ignore_index == 11 and dataset.num_classes == 11
    assert dataset.test[0].frames[0].shape == (360, 480, 3)


def test_the_main_command_runs_on_the_embedded_default(tmp_path, capsys):
    from adaptive_dff.cli import main

    out = tmp_path / "run"
    args = ["compare", "--frames", "12", "--budgets", "0.3", "--sweep", "--regions", "1x1", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for scenario in ("synthetic-steady", "synthetic-varying", "synthetic-cuts"):
        assert scenario in printed
    rows = read_csv(out / "results.csv")
    assert {r["dataset"] for r in rows} == {"synthetic-steady", "synthetic-varying", "synthetic-cuts"}
    assert len(rows) == 3 * 7  # the five default policies and the two optimal rows at one budget
    assert {r["policy"] for r in rows} == {"fixed_interval", "copy", "frame_difference@budget", "flow_magnitude@budget",
                                           "propagation_quality@budget", "optimal", "optimal_per_clip"}
    optimal = [r for r in rows if r["policy"] == "optimal"]
    assert all(float(r["accuracy"]) >= float(f["accuracy"]) - 1e-9 for r in optimal for f in rows
               if f["dataset"] == r["dataset"] and f["regions"] == "1x1" and f["key_fraction"] == r["key_fraction"])
    # each row is judged against the optimum of its kind: per clip for a policy run stream by stream
    assert [ceiling_of(p) for p in ("optimal", "frame_difference@shared", "propagation_quality",
                                    "propagation_quality@budget", "optimal_per_clip", "fixed_interval", "copy")
            ] == ["shared"] * 3 + ["per_clip"] * 4
    report = json.loads((out / "results.json").read_text())
    curves = report["curves"]
    for row in report["rows"]:
        assert row["ceiling"] == ("shared" if row["policy"] == "optimal" else "per_clip")
        dense = curves[row["dataset"]]
        fixed = [(x, y) for x, y, _ in dense["fixed_interval"]]
        ceiling = "optimal_per_clip" if row["ceiling"] == "per_clip" else "optimal"
        for column, name in (("headroom_captured", ceiling), ("headroom_captured_shared", "optimal")):
            expected = headroom_captured(row["accuracy"], row["key_fraction"], fixed, [tuple(p) for p in dense[name]])
            assert row[column] == (None if expected is None else pytest.approx(expected))
        # the fixed interval's single phases bracket its phase-fair mean; its own row spans exactly its interval's
        assert row["fixed_phase_low"] <= row["fixed_at_key_fraction"] + 1e-12 <= row["fixed_phase_high"] + 2e-12
        if row["policy"] == "fixed_interval":  # at its interval's mean key fraction, a point of the drawn band
            entry = next(p for p in dense["fixed_interval_phases"] if p[0] == pytest.approx(row["key_fraction"]))
            assert (row["fixed_phase_low"], row["fixed_phase_high"]) == (pytest.approx(entry[1]), pytest.approx(entry[2]))
    assert any(float(r["fixed_phase_high"]) > float(r["fixed_phase_low"]) for r in rows)
    summary = (out / "summary.md").read_text()
    fixed_rows = [r for r in rows if r["policy"] == "fixed_interval" and r["dataset"] == "synthetic-steady"]
    assert "fixed's phases" in summary and all(
        f"| {float(r['fixed_phase_low']):.3f}..{float(r['fixed_phase_high']):.3f} |" in summary for r in fixed_rows)
    assert main(args) == 0 and "already done" in capsys.readouterr().out


def test_readme_compare_example_runs(tmp_path):
    import re

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Compare scheduling policies", 1)[1]
    assert "adaptive-dff compare\n" in readme.split("## Compare scheduling policies", 1)[0]  # the main job
    block = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    video = SyntheticVideo(height=64, width=96, num_frames=20, seed=2)
    frames, labels = [video.frame(t) for t in range(20)], [video.label(t) for t in range(20)]
    namespace = {"frames_a": frames[:10], "labels_a": labels[:10], "frames_b": frames[10:], "labels_b": labels[10:]}
    exec(block.replace("runs/mine", str(tmp_path / "mine")).replace("budgets=(0.1, 0.2)", "budgets=(0.2,), sweep=()"),
         namespace)
    from adaptive_dff.compare.config import DEFAULT_POLICIES

    assert {r["policy"] for r in namespace["report"]["rows"]} == {*DEFAULT_POLICIES, "optimal", "optimal_per_clip"}


def test_decision_network_policy_runs_and_a_mismatched_one_fails_before_any_cell(tiny_dataset, tmp_path):
    from schedulers import DecisionModel

    rng = np.random.default_rng(0)
    scores = rng.uniform(0.5, 1.0, 48)
    paths = {}
    for channels in (4, 7):  # OpenCV pair features have 4 channels
        paths[channels] = str(tmp_path / f"decision{channels}.keras")
        DecisionModel(epochs=1).fit(rng.normal(size=(48, 8, 8, channels)), scores).save(paths[channels])
    config = dict(policies=("decision_network",), budgets=(0.3,), sweep=(), regions=("1x1",))
    report = run_compare(CompareConfig(decision_model=paths[4], **config), tiny_dataset, str(tmp_path / "a"), log=quiet)
    assert report["rows"][0]["policy"] == "decision_network" and report["rows"][0]["threshold_param"] == "target"
    with pytest.raises(ValueError, match=r"policy decision_network cannot run .* fitted on \(8, 8, 7\)"):
        run_compare(CompareConfig(decision_model=paths[7], **config), tiny_dataset, str(tmp_path / "b"), log=quiet)
    assert not os.path.exists(tmp_path / "b" / "cells")


def test_decision_network_runs_on_the_shipped_quality_predictor_when_no_model_is_given(tiny_dataset, tmp_path):
    from adaptive_dff.compare import resolve_defaults
    from schedulers.quality_predictor import DEFAULT_LABELS_FILE as DEFAULT_FILE  # the one reading key labels

    for policies in (("decision_network",), ("decision_network@shared",)):
        resolved = resolve_defaults(CompareConfig(policies=policies), ["synthetic"], log=quiet).check()
        assert resolved.decision_model == DEFAULT_FILE
    assert resolve_defaults(CompareConfig(), ["synthetic"], log=quiet).decision_model is None
    assert resolve_defaults(CompareConfig(mode="model"), ["camvid-val"], log=quiet).decision_model == DEFAULT_FILE
    config = CompareConfig(policies=("decision_network",), budgets=(0.3,), sweep=(), regions=("1x1",))
    report = run_compare(config, tiny_dataset, str(tmp_path / "q"), log=quiet)
    row = report["rows"][0]
    assert row["policy"] == "decision_network" and row["threshold_param"] == "target" and 0 < row["key_fraction"] <= 1


def test_a_cost_policy_under_a_budget_starts_from_its_calibrated_threshold(tmp_path):
    """``propagation_quality@budget`` and ``@shared``: the bare arm's threshold, calibrated on the
    calibration clips to the budget, is the budget's starting price (one calibration for all three)."""
    def clip(name, seed, speed):
        video = SyntheticVideo(height=48, width=64, num_frames=40, seed=seed, camera_speed=speed)
        return Clip(name, [video.frame(t) for t in range(40)], [video.label(t) for t in range(40)])

    dataset = Dataset("moving", [clip("cal", 1, 1.5)], [clip("slow", 2, 0.5), clip("fast", 3, 2.5)], num_classes=7)
    config = CompareConfig(policies=("propagation_quality@budget", "propagation_quality@shared", "propagation_quality"),
                           budgets=(0.2,), sweep=(), regions=("1x1",))
    out = str(tmp_path / "run")
    run_compare(config, dataset, out, log=quiet)
    calibrations = os.listdir(os.path.join(out, "calibration"))
    assert len(calibrations) == 1 and "propagation_quality__1x1" in calibrations[0]
    calibrated = json.load(open(os.path.join(out, "calibration", calibrations[0])))["threshold"]
    assert calibrated > 0
    thresholds = {json.load(open(os.path.join(out, "cells", n)))["cell"]["policy"]:
                  json.load(open(os.path.join(out, "cells", n)))["threshold"] for n in os.listdir(os.path.join(out, "cells"))}
    assert thresholds["propagation_quality@budget"] == thresholds["propagation_quality@shared"] == calibrated
    assert thresholds["propagation_quality"] == calibrated
    workspace = compare_workspace.Workspace(config, [dataset], None)
    policy = workspace.make_policy("propagation_quality@budget", calibrated, budget=0.2)
    assert policy.price == calibrated and policy.target == 0.2
    # a cell stored before budgets took a starting price runs again; rank-rule budget cells stand
    budget_cell = Cell("moving", "propagation_quality@budget", "1x1", 0.2, "budget", "slow")
    assert not workspace.is_done(budget_cell, {"threshold": None})
    assert workspace.is_done(budget_cell, {"threshold": None, "starting_price": None})
    assert workspace.is_done(Cell("moving", "frame_difference@budget", "1x1", 0.2, "budget", "slow"), {"threshold": None})
    # only a met calibration with a positive finite threshold starts a price
    usable = compare_workspace.starting_price_usable
    assert usable({"met": True, "threshold": 1.5})
    assert not usable({"met": False, "threshold": 1.5}) and not usable({"met": True, "threshold": 0.0})
    assert not usable({"met": True, "threshold": float("inf")}) and not usable(None)


def test_a_shared_arm_hands_its_starting_price_to_the_shared_budget(tmp_path, monkeypatch):
    import schedulers

    seen = []

    class Spy(schedulers.SharedBudget):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs.get("price"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(schedulers, "SharedBudget", Spy)
    video = SyntheticVideo(height=48, width=64, num_frames=30, seed=4, camera_speed=1.5)
    frames, labels = [video.frame(t) for t in range(30)], [video.label(t) for t in range(30)]
    dataset = Dataset("moving", [Clip("cal", frames, labels)], [Clip("test", frames, labels)], num_classes=7)
    config = CompareConfig(policies=("propagation_quality@shared",), budgets=(0.2,), sweep=(), regions=("1x1",))
    run_compare(config, dataset, str(tmp_path / "run"), log=quiet)
    (name,) = os.listdir(tmp_path / "run" / "calibration")
    calibration = json.load(open(tmp_path / "run" / "calibration" / name))
    assert seen == [calibration["threshold"] if calibration["met"] else None]


def test_budget_and_shared_arms_need_no_calibration_and_hold_their_spend(tmp_path):
    """``<policy>@budget``: a KeyBudget per clip; ``<policy>@shared``: the test clips side by side
    under one SharedBudget, in one cell per budget."""
    def clip(name, seed, speed, cuts=()):
        video = SyntheticVideo(height=48, width=64, num_frames=50, seed=seed, scene_cuts=cuts, camera_speed=speed)
        return Clip(name, [video.frame(t) for t in range(50)], [video.label(t) for t in range(50)])

    dataset = Dataset("moving", [clip("cal", 1, 1.0)],
                      [clip("slow", 2, 0.2), clip("fast", 3, 3.0, (30,)), clip("mid", 4, 1.0)], num_classes=7)
    config = CompareConfig(policies=("frame_difference@budget", "flow_magnitude@shared", "fixed_interval"),
                           budgets=(0.2,), sweep=(0.5,), regions=("1x1", "2x2"), overlap=8)
    out = str(tmp_path / "run")
    report = run_compare(config, dataset, out, log=quiet)
    # and one pair table per test clip, which scores fixed_interval phase-fair
    assert report["cells_done"] == report["cells_planned"] == 2 * 2 * (3 + 1 + 3) + 3
    rows = {(r["policy"], r["regions"], float(r["budget"])): r for r in read_csv(os.path.join(out, "results.csv"))}
    assert len(rows) == 3 * 2 * 2
    cells = [json.load(open(os.path.join(out, "cells", n))) for n in os.listdir(os.path.join(out, "cells"))
             if n.endswith(".json")]
    for payload in cells:
        cell, result = payload["cell"], CellResult.from_json(payload["result"])
        if cell["policy"] == "frame_difference@budget":  # every clip on its own within 0.02
            assert payload["threshold"] is None
            assert abs(result.key_fraction - cell["budget"]) <= 0.02 + 0.5 / result.region_frames
        if cell["policy"] == "flow_magnitude@shared":  # all test clips in one cell, the total within 0.01
            assert cell["clip"] == "all-test-clips" and result.frames == 150
            assert abs(result.key_fraction - cell["budget"]) <= 0.01 + 0.5 / result.region_frames
    row = rows[("flow_magnitude@shared", "2x2", 0.2)]
    assert row["clips"] == row["clips_planned"] == "1" and row["threshold"] == ""
    assert not [n for n in os.listdir(os.path.join(out, "calibration")) if "@" in n]
    messages = []
    run_compare(config, dataset, out, log=messages.append)
    assert "31 already done" in messages[0]


def test_findings_judge_a_row_where_the_headroom_table_does():
    """A row's sentence compares it with the phase-fair fixed interval at the key fraction it spent
    (``fixed_at_key_fraction``, as the headroom table) when the run has that curve; else with the
    fixed interval's own row, within the tolerance."""
    from adaptive_dff.compare.report import findings

    def row(policy, key_fraction, accuracy, **extra):
        return {"policy": policy, "regions": "1x1", "budget": 0.2, "kind": "budget", "key_fraction": key_fraction,
                "accuracy": accuracy, **extra}

    fixed = row("fixed_interval", 0.208, 0.911)
    dense = findings([fixed, row("propagation_quality@budget", 0.200, 0.900, fixed_at_key_fraction=0.897)])
    assert dense == ["budget 0.20, 1x1: propagation_quality@budget ties with fixed_interval (0.900 vs 0.897; "
                     "at the 0.200 of the frames it spent, on fixed_interval's phase-fair curve)"]
    rows_only = findings([fixed, row("propagation_quality@budget", 0.200, 0.900)])
    assert "trails fixed_interval (0.900 vs 0.911; at key fractions 0.200 vs 0.208)" in rows_only[0]
    # a win the fixed interval's phases alone could show says so; one beyond them does not
    phases = {"fixed_at_key_fraction": 0.880, "fixed_phase_low": 0.860, "fixed_phase_high": 0.905}
    within = findings([fixed, row("propagation_quality@budget", 0.200, 0.900, **phases)])
    assert within == ["budget 0.20, 1x1: propagation_quality@budget beats fixed_interval (0.900 vs 0.880; at the "
                      "0.200 of the frames it spent, on fixed_interval's phase-fair curve; within the fixed "
                      "interval's single phases there (0.860..0.905): where its first key falls alone moves it "
                      "that far)"]
    beyond = findings([fixed, row("propagation_quality@budget", 0.200, 0.910, **phases)])
    assert "beats" in beyond[0] and "phases" not in beyond[0]
    at_edge = findings([fixed, row("propagation_quality@budget", 0.200, 0.905, **phases)])
    assert "within the fixed interval's single phases" in at_edge[0]  # the range's ends belong to it
    tie = findings([fixed, row("propagation_quality@budget", 0.200, 0.884, **phases)])
    assert "ties with" in tie[0] and "phases" not in tie[0]  # a tie says nothing more
    # without the dense curve (model mode) a row that spent more than fixed interval's row is judged
    # where fixed interval is interpolated to its spend, not against that row (its extra keys would
    # count as its gain: 0.538 at 0.119 against 0.508 at 0.090 is no +0.030)
    fixed_rows = [dict(row("fixed_interval", 0.090, 0.508), budget=0.1), row("fixed_interval", 0.209, 0.561)]
    spent_more = dict(row("propagation_quality@budget", 0.119, 0.538), budget=0.1)
    assert findings(fixed_rows + [spent_more]) == [
        "budget 0.10, 1x1: propagation_quality@budget beats fixed_interval (0.538 vs 0.521; at the 0.119 of the "
        "frames it spent, fixed_interval interpolated there)"]
    alone = findings([fixed_rows[0], spent_more])  # one fixed row: no curve, and 0.029 apart is no equal cost
    assert alone == ["budget 0.10, 1x1: propagation_quality@budget spent 0.119 of the frames on the test clips, "
                     "outside fixed_interval's curve; no comparison at equal cost"]
    # fewer keys than fixed interval's row below its curve: compared with that row, which can only count
    # against the policy (up to 0.03 fewer)
    spent_less = dict(row("propagation_quality@budget", 0.075, 0.520), budget=0.1)
    assert findings(fixed_rows + [spent_less]) == [
        "budget 0.10, 1x1: propagation_quality@budget beats fixed_interval (0.520 vs 0.508; at key fractions "
        "0.075 vs 0.090)"]
    far_less = dict(row("propagation_quality@budget", 0.055, 0.520), budget=0.1)
    assert "no comparison at equal cost" in findings(fixed_rows + [far_less])[0]


def test_at_a_glance_names_the_best_scheduler_per_data_set_grid_and_budget():
    """The summary's first table: per data set and grid, at each budget, the scheduling policy (not a
    baseline or the optimum) with the largest gain over fixed interval at equal cost, its gain and
    its share of the headroom; a row outside fixed interval's curve is left out."""
    from adaptive_dff.compare.report import at_a_glance

    def row(dataset, policy, grid, budget, key_fraction, accuracy, **extra):
        return {"dataset": dataset, "policy": policy, "regions": grid, "budget": budget, "kind": "budget",
                "key_fraction": key_fraction, "accuracy": accuracy, **extra}

    rows = [
        row("a", "fixed_interval", "1x1", 0.1, 0.10, 0.50), row("a", "fixed_interval", "1x1", 0.2, 0.20, 0.70),
        row("a", "optimal", "1x1", 0.1, 0.10, 0.90, fixed_at_key_fraction=0.50, headroom_captured=1.0),
        row("a", "copy", "1x1", 0.1, 0.10, 0.80, fixed_at_key_fraction=0.50),
        row("a", "frame_difference@budget", "1x1", 0.1, 0.10, 0.56, fixed_at_key_fraction=0.50,
            headroom_captured=0.15, fixed_phase_low=0.48, fixed_phase_high=0.55),  # beyond them: not marked
        row("a", "propagation_quality@budget", "1x1", 0.1, 0.12, 0.58, fixed_at_key_fraction=0.54,
            headroom_captured=0.1),
        row("a", "frame_difference@budget", "1x1", 0.2, 0.20, 0.69, fixed_at_key_fraction=0.70,
            fixed_phase_low=0.68, fixed_phase_high=0.72),  # within the fixed interval's phases: marked
        row("a", "flow_magnitude@budget", "1x1", 0.2, 0.90, 0.95),  # outside fixed interval's curve
        row("b", "fixed_interval", "2x2", 0.1, 0.10, 0.40), row("b", "fixed_interval", "2x2", 0.2, 0.20, 0.60),
        row("b", "flow_magnitude@budget", "2x2", 0.1, 0.15, 0.52),  # no dense curve: along fixed's rows
        row("b", "frame_difference@budget", "2x2", 0.2, 0.20, 0.6304),  # ties to 0.001 with the next
        row("b", "propagation_quality@budget", "2x2", 0.2, 0.20, 0.6296, headroom_captured=0.5),
        row("c", "fixed_interval", "1x1", 0.1, 0.10, 0.50),  # a tie within the phases: not marked
        row("c", "frame_difference@budget", "1x1", 0.1, 0.10, 0.503, fixed_at_key_fraction=0.50,
            fixed_phase_low=0.49, fixed_phase_high=0.51),
    ]
    header, lines = at_a_glance(rows)
    assert header == ["data set", "regions", "budget 0.10", "budget 0.20"]
    # a: +0.06 (15%) beats +0.04 at 0.1; copy's +0.30 and the optimum are not schedulers
    assert lines[0] == ["a", "1x1", "frame_difference@budget +0.060 (15%)", "frame_difference@budget -0.010 ~"]
    # b: fixed interval at 0.15 interpolated between its rows: 0.40 + (0.60 - 0.40) * 0.5 = 0.50
    assert lines[1] == ["b", "2x2", "flow_magnitude@budget +0.020",
                        "frame_difference@budget, propagation_quality@budget +0.030"]
    assert lines[2] == ["c", "1x1", "frame_difference@budget +0.003", ""]


def test_the_help_of_policies_names_the_default_policies():
    """The help text is written out by hand (the argument module imports nothing of compare's):
    it must name the defaults that ``CompareConfig`` really chooses."""
    from adaptive_dff.cli_args import build_parser
    from adaptive_dff.compare.config import DEFAULT_POLICIES

    compare = next(a for a in build_parser()._subparsers._group_actions[0].choices["compare"]._actions
                   if "--policies" in a.option_strings)
    assert f"(default: {' '.join(DEFAULT_POLICIES)}, optimal in oracle mode" in " ".join(compare.help.split())


def test_the_signature_holds_the_renewal_floor_of_the_propagation_quality_arms(tiny_dataset):
    """A folder begun under another renewal rule is not continued: the signature records the floor
    whenever a ``propagation_quality`` arm runs, and only then."""
    from adaptive_dff.compare.planning import signature
    from schedulers.quality import RAMP_FLOOR

    with_arm = signature(CompareConfig(policies=("fixed_interval", "propagation_quality@budget")), [tiny_dataset])
    assert with_arm["config"]["renewal_floor"] == RAMP_FLOOR
    without = signature(CompareConfig(policies=("fixed_interval", "frame_difference@budget")), [tiny_dataset])
    assert "renewal_floor" not in without["config"]
    for policies in (("propagation_quality", "optimal"), ("optimal", "propagation_quality@shared")):
        assert signature(CompareConfig(policies=policies), [tiny_dataset])["config"]["renewal_floor"] == RAMP_FLOOR
    assert "renewal_floor" not in signature(CompareConfig(policies=("optimal",)), [tiny_dataset])["config"]


def test_the_hindsight_arm_runs_propagation_quality_with_its_rule(tiny_dataset, tmp_path):
    import schedulers

    config = CompareConfig(policies=("fixed_interval", "propagation_quality@budget",
                                     "propagation_quality_hindsight@budget"), budgets=(0.3,), sweep=(), regions=("1x1",))
    workspace = compare_workspace.Workspace(config, [tiny_dataset], None)
    assert workspace.make_policy("propagation_quality_hindsight@budget", 1.0, budget=0.3).policy.rule == "hindsight"
    assert workspace.make_policy("propagation_quality_hindsight").rule == "hindsight"
    assert workspace.make_policy("propagation_quality").rule == "renewal"
    shipped = os.path.join(os.path.dirname(schedulers.__file__), "weights", "quality_labels_default.json")
    given = CompareConfig(policies=("propagation_quality_hindsight",), quality_model=shipped).check()
    assert compare_workspace.Workspace(given, [tiny_dataset], None).make_policy(
        "propagation_quality_hindsight").rule == "hindsight"
    with pytest.raises(ValueError, match="--quality-model is for the propagation_quality arms"):
        CompareConfig(policies=("fixed_interval",), quality_model=shipped).check()
    out = str(tmp_path / "run")
    report = run_compare(config, tiny_dataset, out, log=quiet)
    rows = {r["policy"]: r for r in report["rows"] if r["budget"] == 0.3}
    assert {"propagation_quality@budget", "propagation_quality_hindsight@budget"} <= set(rows)
    assert abs(rows["propagation_quality_hindsight@budget"]["key_fraction"] - 0.3) < 0.15
    signature = json.load(open(os.path.join(out, "compare.json")))["signature"]["config"]
    assert "shipped_quality" in signature and "renewal_floor" in signature
    alone = CompareConfig(policies=("propagation_quality_hindsight@budget",), budgets=(0.3,), sweep=(),
                          regions=("1x1",))
    from adaptive_dff.compare.planning import signature as run_signature

    alone = run_signature(alone, [tiny_dataset])["config"]  # the arm alone records the predictor and floor too
    assert "shipped_quality" in alone and "renewal_floor" in alone
