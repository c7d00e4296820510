"""Scheduler policies, regions, the Tracker, DIS flow and calibration (no TensorFlow)."""

import subprocess
import sys

import numpy as np
import pytest

from adaptive_dff.data import SyntheticVideo
from tests.blocked_imports import WITHOUT_HEAVY_DEPENDENCIES
from schedulers import (
    POLICIES,
    Context,
    DISFlow,
    FixedInterval,
    FlowMagnitude,
    FrameDifference,
    KeyBudget,
    RegionGrid,
    Tracker,
    calibrate,
    key_fraction,
    replay,
)


@pytest.fixture(scope="module")
def cut_clip():
    """60 frames of 240x320 with a hard scene cut at frame 30."""
    video = SyntheticVideo(height=240, width=320, num_frames=60, seed=1, scene_cuts=(30,))
    return video, [video.frame(t) for t in range(60)]


def test_import_schedulers_does_not_import_tensorflow():
    code = (
        "import sys, numpy as np, schedulers\n"
        "t = schedulers.Tracker(schedulers.FlowMagnitude(1.0), regions=schedulers.RegionGrid(2, 2, 16))\n"
        "for i in range(3): t.step(np.random.default_rng(i).integers(0, 255, (64, 96, 3), dtype=np.uint8))\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_schedulers_run_on_numpy_and_opencv_alone(tmp_path):
    """What a pipeline of another framework embeds (the README's examples: budgets with and without
    a starting price, regions, the shipped quality predictors with key labels given whole or on a
    coarse grid, calibration, a shared budget, replay, the decision network on a quality predictor)
    imports nothing but numpy and OpenCV; fitting and DecisionModel name the package they need."""
    import pathlib

    code = WITHOUT_HEAVY_DEPENDENCIES + (
        "import numpy as np\n"
        "from schedulers import (DecisionModel, DecisionNetworkScheduler, FrameDifference, KeyBudget,\n"
        "    PropagationQuality, QualityPredictor, RegionGrid, SharedBudget, Tracker, calibrate,\n"
        "    load_default_quality, load_quality_predictor, replay)\n"
        "from schedulers.quality_predictor import DEFAULT_FILE\n"
        "rng = np.random.default_rng(0)\n"
        "base = rng.integers(0, 255, (96, 128, 3), np.uint8)\n"
        "frames = [np.roll(base, 3 * t, axis=1) for t in range(30)]\n"
        "labels = [np.roll(base[..., 0] // 64, 3 * t, axis=1).astype(np.int64) for t in range(30)]\n"
        "tracker = Tracker(KeyBudget(PropagationQuality(), target=0.2))\n"
        "keys = []\n"
        "for t, frame in enumerate(frames):\n"
        "    if tracker.step(frame).any_update:\n"
        "        keys.append(t)\n"
        "        tracker.label_keys(labels[t])\n"
        "assert keys[0] == 0 and 3 <= len(keys) <= 12, keys\n"
        "price = calibrate(PropagationQuality(), clips=[frames[:15]], labels=[labels[:15]],\n"
        "                  target_key_fraction=0.2).threshold\n"
        "assert np.isfinite(price), price\n"
        "regions = Tracker(KeyBudget(PropagationQuality(), target=0.2, price=price), regions=RegionGrid(2, 2, 16))\n"
        "for t in range(8):\n"
        "    if regions.step(frames[t]).any_update:\n"
        "        scores = np.eye(4)[labels[t][::8, ::8]]  # class scores on a stride-8 grid\n"
        "        regions.label_keys(scores)\n"
        "decisions = replay(KeyBudget(FrameDifference(), target=0.2), frames)\n"
        "assert decisions[0].any_update and len(decisions) == 30\n"
        "replay(PropagationQuality(), frames[:10], labels=labels[:10])\n"
        "plain = load_quality_predictor(DEFAULT_FILE)\n"
        "replay(PropagationQuality(predictor=plain, downsample=plain.signals_downsample), frames[:10])\n"
        "shared = SharedBudget(PropagationQuality(), target=0.2)\n"
        "for t in range(10):\n"
        "    for name, decision in shared.step({'a': frames[t], 'b': frames[29 - t]}).items():\n"
        "        if decision.any_update:\n"
        "            shared.tracker(name).label_keys(labels[t if name == 'a' else 29 - t])\n"
        "dvs = Tracker(DecisionNetworkScheduler(model=load_default_quality(key_labels=True)))\n"
        "for t in range(5):\n"
        "    if dvs.step(frames[t]).any_update:\n"
        "        dvs.label_keys(labels[t])\n"
        "def named(call, text):\n"
        "    try:\n"
        "        call()\n"
        "    except ModuleNotFoundError as error:\n"
        "        assert text in str(error), error\n"
        "    else:\n"
        "        raise AssertionError(f'no error naming {text!r}')\n"
        f"named(lambda: DecisionModel.load({str(tmp_path / 'none.keras')!r}), 'DecisionModel needs keras')\n"
        "X, y = rng.random((40, len(plain.signal_names))), rng.random(40)\n"
        "for kind, package in (('ridge', 'scikit-learn'), ('mlp', 'scikit-learn'), ('network', 'keras')):\n"
        "    fit = QualityPredictor(plain.signal_names, plain.signals_version, kind=kind)\n"
        "    named(lambda: fit.fit(X, y), f'QualityPredictor.fit ({kind}) needs {package}')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=pathlib.Path(__file__).resolve().parents[1])


def test_fixed_interval_key_frames_and_params():
    frames = [np.full((16, 16, 3), i, np.uint8) for i in range(23)]
    decisions = replay(FixedInterval(interval=5), frames)
    assert [i for i, d in enumerate(decisions) if d.any_update] == [0, 5, 10, 15, 20]
    assert decisions[7].scores[0] == 2  # frames since the key frame
    policy = FixedInterval(interval=3)
    assert policy.get_params() == {"interval": 3}
    assert policy.set_params(interval=4).interval == 4
    with pytest.raises(ValueError, match="interval must be an integer >= 1, got 0"):
        replay(FixedInterval(interval=0), frames[:2])
    assert set(POLICIES) == {"fixed_interval", "frame_difference", "flow_magnitude", "decision_network",
                             "propagation_quality"}


def test_frame_difference_fires_at_the_scene_cut(cut_clip):
    _, frames = cut_clip
    # Score of every frame against its predecessor: the cut stands out.
    scores = [FrameDifference(threshold=0, downsample=1).score(Context(t, [frames[t]], [frames[t - 1]], [t - 1]))[0]
              for t in range(1, 60)]
    assert int(np.argmax(scores)) + 1 == 30
    threshold = 0.5 * (sorted(scores)[-1] + sorted(scores)[-2])
    decisions = replay(FrameDifference(threshold=threshold, downsample=1), frames)
    assert decisions[30].update.all()
    assert decisions[30].scores[0] >= threshold


def test_frame_difference_matches_numpy_and_edge_feature_ignores_brightness():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    score = FrameDifference(downsample=1).score(Context(1, [a], [b], [0]))[0]
    gray = lambda x: np.round(x.astype(np.float64) @ [0.299, 0.587, 0.114])
    assert score == pytest.approx(np.abs(gray(a) - gray(b)).mean(), abs=0.6)
    # A pure brightness change: large pixel difference, no edge difference.
    scene = np.zeros((64, 64, 3), np.uint8)
    scene[16:48, 16:48] = 120
    brighter = (scene.astype(int) + 60).clip(0, 255).astype(np.uint8)
    ctx = Context(1, [brighter], [scene], [0])
    assert FrameDifference(feature="edge", downsample=1).score(ctx)[0] == 0
    assert FrameDifference(feature="pixel", downsample=1).score(ctx)[0] == pytest.approx(60, abs=1)
    with pytest.raises(ValueError, match="feature must be one of"):
        FrameDifference(feature="hog").score(ctx)


def test_flow_magnitude_against_numpy_with_non_finite_vectors(monkeypatch):
    rng = np.random.default_rng(1)
    flow = rng.standard_normal((30, 40, 2)).astype(np.float32) * 3
    flow[3, 4, 0] = np.nan
    flow[5, 6, 1] = np.inf
    finite = np.isfinite(flow).all(-1)
    expected = np.hypot(flow[..., 0], flow[..., 1])[finite].mean()
    all_nan = np.full((4, 4, 2), np.nan, np.float32)
    img = np.zeros((30, 40, 3), np.uint8)
    scores = FlowMagnitude().score(Context(1, [img, img[:4, :4]], [img, img[:4, :4]], [0, 0], flow=[flow, all_nan]))
    assert scores[0] == pytest.approx(expected, rel=1e-5)
    assert scores[1] == np.inf
    # Flow of another dtype, or a view that is not contiguous, scores the same.
    wide = np.zeros((30, 80, 2), np.float64)
    wide[:, ::2] = flow
    strided = FlowMagnitude().score(Context(1, [img, img], [img, img], [0, 0],
                                            flow=[wide[:, ::2], flow.astype(np.float64)]))
    np.testing.assert_allclose(strided, [expected, expected], rtol=1e-5)
    with pytest.raises(ValueError, match="needs the flow"):
        FlowMagnitude().score(Context(1, [img], [img], [0]))
    # Taller than one block of rows (64 here), and not a multiple of it: the same mean; a NaN in a
    # later block found.
    monkeypatch.setattr("schedulers.policies.MODULUS_BLOCK", 64 * 20)
    tall = rng.standard_normal((150, 20, 2)).astype(np.float32) * 5
    frame = np.zeros((150, 20, 3), np.uint8)
    score = FlowMagnitude().score(Context(1, [frame], [frame], [0], flow=[tall]))[0]
    assert score == pytest.approx(np.hypot(tall[..., 0], tall[..., 1]).astype(np.float64).mean(), rel=1e-6)
    tall[140, 3, 0] = np.nan
    finite = np.isfinite(tall).all(-1)
    score = FlowMagnitude().score(Context(1, [frame], [frame], [0], flow=[tall]))[0]
    assert score == pytest.approx(np.hypot(tall[..., 0], tall[..., 1])[finite].astype(np.float64).mean(), rel=1e-6)


def test_dis_flow_follows_the_convention(cut_clip):
    video, frames = cut_clip
    truth = video.flow(8, 4)  # current 8 -> key 4
    valid = video.valid(8, 4)
    estimate = DISFlow("medium")(frames[8], frames[4])
    epe = np.linalg.norm(estimate - truth, axis=-1)[valid].mean()
    zero = np.linalg.norm(truth, axis=-1)[valid].mean()
    assert zero > 1.0 and epe < 0.5 * zero
    with pytest.raises(ValueError, match="preset must be one of"):
        DISFlow("slow")


def test_region_grid_boxes_cover_and_overlap():
    grid = RegionGrid(2, 3, overlap=16)
    boxes = grid.boxes(100, 150)
    assert len(boxes) == len(grid) == 6
    cover = np.zeros((100, 150), int)
    for y0, y1, x0, x1 in boxes:
        cover[y0:y1, x0:x1] += 1
    assert cover.min() == 1 and cover.max() == 4
    (a, b) = boxes[0], boxes[1]
    assert a[3] - b[2] == 16  # horizontal neighbours share 16 columns
    assert RegionGrid().boxes(7, 9) == [(0, 7, 0, 9)]
    crops = grid.split(np.arange(100 * 150).reshape(100, 150))
    assert crops[4][0, 0] == boxes[4][0] * 150 + boxes[4][2]


def test_region_merge_takes_the_more_confident_region():
    rng = np.random.default_rng(2)
    grid = RegionGrid(2, 2, overlap=10)
    boxes = grid.boxes(40, 50)
    outputs = [rng.standard_normal((y1 - y0, x1 - x0, 3)) for y0, y1, x0, x1 in boxes]
    confidences = [rng.random((y1 - y0, x1 - x0)) for y0, y1, x0, x1 in boxes]
    merged = grid.merge(outputs, confidences, 40, 50)
    for y in range(40):  # brute force reference
        for x in range(50):
            best, value = -1.0, None
            for (y0, y1, x0, x1), out, conf in zip(boxes, outputs, confidences):
                if y0 <= y < y1 and x0 <= x < x1 and conf[y - y0, x - x0] > best:
                    best, value = conf[y - y0, x - x0], out[y - y0, x - x0]
            np.testing.assert_array_equal(merged[y, x], value)
    scalar = grid.merge(outputs, [0.1, 0.9, 0.2, 0.3], 40, 50)
    np.testing.assert_array_equal(scalar[boxes[1][0]:boxes[1][1], boxes[1][2]:boxes[1][3]], outputs[1])
    # NaN confidences count as the lowest: with random NaN holes the reference takes NaN as -inf and,
    # where every region is NaN, the earliest region; no pixel is left unwritten
    holed = [np.where(rng.random(c.shape) < 0.4, np.nan, c) for c in confidences]
    merged = grid.merge(outputs, holed, 40, 50)
    for y in range(40):
        for x in range(50):
            best, value = None, None
            for (y0, y1, x0, x1), out, conf in zip(boxes, outputs, holed):
                if y0 <= y < y1 and x0 <= x < x1:
                    c = conf[y - y0, x - x0]
                    c = -np.inf if np.isnan(c) else c
                    if best is None or c > best:
                        best, value = c, out[y - y0, x - x0]
            np.testing.assert_array_equal(merged[y, x], value)
    halves = RegionGrid(1, 2).merge([np.full((4, 3), 7), np.full((4, 3), 9)], [np.nan, np.nan], 4, 6)
    np.testing.assert_array_equal(halves, np.hstack([np.full((4, 3), 7), np.full((4, 3), 9)]))
    with pytest.raises(ValueError, match="confidence of region 1 is None"):
        grid.merge(outputs, [0.1, None, 0.2, 0.3], 40, 50)
    with pytest.raises(ValueError, match=r"confidence of region 0 has shape \(5, 5\); it must be a number or a map "
                                         r"of its box's size \(25, 30\)"):
        grid.merge(outputs, [np.ones((5, 5)), 0.9, 0.2, 0.3], 40, 50)


@pytest.mark.parametrize(
    "grid, size, message",
    [
        (RegionGrid(4, 4, 8), (3, 100), "does not fit a 3x100 frame"),
        (RegionGrid(2, 2, 64), (100, 100), "overlap 64 px is larger than a region"),
    ],
)
def test_region_grid_errors(grid, size, message):
    with pytest.raises(ValueError, match=message):
        grid.boxes(*size)


def test_region_grid_argument_errors():
    with pytest.raises(ValueError, match="rows must be an integer >= 1, got 0"):
        RegionGrid(0, 1)
    with pytest.raises(ValueError, match="overlap must be an integer >= 0"):
        RegionGrid(2, 2, -1)
    grid = RegionGrid(2, 2, 8)
    with pytest.raises(ValueError, match="rows must be an integer >= 1, got 0"):
        grid.set_params(rows=0, cols=3)
    assert grid.get_params() == {"rows": 2, "cols": 2, "overlap": 8}  # a bad value sets nothing
    with pytest.raises(ValueError, match="has no parameter 'row'"):
        grid.set_params(row=3)
    assert grid.set_params(cols=3).get_params() == {"rows": 2, "cols": 3, "overlap": 8}
    with pytest.raises(ValueError, match=r"split needs an image \[H, W, ...\], got shape \(5,\)"):
        grid.split(np.zeros(5))


def test_tracker_regions_keep_their_own_key_frames():
    # Only the left half changes: with a 1x2 grid only the left region updates.
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    tracker = Tracker(FrameDifference(threshold=5.0, downsample=1), regions=RegionGrid(1, 2))
    first = tracker.step(base)
    assert first.update.all() and np.isnan(first.scores).all()
    changed = base.copy()
    changed[:, :20] = 255 - changed[:, :20]
    decision = tracker.step(changed)
    assert decision.update.tolist() == [True, False]
    assert tracker.key_indices_ == [1, 0]
    np.testing.assert_array_equal(tracker.key_regions_[0], changed[:, :32])


def test_tracker_computes_flow_once_per_region_and_shares_it():
    calls = []

    def flow(current, key):
        calls.append(current.shape)
        return np.ones(current.shape[:2] + (2,), np.float32)

    tracker = Tracker(FlowMagnitude(threshold=10.0), regions=RegionGrid(2, 2, 8), flow=flow)
    frame = np.zeros((48, 64, 3), np.uint8)
    tracker.step(frame)
    assert calls == []  # nothing to compare on the first frame
    decision = tracker.step(frame)
    assert len(calls) == 4 and len(decision.extras["flow"]) == 4
    np.testing.assert_allclose(decision.scores, np.sqrt(2), rtol=1e-6)
    # A policy that does not need flow never computes it.
    tracker = Tracker(FixedInterval(3), flow=flow)
    for _ in range(5):
        assert "flow" not in tracker.step(frame).extras
    assert len(calls) == 4


def test_tracker_bad_frames_are_named():
    tracker = Tracker(FixedInterval(2))
    tracker.step(np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(ValueError, match=r"frame 1 has shape \(10, 14, 3\) but the stream started with \(10, 12, 3\)"):
        tracker.step(np.zeros((10, 14, 3), np.uint8))
    with pytest.raises(TypeError, match="frame 1 must be uint8 RGB, got dtype float32"):
        tracker.step(np.zeros((10, 12, 3), np.float32))
    with pytest.raises(ValueError, match=r"frame 1 must be \[H, W, 3\] RGB"):
        tracker.step(np.zeros((10, 12, 4), np.uint8))
    assert tracker.step(np.zeros((10, 12), np.uint8)).frame_index == 1  # grayscale is accepted
    assert tracker.step(np.zeros((10, 12, 1), np.uint8)).frame_index == 2  # with its channel axis too
    tracker.reset()
    assert tracker.step(np.zeros((5, 5, 3), np.uint8)).any_update  # a new stream
    gray = [np.random.default_rng(t).integers(0, 255, (24, 32), dtype=np.uint8) for t in range(6)]
    plain, channel = Tracker(FrameDifference(5.0)), Tracker(FrameDifference(5.0))
    for frame in gray:
        assert np.array_equal(plain.step(frame).scores, channel.step(frame[:, :, None]).scores, equal_nan=True)
    # class ids past int32 are named when the labels are given, with the frame, not at the next decision
    with pytest.raises(ValueError, match=r"labels of frame 6 hold class 1099511627776; class ids must fit int32"):
        plain.step(gray[0], np.full((24, 32), 2**40, np.int64))
    with pytest.raises(ValueError, match="key_fraction needs at least one decision"):
        key_fraction([])


@pytest.mark.parametrize("policy", [FixedInterval(), FrameDifference(), FlowMagnitude()])
@pytest.mark.parametrize("target", [0.1, 0.2, 0.33])
def test_calibration_meets_the_key_frame_budget(cut_clip, policy, target):
    _, frames = cut_clip
    result = calibrate(policy, frames, target_key_fraction=target)
    assert abs(result.key_fraction - target) <= 0.02 + 1e-9, result.trials
    assert type(result.policy) is type(policy)
    # The returned policy reproduces the fraction on a fresh replay.
    assert key_fraction(replay(result.policy, frames)) == pytest.approx(result.key_fraction)


def test_calibration_to_an_accuracy_target(cut_clip):
    video, frames = cut_clip
    labels = [video.label(t) for t in range(len(frames))]

    def copy_accuracy(decisions):
        """Pixel accuracy of key-frame labels copied to the following frames."""
        key, hits = 0, []
        for t, d in enumerate(decisions):
            key = t if d.any_update else key
            hits.append(np.mean(labels[key] == labels[t]))
        return float(np.mean(hits))

    result = calibrate(FrameDifference(), frames, target_accuracy=0.9, accuracy=copy_accuracy)
    assert result.accuracy >= 0.9
    # The highest threshold evaluated that meets the target was chosen.
    meeting = [t for t, _, acc in result.trials if acc >= 0.9]
    assert result.threshold == max(meeting)
    assert any(acc < 0.9 for _, _, acc in result.trials)


def test_calibration_argument_errors(cut_clip):
    _, frames = cut_clip
    with pytest.raises(ValueError, match="exactly one of"):
        calibrate(FixedInterval(), frames)
    with pytest.raises(ValueError, match="target_key_fraction must be in"):
        calibrate(FixedInterval(), frames, target_key_fraction=1.5)
    with pytest.raises(ValueError, match="needs an accuracy"):
        calibrate(FixedInterval(), frames, target_accuracy=0.9)
    for bad in ("0.1", True, float("nan")):
        with pytest.raises(ValueError, match=f"target_key_fraction must be a finite number, got {bad!r}"):
            calibrate(FrameDifference(), frames, target_key_fraction=bad)
    with pytest.raises(TypeError, match="KeyBudget meets its budget by itself.*starting_price"):
        calibrate(KeyBudget(FrameDifference(), 0.2), frames, target_key_fraction=0.2)
    # one clip's frames given as clips: each frame would be read as a clip of its rows
    with pytest.raises(ValueError, match=r"clips\[0\] has shape \(\d+, \d+, 3\): one frame, not a clip"):
        calibrate(FrameDifference(), clips=frames, target_key_fraction=0.2)
    gray = [f[..., 0] for f in frames]
    with pytest.raises(ValueError, match=r"clips\[0\] has shape \(\d+, \d+\): one frame"):
        calibrate(FrameDifference(), clips=gray, target_key_fraction=0.2)
    assert calibrate(FrameDifference(), clips=[np.stack(gray)], target_key_fraction=0.2).met  # [T, H, W]: a clip
    # labels of several clips: a bad map names its clip; maps given flat are named as such
    labels = [np.zeros(f.shape[:2], np.int64) for f in frames]
    bad = [list(labels[:5]), labels[5:7] + [np.zeros((3, 3, 0))] + labels[8:10]]
    with pytest.raises(ValueError, match=r"clip 1: labels of frame 2 have shape \(3, 3, 0\)"):
        calibrate(FrameDifference(), clips=[frames[:5], frames[5:10]], labels=bad, target_key_fraction=0.2)
    with pytest.raises(ValueError, match=r"labels go per clip, as clips do"):
        calibrate(FrameDifference(), clips=[frames[:5], frames[5:10]], labels=labels[:10], target_key_fraction=0.2)
    # an accuracy that is NaN (an empty class's IoU, say) is no accuracy met
    with pytest.raises(ValueError, match="accuracy.*returned nan at threshold=0.0"):
        calibrate(FrameDifference(), frames, target_accuracy=0.9, accuracy=lambda decisions: float("nan"))


def test_calibration_search_follows_the_policy_not_the_value_type(cut_clip):
    _, frames = cut_clip
    result = calibrate(FrameDifference(threshold=10), frames, target_key_fraction=0.1)  # an int threshold
    assert result.met and abs(result.key_fraction - 0.1) <= 0.02
    assert isinstance(result.threshold, float) and result.trials[0][0] == 0.0  # the real-valued search
    assert len(result.trials) < 25  # stops once within half the tolerance


def test_calibration_reports_a_budget_it_cannot_meet():
    frames = [np.full((16, 16, 3), i, np.uint8) for i in range(10)]
    with pytest.warns(UserWarning, match="cannot meet key fraction 0.150"):
        result = calibrate(FixedInterval(), frames, target_key_fraction=0.15)
    assert not result.met and result.key_fraction in (0.1, 0.2)


def test_calibration_on_a_region_grid(cut_clip):
    _, frames = cut_clip
    result = calibrate(FlowMagnitude(), frames, target_key_fraction=0.2, regions=RegionGrid(2, 2, 16))
    assert result.met
    decisions = replay(result.policy, frames, RegionGrid(2, 2, 16))
    assert key_fraction(decisions) == pytest.approx(result.key_fraction)
    assert len({tuple(d.update) for d in decisions}) > 2  # regions decide apart


def test_a_policy_shared_by_two_streams_compares_each_with_its_own_key():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    policy = FrameDifference(threshold=1.0, downsample=1)
    first, second = Tracker(policy), Tracker(policy)
    first.step(a)
    second.step(b)
    first.step(a)  # caches the key of the first stream
    assert second.step(b).scores[0] == 0.0  # identical to its own key frame


def test_tracker_checks_flow_output_and_non_finite_flow_updates():
    frame = np.zeros((24, 32, 3), np.uint8)
    bad = Tracker(FlowMagnitude(1.0), flow=lambda c, k: np.zeros((3, 3, 2), np.float32))
    bad.step(frame)
    with pytest.raises(ValueError, match=r"returned shape \(3, 3, 2\) for region 0 of frame 1; expected \(24, 32, 2\)"):
        bad.step(frame)
    nan = Tracker(FlowMagnitude(1.0), flow=lambda c, k: np.full(c.shape[:2] + (2,), np.nan, np.float32))
    nan.step(frame)
    decision = nan.step(frame)
    assert decision.update.all() and np.isinf(decision.scores).all()


def test_tracker_type_checks_and_dis_input_checks():
    with pytest.raises(TypeError, match="policy must be a policy instance"):
        Tracker(FixedInterval)
    with pytest.raises(TypeError, match="regions must be a RegionGrid"):
        Tracker(FixedInterval(), regions=(2, 2))
    tracker = Tracker(FlowMagnitude(1.0), regions=RegionGrid(4, 4))
    tracker.step(np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(ValueError, match="too small; OpenCV's DIS flow needs at least 12 px"):
        tracker.step(np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(TypeError, match="DISFlow: current must be uint8"):
        DISFlow()(np.zeros((20, 20, 3), np.float32), np.zeros((20, 20, 3), np.uint8))


def test_region_grid_checks_only_the_split_axes():
    assert RegionGrid(2, 1, 40).boxes(200, 30) == [(0, 120, 0, 30), (80, 200, 0, 30)]


def test_a_policy_with_stream_state_serves_one_tracker_at_a_time():
    """Two streams on one PropagationQuality (or KeyBudget) would mix their losses since the key,
    and the second Tracker's reset wipes the first's: the older Tracker's next step is refused by
    name. A Tracker made afresh in a loop, and stateless policies shared by two, work as before."""
    from schedulers import PropagationQuality

    rng = np.random.default_rng(8)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(4)]
    for make in (PropagationQuality, lambda: KeyBudget(FrameDifference(), 0.2)):
        policy = make()
        first = Tracker(policy)
        first.step(frames[0])
        first.step(frames[1])
        second = Tracker(policy)
        second.step(frames[0])
        with pytest.raises(ValueError, match=f"this {type(policy).__name__} keeps the state of one stream and "
                                             "now follows another Tracker's.*policy.clone"):
            first.step(frames[2])
        with pytest.raises(ValueError, match="now follows another Tracker's"):
            first.observe(frames[2])  # the two-phase step too
        second.step(frames[1])  # the newer one goes on
        first.reset()  # takes the policy back for a new stream
        first.step(frames[0])
        with pytest.raises(ValueError, match="now follows another Tracker's"):
            second.step(frames[2])
        tracker = None
        for _ in range(2):  # a new Tracker per stream, the old one still bound while the new one is made
            tracker = Tracker(policy)
            for frame in frames:
                tracker.step(frame)
        clone_a, clone_b = Tracker(policy.clone()), Tracker(policy.clone())
        for frame in frames:
            clone_a.step(frame)
            clone_b.step(frame)
    shared = FrameDifference(threshold=5.0)  # no stream state: two trackers may share it
    a, b = Tracker(shared), Tracker(shared)
    for frame in frames:
        assert np.array_equal(a.step(frame).update, b.step(frame).update)
    # a budget's clone wraps a clone of its policy; two budgets around one PropagationQuality are refused
    budget = KeyBudget(PropagationQuality(), target=0.2)
    assert budget.clone().policy is not budget.policy and budget.clone().policy.get_params() == \
        budget.policy.get_params()
    inner = PropagationQuality()
    first = Tracker(KeyBudget(inner, 0.2))
    first.step(frames[0])
    second = Tracker(KeyBudget(inner, 0.2))
    second.step(frames[0])
    with pytest.raises(ValueError, match="this PropagationQuality keeps the state of one stream"):
        first.step(frames[1])
    # the decision network on the quality predictor keeps the signals since each key too
    from schedulers import DecisionNetworkScheduler
    from schedulers.quality_predictor import load_default_quality

    network = DecisionNetworkScheduler(load_default_quality())
    first = Tracker(network)
    first.step(frames[0])
    Tracker(network).step(frames[0])
    with pytest.raises(ValueError, match="this DecisionNetworkScheduler keeps the state of one stream"):
        first.step(frames[1])


def test_the_stream_guard_holds_under_threads():
    import threading

    errors = []

    def work():
        try:
            for _ in range(3000):
                Tracker(KeyBudget(FrameDifference(), 0.2))
        except Exception as error:  # noqa: BLE001 - any error fails the test below
            errors.append(error)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert not errors, errors[:3]
