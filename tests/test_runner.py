"""VideoRunner: agreement with the DFF model's own steps, flow reuse, regions,
bad input, and video files (good, truncated, missing, not a video)."""

import warnings

import cv2
import numpy as np
import pytest
from helpers import tiny_dff

from adaptive_dff import VideoReader, VideoRunner
from adaptive_dff.data import SyntheticVideo
from adaptive_dff.video import VideoDecodeWarning
from schedulers import FixedInterval, FlowMagnitude, FrameDifference, RegionGrid


@pytest.fixture(scope="module")
def clip():
    video = SyntheticVideo(height=96, width=160, num_frames=10, seed=2)
    return [video.frame(t) for t in range(10)]


@pytest.fixture(scope="module")
def model():
    return tiny_dff()


class Counting:
    """Wrap a model method and count its calls."""

    def __init__(self, model, name):
        self.calls = 0
        self.original = getattr(model, name)

    def __call__(self, *args):
        self.calls += 1
        return self.original(*args)


def test_runner_matches_the_models_own_key_and_propagation_steps(model, clip):
    runner = VideoRunner(model, FixedInterval(4), keep_logits=True)
    results = list(runner.run(clip))
    assert [r.update[0] for r in results] == [t % 4 == 0 for t in range(10)]
    key = None
    for t, (frame, result) in enumerate(zip(clip, results)):
        if t % 4 == 0:
            logits, key = model.key_step(frame)
        else:
            logits, _ = model.propagate_step(frame, key)
        np.testing.assert_allclose(result.logits, logits.numpy()[0], atol=1e-4)
        np.testing.assert_array_equal(result.labels, np.argmax(result.logits, -1))
        assert result.labels.shape == (96, 160) and result.frame_index == t
    assert results[1].timings["warp"] > 0 and results[1].timings["feature"] == 0
    assert results[4].timings["feature"] > 0 and results[4].timings["flow"] == 0


def test_flow_for_the_decision_is_reused_for_the_warp(model, clip, monkeypatch):
    counter = Counting(model, "run_flow")
    monkeypatch.setattr(model, "run_flow", counter)
    runner = VideoRunner(model, FlowMagnitude(threshold=1e9), regions=RegionGrid(2, 2, 16))
    results = list(runner.run(clip[:4]))
    assert counter.calls == 3 * 4  # one flow per region per propagated frame, not two
    assert all(not r.update.any() for r in results[1:])
    # A policy without flow needs flow only for propagated regions.
    counter.calls = 0
    list(VideoRunner(model, FixedInterval(2), regions=RegionGrid(2, 2, 16)).run(clip[:4]))
    assert counter.calls == 8  # frames 1 and 3 propagate 4 regions each; key frames 0 and 2 need none


def test_regions_update_on_their_own(model, monkeypatch):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 256, 3), dtype=np.uint8)
    changed = base.copy()
    changed[:, :100] = 255 - changed[:, :100]
    counter = Counting(model, "run_features")
    monkeypatch.setattr(model, "run_features", counter)
    runner = VideoRunner(model, FrameDifference(threshold=5.0, downsample=1), regions=RegionGrid(1, 2, 16))
    runner.step(base)
    assert counter.calls == 2
    result = runner.step(changed)
    assert result.update.tolist() == [True, False] and counter.calls == 3
    assert runner.keys_[0][2] == 1 and runner.keys_[1][2] == 0


def test_runner_bad_input_is_named(model, clip):
    runner = VideoRunner(model, FixedInterval(2))
    runner.step(clip[0])
    with pytest.raises(ValueError, match=r"frame 1 has shape \(48, 160, 3\) but the stream started with \(96, 160, 3\)"):
        runner.step(clip[1][:48])
    with pytest.raises(TypeError, match="frame 1 must be uint8 RGB"):
        runner.step(clip[1].astype(np.float32))
    assert runner.step(clip[1]).frame_index == 1  # nothing lost: the stream goes on
    with pytest.raises(ValueError, match="overlap 64 px is larger than a region"):
        VideoRunner(model, FixedInterval(2), regions=RegionGrid(2, 2, 64)).step(clip[0])
    with pytest.raises(TypeError, match="model must be an adaptive_dff.DFFModel"):
        VideoRunner(object(), FixedInterval(2))


def write_video(path, frames, fps=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def test_video_files_good_truncated_missing_and_not_a_video(model, clip, tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, clip)
    reader = VideoReader(path)
    frames = list(reader)
    assert len(frames) == 10 and reader.frames_expected == 10 and not reader.truncated
    assert np.abs(frames[3].astype(int) - clip[3]).mean() < 8  # JPEG-compressed RGB, not BGR
    results = list(VideoRunner(model, FixedInterval(5)).run(path))
    assert len(results) == 10

    truncated = tmp_path / "truncated.avi"
    data = path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    reader = VideoReader(truncated)
    with pytest.warns(VideoDecodeWarning, match=r"decoding stopped at frame \d+ of 10 announced"):
        kept = list(reader)
    assert 0 < len(kept) < 10 and reader.truncated and reader.frames_read == len(kept)
    # On the command line's console the warning is a plain "warning:" line, without Python's source line.
    import contextlib
    import io

    from adaptive_dff.console import console_logging

    err = io.StringIO()
    with contextlib.redirect_stderr(err), console_logging(), warnings.catch_warnings():
        warnings.simplefilter("always")
        list(VideoReader(truncated))
    lines = err.getvalue().splitlines()
    assert any(line.startswith("warning: video file") and "decoding stopped at frame" in line for line in lines)
    assert not any("warnings.warn(" in line or "VideoDecodeWarning" in line for line in lines), lines
    from adaptive_dff.console import _show_own_warnings

    passed = []
    _show_own_warnings(lambda *args: passed.append(args))(UserWarning("not ours"), UserWarning, __file__, 1)
    assert len(passed) == 1  # a warning of another package is shown as Python shows it

    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoReader(tmp_path / "missing.avi")
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError, match="cannot be opened by OpenCV|holds no decodable frame"):
        list(VideoReader(junk))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(VideoReader(path, max_frames=4))) == 4  # stopping early is not truncation


def test_a_folder_of_images_is_a_video(clip, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(clip):
        cv2.imwrite(str(folder / f"seq_{t:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")
    reader = VideoReader(folder, max_frames=7)
    frames = list(reader)
    assert len(frames) == 7 and reader.frames_read == 7 and reader.frames_expected == 10
    for t in range(7):
        np.testing.assert_array_equal(frames[t], clip[t])  # PNG is lossless, name order, RGB

    (folder / "seq_00004.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"seq_00004.png'.*frame 4 of folder.*cannot be decoded"):
        list(VideoReader(folder))
    cv2.imwrite(str(folder / "seq_00004.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"frame 4 of folder.*is 8x8; the sequence started at"):
        list(VideoReader(folder))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        VideoReader(empty)


def test_a_folder_of_unpadded_numbered_images_is_read_in_natural_order(tmp_path):
    from adaptive_dff.video import image_sequence, natural_key

    folder = tmp_path / "frames"
    folder.mkdir()
    order = np.random.default_rng(0).permutation(12)  # written in a shuffled order
    for t in order:
        cv2.imwrite(str(folder / f"img{t}.png"), np.full((6, 8, 3), 20 * t, np.uint8))
    assert [p.rsplit("/", 1)[-1] for p in image_sequence(str(folder))] == [f"img{t}.png" for t in range(12)]
    frames = list(VideoReader(folder))
    assert [int(f[0, 0, 0]) for f in frames] == [20 * t for t in range(12)]  # not img0, img1, img10, img11, img2
    # Zero-padded names (CamVid's) keep plain name order; mixed text and numbers compare part by part.
    padded = [f"0001TP_{n:06d}.png" for n in (8550, 8580, 8610)] + ["Seq05VD_f00000.png", "Seq05VD_f00030.png"]
    assert sorted(padded, key=natural_key) == sorted(padded)
    assert sorted(["b2.png", "a10.png", "a9.png", "A9.png"], key=natural_key) == ["A9.png", "a9.png", "a10.png", "b2.png"]


def test_learned_scheduler_reads_the_flow_networks_features(model, clip):
    from schedulers import DecisionModel, DecisionNetworkScheduler

    channels = model.flow_net.get_layer("features").output.shape[-1]
    rng = np.random.default_rng(3)
    decision_model = DecisionModel(epochs=1).fit(rng.standard_normal((16, 4, 4, channels)), rng.random(16))
    seen = []
    original = decision_model.predict

    def spy(X):
        seen.append(X.shape)
        return original(X)

    decision_model.predict = spy
    policy = DecisionNetworkScheduler(model=decision_model, target=0.5, feature_size=(4, 4))
    results = list(VideoRunner(model, policy, regions=RegionGrid(1, 2, 16)).run(clip[:3]))
    assert seen == [(2, 4, 4, channels)] * 2  # frames 1 and 2, two regions, flow-net features
    assert all(np.all((r.scores >= 0) & (r.scores <= 1)) for r in results[1:])


def test_a_failure_part_way_through_a_frame_leaves_the_stream_intact(model, clip, monkeypatch):
    runner = VideoRunner(model, FixedInterval(3), regions=RegionGrid(1, 2, 16))
    original = model.run_head
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 2:  # the second region of frame 0
            raise RuntimeError("boom")
        return original(*args)

    monkeypatch.setattr(model, "run_head", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        runner.step(clip[0])
    assert runner.keys_ == [] and runner.frame_index_ == -1
    assert runner.step(clip[0]).frame_index == 0  # retried from a clean state
    assert len(runner.keys_) == 2 and runner.step(clip[1]).update.tolist() == [False, False]


def test_region_outputs_merge_by_confidence_as_the_model_predicts_them(model, clip):
    grid = RegionGrid(2, 2, 16)
    result = VideoRunner(model, FixedInterval(5), regions=grid, keep_logits=True).step(clip[0])
    per_region = [model.key_step(crop)[0].numpy()[0] for crop in grid.split(clip[0])]
    confidence = [1.0 / np.exp(lg - lg.max(-1, keepdims=True)).sum(-1) for lg in per_region]
    expected = grid.merge(per_region, confidence, 96, 160)
    np.testing.assert_allclose(result.logits, expected, atol=1e-4)
    assert result.timings["prepare"] > 0 and "targets" not in result.extras


def test_runner_on_a_truncated_video_keeps_what_was_decoded(model, clip, tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, clip)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.warns(VideoDecodeWarning, match=r"decoding stopped at frame (\d+)"):
        results = list(VideoRunner(model, FixedInterval(3)).run(truncated))
    assert 0 < len(results) < 10 and [r.frame_index for r in results] == list(range(len(results)))


class _Spy(FixedInterval):
    """A fixed interval that reads the key labels and records those each context carries."""

    reads_key_labels = True

    def decide(self, context):
        self.seen.append(None if context.key_labels is None else [k.copy() for k in context.key_labels])
        return super().decide(context)


@pytest.mark.parametrize("grid", [RegionGrid(1, 1), RegionGrid(1, 2, 0)])
def test_the_runner_gives_each_region_its_keys_predicted_labels(model, clip, grid):
    spy = _Spy(3)
    spy.seen = []
    runner = VideoRunner(model, spy, regions=grid)
    outputs = [runner.step(frame) for frame in clip[:7]]
    for t, seen in enumerate(spy.seen, start=1):  # frames 1..6; keys at 0 and 3
        key = 0 if t <= 3 else 3
        expected = grid.split(outputs[key].labels)
        assert len(seen) == len(expected)
        for got, want in zip(seen, expected):
            np.testing.assert_array_equal(got, want)
    plain = _Spy(3)
    plain.seen, plain.reads_key_labels = [], False  # a policy that reads none: none kept
    runner = VideoRunner(model, plain, regions=grid)
    for frame in clip[:3]:
        runner.step(frame)
    assert plain.seen == [None, None]
