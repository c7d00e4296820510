"""Ground-truth label folders: label images read as class ids, the compare data set they make with
their videos, and the command line that runs it."""

import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from adaptive_dff.compare.datasets import (
    LABELLED_KIND, compare_datasets, dataset_kind, label_source, labelled_video_dataset,
)
from adaptive_dff.data.label_folders import VOID, read_label_image
from adaptive_dff.data.pseudo_labels import calibration_split

from helpers import write_folder

PALETTE = list(np.random.default_rng(5).integers(0, 256, 768))


def random_labels(count, size=(48, 64), classes=5, seed=0, void_share=0.05):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, (count,) + size).astype(np.uint8)
    labels[rng.random(labels.shape) < void_share] = VOID
    return labels


def write_labels(folder, labels, mode="P"):
    """One PNG per label map, named as ``write_folder`` names frames (``f0.png``, ``f1.png``, ..)."""
    os.makedirs(folder, exist_ok=True)
    for t, label in enumerate(labels):
        image = Image.fromarray(label, mode="L")
        if mode == "P":
            image = image.convert("P")
            image.putpalette(PALETTE)  # colours unrelated to the ids: the indices must be read
        image.save(os.path.join(folder, f"f{t}.png"))
    return str(folder)


def test_label_images_give_class_ids_whatever_their_mode(tmp_path):
    label = random_labels(1, size=(20, 30), classes=9)[0]
    for mode in ("P", "L"):
        path = write_labels(tmp_path / mode, [label], mode)
        read = read_label_image(os.path.join(path, "f0.png"))
        assert read.dtype == np.uint8 and np.array_equal(read, label), mode
    wide = tmp_path / "i16.png"
    Image.fromarray(label.astype(np.uint16)).save(wide)
    assert np.array_equal(read_label_image(str(wide)), label)
    grey = tmp_path / "grey_rgb.png"
    Image.fromarray(np.repeat(label[..., None], 3, axis=2)).save(grey)
    assert np.array_equal(read_label_image(str(grey)), label)
    alpha = tmp_path / "grey_alpha.png"
    Image.fromarray(np.dstack([label, np.full_like(label, 200)]), mode="LA").save(alpha)
    assert np.array_equal(read_label_image(str(alpha)), label)


@pytest.mark.parametrize("case, words", [
    ("colour", ["colour.png", "colours", "class ids"]),
    ("big", ["big.png", "300", "255 is void"]),
    ("negative", ["negative.tif", "-3", "255 is void"]),
    ("broken", ["broken.png", "cannot be decoded"]),
])
def test_bad_label_images_are_named(tmp_path, case, words):
    path = tmp_path / f"{case}.{'tif' if case == 'negative' else 'png'}"  # (PNG holds no signed values)
    if case == "colour":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
    elif case == "big":
        Image.fromarray(np.full((8, 8), 300, np.uint16)).save(path)
    elif case == "negative":
        Image.fromarray(np.full((8, 8), -3, np.int32), mode="I").save(path)
    else:
        path.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError) as error:
        read_label_image(str(path))
    assert all(w in str(error.value) for w in words), str(error.value)


def test_a_labelled_video_splits_as_compare_does_and_keeps_its_labels(tmp_path):
    frames_a, frames = write_folder(tmp_path / "a", 30, seed=1)
    labels = random_labels(30, classes=6, seed=2)
    labels_a = write_labels(tmp_path / "a-labels", labels)
    frames_b, _ = write_folder(tmp_path / "b", 14, seed=3)
    labels_b = write_labels(tmp_path / "b-labels", random_labels(14, classes=3, seed=4))
    data = labelled_video_dataset([frames_a, frames_b], [labels_a, labels_b], clip_frames=12).check()
    assert data.name == LABELLED_KIND and data.ignore_index == VOID
    assert data.num_classes == 6  # the highest id found, void left out
    cut = calibration_split(30)
    first = data.calibration[0]
    assert len(first) == cut and np.array_equal(np.stack(first.frames), np.stack(frames[:cut]))
    assert np.array_equal(np.stack(first.labels), labels[:cut])
    tests_a = [c for c in data.test if c.name.startswith("0-a-test")]
    assert sum(len(c) for c in tests_a) == 30 - cut and all(len(c) >= 6 for c in tests_a)
    assert np.array_equal(np.concatenate([np.stack(c.labels) for c in tests_a]), labels[cut:])
    assert data.spec["files"][0]["labels"] == "a-labels" and data.spec["files"][1]["frames"] == 14
    # A frame limit reads only the labels it needs; a limit the video does not reach cuts nothing.
    short = labelled_video_dataset([frames_a], [labels_a], max_frames=12)
    assert sum(len(c) for c in short.calibration + short.test) == 12
    more = write_labels(tmp_path / "more-labels", random_labels(40, classes=6, seed=2))
    with pytest.raises(ValueError, match="40 label images for the 30 frames"):
        labelled_video_dataset([frames_a], [more], max_frames=100)
    # With a model, the data set has the model's classes, and an id beyond them is named.
    assert labelled_video_dataset([frames_a], [labels_a], num_classes=11).num_classes == 11
    with pytest.raises(ValueError, match=r"a-labels', frame \d+: class id 5, but the model predicts 4 classes"):
        labelled_video_dataset([frames_a], [labels_a], num_classes=4)


@pytest.mark.parametrize("case, words", [
    ("fewer labels", ["a-labels", "29 label images", "30 frames"]),
    ("other size", ["f7.png", "frame 7", "64x48"]),
    ("no folder", ["missing", "does not exist"]),
    ("one folder for two videos", ["1 label folder", "2 video"]),
    ("binary 0/255 masks", ["a-labels", "class 0 and void 255 only", "mapped to 1"]),
    ("one class, not 0", ["one class only", "class 1 everywhere"]),
])
def test_a_label_folder_that_does_not_fit_its_video_is_named(tmp_path, case, words):
    frames_a, _ = write_folder(tmp_path / "a", 30)
    labels = random_labels(30)
    if case == "fewer labels":
        labels = labels[:29]
    if case == "binary 0/255 masks":
        labels = np.where(labels > 2, VOID, 0).astype(np.uint8)
    if case == "one class, not 0":
        labels = np.ones_like(labels)
    folder = write_labels(tmp_path / "a-labels", labels)
    if case == "other size":
        Image.fromarray(random_labels(1, size=(40, 64))[0]).save(os.path.join(folder, "f7.png"))
    videos, folders = [frames_a], [folder]
    if case == "no folder":
        folders = [str(tmp_path / "missing")]
    if case == "one folder for two videos":
        videos = [frames_a, frames_a]
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        labelled_video_dataset(videos, folders)
    assert all(w in str(error.value) for w in words), str(error.value)


def test_labels_option_takes_a_source_or_folders():
    assert label_source(None) == ("none", [])
    assert label_source("model") == label_source(["model"]) == ("model", [])
    assert label_source(["x", "y"]) == ("folders", ["x", "y"])
    assert dataset_kind(videos=["v"], labels=["x"]) == LABELLED_KIND
    with pytest.raises(ValueError, match="alone"):
        label_source(["model", "x"])
    with pytest.raises(ValueError, match="--video"):
        compare_datasets(labels=["x"])
    with pytest.raises(ValueError, match="--video-scale"):
        compare_datasets(videos=["v"], labels=["x"], video_scale=0.5)


def test_compare_runs_on_labelled_video_from_the_command_line(tmp_path, capsys):
    from adaptive_dff.cli import main

    frames, _ = write_folder(tmp_path / "clip", 30, seed=7)
    # Labels that follow the moving square of write_folder: class 1 on it, 0 elsewhere, void at the border.
    labels = np.zeros((30, 48, 64), np.uint8)
    for t in range(30):
        labels[t, 10:30, 5 + 2 * t:25 + 2 * t] = 1
    labels[:, :, :2] = VOID
    folder = write_labels(tmp_path / "clip-labels", labels)
    out = tmp_path / "run"
    # The default policy reads the key frames' labels: here the label images, void (255) included.
    args = ["compare", "--video", frames, "--labels", folder, "--regions", "1x1", "--budgets", "0.2", "--sweep",
            "--policies", "fixed_interval", "propagation_quality@budget", "optimal", "--out", str(out), "-q"]
    assert main(args) == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["dataset"] for r in rows} == {LABELLED_KIND}
    by_policy = {r["policy"]: r for r in rows}
    assert 0.3 < float(by_policy["fixed_interval"]["accuracy"]) <= 1.0
    assert float(by_policy["optimal"]["accuracy"]) >= float(by_policy["fixed_interval"]["accuracy"]) - 1e-9
    learned = by_policy["propagation_quality@budget"]
    assert 0.1 <= float(learned["key_fraction"]) <= 0.3 and 0.3 < float(learned["accuracy"]) <= 1.0
    assert main(["compare", "--video", frames, "--labels", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")]) == 2
    assert "nowhere" in capsys.readouterr().err and not os.path.exists(tmp_path / "b")


def square_labels(count, moved_from=None):
    """Labels of ``write_folder``'s moving square (class 1 on it, 0 elsewhere, void in the two left
    columns); from frame ``moved_from`` on, the square is labelled 4 pixels off."""
    labels = np.zeros((count, 48, 64), np.uint8)
    for t in range(count):
        shift = 4 if moved_from is not None and t >= moved_from else 0
        labels[t, 10:30, 5 + 2 * t + shift:25 + 2 * t + shift] = 1
    labels[:, :, :2] = VOID
    return labels


def quality_config(videos, folders, **extra):
    from training.config import load_config

    sets = ["frames=12", "max_offset=3", "key_stride=2", "kinds=ridge", f"videos={','.join(videos)}",
            f"label_folders={','.join(folders)}"] + [f"{k}={v}" for k, v in extra.items()]
    return load_config("quality", "smoke", sets)


def test_train_quality_takes_true_accuracy_from_label_folders_of_the_calibration_part_only(tmp_path):
    from training.quality import build_dataset, run

    a, _ = write_folder(tmp_path / "a", 18, seed=1)
    b, _ = write_folder(tmp_path / "b", 12, seed=2)
    la = write_labels(tmp_path / "la", square_labels(18))
    lb = write_labels(tmp_path / "lb", square_labels(12))
    metrics = run(quality_config([a, b], [la, lb]), str(tmp_path / "out"), log=lambda *_: None)
    assert metrics["data"]["video_targets"] == "true accuracy (label folders)" and metrics["data"]["video_model"] is None
    assert [(v["frames_decoded"], v["truncated"]) for v in metrics["data"]["videos"]] == [(18, False), (12, False)]
    assert metrics["models"]["ridge"]["held_out_mae"]["videos"] is not None
    with np.load(tmp_path / "out" / "dataset.npz") as stored:
        before = {k: stored[k] for k in stored.files}
    source, accuracy = before["source"], before["pixel_accuracy"]
    expected = 0  # keys 0, 2, .. of each first third, carried up to 3 frames within it, 1 + 4 regions
    for n in (18, 12):
        cut = calibration_split(n)
        expected += 5 * sum(min(k + 3, cut - 1) - k for k in range(0, cut - 1, 2))
    assert int((source == 2).sum()) == expected and before["held_out"][source == 2].all()
    assert np.all((accuracy[source == 2] > 0.5) & (accuracy[source == 2] <= 1))
    # Labels past the calibration part never count; labels inside it are the targets.
    cut = calibration_split(18)
    later = write_labels(tmp_path / "la-later", square_labels(18, moved_from=cut))
    same = build_dataset(quality_config([a, b], [later, lb]), None, log=lambda *_: None)
    np.testing.assert_array_equal(same["pixel_accuracy"], before["pixel_accuracy"])
    inside = write_labels(tmp_path / "la-inside", square_labels(18, moved_from=1))
    other = build_dataset(quality_config([a, b], [inside, lb]), None, log=lambda *_: None)
    assert not np.array_equal(other["pixel_accuracy"], before["pixel_accuracy"])


def test_train_quality_records_a_labelled_video_that_stopped_decoding_early(tmp_path):
    """A labelled video file cut short is used as far as it decodes (its extra label images are
    allowed then), and the predictor's record says so."""
    import warnings

    import cv2

    from training.quality import run

    _, frames = write_folder(tmp_path / "a", 20, seed=1)
    whole = tmp_path / "a.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    cut = tmp_path / "cut.avi"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    b, _ = write_folder(tmp_path / "b", 12, seed=2)
    la = write_labels(tmp_path / "la", square_labels(20))
    lb = write_labels(tmp_path / "lb", square_labels(12))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = run(quality_config([str(cut), b], [la, lb]), str(tmp_path / "out"), log=lambda *_: None)
    (decoded, truncated), intact = [(v["frames_decoded"], v["truncated"]) for v in metrics["data"]["videos"]]
    assert truncated and 6 <= decoded < 20 and intact == (12, False)


@pytest.mark.parametrize("case, words", [
    ("count", ["1 folder(s) for 2 video(s)"]),
    ("scale", ["video_scale", "model-labelled"]),
    ("missing", ["label_folders", "nowhere", "does not exist"]),
    ("no videos", ["label_folders", "videos="]),
    ("colour image", ["f5.png", "colours"]),
])
def test_train_quality_names_label_folders_that_do_not_fit_before_writing(tmp_path, case, words):
    from training.quality import run

    a, _ = write_folder(tmp_path / "a", 12)
    la = write_labels(tmp_path / "la", square_labels(12))
    videos, folders, extra = [a], [la], {}
    if case == "count":
        videos = [a, a]
    elif case == "scale":
        extra = {"video_scale": 0.5}
    elif case == "missing":
        folders = [str(tmp_path / "nowhere")]
    elif case == "colour image":  # late in the video, read before anything is written all the same
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            os.path.join(la, "f5.png"))
    else:
        videos = []
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        run(quality_config(videos, folders, **extra), str(tmp_path / "out"), log=lambda *_: None)
    assert all(w in str(error.value) for w in words), str(error.value)
    assert not os.path.exists(tmp_path / "out")


def test_own_labelled_video_trains_a_predictor_that_compare_runs_with_quality_model(tmp_path, capsys):
    """The loop of the README: train on the first third of a labelled video, compare on the rest."""
    from adaptive_dff.cli import main
    from adaptive_dff.compare.config import CompareConfig
    from adaptive_dff.compare.planning import signature
    from adaptive_dff.compare.workspace import Workspace
    from schedulers import QualityPredictor, QualitySignals

    frames, _ = write_folder(tmp_path / "clip", 30, seed=9)
    folder = write_labels(tmp_path / "clip-labels", square_labels(30))
    assert main(["train", "quality", "--config", "smoke", "--set", "frames=12", "--set", "kinds=ridge",
                 "--set", "downsample=2",
                 "--set", f"videos={frames}", "--set", f"label_folders={folder}", "--out", str(tmp_path / "q"),
                 "-q"]) == 0, capsys.readouterr().err
    mine = tmp_path / "q" / "quality.json"
    common = ["compare", "--video", frames, "--labels", folder, "--regions", "1x1", "--budgets", "0.2", "--sweep",
              "--policies", "fixed_interval", "propagation_quality@budget", "-q"]
    assert main(common + ["--quality-model", str(mine), "--out", str(tmp_path / "mine")]) == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / "mine" / "results.csv")))
    assert {r["policy"] for r in rows} == {"fixed_interval", "propagation_quality@budget"}
    # The arms' policy carries that very predictor (at the downsample it was fitted for), budget arms too.
    workspace = Workspace(CompareConfig(quality_model=str(mine)), [], None)
    policy = workspace.make_policy("propagation_quality@budget", budget=0.2).policy
    stored = QualityPredictor.load(mine)
    assert QualitySignals.for_predictor(policy.predictor).downsample == stored.signals_downsample == 2
    assert policy.downsample is None  # the predictor's own
    # The run keeps each pair's signals at that file's downsample, so replay judges the file on them.
    from adaptive_dff.bench import replay

    assert replay.main([str(tmp_path / "mine"), "--quality-model", str(mine)]) == 0, capsys.readouterr().err
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(policy.predictor.layers_, stored.layers_))
    assert Workspace(CompareConfig(), [], None).make_policy("propagation_quality").predictor is None  # shipped
    # The default policies hold propagation_quality@budget; policies given must hold an arm that uses the file.
    assert CompareConfig(quality_model=str(mine)).check().chosen_policies() == CompareConfig().chosen_policies()
    assert main(["compare", "--video", frames, "--labels", folder, "--policies", "fixed_interval", "--quality-model",
                 str(mine), "--out", str(tmp_path / "unused")]) == 2
    assert "add propagation_quality" in capsys.readouterr().err and not os.path.exists(tmp_path / "unused")
    # Runs without the option keep the identity they had before it existed (their folders continue).
    assert "quality_model" not in signature(CompareConfig(), [])["config"]
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"x")
    (tmp_path / "adir.json").mkdir()
    for path, words in ((bad, "--decision-model"), (tmp_path / "q" / "metrics.json", "not a quality predictor"),
                        (tmp_path / "adir.json", "adir.json' is a folder, not a file")):
        assert main(common + ["--quality-model", str(path), "--out", str(tmp_path / "bad")]) == 2
        assert words in capsys.readouterr().err and not os.path.exists(tmp_path / "bad")
    # A bad --decision-model is named before --out is made, so the rerun with a good one is not refused.
    arms = ["compare", "--video", frames, "--labels", folder, "--regions", "1x1", "--budgets", "0.2",
            "--policies", "fixed_interval", "decision_network", "-q", "--out", str(tmp_path / "dn")]
    damaged = json.loads(mine.read_text())
    damaged["format_version"] = 2
    (tmp_path / "v2.json").write_text(json.dumps(damaged))
    assert main(arms + ["--decision-model", str(tmp_path / "v2.json")]) == 2
    assert "format version 2" in capsys.readouterr().err and not os.path.exists(tmp_path / "dn")
    assert main(arms + ["--decision-model", str(mine)]) == 0, capsys.readouterr().err


@pytest.mark.data
def test_camvid_val_as_a_labelled_video_is_the_camvid_val_data_set(data_root, tmp_path):
    """Real files end to end: CamVid's val frames as an image folder and its labels as a label
    folder (void 11 written as 255) make the very data set of ``--dataset camvid-val`` (the same
    split: a third, frames 0..33, calibrates)."""
    from adaptive_dff.compare.datasets import camvid_val_dataset
    from adaptive_dff.data.camvid import VOID as CAMVID_VOID

    frames_folder = data_root / "camvid" / "val"
    labels_folder = tmp_path / "valannot"
    os.makedirs(labels_folder)
    for path in sorted((data_root / "camvid" / "valannot").glob("*.png")):
        label = np.array(Image.open(path))
        label[label == CAMVID_VOID] = VOID
        Image.fromarray(label.astype(np.uint8)).save(labels_folder / path.name)
    mine = labelled_video_dataset([str(frames_folder)], [str(labels_folder)]).check()
    theirs = camvid_val_dataset(str(data_root))
    assert mine.num_classes == theirs.num_classes == 11
    for split in ("calibration", "test"):
        a, b = getattr(mine, split), getattr(theirs, split)
        assert [len(c) for c in a] == [len(c) for c in b]
        for clip_a, clip_b in zip(a, b):
            assert all(np.array_equal(x, y) for x, y in zip(clip_a.frames, clip_b.frames))
            for x, y in zip(clip_a.labels, clip_b.labels):
                assert np.array_equal(x == VOID, y == CAMVID_VOID) and np.array_equal(x[x != VOID], y[y != CAMVID_VOID])


def test_labels_pair_with_an_image_folders_frames_by_name(tmp_path):
    """A label missing in the middle is named even where a frame limit allows more labels than
    frames; a frame missing in the middle takes no other frame's label; labels of another extension
    pair by name; a folder of 0/255 masks beside a well-labelled one is named."""
    frames, _ = write_folder(tmp_path / "a", 30)
    labels = random_labels(30, classes=4, seed=3)
    folder = write_labels(tmp_path / "a-labels", labels)
    os.remove(os.path.join(folder, "f15.png"))
    with pytest.raises(ValueError, match=r"no label for frame 15 \(f15.png\)"):
        labelled_video_dataset([frames], [folder], max_frames=20)
    # Frame f10 missing, a frame limit: frame 10 is f11 and takes f11's label (by order it would take f10's).
    gap, _ = write_folder(tmp_path / "gap", 30)
    os.remove(os.path.join(gap, "f10.png"))
    full = write_labels(tmp_path / "full-labels", labels)
    data = labelled_video_dataset([gap], [full], max_frames=20)
    carried = np.concatenate([np.stack(c.labels) for c in data.calibration + data.test])
    assert np.array_equal(carried, np.concatenate([labels[:10], labels[11:21]]))
    # Labels saved as .tif pair with the .png frames by name.
    other = tmp_path / "tif-labels"
    os.makedirs(other)
    for t, label in enumerate(labels):
        Image.fromarray(label).save(other / f"f{t}.tif")
    data = labelled_video_dataset([frames], [str(other)])
    assert np.array_equal(np.concatenate([np.stack(c.labels) for c in data.calibration + data.test]), labels)
    good = write_labels(tmp_path / "good", labels)
    masks = write_labels(tmp_path / "masks", np.where(labels > 1, VOID, 0).astype(np.uint8))
    with pytest.raises(ValueError, match="'.*masks' holds class 0 and void 255 only"):
        labelled_video_dataset([frames, frames], [good, masks])


def test_train_quality_reads_each_labelled_video_once(tmp_path, monkeypatch):
    """The check before anything is written reads the videos and labels; the rows are built from that."""
    from adaptive_dff.data import label_folders
    from training.quality import run

    calls = []
    original = label_folders.read_labelled_video
    monkeypatch.setattr(label_folders, "read_labelled_video", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    a, _ = write_folder(tmp_path / "a", 12)
    la = write_labels(tmp_path / "la", square_labels(12))
    metrics = run(quality_config([a], [la]), str(tmp_path / "out"), log=lambda *_: None)
    assert calls == [a] and metrics["data"]["videos"][0]["rows"] > 0
