"""``adaptive-dff segment``: the annotated video (frame count, rate, size), the CSV, the summary,
a source that breaks part-way, bad outputs and policies, atomic writing, generated palettes."""

import csv
import os
import re

import cv2
import numpy as np
import pytest
from helpers import tiny_dff

from adaptive_dff.cli import main
from adaptive_dff.data import SyntheticVideo
from adaptive_dff.overlay import KNOWN_COLOURS, blend_labels, class_palette, generated_colours

FPS = 12.0
FRAMES = 12


def write_video(path, frames, fps=FPS):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


@pytest.fixture(scope="module")
def clip():
    video = SyntheticVideo(height=96, width=160, num_frames=FRAMES, seed=4)
    return [video.frame(t) for t in range(FRAMES)]


@pytest.fixture(scope="module")
def files(clip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("segment")
    model = folder / "tiny.keras"
    tiny_dff(classes=5).save(model)
    video = folder / "clip.avi"
    write_video(video, clip)
    return {"model": str(model), "video": str(video)}


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def segment(files, out, *extra):
    return main(["segment", files["video"], "--out", str(out), "--model", files["model"], "--no-progress", *extra])


def test_annotated_video_csv_and_summary(files, clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert segment(files, out, "--policy", "fixed_interval", "--threshold", "4", "--regions", "2x2",
                   "--overlap", "16") == 0
    printed = capsys.readouterr().out
    frames, fps = read_video(out)
    assert len(frames) == FRAMES and fps == pytest.approx(FPS)
    assert frames[0].shape == clip[0].shape  # the source's size
    assert not np.array_equal(cv2.cvtColor(frames[5], cv2.COLOR_BGR2RGB), clip[5])  # drawn over
    rows = read_csv(tmp_path / "out.csv")
    assert [int(r["frame"]) for r in rows] == list(range(FRAMES))
    keys = np.array([[int(r[f"key_r{i}"]) for i in range(4)] for r in rows])
    assert keys[:, 0].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]  # every 4th frame, per region
    assert rows[0]["score_r0"] == "" and float(rows[3]["score_r2"]) == 3.0  # frames since the region's key frame
    assert all(float(r["ms_total"]) > 0 for r in rows)
    assert float(rows[0]["ms_total"]) == pytest.approx(sum(float(rows[0][k]) for k in rows[0] if k.startswith("ms_")
                                                           and k not in ("ms_total", "ms_every_frame")), abs=0.01)
    assert rows[0]["ms_every_frame"] and rows[8]["ms_every_frame"] and not rows[1]["ms_every_frame"]
    assert "key fraction 0.250" in printed and re.search(r"speedup [0-9.]+x", printed)
    assert "5 classes have no palette entry" in printed
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_every_frame_comparison_agrees_fully_when_every_frame_is_a_key_frame(files, tmp_path, capsys):
    assert segment(files, tmp_path / "all.avi", "--threshold", "1", "--compare-every-frame") == 0
    printed = capsys.readouterr().out
    assert "agreement with per-frame predictions: 100.0% of pixels" in printed
    rows = read_csv(tmp_path / "all.csv")
    assert all(float(r["agreement"]) == 1.0 and r["ms_every_frame"] for r in rows)
    frames, fps = read_video(tmp_path / "all.avi")
    assert len(frames) == FRAMES and fps == pytest.approx(FPS)

    assert segment(files, tmp_path / "sparse.avi", "--threshold", "6", "--compare-every-frame") == 0
    agreement = [float(r["agreement"]) for r in read_csv(tmp_path / "sparse.csv")]
    assert agreement[0] == 1.0 and agreement[6] == 1.0 and 0 <= min(agreement) <= 1  # key frames agree exactly


def test_a_video_that_breaks_part_way_gives_the_frames_decoded_so_far(files, tmp_path, capsys):
    data = open(files["video"], "rb").read()
    broken = tmp_path / "broken.avi"
    broken.write_bytes(data[: len(data) // 2])
    decodable = len(read_video(broken)[0])
    assert 0 < decodable < FRAMES
    assert main(["segment", str(broken), "--out", str(tmp_path / "b.mp4"), "--model", files["model"],
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"decoding stopped at frame {decodable} of {FRAMES} announced" in captured.out  # in the summary
    assert re.search(rf"warning: '.*broken.avi' broke part-way: decoding stopped at frame {decodable} ", captured.err)
    assert len(read_video(tmp_path / "b.mp4")[0]) == decodable == len(read_csv(tmp_path / "b.csv"))


def test_a_folder_of_unpadded_images_with_a_broken_one(clip, files, tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(8):
        cv2.imwrite(str(folder / f"f{t}.png"), cv2.cvtColor(clip[t], cv2.COLOR_RGB2BGR))
    (folder / "f8.png").write_bytes(b"not a png")
    assert main(["segment", str(folder), "--out", str(tmp_path / "f.mp4"), "--model", files["model"],
                 "--no-progress", "--classes", "Sky,Road,Car,thing,other"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "gives no frame rate; writing at 30 fps" in printed
    assert re.search(r"warning: .* broke part-way: image '.*f8.png' \(frame 8 of folder", captured.err)
    assert "2 of 5 classes have no palette entry" in printed
    frames, fps = read_video(tmp_path / "f.mp4")
    assert len(frames) == 8 and fps == pytest.approx(30.0)


def test_bad_outputs_sources_and_policies_are_named_before_any_work(files, tmp_path, capsys):
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"keep me")
    cases = [
        (["--out", str(existing)], "exists; pass --overwrite"),
        (["--out", str(tmp_path / "missing" / "o.mp4")], "does not exist"),
        (["--out", str(tmp_path / "o.mkv")], "write a .mp4 or .avi file"),
        (["--out", str(tmp_path / "o.mp4"), "--policy", "sometimes"], "unknown policy 'sometimes'; choose from"),
        (["--out", str(tmp_path / "o.mp4"), "--key-fraction", "1.5"], r"--key-fraction must be in \(0, 1\]"),
        (["--out", str(tmp_path / "o.mp4"), "--regions", "2by2"], "a region grid is written RxC"),
        (["--out", str(tmp_path / "o.mp4"), "--policy", "decision_network", "--decision-model",
          str(tmp_path / "nothing.json")], "nothing.json' does not exist"),
        (["--out", str(tmp_path / "o.mp4"), "--policy", "frame_difference", "--decision-model",
          str(tmp_path / "nothing.json")], "--decision-model is for --policy decision_network, not frame_difference"),
        (["--out", str(tmp_path / "o.mp4"), "--policy", "fixed_interval", "--threshold", "2.5"], "whole number"),
        (["--out", str(tmp_path / "o.mp4"), "--policy", "frame_difference", "--quality-model",
          str(tmp_path / "nothing.json")], "--quality-model is for --policy propagation_quality, not frame_difference"),
        (["--out", str(tmp_path / "o.mp4"), "--policy", "propagation_quality", "--quality-model",
          str(tmp_path / "nothing.json")], "nothing.json' does not exist"),
    ]
    for args, message in cases:
        assert main(["segment", files["video"], "--model", files["model"], "--no-progress", *args]) == 2, args
        assert re.search(message, capsys.readouterr().err), args
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"\0" * 1000)
    for source, message in ((junk, "cannot be opened by OpenCV|holds no decodable frame"),
                            (tmp_path / "nothing.avi", "does not exist")):
        assert main(["segment", str(source), "--out", str(tmp_path / "o.mp4"), "--model", files["model"]]) == 2
        assert re.search(message, capsys.readouterr().err)
    assert existing.read_bytes() == b"keep me"
    assert sorted(os.listdir(tmp_path)) == ["exists.mp4", "junk.avi"]  # nothing written, no temporary file


def test_overwrite_and_a_failure_part_way_leaves_no_half_file(files, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o.avi"
    out.write_bytes(b"old")
    assert segment(files, out, "--overwrite", "--frames", "3") == 0
    assert len(read_video(out)[0]) == 3
    before = out.read_bytes()

    from adaptive_dff.runner import VideoRunner

    original, calls = VideoRunner.step, []

    def failing(self, frame):
        calls.append(1)
        if len(calls) > 12:  # after the warm-up, part-way through the clip
            raise RuntimeError("disk on fire")
        return original(self, frame)

    monkeypatch.setattr(VideoRunner, "step", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        segment(files, out, "--overwrite")
    assert out.read_bytes() == before and len(read_csv(tmp_path / "o.csv")) == 3  # the old files, untouched
    assert sorted(os.listdir(tmp_path)) == ["o.avi", "o.csv"]


def test_key_fraction_calibrates_on_the_first_frames(files, tmp_path, capsys):
    assert segment(files, tmp_path / "k.mp4", "--policy", "frame_difference", "--key-fraction", "0.25",
                   "--calibration-frames", "8") == 0
    printed = capsys.readouterr().out
    assert re.search(r"calibrated FrameDifference.threshold = \S+ on frames 0..7 of the source for a key "
                     r"fraction of 0.25", printed)
    assert len(read_csv(tmp_path / "k.csv")) == FRAMES


def test_budget_holds_the_key_fraction_online_with_key_budget(files, tmp_path, capsys):
    assert segment(files, tmp_path / "b.mp4", "--policy", "frame_difference", "--budget", "0.25") == 0
    printed = capsys.readouterr().out
    assert "KeyBudget(target=0.25)" in printed and "calibrated" not in printed
    rows = read_csv(tmp_path / "b.csv")
    keys = sum(int(r["key_r0"]) for r in rows)
    # frame 0 and then a quarter of the frames, within the budget's drift band of whole keys
    assert len(rows) == FRAMES and 2 <= keys <= 5
    assert segment(files, tmp_path / "c.mp4", "--budget", "1.5") != 0
    assert "--budget must be a key-frame fraction in (0, 1], got 1.5" in capsys.readouterr().err
    assert not (tmp_path / "c.mp4").exists()


def test_propagation_quality_runs_on_the_predictor_given(files, tmp_path, capsys):
    """Two predictors that always answer the same: carried results always right (never a key after
    frame 0) or always wrong (a key every frame, the renewal score then equal to the loss, 1)."""
    import json

    from schedulers.quality_predictor import DEFAULT_FILE

    keys = {}
    for name, quality in (("good", 1.0), ("bad", 0.0)):
        data = json.load(open(DEFAULT_FILE))
        last = data["layers"][-1]
        last["weights"] = [[0.0] for _ in last["weights"]]
        # the "clip" output is the bias clipped to [0, 1]; the "sigmoid" output saturates
        last["bias"] = [quality] if data["output"] == "clip" else [40.0 if quality else -40.0]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        assert segment(files, tmp_path / f"{name}.mp4", "--policy", "propagation_quality", "--threshold", "0.5",
                       "--quality-model", str(path)) == 0, capsys.readouterr().err
        keys[name] = [int(r["key_r0"]) for r in read_csv(tmp_path / f"{name}.csv")]
    assert sum(keys["good"]) == 1 and all(keys["bad"])


def test_a_cost_policy_under_a_budget_starts_at_a_price_calibrated_on_the_first_frames(files, tmp_path, capsys):
    from schedulers import FixedInterval, PropagationQuality, calibrate

    from adaptive_dff.compare.scoring import model_flow
    from adaptive_dff.runner import VideoRunner
    from adaptive_dff.model import load_model
    from adaptive_dff.segment import segment_video

    assert segment(files, tmp_path / "p.mp4", "--policy", "propagation_quality", "--budget", "0.25",
                   "--calibration-frames", "8") == 0
    printed = capsys.readouterr().out
    found = re.search(r"starting price (\S+) for KeyBudget\(target=0.25\): PropagationQuality.threshold "
                      r"calibrated on frames 0..7 of the source", printed)
    assert found and "under KeyBudget(target=0.25)" in printed
    clip, _ = read_video(files["video"])
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in clip[:8]]
    model = load_model(files["model"])
    # The runner gives the policy each key's predicted labels: the calibration reads the same, the model's
    # per-frame predictions of those frames.
    every_frame = VideoRunner(model, FixedInterval(1))
    labels = [every_frame.step(f).labels for f in frames]
    expected = calibrate(PropagationQuality(), frames, target_key_fraction=0.25, flow=model_flow(model),
                         labels=labels)
    assert float(found.group(1)) == pytest.approx(expected.starting_price, rel=1e-3)
    keys = sum(int(r["key_r0"]) for r in read_csv(tmp_path / "p.csv"))
    assert 2 <= keys <= 5
    # the summary keeps the calibration; a calibration that misses gives no price, and says so
    logged = []
    summary = segment_video(files["video"], str(tmp_path / "q.mp4"), model, PropagationQuality(), budget=0.25,
                            calibration_frames=2, log=logged.append)
    assert summary["policy"] == "KeyBudget(target=0.25)"
    assert summary["calibration"]["frames"] == 2 and summary["calibration"]["met"] is False
    assert summary["calibration"]["starting_price"] is None
    assert any("no starting price for KeyBudget(target=0.25) from frames 0..1" in m for m in logged)
    with pytest.raises(ValueError, match="not both"):
        segment_video(files["video"], str(tmp_path / "r.mp4"), model, PropagationQuality(), budget=0.25,
                      key_fraction=0.25)


def test_library_code_logs_and_the_command_prints_quietly_or_verbosely(files, tmp_path, capsys, caplog):
    import logging

    from adaptive_dff.model import load_model
    from adaptive_dff.segment import segment_video
    from schedulers import FixedInterval

    caplog.set_level(logging.DEBUG, logger="adaptive_dff")
    summary = segment_video(files["video"], str(tmp_path / "lib.mp4"), load_model(files["model"]), FixedInterval(3))
    assert summary["frames"] == FRAMES and summary["key_fraction"] == pytest.approx(4 / FRAMES)
    assert capsys.readouterr() == ("", "")  # a library prints nothing (no progress bar unless asked)
    records = [r for r in caplog.records if r.name == "adaptive_dff.segment"]
    assert any("no palette entry" in r.getMessage() and r.levelno == logging.INFO for r in records)
    assert sum(r.getMessage().startswith("frame ") and r.levelno == logging.DEBUG for r in records) == FRAMES
    caplog.clear()
    with pytest.raises(TypeError, match="model must be an adaptive_dff.DFFModel, got SegmentationHead"):
        segment_video(files["video"], str(tmp_path / "t.mp4"), load_model(files["model"]).head, FixedInterval(3))

    assert segment(files, tmp_path / "q.mp4", "--quiet") == 0
    assert capsys.readouterr() == ("", "")
    assert len(read_csv(tmp_path / "q.csv")) == FRAMES
    assert main(["--verbose", "segment", files["video"], "--out", str(tmp_path / "v.mp4"), "--model", files["model"],
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "frame 3: update [0], scores [3.0]" in out and "key fraction" in out
    assert segment(files, tmp_path / "p.mp4") == 0
    out = capsys.readouterr().out
    assert "frame 3: update" not in out and "speedup" in out  # the default: what the command always printed
    with pytest.raises(SystemExit):
        main(["segment", files["video"], "--out", str(tmp_path / "x.mp4"), "-q", "-v"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_palettes_known_and_generated():
    palette, unknown = class_palette(["Sky", "Car", "widget", "gadget"])
    assert tuple(palette[0]) == KNOWN_COLOURS["Sky"] and tuple(palette[1]) == KNOWN_COLOURS["Car"]
    assert unknown == ["widget", "gadget"]
    colours = generated_colours(40)
    assert len({tuple(c) for c in colours}) == 40
    nearest = min(np.abs(colours[i].astype(int) - colours[j]).sum() for i in range(12) for j in range(i))
    assert nearest > 40  # the first dozen are far apart
    frame = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    labels = np.random.default_rng(1).integers(0, 4, (6, 7))
    expected = np.round(0.5 * frame + 0.5 * palette[labels].astype(float))
    assert np.abs(blend_labels(frame, labels, palette).astype(float) - expected).max() <= 1
    with pytest.raises(ValueError, match="class ids 4..4; the palette has 4 colours"):
        blend_labels(frame, np.full((6, 7), 4), palette)


def test_camvids_classes_all_have_a_known_colour():
    from adaptive_dff.data.camvid import CLASS_NAMES

    assert set(CLASS_NAMES) == set(KNOWN_COLOURS)


@pytest.mark.data
def test_segment_a_real_video_with_the_shipped_model(data_root, tmp_path, capsys):
    source = data_root / "videos" / "cup.mp4"
    out = tmp_path / "cup.mp4"
    assert main(["segment", str(source), "--out", str(out), "--frames", "10", "--regions", "2x2",
                 "--policy", "flow_magnitude", "--threshold", "3", "--no-progress"]) == 0
    frames, fps = read_video(out)
    reference = cv2.VideoCapture(str(source))
    assert len(frames) == 10 and fps == pytest.approx(reference.get(cv2.CAP_PROP_FPS))
    assert frames[0].shape == (int(reference.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(reference.get(cv2.CAP_PROP_FRAME_WIDTH)), 3)
    assert "classes have no palette entry" not in capsys.readouterr().out  # CamVid's colours
