"""Region similarity J (``compare --metric j``): cells, pair tables and the optimum under it,
against direct numpy computations and brute force."""

import json

import numpy as np
import pytest

from adaptive_dff.compare import CellResult, Clip, CompareConfig, Dataset, oracle_cell, run_compare
from adaptive_dff.compare.datasets import compare_datasets, dataset_kind, synthetic_dataset
from adaptive_dff.compare.ceiling import optimal_curve, phase_fair_fixed, score
from adaptive_dff.compare.objects import ObjectScore, j_table, j_tables
from adaptive_dff.compare.optimal import build_pair_table, fixed_schedule
from adaptive_dff.compare.planning import signature
from adaptive_dff.data import SyntheticVideo
from adaptive_dff.metrics import confusion_matrix
from schedulers import DISFlow, FixedInterval

from test_optimal import all_schedules, random_table

VOID = 255


def numpy_j(truths, predictions, num_classes, ignore=VOID):
    """DAVIS's J of one clip, written out: per object (class >= 1 in any true frame), per frame the
    IoU of its masks over the kept pixels (1 when both are empty), averaged over frames; summed."""
    total, objects = 0.0, 0
    for obj in range(1, num_classes):
        if not any(np.any(t == obj) for t in truths):
            continue
        ious = []
        for t, p in zip(truths, predictions):
            keep = t != ignore
            inter = np.count_nonzero((t == obj) & (p == obj) & keep)
            union = np.count_nonzero(((t == obj) | (p == obj)) & keep)
            ious.append(inter / union if union else 1.0)
        total += float(np.mean(ious))
        objects += 1
    return total, objects


def test_object_score_is_the_davis_j_of_a_direct_computation_on_random_labels():
    rng = np.random.default_rng(0)
    K = 5
    truths = [rng.integers(0, K, (12, 16)) for _ in range(6)]
    truths[2][truths[2] == 3] = 0  # object 3 absent from one frame: IoU 1 where also not predicted
    for t in truths:
        t[rng.random(t.shape) < 0.1] = VOID
        t[t == 4] = 0  # class 4 is no object of this clip: predicted only
    predictions = [np.where(rng.random(t.shape) < 0.7, np.where(t == VOID, 0, t), rng.integers(0, K, t.shape))
                   for t in truths]
    score = ObjectScore(K)
    for t, p in zip(truths, predictions):
        score.add(confusion_matrix(t, p, K, VOID))
    total, objects = score.result()
    expected_total, expected_objects = numpy_j(truths, predictions, K)
    assert objects == expected_objects == 3
    assert total == pytest.approx(expected_total, rel=1e-12)


def test_cell_results_keep_j_sums_that_add_over_clips_and_survive_json():
    a = CellResult(np.eye(3, dtype=np.int64), frames=2, object_iou=1.5, objects=2)
    b = CellResult(np.eye(3, dtype=np.int64), frames=3, object_iou=0.25, objects=1)
    both = CellResult.from_json(json.loads(json.dumps((a + b).to_json())))
    assert both.objects == 3 and both.region_similarity == pytest.approx(1.75 / 3)
    assert both.score("j") == both.region_similarity and both.score("miou") == both.accuracy
    old = {k: v for k, v in a.to_json().items() if k not in ("object_iou", "objects")}
    assert np.isnan(CellResult.from_json(old).region_similarity)  # a cell stored before J: no objects
    with pytest.raises(ValueError, match="unknown metric 'f'"):
        a.score("f")


@pytest.fixture(scope="module")
def clip():
    """Object labels (ids unique across the cut at frame 6), with void pixels."""
    video = SyntheticVideo(height=40, width=56, num_frames=12, seed=5, camera_speed=3.0, object_speed=2.0,
                           scene_cuts=[6])
    labels = []
    for t in range(12):
        label = video.objects(t)
        label[:3, :5] = VOID
        labels.append(label)
    return [video.frame(t) for t in range(12)], labels


def carried_j(frames, labels, interval, num_classes):
    """A fixed interval's J, carrying with carry_labels along DIS flow and scoring with numpy_j."""
    from adaptive_dff.labels import carry_labels

    flow, predictions = DISFlow(), []
    for t in range(len(frames)):
        key = t - t % interval
        predictions.append(labels[t] if t == key else carry_labels(labels[key], flow(frames[t], frames[key]),
                                                                    num_classes)[0])
    return numpy_j(labels, predictions, num_classes)


def test_a_schedule_scored_on_the_j_table_is_the_j_of_carrying_it(clip):
    frames, labels = clip
    K = 13  # 1 + 6 objects in each of two scenes
    table = build_pair_table(frames, labels, num_classes=K, ignore_index=VOID, window=4, flow=DISFlow(),
                             confusions=True)
    views, metric = j_tables([table])
    for interval in (1, 3, 5):
        total, objects = carried_j(frames, labels, interval, K)
        for pairs in (None, table.carried):  # carried again, and read from the table's confusions
            cell = oracle_cell(FixedInterval(interval), None, frames, labels, num_classes=K, ignore_index=VOID,
                               flow=DISFlow(), pairs=pairs)
            assert metric.objects == cell.objects == objects > 6  # the objects after the cut are new ones
            assert cell.region_similarity == pytest.approx(total / objects, rel=1e-9)
        expected = score(views, [fixed_schedule(len(frames), interval)], metric)
        assert expected == pytest.approx(total / objects, rel=1e-9)
    # any schedule: the table's sum equals J from the pair's own confusion matrices
    keys = [0, 2, 3, 7]
    per_frame = ObjectScore(K)
    for k, end in zip(keys, keys[1:] + [len(frames)]):
        for t in range(k, end):
            per_frame.add(table.carried.confusion[k, t - k])
    total, _ = per_frame.result()
    assert j_table(table).counts(keys)[0].sum() == pytest.approx(total, rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_the_optimum_under_j_is_the_best_schedule_by_brute_force(seed):
    rng = np.random.default_rng(seed)
    tables = [random_table(rng, 8, 3), random_table(rng, 7, 3)]
    views, metric = j_tables(tables)
    curve, _, _ = optimal_curve(views, metric=metric)
    best: dict = {}
    for a in all_schedules(8, 3):
        for b in all_schedules(7, 3):
            n = len(a) + len(b)
            best[n] = max(best.get(n, -np.inf), score(views, [a, b], metric))
    found = {p.keys: p.accuracy for p in curve}
    assert set(found) == set(best)
    for n, value in best.items():
        assert found[n] == pytest.approx(value, rel=1e-12)
    for row in phase_fair_fixed(views, [2], metric=metric):  # the mean over the two phases
        phases = [score(views, [fixed_schedule(8, 2, f), fixed_schedule(7, 2, f)], metric) for f in (1, 2)]
        assert row["accuracy"] == pytest.approx(np.mean(phases), rel=1e-12)


def test_compare_reports_j_with_its_optimum_and_keeps_earlier_folders_working(clip, tmp_path):
    frames, labels = clip
    data = Dataset("objects", [Clip("cal", frames, labels)], [Clip("test", frames, labels)], num_classes=13,
                   ignore_index=VOID)
    config = CompareConfig(policies=("fixed_interval", "frame_difference@budget", "optimal"), budgets=(0.25,),
                           sweep=(), regions=("1x1",), window=5, metric="j")
    report = run_compare(config, data, str(tmp_path / "j"), log=lambda _: None)
    rows = {r["policy"]: r for r in report["rows"]}
    assert all(r["accuracy_metric"].startswith("J (region similarity") for r in rows.values())
    total, objects = carried_j(frames, labels, int(rows["fixed_interval"]["threshold"]), 13)
    assert rows["fixed_interval"]["accuracy_phase0"] == pytest.approx(total / objects, rel=1e-9)
    assert rows["optimal_per_clip"]["accuracy"] >= rows["fixed_interval"]["accuracy"] - 1e-12
    assert rows["frame_difference@budget"]["headroom_captured"] is not None or \
        rows["optimal_per_clip"]["accuracy"] - rows["fixed_interval"]["accuracy"] < 1e-6
    from adaptive_dff.bench import online_bound  # its bound is in J on a J run

    assert online_bound.main([str(tmp_path / "j"), "--budgets", "0.25"]) == 0
    # the default metric leaves the signature as it was, so folders of earlier versions continue
    assert "metric" not in signature(CompareConfig(), [data])["config"]
    assert signature(config, [data])["config"]["metric"] == "j"
    with pytest.raises(ValueError, match="unknown metric 'dice'"):
        CompareConfig(metric="dice").check()


def test_the_generated_object_sets_are_the_same_clips_labelled_by_object():
    classes = synthetic_dataset("cuts", frames=12, height=48, width=64, seed=3)
    objects = synthetic_dataset("cuts", frames=12, height=48, width=64, seed=3, labels="objects")
    assert objects.name == "synthetic-objects-cuts" and objects.num_classes == 1 + 6 * 5  # up to 4 cuts
    assert objects.spec["labels"] == "objects" and "labels" not in classes.spec  # earlier folders continue
    for a, b in zip(classes.test, objects.test):
        for t in (0, 5, 11):
            np.testing.assert_array_equal(a.frames[t], b.frames[t])
        found = np.unique(np.concatenate([label.ravel() for label in b.labels]))
        assert found[0] == 0 and 7 <= found[-1] < objects.num_classes  # objects after a cut: new ids
        assert not np.array_equal(a.labels[5], b.labels[5])
    assert [d.name for d in compare_datasets("synthetic-objects", frames=12)] == [
        "synthetic-objects-steady", "synthetic-objects-varying", "synthetic-objects-cuts"]
    assert dataset_kind("synthetic-objects") == "synthetic"  # exact flow and model mode as the generated sets
    with pytest.raises(ValueError, match="unknown synthetic labels 'masks'"):
        synthetic_dataset("steady", labels="masks")
    with pytest.raises(ValueError, match="synthetic-objects"):
        compare_datasets("objects")


def test_synthetic_object_ids_are_the_instances_made_unique_across_scenes():
    video = SyntheticVideo(height=32, width=48, num_frames=10, seed=1, scene_cuts=[4, 7])
    assert video.num_object_ids == 1 + 6 * 3
    for t in range(10):
        layers, objects = video.instances(t), video.objects(t)
        np.testing.assert_array_equal(objects == 0, layers == 0)
        shift = video.scene_index(t) * 6
        np.testing.assert_array_equal(objects[layers > 0], layers[layers > 0] + shift)


def test_j_is_refused_on_data_labelled_by_class(tmp_path, capsys):
    from adaptive_dff.cli import main

    assert main(["compare", "--metric", "j", "--frames", "12", "--out", str(tmp_path / "a")]) == 2
    assert "--metric j scores objects" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("seed", range(2))
def test_the_online_bound_in_j_scores_schedules_in_j(seed):
    from adaptive_dff.bench.online_bound import bounds, unit_correlations

    rng = np.random.default_rng(seed)
    tables = [random_table(rng, 12, 4), random_table(rng, 10, 4)]
    views, metric = j_tables(tables)
    rows = {r["rule"]: r for r in bounds(tables, [0.3], metric="j")}
    _, _, same = optimal_curve(views, [0.3], metric=metric)
    assert rows["optimal_per_clip"]["accuracy"] == pytest.approx(same[0.3].accuracy, rel=1e-12)
    curve, _, _ = optimal_curve(views, metric=metric)
    best = {p.keys: p.accuracy for p in curve}
    for rule in ("renewal", "renewal, one price", "renewal, pixel loss"):  # never above the optimum of its keys
        keys = round(rows[rule]["key_fraction"] * 22)
        assert 0 < rows[rule]["accuracy"] <= best[keys] + 1e-12
    in_miou = {r["rule"]: r for r in bounds(tables, [0.3])}
    correlations = unit_correlations(tables, [0.3], metric="j")[0.3]  # pixels against J, exact, per clip
    assert len(correlations) == 2 and all(-1 <= r <= 1 for r in correlations)
    assert correlations != pytest.approx(unit_correlations(tables, [0.3])[0.3])
    assert in_miou["optimal_per_clip"]["accuracy"] != pytest.approx(rows["optimal_per_clip"]["accuracy"])
