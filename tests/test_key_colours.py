"""The key labels' colour disagreement: against a numpy reference, in the signals, through the Tracker."""

import numpy as np
import pytest

from schedulers import Context, Decision, PropagationQuality, QualityPredictor, QualitySignals, RegionGrid, Tracker
from schedulers.key_colours import CELLS, LEVELS, KeyColours
from schedulers.quality_signals import BASE_SIGNALS, KEY_LABEL_SIGNAL


def _reference_disagreement(key_rgb, key_labels, rgb, carried):
    """Per pixel: the most frequent key class among the key pixels of the same quantised colour and the
    same place (lowest class among equals; never seen: a disagreement), numpy loops only."""
    def cell(image, y, x):
        h, w = image.shape[:2]
        r, g, b = (int(v) * LEVELS // 256 for v in image[y, x])
        return (r, g, b, y * CELLS // h, x * CELLS // w)

    votes: dict = {}
    for y in range(key_rgb.shape[0]):
        for x in range(key_rgb.shape[1]):
            if key_labels[y, x] >= 0:
                votes.setdefault(cell(key_rgb, y, x), []).append(int(key_labels[y, x]))
    differ = known = 0
    for y in range(rgb.shape[0]):
        for x in range(rgb.shape[1]):
            if carried[y, x] < 0:
                continue
            known += 1
            seen = votes.get(cell(rgb, y, x))
            if seen is None:
                differ += 1
                continue
            counts = np.bincount(seen)
            differ += int(np.argmax(counts)) != carried[y, x]
    return differ / known if known else 0.0


def test_disagreement_matches_a_numpy_reference_on_random_data():
    rng = np.random.default_rng(3)
    # Few colours, so cells repeat and votes are contested; some unknown labels on both sides.
    palette = rng.integers(0, 256, (6, 3), dtype=np.uint8)
    key_rgb = palette[rng.integers(0, 6, (24, 28))]
    key_labels = rng.integers(-1, 4, (24, 28))
    rgb = palette[rng.integers(0, 6, (24, 28))]
    rgb[:3] = rng.integers(0, 256, (3, 28, 3), dtype=np.uint8)  # colours the key never showed
    carried = rng.integers(-1, 4, (24, 28))
    got = KeyColours(key_rgb, key_labels).disagreement(rgb, carried)
    assert got == pytest.approx(_reference_disagreement(key_rgb, key_labels, rgb, carried), abs=1e-12)
    assert 0.0 < got < 1.0


def test_labels_that_fit_the_colours_agree_and_a_cut_disagrees():
    rng = np.random.default_rng(5)
    labels = np.zeros((32, 32), np.int64)
    labels[:, 16:] = 1
    key = np.where(labels[..., None] == 0, [200, 40, 40], [40, 40, 200]).astype(np.uint8)
    colours = KeyColours(key, labels)
    assert colours.disagreement(key, labels) == 0.0
    other = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # another scene
    assert colours.disagreement(other, labels) > 0.9
    assert colours.disagreement(key, np.full((32, 32), -1)) == 0.0  # nothing known: nothing to judge


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"key labels of shape \(4, 5\)"):
        KeyColours(np.zeros((4, 6, 3), np.uint8), np.zeros((4, 5), int))
    with pytest.raises(ValueError, match=r"carried labels of shape \(3, 6\)"):
        KeyColours(np.zeros((4, 6, 3), np.uint8), np.zeros((4, 6), int)).disagreement(
            np.zeros((4, 6, 3), np.uint8), np.zeros((3, 6), int))


def _two_colour_scene(shift: int):
    """A red square on a blue background, moved right by ``shift`` pixels; its labels."""
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[...] = (30, 30, 220)
    labels = np.zeros((48, 64), np.int64)
    frame[12:36, 10 + shift:34 + shift] = (220, 30, 30)
    labels[12:36, 10 + shift:34 + shift] = 1
    return frame, labels


def test_the_signal_is_low_along_the_true_flow_and_high_along_a_wrong_one():
    key, key_labels = _two_colour_scene(0)
    current, _ = _two_colour_scene(8)
    signals = QualitySignals(downsample=1, key_labels=True)
    assert signals.names == BASE_SIGNALS + (KEY_LABEL_SIGNAL,)
    true_flow = np.zeros((48, 64, 2), np.float32)
    true_flow[12:36, 18:42, 0] = -8  # the square's pixels come from 8 px to the left in the key
    along = dict(zip(signals.names, signals.region(0, current, key, 0, 1, true_flow, key_labels)))
    signals.reset()
    still = dict(zip(signals.names, signals.region(0, current, key, 0, 1, np.zeros_like(true_flow), key_labels)))
    # Along the true flow only the background the square uncovered (8 columns of 24 rows) keeps the key's
    # square label; zero flow leaves the square's labels behind on both sides: twice as many.
    assert along[KEY_LABEL_SIGNAL] == pytest.approx(8 * 24 / (48 * 64), abs=1e-9)
    assert still[KEY_LABEL_SIGNAL] == pytest.approx(2 * 8 * 24 / (48 * 64), abs=1e-9)
    # Class scores [h, w, C] are read by their argmax.
    signals.reset()
    scores = np.eye(2)[key_labels]
    assert signals.region(0, current, key, 0, 1, true_flow, scores)[-1] == along[KEY_LABEL_SIGNAL]


def test_the_signal_needs_the_key_labels_and_names_what_is_missing():
    key, _ = _two_colour_scene(0)
    flow = np.zeros((48, 64, 2), np.float32)
    with pytest.raises(ValueError, match=r"region 0, frame 2: the signal key_label_disagreement needs the labels "
                                         r"of the key frame \(1\)"):
        QualitySignals(key_labels=True).region(0, key, key, 1, 2, flow)
    with pytest.raises(ValueError, match=r"key labels of shape \(48, 60\) do not fit the key region"):
        QualitySignals(key_labels=True).region(0, key, key, 1, 2, flow, np.zeros((48, 60), int))
    context = Context(frame_index=2, regions=[key], key_regions=[key], key_indices=[1], flow=[flow])
    with pytest.raises(ValueError, match="Tracker.label_keys"):
        QualitySignals(key_labels=True)(context)


def test_the_tracker_keeps_each_key_regions_labels():
    frames = [_two_colour_scene(s)[0] for s in range(0, 12, 3)]
    labels = [_two_colour_scene(s)[1] for s in range(0, 12, 3)]
    tracker = Tracker(PropagationQuality(), regions=RegionGrid(1, 2, overlap=0), flow=lambda c, k: np.zeros(
        c.shape[:2] + (2,), np.float32))
    with pytest.raises(RuntimeError, match="call step"):
        tracker.label_keys(labels[0])
    tracker.step(frames[0])
    with pytest.raises(ValueError, match=r"labels of frame 0 have shape \(48, 63\); the frames are 48x64"):
        tracker.label_keys(labels[0][:, :63])
    with pytest.raises(ValueError, match="labels of frame 0 are float64"):
        tracker.label_keys(labels[0].astype(float))
    tracker.label_keys(labels[0])
    assert [k.shape for k in tracker.key_labels_] == [(48, 32), (48, 32)]
    # A frame that updates only the right region: only its labels change.
    tracker.observe(frames[1])
    tracker.commit(Decision(update=np.array([False, True]), scores=np.zeros(2)))
    tracker.label_keys(labels[1])
    np.testing.assert_array_equal(tracker.key_labels_[0], labels[0][:, :32])
    np.testing.assert_array_equal(tracker.key_labels_[1], labels[1][:, 32:])
    context = tracker.observe(frames[2])
    assert context.key_labels is tracker.key_labels_


def _label_predictor():
    names = BASE_SIGNALS + (KEY_LABEL_SIGNAL,)
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (200, len(names)))
    y = np.clip(1 - 0.5 * X[:, -1] - 0.01 * X[:, 0], 0, 1)
    return QualityPredictor(names, QualitySignals.version, kind="ridge").fit(X, y)


def test_a_label_aware_predictor_runs_through_the_tracker_when_labels_are_given():
    frames = [_two_colour_scene(s)[0] for s in range(0, 24, 2)]
    labels = [_two_colour_scene(s)[1] for s in range(0, 24, 2)]
    tracker = Tracker(PropagationQuality(_label_predictor(), threshold=0.3))
    keys = []
    for frame, label in zip(frames, labels):
        decision = tracker.step(frame)
        tracker.label_keys(label)
        keys.append(bool(decision.update[0]))
        if len(keys) > 1:
            assert np.isfinite(decision.extras["quality"]).all()
    assert keys[0] and 1 <= sum(keys) < len(keys)
    without = Tracker(PropagationQuality(_label_predictor()))
    without.step(frames[0])
    with pytest.raises(ValueError, match="key_label_disagreement needs the key frames' labels"):
        without.step(frames[1])


def test_which_policies_read_the_key_labels():
    from schedulers import DecisionNetworkScheduler, FrameDifference, KeyBudget, load_default_quality
    from schedulers.base import reads_key_labels

    assert reads_key_labels(KeyBudget(PropagationQuality(), target=0.2))  # the shipped predictors: with labels
    assert reads_key_labels(PropagationQuality(_label_predictor()))
    plain = load_default_quality()
    assert not reads_key_labels(PropagationQuality(plain)) and not reads_key_labels(KeyBudget(FrameDifference(), 0.2))
    assert reads_key_labels(DecisionNetworkScheduler(model=load_default_quality(key_labels=True)))
    assert not reads_key_labels(DecisionNetworkScheduler(model=plain))
    assert load_default_quality(key_labels=True).signal_names == BASE_SIGNALS + (KEY_LABEL_SIGNAL,)


def test_the_default_policy_takes_the_predictor_that_fits_what_the_pipeline_gives():
    frames = [_two_colour_scene(s)[0] for s in range(0, 8, 2)]
    labels = [_two_colour_scene(s)[1] for s in range(0, 8, 2)]
    flow = lambda c, k: np.zeros(c.shape[:2] + (2,), np.float32)  # noqa: E731
    labelled, plain = PropagationQuality(), PropagationQuality()
    with_labels, without = Tracker(labelled, flow=flow), Tracker(plain, flow=flow)
    for frame, label in zip(frames, labels):
        with_labels.step(frame, label)
        without.step(frame)
    assert labelled.signals_.names[-1] == KEY_LABEL_SIGNAL and plain.signals_.names == BASE_SIGNALS


def test_calibration_replays_with_the_labels_and_names_a_mismatch():
    from schedulers import calibrate, replay

    frames = [_two_colour_scene(s)[0] for s in range(0, 24, 2)]
    labels = [_two_colour_scene(s)[1] for s in range(0, 24, 2)]
    flow = lambda c, k: np.zeros(c.shape[:2] + (2,), np.float32)  # noqa: E731
    policy = PropagationQuality(_label_predictor())
    found = calibrate(policy, frames, labels=labels, target_key_fraction=0.25, flow=flow)
    assert abs(found.key_fraction - 0.25) <= 0.1
    decisions = replay(policy.clone().set_params(threshold=found.threshold), frames, flow=flow, labels=labels)
    assert np.mean([d.update[0] for d in decisions]) == pytest.approx(found.key_fraction)
    with pytest.raises(ValueError, match=r"labels give \[11\] label maps per clip for \[12\] frames"):
        calibrate(policy, frames, labels=labels[:-1], target_key_fraction=0.25, flow=flow)
    with pytest.raises(ValueError, match="needs the key frames' labels"):
        calibrate(policy, frames, target_key_fraction=0.25, flow=flow)


def test_calibration_brings_coarse_labels_to_the_frames_once_and_names_a_bad_one():
    """Labels on a coarser grid calibrate as their frame-sized maps do (they are brought to the
    frames' size once, before the trials); a map that fits no stride is named before any trial."""
    from schedulers import calibrate

    frames = [_two_colour_scene(s)[0] for s in range(0, 24, 2)]
    coarse = [_two_colour_scene(s)[1][::4, ::4] for s in range(0, 24, 2)]
    full = [np.repeat(np.repeat(c, 4, axis=0), 4, axis=1) for c in coarse]
    assert full[0].shape == frames[0].shape[:2]
    flow = lambda c, k: np.zeros(c.shape[:2] + (2,), np.float32)  # noqa: E731
    policy = PropagationQuality(_label_predictor())
    on_coarse = calibrate(policy, frames, labels=coarse, target_key_fraction=0.25, flow=flow)
    on_full = calibrate(policy, frames, labels=full, target_key_fraction=0.25, flow=flow)
    assert (on_coarse.threshold, on_coarse.key_fraction) == (on_full.threshold, on_full.key_fraction)
    bad = list(coarse)
    bad[7] = np.zeros((8, 6), int)  # no one stride fits both sides of 48x64
    calls = []

    def counted(current, key):
        calls.append(1)
        return flow(current, key)

    with pytest.raises(ValueError, match=r"labels of frame 7 have shape \(8, 6\)"):
        calibrate(policy, frames, labels=bad, target_key_fraction=0.25, flow=counted)
    assert not calls  # no frame was replayed


def test_pair_signals_select_a_predictors_columns():
    from adaptive_dff.compare.optimal import PairSignals

    names = BASE_SIGNALS + (KEY_LABEL_SIGNAL,)
    values = np.arange(2 * 3 * len(names), dtype=float).reshape(2, 3, len(names))
    signals = PairSignals(values, names, 2, 4)
    plain = signals.select(BASE_SIGNALS)
    assert plain.names == BASE_SIGNALS and np.array_equal(plain.values, values[..., :-1])
    assert signals.select(names) is signals
    assert signals.select(("fb_inconsistency",)) is signals  # missing: left for the predictor's check to name


def test_train_quality_with_key_labels_writes_a_predictor_a_policy_runs_on(tmp_path):
    from schedulers import load_quality_predictor
    from training.config import load_config
    from training.quality import run

    config = load_config("quality", "smoke", ["frames=12", "max_offset=3", "kinds=ridge", "key_labels=true"])
    run(config, str(tmp_path), log=lambda *a: None)
    predictor = load_quality_predictor(tmp_path / "quality.json")
    assert predictor.signal_names == BASE_SIGNALS + (KEY_LABEL_SIGNAL,)
    data = np.load(tmp_path / "dataset.npz")
    disagreement = data["X"][:, -1]
    assert np.all((disagreement >= 0) & (disagreement <= 1)) and disagreement.std() > 0
    frames = [_two_colour_scene(s)[0] for s in range(0, 8, 2)]
    labels = [_two_colour_scene(s)[1] for s in range(0, 8, 2)]
    tracker = Tracker(PropagationQuality(predictor, downsample=predictor.signals_downsample))
    for frame, label in zip(frames, labels):
        tracker.step(frame, label)


def test_large_class_ids_cost_like_small_ones():
    rng = np.random.default_rng(9)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (20, 24))
    carried = rng.integers(0, 3, (20, 24))
    big = np.array([7, 65535, 2**40])  # e.g. void as 65535
    small = KeyColours(rgb, labels).disagreement(rgb, carried)
    assert KeyColours(rgb, big[labels]).disagreement(rgb, big[carried]) == small


def test_a_key_stepped_without_labels_never_keeps_an_older_keys_labels():
    frames = [_two_colour_scene(s)[0] for s in range(0, 8, 2)]
    labels = [_two_colour_scene(s)[1] for s in range(0, 8, 2)]
    flow = lambda c, k: np.zeros(c.shape[:2] + (2,), np.float32)  # noqa: E731
    tracker = Tracker(PropagationQuality(_label_predictor(), threshold=-1.0), flow=flow)  # keys every frame
    tracker.step(frames[0], labels[0])
    tracker.step(frames[1])  # a key whose labels were not given
    assert tracker.key_labels_[0] is None
    with pytest.raises(ValueError, match=r"region 0, frame 2: the signal key_label_disagreement needs the labels "
                                         r"of the key frame \(1\)"):
        tracker.step(frames[2])


def test_bad_labels_given_with_a_frame_change_nothing():
    frames = [_two_colour_scene(s)[0] for s in range(0, 8, 2)]
    labels = [_two_colour_scene(s)[1] for s in range(0, 8, 2)]
    tracker = Tracker(PropagationQuality(_label_predictor()), flow=lambda c, k: np.zeros(c.shape[:2] + (2,),
                                                                                            np.float32))
    tracker.step(frames[0], labels[0])
    with pytest.raises(ValueError, match=r"labels of frame 1 have shape \(48, 60\)"):
        tracker.step(frames[1], labels[1][:, :60])
    assert tracker.frame_index_ == 0  # the frame was not taken: the stream goes on from frame 1
    tracker.step(frames[1], labels[1])
    assert tracker.frame_index_ == 1
    # [H, W, 1] is read as classes
    tracker.step(frames[2], labels[2][..., None])


def test_the_default_predictor_is_chosen_once_per_stream():
    frames = [_two_colour_scene(s)[0] for s in range(0, 8, 2)]
    labels = [_two_colour_scene(s)[1] for s in range(0, 8, 2)]
    policy = PropagationQuality()
    tracker = Tracker(policy, flow=lambda c, k: np.zeros(c.shape[:2] + (2,), np.float32))
    tracker.step(frames[0])
    tracker.step(frames[1])  # decided without labels: the predictor that reads none, for the stream
    tracker.step(frames[2], labels[2])
    tracker.step(frames[3], labels[3])
    assert policy.signals_.names == BASE_SIGNALS
    tracker.reset()
    tracker.step(frames[0], labels[0])
    tracker.step(frames[1], labels[1])
    assert policy.signals_.names[-1] == KEY_LABEL_SIGNAL


def test_colour_cells_follow_their_formula_on_every_level():
    from schedulers.key_colours import colour_cells

    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    rgb[0, :3] = [[0, 0, 0], [255, 255, 255], [31, 32, 224]]  # the edges of the levels
    q = rgb.astype(np.int64) * LEVELS // 256
    y, x = np.mgrid[0:37, 0:45]
    expected = ((q[..., 0] * LEVELS + q[..., 1]) * LEVELS + q[..., 2]) * CELLS * CELLS + (y * CELLS // 37) * CELLS \
        + x * CELLS // 45
    got = colour_cells(rgb)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


def test_output_stride_matches_a_search_over_every_stride():
    import math

    from schedulers.tracker import output_stride

    def search(grid, shape):
        (h, w), (H, W) = grid, shape
        if (h, w) == (H, W):
            return 1
        fits = [s for s in range(2, 2 * max(H, W) + 2)
                if h in (H // s, math.ceil(H / s)) and w in (W // s, math.ceil(W / s))]
        scale = math.sqrt(H / h * W / w)

        def rank(s):  # one rounding on both sides, a power of two, the nearest to the mean scale, the larger
            same = (h, w) in ((math.ceil(H / s), math.ceil(W / s)), (H // s, W // s))
            return (not same, bin(s).count("1") != 1, abs(s - scale), -s)

        return min(fits, key=rank) if fits else None

    rng = np.random.default_rng(11)
    for _ in range(3000):
        H, W = (int(v) for v in rng.integers(1, 200, 2))
        if rng.random() < 0.5:
            s = int(rng.integers(2, 33))
            h, w = max(1, (H // s, -(-H // s))[rng.integers(2)]), max(1, (W // s, -(-W // s))[rng.integers(2)])
        else:
            h, w = int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
        assert output_stride((h, w), (H, W)) == search((h, w), (H, W)), (h, w, H, W)
    assert output_stride((60, 80), (480, 640)) == 8 and output_stride((13, 17), (100, 130)) == 8
    assert output_stride((3, 4), (48, 64)) == 16  # 13 to 16 fit both sides
    # Networks' outputs that other strides fit too: CamVid, DeepLab, KITTI at 32, 299x299 at 16 (floor).
    for grid, shape, stride in (((12, 15), (360, 480), 32), ((17, 17), (513, 513), 32), ((11, 38), (375, 1242), 32),
                                ((8, 10), (240, 320), 32), ((18, 18), (299, 299), 16), ((34, 60), (1080, 1920), 32),
                                ((68, 120), (1080, 1920), 16), ((128, 256), (1024, 2048), 8)):
        assert output_stride(grid, shape) == stride, (grid, shape)


def test_labels_on_a_networks_coarser_grid_are_brought_to_the_frame():
    frames = [_two_colour_scene(s)[0] for s in (0, 3)]
    tracker = Tracker(PropagationQuality(), regions=RegionGrid(1, 2, overlap=0), flow=lambda c, k: np.zeros(
        c.shape[:2] + (2,), np.float32))
    rng = np.random.default_rng(2)
    coarse = rng.integers(0, 5, (6, 8))  # stride 8 on 48x64 frames
    tracker.step(frames[0], coarse)
    full = np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)
    np.testing.assert_array_equal(tracker.key_labels_[0], full[:, :32])
    np.testing.assert_array_equal(tracker.key_labels_[1], full[:, 32:])
    # Class scores at stride 16 (3x4): their argmax, then each pixel's cell.
    tracker.observe(frames[1])
    tracker.commit(Decision(update=np.array([True, True]), scores=np.zeros(2)))
    scores = rng.random((3, 4, 5))
    tracker.label_keys(scores)
    full = np.repeat(np.repeat(scores.argmax(-1), 16, axis=0), 16, axis=1)
    np.testing.assert_array_equal(np.hstack(tracker.key_labels_), full)
    with pytest.raises(ValueError, match="at least one class"):
        tracker.label_keys(np.zeros((6, 8, 0)))
    for shape in ((8, 6), (4, 16), (24, 8)):  # no one stride fits both sides
        with pytest.raises(ValueError, match=rf"labels of frame 1 have shape \({shape[0]}, {shape[1]}\)"):
            tracker.label_keys(np.zeros(shape, int))
