"""Generated object video in a DAVIS 2017 release's layout: the files, their labels read back as
object ids, and the README's DAVIS command running on it."""

import csv
import os

import numpy as np
import pytest
from PIL import Image

from adaptive_dff.data import SyntheticVideo
from adaptive_dff.data.davis_layout import (
    ANNOTATIONS_DIR, FRAMES_DIR, SEQUENCE_LIST, main, voc_palette, write_davis_layout,
)
from adaptive_dff.data.label_folders import read_labelled_video


def test_the_palette_is_davis_s():
    palette = np.asarray(voc_palette()).reshape(256, 3)
    # The first colours of DAVIS 2017's annotation palette (and VOC's), as published with the data set.
    assert palette[:8].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128],
                                    [0, 128, 128], [128, 128, 128]]
    assert palette[8].tolist() == [64, 0, 0] and palette[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in palette}) == 256


def test_the_folder_holds_each_sequence_s_frames_and_object_masks(tmp_path):
    root = tmp_path / "davis"
    names = write_davis_layout(root, sequences=2, frames=6, height=48, width=80, objects=3, seed=4)
    assert names == ["seq00", "seq01"]
    assert open(root / SEQUENCE_LIST).read().split() == names
    for i, name in enumerate(names):
        assert sorted(os.listdir(root / FRAMES_DIR / name)) == [f"{t:05d}.jpg" for t in range(6)]
        mask = Image.open(root / ANNOTATIONS_DIR / name / "00003.png")
        assert mask.mode == "P"
        video = SyntheticVideo(height=48, width=80, num_frames=6, seed=4 + i, num_objects=3)
        # Read back as compare reads them: palette indices, paired with the frames by name.
        reader, frames, labels = read_labelled_video(str(root / FRAMES_DIR / name), str(root / ANNOTATIONS_DIR / name))
        assert len(frames) == len(labels) == 6
        for t in range(6):
            np.testing.assert_array_equal(labels[t], video.objects(t))
            # JPEG is lossy: close to the generated frame, not equal
            assert np.mean(np.abs(frames[t].astype(float) - video.frame(t))) < 6.0
        assert any(labels[t].max() > 0 for t in range(6))


def test_a_folder_in_use_is_refused_and_left_alone(tmp_path, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="used"):
        write_davis_layout(used, sequences=1, frames=2, height=32, width=32)
    assert os.listdir(used) == ["mine.txt"]
    with pytest.raises(ValueError, match="frames"):
        write_davis_layout(tmp_path / "new", sequences=1, frames=0)
    with pytest.raises(ValueError, match="objects must be an integer of 1 to 254"):
        write_davis_layout(tmp_path / "new", sequences=1, frames=2, objects=255)
    assert not os.path.exists(tmp_path / "new")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_davis_layout(empty, sequences=1, frames=2, height=32, width=32) == ["seq00"]
    with pytest.raises(SystemExit):
        main([str(used), "--frames", "2"])
    assert "not an empty folder" in capsys.readouterr().err


def test_the_readme_s_davis_command_runs_on_it(tmp_path, capsys):
    from adaptive_dff.cli import main as cli

    root = tmp_path / "davis"
    assert main([str(root), "--sequences", "2", "--frames", "24", "--height", "48", "--width", "64"]) == 0
    seqs = open(root / SEQUENCE_LIST).read().split()
    out = tmp_path / "run"
    args = (["compare", "--video"] + [str(root / FRAMES_DIR / s) for s in seqs]
            + ["--labels"] + [str(root / ANNOTATIONS_DIR / s) for s in seqs]
            + ["--metric", "j", "--regions", "1x1", "--budgets", "0.2", "--policies", "fixed_interval", "optimal",
               "--out", str(out), "-q"])
    assert cli(args) == 0, capsys.readouterr().err
    rows = {r["policy"]: r for r in csv.DictReader(open(out / "results.csv")) if r["budget"] == "0.2"}
    assert set(rows) >= {"fixed_interval", "optimal"}
    assert rows["fixed_interval"]["accuracy_metric"].startswith("J (region similarity")
    assert 0.0 < float(rows["fixed_interval"]["accuracy"]) <= float(rows["optimal"]["accuracy"]) + 1e-9 <= 1.0 + 1e-9
