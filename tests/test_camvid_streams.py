"""CamVid's train/ and test/ frames as 1 fps streams (``compare --dataset camvid-1fps``)."""

import os

import cv2
import numpy as np
import pytest

from adaptive_dff.compare.datasets import camvid_1fps_dataset, compare_datasets
from adaptive_dff.data.camvid import frame_number, sequence_streams


def fake_root(tmp_path, names, split="train", first=0):
    """A data folder whose ``camvid/<split>`` holds 8x12 frames named ``names``, grey level and labels
    by their order counted from ``first`` (class ``i % 11``, void 11 in one corner)."""
    for folder in (split, split + "annot"):
        os.makedirs(tmp_path / "camvid" / folder, exist_ok=True)
    for i, name in enumerate(names, start=first):
        cv2.imwrite(str(tmp_path / "camvid" / split / name), np.full((8, 12, 3), i, np.uint8))
        label = np.full((8, 12), i % 11, np.uint8)
        label[0, 0] = 11
        cv2.imwrite(str(tmp_path / "camvid" / (split + "annot") / name), label)
    return tmp_path


def test_frame_numbers_are_read_from_camvid_names():
    assert frame_number("/x/0001TP_006690.png") == ("0001TP", 6690)
    assert frame_number("0006R0_f00930.png") == ("0006R0", 930)
    assert frame_number("Seq05VD_f05100.png") == ("Seq05VD", 5100)
    for bad in ("frame.png", "0001TP_.png", "0001TP_12a.png", "B_f\u00b23.png"):  # a superscript is no digit here
        with pytest.raises(ValueError, match="is not named <sequence>_<frame number>.png"):
            frame_number(bad)


def test_a_gap_of_more_than_one_and_a_half_seconds_starts_a_new_stream(tmp_path):
    names = [f"A_{n:05d}.png" for n in (30, 60, 90, 135, 300, 330)] + [f"B_f{n:05d}.png" for n in (0, 31, 61)]
    root = fake_root(tmp_path, names)
    streams = sequence_streams(str(root), ("train",))
    assert [(name, [frame_number(f)[1] for f, _ in pairs]) for name, pairs in streams] == [
        ("A-30", [30, 60, 90, 135]), ("A-300", [300, 330]), ("B-0", [0, 31, 61])]
    for _, pairs in streams:  # each frame with its own label
        assert all(os.path.basename(f) == os.path.basename(lab) for f, lab in pairs)
    fake_root(tmp_path, ["A_00060.png"], split="test")  # a frame in two splits is named
    with pytest.raises(ValueError, match="frame 60 of sequence A appears twice"):
        sequence_streams(str(root), ("train", "test"))


def test_the_1fps_data_set_splits_each_stream_like_labelled_video(tmp_path):
    root = fake_root(tmp_path, [f"S_{30 * i:05d}.png" for i in range(21)])
    fake_root(tmp_path, [f"S_{30 * i:05d}.png" for i in range(21, 31)], split="test", first=21)  # runs on
    dataset = camvid_1fps_dataset(str(root), clip_frames=8).check()
    assert dataset.name == "camvid-1fps" and dataset.num_classes == 11 and dataset.ignore_index == 11
    assert [c.name for c in dataset.calibration] == ["S-0-calibration"]
    assert [len(c) for c in dataset.calibration] == [10]  # the first third
    assert [len(c) for c in dataset.test] == [8, 8, 5]  # the 21 others in clips of 8, a rest of 5 (at least half) its own
    frames = dataset.calibration[0].frames + [f for c in dataset.test for f in c.frames]
    assert [int(f[0, 0, 0]) for f in frames] == list(range(31))  # in time order, nothing lost or repeated
    assert all(c.fps == 1.0 for c in dataset.calibration + dataset.test)
    assert int(dataset.test[0].labels[0][1, 1]) == 10 % 11 and int(dataset.test[0].labels[0][0, 0]) == 11
    assert dataset.spec["streams"][0]["test_clips"] == [[10, 18], [18, 26], [26, 31]]
    short = fake_root(tmp_path / "short", [f"T_{30 * i:05d}.png" for i in range(6)])
    fake_root(tmp_path / "short", [f"U_{30 * i:05d}.png" for i in range(12)], split="test")
    with pytest.raises(ValueError, match=r"CamVid stream T-0 .* holds 6 frames \(T_00000.png to T_00150.png\); "
                                         "compare needs at least 10"):
        camvid_1fps_dataset(str(short))
    with pytest.raises(ValueError, match="needs the data folder"):
        compare_datasets("camvid-1fps")
    with pytest.raises(ValueError, match="--video-scale is for labelled videos"):
        compare_datasets("camvid-1fps", data_root=str(root), video_scale=0.5)
    with pytest.raises(ValueError, match="--clip-frames is for labelled videos and --dataset camvid-1fps"):
        compare_datasets("camvid-val", data_root=str(root), clip_frames=50)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        camvid_1fps_dataset(str(tmp_path / "nowhere"))


def test_camvid_train_and_test_make_six_real_streams_apart_from_the_val_clip(data_root):
    """Six streams; none holds a frame of the 15 fps ``val/`` clip (0016E5 07959..08159): the
    streams of that sequence end before it and start after it."""
    streams = sequence_streams(str(data_root))
    assert [(name, len(pairs)) for name, pairs in streams] == [
        ("0001TP-6690", 124), ("0006R0-930", 101), ("0016E5-390", 68), ("0016E5-4350", 120), ("0016E5-8190", 16),
        ("Seq05VD-0", 171)]
    assert any("/test/" in f for f, _ in streams[0][1]) and any("/train/" in f for f, _ in streams[0][1])
    for _, pairs in streams:
        numbers = [frame_number(f)[1] for f, _ in pairs]
        assert all(0 < b - a <= 45 for a, b in zip(numbers, numbers[1:]))
    val = sorted(frame_number(f)[1] for f in os.listdir(data_root / "camvid" / "val"))
    assert (val[0], val[-1]) == (7959, 8159)
    for name, pairs in streams:
        if name.startswith("0016E5"):
            numbers = [frame_number(f)[1] for f, _ in pairs]
            assert numbers[-1] < val[0] or numbers[0] > val[-1], name


def test_compare_names_the_1fps_data_set_and_refuses_j_on_it(tmp_path, capsys):
    from adaptive_dff.cli import main

    assert main(["compare", "--dataset", "camvid-1fps", "--data-root", str(tmp_path),
                 "--out", str(tmp_path / "a")]) == 2  # a folder without CamVid: named before anything runs
    err = capsys.readouterr().err
    assert "CamVid folder" in err and "does not exist" in err
    assert main(["compare", "--dataset", "camvid-1fps", "--metric", "j", "--data-root", str(tmp_path),
                 "--out", str(tmp_path / "b")]) == 2
    assert "camvid-1fps is labelled by class" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
