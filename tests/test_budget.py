"""KeyBudget and SharedBudget: the spend holds on any stream; intervals, hard cuts,
NaN scores and bad input; Tracker's two-phase step; VideoRunner with a budget.

The spend on real video is measured on the OpenCV sample clips (static CCTV,
two hand-held clips) and CamVid's ``val`` clip, downscaled and capped.
``python tests/test_budget.py`` prints the whole table of measured spends.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from schedulers import (
    Context, Decision, DecisionNetworkScheduler, FixedInterval, FlowMagnitude, FrameDifference, KeyBudget, Policy,
    RegionGrid, RegionGridMismatch, SharedBudget, Tracker,
)

SIZE = (160, 120)  # frames are downscaled to this (width, height) for speed
MAX_FRAMES = 240
TARGETS = (0.05, 0.1, 0.2, 0.33, 0.5)
GRIDS = {"1x1": RegionGrid(1, 1), "2x2": RegionGrid(2, 2, 8)}


# -- synthetic ---------------------------------------------------------------------------

class Scripted(Policy):
    """Scores from a table ``[frames, regions]`` (row = frame index)."""

    def __init__(self, table=None, below: bool = False):
        self.table = table
        self.below = below

    @property
    def update_when_below(self):
        return self.below

    def score(self, context):
        return np.asarray(self.table)[context.frame_index]


def run(policy, table, regions=1):
    """Drive ``policy`` over ``len(table)`` frames like a Tracker (frame 0 a key of every region)."""
    img = np.zeros((16, 16, 3), np.uint8)
    keys = [0] * regions
    updates = [np.ones(regions, bool)]
    decisions = []
    for t in range(1, len(table)):
        decision = policy.decide(Context(t, [img] * regions, [img] * regions, list(keys)))
        for r in np.flatnonzero(decision.update):
            keys[r] = t
        updates.append(decision.update)
        decisions.append(decision)
    return np.array(updates), decisions


def intervals(updates):
    """Gaps between consecutive keys of each region."""
    return np.concatenate([np.diff(np.flatnonzero(column)) for column in updates.T])


@pytest.mark.parametrize("rule", ["rank", "price"])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("regions", [1, 4])
@pytest.mark.parametrize("kind", ["noise", "bursts", "constant", "rising"])
def test_spend_holds_on_synthetic_scores_of_any_shape(target, regions, kind, rule):
    rng = np.random.default_rng(int(target * 100) + regions)
    n = int(math.ceil(10 / target)) + 7
    table = {
        "noise": rng.random((n, regions)),
        "bursts": rng.random((n, regions)) * np.where((np.arange(n) // 15) % 3 == 0, 100, 1)[:, None],
        "constant": np.ones((n, regions)),
        "rising": np.cumsum(rng.random((n, regions)), axis=0) ** 2,
    }[kind]
    updates, decisions = run(KeyBudget(Scripted(table), target, rule=rule), table, regions)
    assert abs(updates.mean() - target) <= 0.02 + 0.5 / updates.size, updates.mean()
    assert decisions[-1].extras["budget"]["key_fraction"] == pytest.approx(updates.mean())


def test_keys_go_where_the_scores_are_worst():
    rng = np.random.default_rng(0)
    table = rng.random((400, 4))
    table[:, 2] += 1.0  # region 2 always changes most
    updates, _ = run(KeyBudget(Scripted(table), 0.1), table, 4)
    per_region = updates[1:].mean(axis=0)
    assert per_region[2] > 2 * per_region[[0, 1, 3]].max()
    # A policy that updates below its score: the lowest score is the worst.
    updates, decisions = run(KeyBudget(Scripted(-table, below=True), 0.1), table, 4)
    assert updates[1:].mean(axis=0).argmax() == 2
    np.testing.assert_array_equal(decisions[5].scores, -table[6])  # the wrapped policy's own scores


@pytest.mark.parametrize("target", [0.1, 0.33])
def test_min_and_max_interval_are_respected_per_region(target):
    rng = np.random.default_rng(1)
    table = rng.random((500, 4)) * np.where(rng.random((500, 1)) < 0.1, 50, 1)
    table[:, 3] = 0.0  # never worst: only max_interval gives it keys
    updates, decisions = run(KeyBudget(Scripted(table), target, min_interval=2, max_interval=12), table, 4)
    gaps = intervals(updates)
    assert gaps.min() >= 2 and gaps.max() <= 12
    assert np.diff(np.flatnonzero(updates[:, 3])).max() == 12
    assert any(d.extras["budget"]["forced"][3] for d in decisions)
    assert abs(updates.mean() - target) <= 0.02


def test_a_hard_cut_gets_a_key_at_once():
    rng = np.random.default_rng(2)
    table = 1.0 + rng.random((300, 1))
    for cut in (120, 201, 260):
        table[cut:cut + 1] = 40.0
    updates, decisions = run(KeyBudget(Scripted(table), 0.1), table)
    assert updates[[120, 201, 260], 0].all()
    assert decisions[119].extras["budget"]["ranks"][0] == 1.0
    assert abs(updates.mean() - 0.1) <= 0.02


def test_nan_scores_count_as_worst_and_updates_never_stop():
    table = np.full((200, 2), np.nan)
    table[:, 1] = np.linspace(0, 1, 200)
    updates, decisions = run(KeyBudget(Scripted(table), 0.2), table, 2)
    assert updates[1:, 0].sum() > updates[1:, 1].sum()  # the NaN region is the worst
    assert abs(updates.mean() - 0.2) <= 0.02
    assert np.isnan(decisions[0].scores[0])
    all_nan = np.full((100, 1), np.nan)
    updates, _ = run(KeyBudget(Scripted(all_nan), 0.2), all_nan)
    assert abs(updates.mean() - 0.2) <= 0.02


def test_a_region_kept_with_a_non_finite_score_is_not_kept_silently(caplog):
    """The budget holds a region whose score is not finite to its credit (a key as soon as it
    allows): the first time one is kept, the stream's log says so, once."""
    import logging

    table = np.full((60, 1), np.inf)
    with caplog.at_level(logging.WARNING, logger="schedulers.budget"):
        updates, decisions = run(KeyBudget(Scripted(table), 0.1), table)
    kept = [r for r in caplog.records if "not finite and were kept" in r.getMessage()]
    # warned at the 1st and the 10th wait; every decision carries the count
    waits = np.cumsum(~updates[1:, 0])
    assert [d.extras["budget"]["kept_non_finite"] for d in decisions] == waits.tolist() and waits[-1] >= 10
    assert len(kept) == 2 and "frame 2: region(s) [0]" in kept[0].getMessage()
    assert "1 such region-frame(s) kept" in kept[0].getMessage()
    assert "10 such region-frame(s) kept" in kept[1].getMessage()
    # the worst score overdraws at once (frame 1), then the credit decides
    assert updates[1, 0] and not updates[2:4, 0].any() and abs(updates.mean() - 0.1) <= 0.03
    caplog.clear()
    finite = np.linspace(0, 1, 60)[:, None]
    with caplog.at_level(logging.WARNING, logger="schedulers.budget"):
        run(KeyBudget(Scripted(finite), 0.1), finite)
    assert not caplog.records
    made = iter([table, table])
    shared = SharedBudget(lambda: Scripted(next(made)), target=0.1)
    img = np.zeros((16, 16, 3), np.uint8)
    streams = {name: shared.stream(name) for name in ("a", "b")}
    with caplog.at_level(logging.WARNING, logger="schedulers.budget"):
        for t in range(1, 30):
            for stream in streams.values():
                stream.decide(Context(t, [img], [img], [0]))
    named = sorted(r.getMessage().split(",")[0] for r in caplog.records if "not finite" in r.getMessage())
    assert named == ["stream 'a'", "stream 'a'", "stream 'b'", "stream 'b'"]  # each at its 1st and 10th wait


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"target must be a key-frame fraction in \(0, 1\], got 0"):
        KeyBudget(FrameDifference(), 0)
    with pytest.raises(ValueError, match="got 1.5"):
        KeyBudget(FrameDifference(), 1.5)
    with pytest.raises(ValueError, match=r"min_interval \(5\) must not exceed max_interval \(3\)"):
        KeyBudget(FrameDifference(), 0.3, min_interval=5, max_interval=3)
    with pytest.raises(ValueError, match="cannot be spent with min_interval 4"):
        KeyBudget(FrameDifference(), 0.5, min_interval=4)
    with pytest.raises(ValueError, match="max_interval 5 forces more keys"):
        KeyBudget(FrameDifference(), 0.1, max_interval=5)
    with pytest.raises(ValueError, match="min_interval must be an integer >= 1"):
        KeyBudget(FrameDifference(), 0.1, min_interval=0)
    with pytest.raises(TypeError, match="no score"):
        KeyBudget(Policy(), 0.1)
    with pytest.raises(TypeError, match="no score"):
        KeyBudget(object(), 0.1)
    with pytest.raises(TypeError, match="the class FrameDifference"):
        KeyBudget(FrameDifference, 0.1)
    budget = KeyBudget(Scripted(np.zeros((9, 1))), 0.2)
    run(budget, np.zeros((5, 1)))
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="frame 2 comes after frame 4"):
        budget.decide(Context(2, [img], [img], [0]))
    with pytest.raises(TypeError, match="nothing to calibrate|no threshold"):
        budget.decision_threshold()


def test_params_reset_and_flow_needs():
    budget = KeyBudget(FlowMagnitude(3.0), 0.2, max_interval=20)
    assert budget.get_params() == {"policy": budget.policy, "target": 0.2, "min_interval": 1, "max_interval": 20,
                                   "rule": "auto", "price": None}
    assert budget.needs_flow and not KeyBudget(FrameDifference(), 0.2).needs_flow
    assert "KeyBudget(policy=FlowMagnitude(threshold=3.0)" in repr(budget)
    table = np.random.default_rng(3).random((30, 1))
    first, _ = run(KeyBudget(Scripted(table), 0.2), table)
    again = KeyBudget(Scripted(table), 0.2)
    run(again, table)
    assert hasattr(again, "controller_")
    again.reset()
    assert not hasattr(again, "controller_")
    second, _ = run(again, table)
    np.testing.assert_array_equal(first, second)


def test_tracker_with_a_budget_and_its_two_phase_step():
    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(60)]
    tracker = Tracker(KeyBudget(FlowMagnitude(), 0.2), regions=RegionGrid(2, 2, 4))
    decisions = [tracker.step(f) for f in frames]
    fraction = np.mean(np.concatenate([d.update for d in decisions]))
    assert abs(fraction - 0.2) <= 0.02 and "flow" in decisions[3].extras and "budget" in decisions[3].extras
    # observe + commit is step, split in two.
    split = Tracker(FixedInterval(3))
    assert split.observe(frames[0]) is None
    with pytest.raises(ValueError, match="frame 0 of a stream is a key frame of every region"):
        split.commit(Decision(update=np.zeros(1, bool), scores=np.zeros(1)))
    split.commit(Decision(update=np.ones(1, bool), scores=np.zeros(1)))
    context = split.observe(frames[1])
    assert context.frame_index == 1 and context.key_indices == [0]
    with pytest.raises(ValueError, match="has 2 regions, the frame has 1"):
        split.commit(Decision(update=np.ones(2, bool), scores=np.zeros(2)))
    split.commit(split.policy.decide(context))
    with pytest.raises(RuntimeError, match="call observe"):
        split.commit(split.policy.decide(context))


# -- shared budget (synthetic) ------------------------------------------------------------

def noise_frames(seed, n, shape, motion):
    """Frames of a textured scene sliding by ``motion`` px per frame (plus noise)."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (shape[0] // 4, shape[1] // 4 + n, 3), dtype=np.uint8),
                      (shape[1] + 4 * n, shape[0]), interpolation=cv2.INTER_LINEAR)
    return [np.clip(base[:, int(t * motion): int(t * motion) + shape[1]].astype(int)
                    + rng.integers(-3, 4, (shape[0], shape[1], 3)), 0, 255).astype(np.uint8) for t in range(n)]


def test_shared_budget_spends_on_the_stream_that_moves_and_holds_the_total():
    streams = {"still": noise_frames(0, 150, (48, 64), 0.0), "moving": noise_frames(1, 150, (60, 80), 1.5),
               "late": noise_frames(2, 150, (48, 64), 0.5)}
    shared = SharedBudget(FrameDifference(), target=0.15, regions=RegionGrid(2, 2, 4))
    for t in range(150):
        frames = {name: f[t] for name, f in streams.items() if (name != "late" or t >= 40)}
        if t >= 130:
            frames.pop("still")  # a stream that stops
        decisions = shared.step(frames)
        assert set(decisions) == set(frames)
    assert abs(shared.key_fraction - 0.15) <= 0.01
    assert shared.stream_key_fraction("moving") > 2 * shared.stream_key_fraction("still")
    assert shared.region_frames == 4 * (150 + 130 + 110)


def test_shared_budget_streams_deciding_one_at_a_time_follow_their_motion():
    """Trackers that step their streams one after another (as compare's shared arm does) must not
    phase-lock: the stream that moves most gets the most keys, the still one the fewest."""
    from schedulers import Tracker

    streams = {"slow": noise_frames(3, 60, (48, 64), 0.3), "fast": noise_frames(4, 60, (48, 64), 2.5),
               "mid": noise_frames(5, 60, (48, 64), 1.0)}
    shared = SharedBudget(FrameDifference(), target=0.33)
    trackers = {name: Tracker(shared.stream(name)) for name in streams}
    keys = dict.fromkeys(streams, 0)
    for t in range(60):
        for name, frames in streams.items():
            keys[name] += int(trackers[name].step(frames[t]).any_update)
    assert keys["fast"] > keys["mid"] > keys["slow"], keys
    assert abs(shared.key_fraction - 0.33) <= 0.01


def test_shared_budget_with_keys_per_step_and_separate_trackers():
    streams = [noise_frames(s, 120, (48, 64), m) for s, m in [(3, 0.2), (4, 2.0), (5, 0.7)]]
    per_step = SharedBudget(FlowMagnitude, keys_per_step=1)
    for t in range(120):
        per_step.step({i: s[t] for i, s in enumerate(streams)})
    assert abs(per_step.keys - (120 + 3 - 1)) <= 2  # frame 0 spends 3 keys, then ~1 per step
    # Each stream stepped by its own Tracker, drawing from one budget.
    shared = SharedBudget(FrameDifference(), target=0.2)
    trackers = [Tracker(shared.stream(f"cam{i}")) for i in range(3)]
    for t in range(120):
        for tracker, frames in zip(trackers, streams):
            tracker.step(frames[t])
    assert abs(shared.key_fraction - 0.2) <= 0.01
    assert shared.stream_key_fraction("cam1") > shared.stream_key_fraction("cam0")


def test_shared_budget_bad_input():
    with pytest.raises(ValueError, match="exactly one of target"):
        SharedBudget(FrameDifference())
    with pytest.raises(ValueError, match="exactly one of target"):
        SharedBudget(FrameDifference(), 0.1, keys_per_step=2)
    with pytest.raises(ValueError, match="keys_per_step must be an integer >= 1"):
        SharedBudget(FrameDifference(), keys_per_step=0)
    with pytest.raises(ValueError, match=r"target must be a key-frame fraction in \(0, 1\]"):
        SharedBudget(FrameDifference(), 2.0)
    with pytest.raises(TypeError, match="no score"):
        SharedBudget(Policy(), 0.1)
    shared = SharedBudget(FrameDifference(), 0.1, regions=RegionGrid(2, 2))
    with pytest.raises(RegionGridMismatch, match=r"uses regions RegionGrid\(rows=1, cols=4"):
        shared.stream("wide", regions=RegionGrid(1, 4))
    tracker = Tracker(shared.stream("one"))  # a 1x1 tracker on a 2x2 budget
    frame = np.zeros((32, 32, 3), np.uint8)
    tracker.step(frame)
    with pytest.raises(RegionGridMismatch, match="has 1 regions per frame"):
        tracker.step(frame)
    with pytest.raises(ValueError, match="already draws"):
        shared.stream("one")
    with pytest.raises(TypeError, match="non-empty dict"):
        shared.step([frame])
    per_step = SharedBudget(FrameDifference(), keys_per_step=1)
    alone = Tracker(per_step.stream("a"))
    alone.step(frame)
    with pytest.raises(ValueError, match="use SharedBudget.step"):
        alone.step(frame)
    shared.close("one")
    with pytest.raises(ValueError, match="was closed"):
        tracker.step(frame)


def test_video_runner_with_a_budget():
    from adaptive_dff import VideoRunner
    from tests.helpers import tiny_dff

    model = tiny_dff()
    frames = noise_frames(6, 30, (64, 64), 1.0)
    runner = VideoRunner(model, KeyBudget(FlowMagnitude(), 0.25), regions=RegionGrid(2, 2, 16))
    steps = [runner.step(f) for f in frames]
    assert abs(np.mean(np.concatenate([s.update for s in steps])) - 0.25) <= 0.02
    assert "budget" in steps[5].extras and steps[5].scores.shape == (4,)
    shared = SharedBudget(FrameDifference(), target=0.2)
    runners = [VideoRunner(model, shared.stream(f"r{i}")) for i in range(2)]
    for t in range(30):
        for i, r in enumerate(runners):
            r.step(frames[t] if i == 0 else frames[29 - t])
    assert abs(shared.key_fraction - 0.2) <= 0.01


# -- real video ---------------------------------------------------------------------------

VIDEOS = ("vtest.avi", "box.mp4", "cup.mp4")  # static CCTV, two hand-held clips


def read_clip(data_root, name: str, max_frames: int = MAX_FRAMES) -> list:
    """RGB frames of a sample video or of CamVid's ``val`` clip, downscaled to :data:`SIZE`."""
    if name == "camvid-val":
        paths = sorted((data_root / "camvid" / "val").glob("*.png"))[:max_frames]
        images = [cv2.imread(str(p)) for p in paths]
    else:
        capture = cv2.VideoCapture(str(data_root / "videos" / name))
        images = []
        while len(images) < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            images.append(bgr)
        capture.release()
    if len(images) < 100 or any(i is None for i in images):
        pytest.fail(f"could not read clip {name} from {data_root}")
    return [cv2.cvtColor(cv2.resize(i, SIZE, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB) for i in images]


def fit_decision_model(frames) -> "object":
    """A small DecisionModel on OpenCV pair features of ``frames`` (CamVid's calibration part):
    the target is the share of pixels whose warp error is under 6 grey levels in 100."""
    from schedulers import DecisionModel, OpenCVPairFeatures
    from schedulers.pair_features import resize_features

    features = OpenCVPairFeatures()
    X, y = [], []
    for key in range(0, len(frames) - 1, 3):
        for offset in (1, 4, 9):
            if key + offset < len(frames):
                pair = features(frames[key + offset], frames[key])
                X.append(resize_features(pair, (8, 8)))
                y.append(float(np.mean(pair[..., 3] < 0.06)))
    return DecisionModel(conv_filters=8, dense_units=(16,), epochs=15, seed=0).fit(np.stack(X), np.array(y))


def make_policy(name: str, decision_model=None):
    if name == "decision_network":
        return DecisionNetworkScheduler(model=decision_model, target=0.9)
    return {"frame_difference": FrameDifference, "flow_magnitude": FlowMagnitude}[name]()


def measured_spend(policy, frames, grid, target) -> float:
    """Key fraction of region-frames of ``KeyBudget(policy, target)`` over ``frames``."""
    tracker = Tracker(KeyBudget(policy, target), regions=grid)
    return float(np.mean(np.concatenate([tracker.step(f).update for f in frames])))


def long_enough(frames, target) -> bool:
    """The promise holds on streams at least 10 key intervals long."""
    return len(frames) >= 10 / target


@pytest.fixture(scope="module")
def clips(data_root):
    return {name: read_clip(data_root, name) for name in VIDEOS + ("camvid-val",)}


@pytest.fixture(scope="module")
def decision_model(clips):
    return fit_decision_model(clips["camvid-val"][:34])  # CamVid's calibration frames only


def check_spend(policy_name, grid, targets, clips, decision_model=None):
    failures = []
    for name, frames in clips.items():
        for target in targets:
            if long_enough(frames, target):
                spend = measured_spend(make_policy(policy_name, decision_model), frames, GRIDS[grid], target)
                if abs(spend - target) > 0.02:
                    failures.append(f"{name} {grid} target {target}: spent {spend:.3f}")
    assert not failures, failures


@pytest.mark.data
@pytest.mark.parametrize("grid", list(GRIDS))
def test_frame_difference_spend_holds_on_real_video(clips, grid):
    check_spend("frame_difference", grid, TARGETS, clips)


@pytest.mark.data
@pytest.mark.parametrize("grid, targets, names", [
    ("1x1", (0.1, 0.33), VIDEOS + ("camvid-val",)), ("2x2", (0.2,), ("vtest.avi", "cup.mp4"))])
def test_flow_magnitude_spend_holds_on_real_video(clips, grid, targets, names):
    check_spend("flow_magnitude", grid, targets, {k: clips[k] for k in names})


@pytest.mark.data
def test_decision_network_spend_holds_on_real_video(clips, decision_model):
    check_spend("decision_network", "1x1", (0.2,), {"camvid-val": clips["camvid-val"]}, decision_model)


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("policy", ["flow_magnitude", "decision_network"])
@pytest.mark.parametrize("grid", list(GRIDS))
def test_every_policy_grid_and_target_on_real_video(clips, decision_model, policy, grid):
    check_spend(policy, grid, TARGETS, clips, decision_model)


@pytest.mark.data
@pytest.mark.parametrize("policy, grid, target", [("frame_difference", "2x2", 0.1), ("flow_magnitude", "1x1", 0.2)])
def test_shared_budget_total_holds_over_the_real_clips(clips, policy, grid, target):
    shared = SharedBudget(make_policy(policy), target=target, regions=GRIDS[grid])
    for t in range(max(len(f) for f in clips.values())):
        shared.step({name: frames[t] for name, frames in clips.items() if t < len(frames)})
    assert abs(shared.key_fraction - target) <= 0.01, shared.key_fraction
    # The static CCTV camera gets fewer keys than the hand-held clips.
    assert shared.stream_key_fraction("vtest.avi") < shared.stream_key_fraction("cup.mp4")


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("policy", ["frame_difference", "flow_magnitude", "decision_network"])
@pytest.mark.parametrize("grid", list(GRIDS))
def test_shared_budget_every_target_over_the_real_clips(clips, decision_model, policy, grid):
    for target in TARGETS:
        shared = SharedBudget(make_policy(policy, decision_model), target=target, regions=GRIDS[grid])
        for t in range(max(len(f) for f in clips.values())):
            shared.step({name: frames[t] for name, frames in clips.items() if t < len(frames)})
        assert abs(shared.key_fraction - target) <= 0.01, (target, shared.key_fraction)


def spend_table(data_root) -> None:
    """Print the spend of every policy, grid, target and clip (``python tests/test_budget.py``)."""
    clip_frames = {name: read_clip(data_root, name) for name in VIDEOS + ("camvid-val",)}
    model = fit_decision_model(clip_frames["camvid-val"][:34])
    print("policy            grid  target  " + "  ".join(f"{n:>10}" for n in clip_frames) + "  shared")
    for policy in ("frame_difference", "flow_magnitude", "decision_network"):
        for grid in GRIDS:
            for target in TARGETS:
                cells = []
                for frames in clip_frames.values():
                    ok = long_enough(frames, target)
                    cells.append(f"{measured_spend(make_policy(policy, model), frames, GRIDS[grid], target):10.3f}"
                                 if ok else f"{'(short)':>10}")
                shared = SharedBudget(make_policy(policy, model), target=target, regions=GRIDS[grid])
                for t in range(max(len(f) for f in clip_frames.values())):
                    shared.step({n: f[t] for n, f in clip_frames.items() if t < len(f)})
                print(f"{policy:17} {grid}  {target:6.2f}  " + "  ".join(cells) + f"  {shared.key_fraction:6.3f}",
                      flush=True)


if __name__ == "__main__":
    import os
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    spend_table(pathlib.Path(os.environ.get("ADAPTIVE_DFF_DATA", root.parent / "shared" / "data")))


@pytest.mark.parametrize("rule", ["rank", "price"])
def test_scores_that_differ_only_in_their_last_bits_are_ranked_and_cut_alike(rule):
    """A flat run of scores (a renewal score whose loss stopped growing) and a score a rounding
    error above it: no hard cut, the same rank, the same keys (the last bits of a mean depend on
    how a SIMD sum was split, so two runs of one stream may differ there)."""
    from schedulers.budget_control import BudgetController

    plateau = 0.16573414236069284
    decisions = []
    for nudge in (0.0, 2e-16, -2e-16):
        rng = np.random.default_rng(5)
        controller = BudgetController(0.1, slope=0.009, early=0.018, rule=rule, history=100, horizon=100)
        if rule == "price":
            controller.start_price(plateau)
        updates = []
        for t in range(1, 40):
            score = plateau + (nudge if t % 3 == 0 else 0.0) if t > 4 else rng.uniform(0.01, 0.1)
            controller.charge(1, 0)
            ranks, exceptional = controller.ranks(np.array([score]))
            if t > 12:
                assert not exceptional[0]
                assert ranks[0] == controller.ranks(np.array([plateau]))[0][0]
            update, _ = controller.allocate(np.array([score]), np.array([True]), np.array([False]), 1,
                                            ages=np.array([t]))
            updates.append(bool(update[0]))
        decisions.append(updates)
    assert decisions[0] == decisions[1] == decisions[2]


class CutAfterCut(Policy):
    """A frame difference to the key: small changing values, and a jump to stay once a scene cut
    lies between the key and the frame (until the next key)."""

    def __init__(self, cuts=(), seed: int = 0):
        self.cuts = cuts
        self.seed = seed

    def score(self, context):
        rng = np.random.default_rng(self.seed + context.frame_index)
        base = rng.uniform(1.0, 2.0, context.num_regions)
        cut = [any(k < c <= context.frame_index for c in self.cuts) for k in context.key_indices]
        return base + 50.0 * np.asarray(cut)


CUTS = {"a": (40, 75), "b": (30, 52, 97)}


@pytest.mark.parametrize("cuts", CUTS.values())
def test_a_cut_is_keyed_at_once_even_after_an_earlier_one(cuts):
    """Cuts closer together than the 100 recent scores: an earlier cut's score must not hide the next
    (it counts as a jump from the frame before, far above the scores that were no cut)."""
    policy = KeyBudget(CutAfterCut(cuts), 0.1)
    updates, decisions = run(policy, np.zeros((130, 1)))
    assert updates[list(cuts), 0].all(), [t for t in range(130) if updates[t, 0]]
    assert abs(updates.mean() - 0.1) <= 0.03


class ConfidenceAfterCut(CutAfterCut):
    """A confidence (higher = better, updated where low, as the decision network's): about 0.9, and
    0.1 once a scene cut lies between the key and the frame."""

    update_when_below = True

    def score(self, context):
        rng = np.random.default_rng(self.seed + context.frame_index)
        base = rng.uniform(0.85, 0.95, context.num_regions)
        cut = [any(k < c <= context.frame_index for c in self.cuts) for k in context.key_indices]
        return np.where(cut, 0.1, base)


@pytest.mark.parametrize("cuts", CUTS.values())
def test_a_cut_in_a_confidence_is_keyed_at_once_even_after_an_earlier_one(cuts):
    """A score updated where low is ranked negated (below 0): the jump from the frame before is
    measured from the lowest ordinary score, not from 0, so an earlier cut does not hide the next."""
    policy = KeyBudget(ConfidenceAfterCut(cuts), 0.1)
    updates, decisions = run(policy, np.zeros((130, 1)))
    assert updates[list(cuts), 0].all(), [t for t in range(130) if updates[t, 0]]
    flagged = [d.frame_index for d in decisions if d.extras["budget"]["cuts"][0]]
    assert set(cuts) <= set(flagged), flagged
    assert abs(updates.mean() - 0.1) <= 0.03


def test_a_cut_in_a_confidence_a_frame_after_a_key_is_a_jump_from_the_lowest_score():
    """On the first frame after its key a confidence's jump counts from the lowest recent (negated)
    score, as a cost's counts from 0: cuts placed one frame after ordinary keys, with a cut among the
    recent scores (so only the jump can find the next), are all flagged as cuts."""
    frames, cuts = 160, [20]
    while len(cuts) < 4:
        updates, _ = run(KeyBudget(ConfidenceAfterCut(tuple(cuts)), 0.1), np.zeros((frames, 1)))
        later = [t for t in np.flatnonzero(updates[1:, 0]) + 1 if t >= cuts[-1] + 8 and t + 1 < frames]
        assert later, cuts
        cuts.append(int(later[0]) + 1)
    updates, decisions = run(KeyBudget(ConfidenceAfterCut(tuple(cuts)), 0.1), np.zeros((frames, 1)))
    flagged = [d.frame_index for d in decisions if d.extras["budget"]["cuts"][0]]
    assert set(cuts) <= set(flagged), (cuts, flagged)
    assert updates[cuts, 0].all(), cuts


def test_a_shared_budget_keys_each_streams_cuts_even_after_earlier_ones():
    made = iter(CUTS.values())
    shared = SharedBudget(lambda: CutAfterCut(next(made)), target=0.1)
    img = np.zeros((16, 16, 3), np.uint8)
    streams = {name: shared.stream(name) for name in CUTS}
    keys = {name: 0 for name in streams}
    keyed = {name: [] for name in streams}
    flagged = {name: [] for name in streams}
    for t in range(1, 130):
        for name, stream in streams.items():
            decision = stream.decide(Context(t, [img], [img], [keys[name]]))
            assert decision.extras["budget"]["cuts"].shape == (1,)  # the stream's own regions
            if decision.extras["budget"]["cuts"][0]:
                flagged[name].append(t)
            if decision.update[0]:
                keys[name] = t
                keyed[name].append(t)
    assert all(set(CUTS[name]) <= set(k) for name, k in keyed.items()), keyed
    assert all(set(CUTS[name]) <= set(f) for name, f in flagged.items()), flagged


def test_a_failed_score_charges_nothing_and_a_retry_is_charged_once():
    """A frame whose wrapped score raises leaves the budget as it was, so the same frame tried again
    (after the caller mends what failed) is charged once: the accounting matches the frames decided."""

    class Failing(Scripted):
        fail_at = ()

        def score(self, context):
            if context.frame_index in self.fail_at:
                raise RuntimeError(f"no score for frame {context.frame_index}")
            return super().score(context)

    table = np.random.default_rng(5).random((40, 1))
    img = np.zeros((16, 16, 3), np.uint8)
    for fail_at in ((1,), (6,)):  # the stream's first decision, and one later on
        policy = Failing(table)
        policy.fail_at = fail_at
        budget = KeyBudget(policy, 0.2)
        keys = [0]
        for t in range(1, 20):
            for attempt in range(3 if t in fail_at else 1):
                if attempt == 2:
                    policy.fail_at = ()
                try:
                    decision = budget.decide(Context(t, [img], [img], [keys[-1]]))
                except RuntimeError:
                    continue
            if decision.update[0]:
                keys.append(t)
        assert budget.controller_.region_frames == 20 and budget.controller_.keys == len(keys)


def test_a_target_set_mid_stream_applies_from_the_next_frame():
    table = np.random.default_rng(6).random((1000, 1))
    budget = KeyBudget(Scripted(table), 0.1)
    img = np.zeros((16, 16, 3), np.uint8)
    keys = [0]
    for t in range(1, 1000):
        if t == 300:
            budget.set_params(target=0.3)
        if budget.decide(Context(t, [img], [img], [keys[-1]])).update[0]:
            keys.append(t)
    early = sum(1 for k in keys if k < 300) / 300
    late = sum(1 for k in keys if k >= 300) / 700
    assert abs(early - 0.1) <= 0.02 and abs(late - 0.3) <= 0.02
    assert budget.controller_.target == 0.3


@pytest.mark.parametrize("rule", ["rank", "price"])
def test_an_infinite_score_counts_as_a_nan_one(rule):
    """+inf (PropagationQuality's score where the signals are not finite) is the worst score, as NaN
    is: from the stream's first frames on (before any history of scores) the two decide alike."""
    table = np.random.default_rng(11).random((80, 1)) + 0.5
    table[[2, 3, 30, 31, 32]] = np.nan
    infinite = np.where(np.isnan(table), np.inf, table)
    with_nan, _ = run(KeyBudget(Scripted(table), 0.1, rule=rule, price=1.0 if rule == "price" else None), table)
    with_inf, _ = run(KeyBudget(Scripted(infinite), 0.1, rule=rule, price=1.0 if rule == "price" else None),
                      infinite)
    np.testing.assert_array_equal(with_nan, with_inf)
    assert with_inf[2, 0]  # keyed at once on the stream's second decision


def test_ranks_match_a_brute_force_count_on_random_scores():
    """Mid-ranks (ties within the relative slack count half) and the far-above test, against counts
    over every recent score, on random histories with repeated values, and scores that repeat them,
    sit within rounding of them, or are NaN or infinite."""
    from schedulers.budget_control import EQUAL, BudgetController

    rng = np.random.default_rng(11)
    for trial in range(200):
        size = int(rng.integers(1, 60))
        history = np.round(rng.lognormal(0.0, 1.0, size), int(rng.integers(1, 4)))
        controller = BudgetController(0.1, history=100)
        controller.recent.extend(history.tolist())
        controller.recent_cuts.extend([False] * size)
        picks = rng.choice(history, 6)
        scores = np.concatenate([rng.lognormal(0.0, 1.0, 6), picks, picks * (1 + 1e-12), picks * (1 - 1e-6),
                                 [np.nan, np.inf, -np.inf, 0.0]])
        ranks, exceptional = controller.ranks(scores)
        ordered = np.sort(history)
        for score, rank, far in zip(scores, ranks, exceptional):
            if np.isnan(score) or score == np.inf:
                assert rank == 1.0 and far
                continue
            slack = EQUAL * max(abs(score), 1e-300) if np.isfinite(score) else 0.0
            expected = (np.sum(history < score - slack) + np.sum(history <= score + slack)) / (2.0 * size)
            assert rank == expected, (trial, score)
            high, median = ordered[-1], ordered[size // 2]
            assert far == (size >= 8 and score > high + max(high - median, EQUAL * high)), (trial, score)
