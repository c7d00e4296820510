"""Pseudo-labels: a model's own per-frame predictions on unlabelled video, cached once per video,
and the compare data set they make."""

import os

import cv2
import numpy as np
import pytest

from adaptive_dff.data import pseudo_labels as pl

from helpers import saved_tiny_dff, write_folder


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return saved_tiny_dff(tmp_path_factory.mktemp("model"), seed=3)


@pytest.fixture(scope="module")
def model(model_file):
    from adaptive_dff.model import load_model

    return load_model(model_file)


def test_labels_are_the_per_frame_prediction_and_the_model_runs_once(tmp_path, model_file, model):
    from adaptive_dff.compare.scoring import model_cell
    from schedulers import FixedInterval

    source, frames = write_folder(tmp_path / "clip", 6)
    cache = tmp_path / "cache"
    first = pl.pseudo_label(source, model_file, cache_dir=str(cache))
    assert not first.cached and first.seconds > 0 and len(first) == 6
    assert all(np.array_equal(a, b) for a, b in zip(first.frames, frames))
    # Independent reference: compare's own per-frame path (a runner keying every frame).
    _, reference = model_cell(model, FixedInterval(1), None, frames, [np.zeros((48, 64), np.int32)] * 6,
                              num_classes=4, ignore_index=None, labelled=True)
    for t, (label, ref) in enumerate(zip(first.labels, reference)):
        assert label.shape == (48, 64) and label.dtype == np.uint8
        assert np.array_equal(label, ref), t
    assert len(os.listdir(cache)) == 1

    def never():
        raise AssertionError("the model ran although the labels are cached")

    again = pl.pseudo_label(source, model_file, cache_dir=str(cache), model=never)
    assert again.cached and again.seconds == 0 and again.num_classes == 4
    assert all(np.array_equal(a, b) for a, b in zip(again.labels, first.labels))


def test_settings_and_content_key_the_cache(tmp_path, model_file, model):
    source, _ = write_folder(tmp_path / "clip", 7)
    cache = str(tmp_path / "cache")
    full = pl.pseudo_label(source, model_file, cache_dir=cache, model=model)
    strided = pl.pseudo_label(source, model_file, cache_dir=cache, stride=3, model=model)
    assert strided.indices == [0, 3, 6] and not strided.cached
    assert all(np.array_equal(strided.labels[i], full.labels[3 * i]) for i in range(3))
    limited = pl.pseudo_label(source, model_file, cache_dir=cache, max_frames=4, stride=2, model=model)
    assert limited.indices == [0, 2]
    assert len(os.listdir(cache)) == 3
    # Same name, other content: another key, computed afresh.
    write_folder(tmp_path / "clip", 7, seed=1)
    changed = pl.pseudo_label(source, model_file, cache_dir=cache, model=model)
    assert not changed.cached and changed.video_sha256 != full.video_sha256


def test_scale_shrinks_the_frames_the_model_labels(tmp_path, model_file, model):
    source, frames = write_folder(tmp_path / "clip", 3)
    cache = str(tmp_path / "cache")
    full = pl.pseudo_label(source, model_file, cache_dir=cache, model=model)
    assert pl.pseudo_label(source, model_file, cache_dir=cache, scale=1.0, model=model).cached  # 1: as decoded
    half = pl.pseudo_label(source, model_file, cache_dir=cache, scale=0.5, model=model)
    assert not half.cached and half.frames[0].shape == (24, 32, 3) and half.labels[0].shape == (24, 32)
    shrunk = cv2.resize(frames[1], (32, 24), interpolation=cv2.INTER_AREA)
    assert np.array_equal(half.frames[1], shrunk)
    assert np.array_equal(half.labels[1], np.argmax(model.key_step(shrunk)[0].numpy()[0], -1))
    assert full.labels[0].shape == (48, 64)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="scale"):
            pl.pseudo_label(source, model_file, cache_dir=cache, scale=bad, model=model)


def test_a_damaged_cache_file_is_recomputed(tmp_path, model_file, model):
    source, _ = write_folder(tmp_path / "clip", 4)
    cache = tmp_path / "cache"
    first = pl.pseudo_label(source, model_file, cache_dir=str(cache), model=model)
    (path,) = list(cache.iterdir())
    path.write_bytes(b"not an npz file")
    messages = []
    again = pl.pseudo_label(source, model_file, cache_dir=str(cache), log=messages.append, model=model)
    assert not again.cached and any("unreadable" in m for m in messages)
    assert all(np.array_equal(a, b) for a, b in zip(again.labels, first.labels))
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp")]


def test_bad_sources_are_named(tmp_path, model_file):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        pl.pseudo_label(str(tmp_path / "missing.mp4"), model_file, cache_dir=str(tmp_path))
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"\0" * 1000)
    with pytest.raises(ValueError, match="garbage.avi"):
        pl.pseudo_label(str(garbage), model_file, cache_dir=str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image files"):
        pl.pseudo_label(str(empty), model_file, cache_dir=str(tmp_path))
    odd, _ = write_folder(tmp_path / "odd", 5, odd=3)
    with pytest.raises(ValueError, match="frame 3"):
        pl.pseudo_label(odd, model_file, cache_dir=str(tmp_path))
    good, _ = write_folder(tmp_path / "good", 4)
    with pytest.raises(FileNotFoundError, match="nomodel.keras"):
        pl.pseudo_label(good, str(tmp_path / "nomodel.keras"), cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="stride"):
        pl.pseudo_label(good, model_file, stride=0, cache_dir=str(tmp_path))


def test_an_unreadable_video_in_a_list_fails_before_any_labelling(tmp_path, model_file, monkeypatch):
    good, _ = write_folder(tmp_path / "good", 4)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk")
    monkeypatch.setattr(pl, "load_dff_model", lambda path: pytest.fail("the model loaded before the check"))
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="bad.mp4"):
        pl.pseudo_label_videos([good, str(bad)], model_file, cache_dir=str(cache))
    assert not cache.exists()


def test_calibration_split_and_test_clips():
    assert pl.calibration_split(101) == 34  # as CamVid val: frames 0..33 calibrate
    assert pl.calibration_split(795) == 265
    assert pl.calibration_split(4) == 2
    assert pl.clip_spans(530) == [(0, 100), (100, 200), (200, 300), (300, 400), (400, 530)]
    assert pl.clip_spans(303) == [(0, 100), (100, 200), (200, 303)]
    assert pl.clip_spans(160) == [(0, 100), (100, 160)]
    assert pl.clip_spans(40) == [(0, 40)]
    assert pl.clip_spans(28, 3) == [(i, i + 3) for i in range(0, 24, 3)] + [(24, 28)]  # no 1-frame clip
    for n in (1, 7, 99, 100, 101, 149, 150, 151, 999):
        spans = pl.clip_spans(n)
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert all(last - first >= min(n, 50) for first, last in spans)


def test_pseudo_labelled_compare_dataset_runs_every_oracle_arm(tmp_path, model_file, monkeypatch):
    from adaptive_dff.compare import CompareConfig, run_compare
    from adaptive_dff.compare.datasets import compare_datasets, pseudo_labelled_dataset

    monkeypatch.setenv("ADAPTIVE_DFF_CACHE", str(tmp_path / "cache"))
    a, _ = write_folder(tmp_path / "a", 27, seed=2)
    b, _ = write_folder(tmp_path / "b", 15, seed=3)
    dataset = pseudo_labelled_dataset([a, b], model_file, clip_frames=8).check()
    assert dataset.labelled and dataset.num_classes == 4 and dataset.ignore_index is None
    assert [c.name for c in dataset.calibration] == ["0-a-calibration", "1-b-calibration"]
    assert [len(c) for c in dataset.calibration] == [9, 5]
    assert [(c.name, len(c)) for c in dataset.test] == [("0-a-test-0", 8), ("0-a-test-1", 10), ("1-b-test-0", 10)]
    direct = pl.pseudo_label(a, model_file)
    assert direct.cached  # the data set put them there
    assert np.array_equal(dataset.test[1].labels[0], direct.labels[17])
    assert dataset.spec["files"][0]["test_clips"] == [[9, 17], [17, 27]]

    with pytest.raises(ValueError, match="--video"):
        compare_datasets(labels="model")
    with pytest.raises(FileNotFoundError, match="--labels takes none or model, or one label folder"):
        compare_datasets(videos=[a], labels="truth")  # neither a source nor a folder
    for bad in (0, 1.5, float("nan"), True):  # named by the option, before any video is opened
        with pytest.raises(ValueError, match=r"--video-scale must be a factor in \(0, 1\]"):
            compare_datasets(videos=[str(tmp_path / "missing.mp4")], labels="model", video_scale=bad)
    with pytest.raises(ValueError, match="--clip-frames must be an integer >= 2"):
        compare_datasets(videos=[str(tmp_path / "missing.mp4")], labels="model", clip_frames=1)

    config = CompareConfig(policies=("fixed_interval", "frame_difference@budget", "optimal"), budgets=(0.25,),
                           sweep=(), regions=("1x1",), window=6)
    rows = run_compare(config, dataset, str(tmp_path / "out"), log=lambda *_: None)["rows"]
    assert "pseudo-labels, not ground truth" in (tmp_path / "out" / "summary.md").read_text()
    policies = {r["policy"] for r in rows}
    assert {"fixed_interval", "frame_difference@budget"} <= policies and any("optimal" in p for p in policies)
    for row in rows:
        assert 0 <= row["accuracy"] <= 1
        if row["policy"] == "frame_difference@budget":  # pixel agreement: counted for the policies' own runs
            assert 0 <= row["agreement"] <= 1 and row["agreement"] >= row["accuracy"] - 1e-9


@pytest.mark.data
def test_the_shipped_model_labels_a_real_video(data_root, tmp_path):
    from adaptive_dff.pretrained import default_model_path

    path = str(data_root / "videos" / "cup.mp4")
    result = pl.pseudo_label(path, default_model_path(), max_frames=6, cache_dir=str(tmp_path))
    assert len(result) == 6 and result.labels[0].shape == (480, 640) and result.num_classes == 11
    assert result.fps == pytest.approx(27, abs=1)
    assert all(label.max() <= 10 for label in result.labels)
    # Neighbouring frames of a hand-held shot: the model mostly agrees with itself.
    assert np.mean(result.labels[0] == result.labels[1]) > 0.5
    assert pl.pseudo_label(path, default_model_path(), max_frames=6, cache_dir=str(tmp_path)).cached


def test_compare_cli_names_a_bad_video_before_labelling_any(tmp_path, capsys, monkeypatch):
    from adaptive_dff.cli import main

    monkeypatch.setenv("ADAPTIVE_DFF_CACHE", str(tmp_path / "cache"))
    good, _ = write_folder(tmp_path / "good", 12)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert main(["compare", "--video", good, str(broken), "--labels", "model", "--out", str(tmp_path / "a")]) == 2
    assert "broken.mp4" in capsys.readouterr().err
    assert main(["compare", "--labels", "model", "--out", str(tmp_path / "b")]) == 2
    assert "--video" in capsys.readouterr().err
    assert main(["compare", "--video", good, "--clip-frames", "20", "--out", str(tmp_path / "c")]) == 2
    assert "--labels model" in capsys.readouterr().err
    assert not any(os.path.exists(tmp_path / x) for x in ("a", "b", "c", "cache"))
