"""``train quality`` on unlabelled videos: targets are agreement with a model's per-frame predictions,
from each video's calibration part only."""

import os

import cv2
import numpy as np
import pytest

from adaptive_dff.data import pseudo_labels

from helpers import saved_tiny_dff


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return saved_tiny_dff(tmp_path_factory.mktemp("model"), seed=5)


def write_folder(folder, count, seed=0, changed_from=None):
    """``count`` PNG frames, 48x64: a bright square moving over noise; frames from
    ``changed_from`` on drawn from another seed (the rest stays byte for byte)."""
    os.makedirs(folder, exist_ok=True)
    for t in range(count):
        rng = np.random.default_rng([seed + (1000 if changed_from is not None and t >= changed_from else 0), t])
        frame = rng.integers(0, 80, (48, 64, 3), dtype=np.uint8)
        frame[10:30, 5 + 2 * t:25 + 2 * t] = 230
        cv2.imwrite(os.path.join(folder, f"f{t:02d}.png"), frame)
    return str(folder)


def config_for(videos, model_file, **extra):
    from training.config import load_config

    sets = ["frames=12", "max_offset=3", "key_stride=2", "kinds=ridge", f"videos={','.join(videos)}",
            f"video_model={model_file}"] + [f"{k}={v}" for k, v in extra.items()]
    return load_config("quality", "smoke", sets)


def test_video_rows_come_from_the_calibration_part_only(tmp_path, model_file, monkeypatch):
    from training.quality import build_dataset, run

    monkeypatch.setenv("ADAPTIVE_DFF_CACHE", str(tmp_path / "cache"))
    a = write_folder(tmp_path / "a", 18)
    b = write_folder(tmp_path / "b", 12, seed=7)
    metrics = run(config_for([a, b], model_file), str(tmp_path / "out"), log=lambda *_: None)
    assert metrics["held_out_rows"] > 0 and metrics["mean_predictor_mae"]["videos"] is not None
    assert metrics["models"]["ridge"]["held_out_mae"]["videos"] is not None
    with np.load(tmp_path / "out" / "dataset.npz") as stored:
        before = {k: stored[k] for k in stored.files}
    source, held, agreement = before["source"], before["held_out"], before["pixel_accuracy"]
    # Rows per video: keys 0, 2, .. of its first third, each carried up to 3 frames within that third,
    # on the 1x1 grid (1 region) and the 2x2 grid (4 regions).
    expected = 0
    for n in (18, 12):
        cut = pseudo_labels.calibration_split(n)
        expected += 5 * sum(min(k + 3, cut - 1) - k for k in range(0, cut - 1, 2))
    assert int((source == 2).sum()) == expected
    assert held[source == 2].all()  # each scored by the fit that leaves its whole video out
    assert set(before["video"][source == 2]) == {0, 1} and set(before["video"][source != 2]) == {-1}
    assert set(metrics["models"]["ridge"]["held_out_mae_per_video"]) == {"video 0", "video 1"}
    assert np.all((agreement[source == 2] >= 0) & (agreement[source == 2] <= 1))
    # Frames past the calibration part never count: change them and the rows stay the same.
    cut = pseudo_labels.calibration_split(18)
    changed = write_folder(tmp_path / "a2", 18, changed_from=cut)
    after = build_dataset(config_for([changed, b], model_file), None, log=lambda *_: None)
    # (equal to rounding: the stored rows went through the data file, OpenCV's shrinking may round differently)
    np.testing.assert_allclose(after["X"], before["X"], rtol=1e-5, atol=1e-7, equal_nan=True)
    np.testing.assert_allclose(after["pixel_accuracy"], before["pixel_accuracy"], rtol=1e-6)


def test_a_rerun_rebuilds_a_damaged_data_set_and_refuses_a_video_replaced_under_its_path(tmp_path, model_file,
                                                                                           monkeypatch):
    from training.quality import run

    monkeypatch.setenv("ADAPTIVE_DFF_CACHE", str(tmp_path / "cache"))
    a = write_folder(tmp_path / "a", 12)
    out = tmp_path / "out"
    first = run(config_for([a], model_file), str(out), log=lambda *_: None)
    stored = (out / "dataset.npz").read_bytes()
    (out / "dataset.npz").write_bytes(stored[: len(stored) // 2])  # a run killed in a copy, a full disk
    told = []
    again = run(config_for([a], model_file), str(out), log=told.append)
    assert any("dataset.npz" in line and "rebuilding" in line for line in told)
    assert again["models"]["ridge"]["held_out_mae"] == pytest.approx(first["models"]["ridge"]["held_out_mae"])
    write_folder(tmp_path / "a", 12, changed_from=0)  # other frames, same path
    with pytest.raises(ValueError, match=r"holds another data set \(signature\.videos"):
        run(config_for([a], model_file), str(out), log=lambda *_: None)


def test_a_target_equals_the_agreement_of_carried_per_frame_labels(tmp_path, model_file, monkeypatch):
    """One row against a direct computation: the key's per-frame labels carried along DIS flow,
    compared with the per-frame labels of the frame (pixel share)."""
    from adaptive_dff.labels import carry_labels
    from adaptive_dff.model import load_model
    from schedulers import DISFlow, RegionGrid
    from training.quality import video_parts

    monkeypatch.setenv("ADAPTIVE_DFF_CACHE", str(tmp_path / "cache"))
    a = write_folder(tmp_path / "a", 12)
    config = config_for([a], model_file)
    ((X, agreement, _, source, _, carried_to),), decoded = video_parts(config, [RegionGrid(1, 1)],
                                                                      log=lambda *_: None)
    assert decoded == [(12, False)]
    model = load_model(model_file)
    frames = [cv2.cvtColor(cv2.imread(os.path.join(a, f"f{t:02d}.png")), cv2.COLOR_BGR2RGB) for t in range(12)]
    labels = [np.argmax(model.key_step(f)[0].numpy()[0], -1) for f in frames]
    carried, _ = carry_labels(labels[0], DISFlow()(frames[2], frames[0]), 4)
    assert agreement[1] == pytest.approx(np.mean(carried == labels[2])) and carried_to[1] == 2  # key 0, frame 2
    assert set(source) == {2}


def test_an_unreadable_video_is_named_before_anything_is_written(tmp_path, model_file):
    from training.quality import run

    good = write_folder(tmp_path / "good", 12)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="bad.mp4"):
        run(config_for([good, str(bad)], model_file), str(out), log=lambda *_: None)
    with pytest.raises(ValueError, match="scale"):
        run(config_for([good], model_file, video_scale=2.0), str(out), log=lambda *_: None)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        run(config_for([good], str(tmp_path / "missing.keras")), str(out), log=lambda *_: None)
    assert not out.exists()


def _rows(sizes_by_source):
    """A data set of random rows: ``[(source, video, count, held out share)]``."""
    rng = np.random.default_rng(3)
    source, video, held = [], [], []
    for src, vid, count, share in sizes_by_source:
        source += [src] * count
        video += [vid] * count
        held += list(rng.random(count) < share) if src != 2 else [True] * count
    n = len(source)
    X = rng.normal(size=(n, 4))
    return {"X": X, "pixel_accuracy": np.clip(0.8 + 0.05 * X[:, 0], 0, 1), "miou": np.full(n, 0.5),
            "source": np.array(source), "held_out": np.array(held), "video": np.array(video),
            "frame": rng.integers(1, 34, n)}


def test_video_folds_never_score_a_video_with_a_fit_that_saw_its_rows():
    from training.quality import folds

    data = _rows([(0, -1, 60, 0.2), (1, -1, 30, 0.3), (2, 0, 25, 0), (2, 1, 40, 0), (2, 2, 10, 0)])
    splits = folds(data)
    assert [name for name, _, _ in splits] == ["shipped", "camvid", "video 0", "video 1", "video 2"]
    scored_count = np.zeros(len(data["source"]), int)
    for name, train, scored in splits:
        assert not (train & scored).any()
        for v in np.unique(data["video"][scored & (data["source"] == 2)]):
            assert not (train & (data["video"] == v)).any(), f"fold {name} scores video {v} but fitted on it"
        assert not (train & data["held_out"] & (data["source"] != 2)).any()  # held-out clips never fitted
        if scored[data["source"] == 1].any():  # nor CamVid's held-out frames, as targets of earlier keys
            assert not (train & (data["source"] == 1) & (data["frame"] >= 22)).any()
        scored_count += scored
    np.testing.assert_array_equal(scored_count, data["held_out"].astype(int))  # each held-out row scored once
    shipped_train = splits[0][1]
    assert shipped_train[data["source"] == 2].all()  # the written fit uses every video


def test_held_out_video_errors_come_from_the_fit_without_that_video(monkeypatch):
    """A video whose targets differ from every other source is predicted badly under leave-one-video-out:
    its error equals that of a fit made by hand without it."""
    from schedulers.quality_signals import QualitySignals
    from schedulers.quality_predictor import QualityPredictor
    from training.config import load_config
    from training import quality

    names = QualitySignals().names
    data = _rows([(0, -1, 200, 0.2), (2, 0, 80, 0), (2, 1, 80, 0)])
    rng = np.random.default_rng(4)
    data["X"] = rng.normal(size=(len(data["source"]), len(names)))
    y = np.clip(0.6 + 0.1 * data["X"][:, 0], 0, 1)
    data["X"][data["video"] == 1, 1] += 4.0  # video 1 looks like nothing else
    y[data["video"] == 1] = 0.2
    data["pixel_accuracy"] = y
    config = load_config("quality", "smoke", ["kinds=ridge"])
    _, metrics = quality.fit_and_report(data, config, log=lambda *_: None)
    without = (data["video"] != 1) & ((data["source"] == 2) | ~data["held_out"])
    by_hand = QualityPredictor(names, QualitySignals.version, kind="ridge", seed=config["seed"]).fit(
        data["X"][without], y[without])
    ones = data["video"] == 1
    expected = float(np.abs(by_hand.predict(data["X"][ones]) - y[ones]).mean())
    assert metrics["models"]["ridge"]["held_out_mae_per_video"]["video 1"] == pytest.approx(expected)
    seen = QualityPredictor(names, QualitySignals.version, kind="ridge", seed=config["seed"]).fit(
        data["X"][without | ones], y[without | ones])
    assert float(np.abs(seen.predict(data["X"][ones]) - y[ones]).mean()) < expected / 2  # seeing it would flatter


def test_metrics_record_a_video_that_stopped_decoding_early(tmp_path, model_file, monkeypatch):
    """A truncated file is used as far as it decodes (with a warning); the predictor's record and
    ``metrics.json`` say how many frames were decoded and that decoding stopped early."""
    import json
    import warnings

    from training.quality import run

    monkeypatch.setenv("ADAPTIVE_DFF_CACHE", str(tmp_path / "cache"))
    folder = write_folder(tmp_path / "frames", 24)
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for t in range(24):
        writer.write(cv2.imread(os.path.join(folder, f"f{t:02d}.png")))
    writer.release()
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 2 // 3])
    intact = write_folder(tmp_path / "b", 12, seed=7)
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = run(config_for([str(cut), intact], model_file), str(out), log=lambda *_: None)
    cut_record, intact_record = metrics["data"]["videos"]
    assert cut_record["truncated"] and 6 <= cut_record["frames_decoded"] < 24
    assert not intact_record["truncated"] and intact_record["frames_decoded"] == 12
    written = json.loads((out / "metrics.json").read_text())["metrics"]["data"]["videos"]
    assert written == metrics["data"]["videos"]
    # A rerun that reuses the stored data set reports the same.
    told = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = run(config_for([str(cut), intact], model_file), str(out), log=told.append)
    assert any(line.startswith("reusing the data set") for line in told), told
    assert again["data"]["videos"] == metrics["data"]["videos"]
    # A data set of an earlier version, without those records, is rebuilt and says why.
    with np.load(out / "dataset.npz") as stored:
        rows = {k: stored[k] for k in stored.files if not k.startswith("video_")}
    np.savez(out / "dataset.npz", **rows)
    told = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rebuilt = run(config_for([str(cut), intact], model_file), str(out), log=told.append)
    assert any("written by an earlier version" in line and "rebuilding" in line for line in told), told
    assert rebuilt["data"]["videos"] == metrics["data"]["videos"]
