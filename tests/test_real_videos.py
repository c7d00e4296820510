"""Policies on real camera video (OpenCV sample clips in the shared data folder)."""

import cv2
import pytest

from adaptive_dff.video import VideoReader
from schedulers import FlowMagnitude, FrameDifference, KeyBudget, PropagationQuality, Tracker, calibrate, replay

pytestmark = pytest.mark.data


def load(data_root, name, count, size=(320, 240)):
    path = data_root / "videos" / name
    if not path.is_file():
        pytest.fail(f"missing real video {path}")
    frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in VideoReader(path, max_frames=count)]
    assert len(frames) == count, f"{path} decoded only {len(frames)} frames"
    return frames


@pytest.mark.parametrize("feature", ["pixel", "edge"])
def test_frame_difference_fires_at_a_hard_cut_between_two_real_videos(data_root, feature):
    box = load(data_root, "box.mp4", 80)
    cup = load(data_root, "cup.mp4", 40)
    # Calibrated on handheld footage alone to a 10% budget ...
    policy = calibrate(FrameDifference(feature=feature), box, target_key_fraction=0.10).policy
    # ... it must fire on the first frame after the cut.
    stream = box[:40] + cup
    decisions = replay(policy, stream)
    assert decisions[40].update.all()
    assert decisions[40].scores[0] > max(d.scores[0] for d in decisions[1:40])


@pytest.mark.parametrize("policy", [FrameDifference(), FlowMagnitude()])
@pytest.mark.parametrize("budget", [0.1, 0.2, 0.33])
def test_calibration_meets_budgets_on_real_video(data_root, policy, budget):
    frames = load(data_root, "box.mp4", 90)
    result = calibrate(policy, frames, target_key_fraction=budget)
    assert abs(result.key_fraction - budget) <= 0.02 + 1e-9, result.trials


def test_tracker_in_a_plain_opencv_loop(data_root):
    """The README's embedding example, on the CCTV clip: a budget of 10% keys holds, and so does
    the simplest policy's (frame difference) loop."""
    for policy, frames, low, high in ((KeyBudget(PropagationQuality(), target=0.1), 200, 15, 25),
                                      (FrameDifference(threshold=6.0), 200, 5, 15)):
        capture = cv2.VideoCapture(str(data_root / "videos" / "vtest.avi"))
        tracker = Tracker(policy)
        recomputed = 0
        for _ in range(frames):
            ok, bgr = capture.read()
            assert ok
            decision = tracker.step(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            recomputed += decision.any_update
        capture.release()
        assert low <= recomputed <= high, (policy, recomputed)  # people walk by: some updates, far fewer than frames


def test_an_intact_real_video_is_not_reported_as_truncated(data_root):
    import warnings

    reader = VideoReader(data_root / "videos" / "box.mp4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        count = sum(1 for _ in reader)
    assert count >= 450 and not reader.truncated
