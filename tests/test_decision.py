"""DVSNet-style decision network: DecisionModel (fit/predict/score/save/load),
DecisionNetworkScheduler (static and dynamic target), OpenCV pair features,
calibration of the target."""

import subprocess
import sys

import numpy as np
import pytest

from adaptive_dff.data import SyntheticVideo
from schedulers import (
    Context,
    DecisionModel,
    DecisionNetworkScheduler,
    OpenCVPairFeatures,
    calibrate,
    replay,
)
from schedulers.pair_features import resize_features


def learnable_set(rng, n):
    """Feature grids whose confidence is a smooth function of channel means."""
    X = rng.standard_normal((n, 6, 6, 3)).astype(np.float32)
    X[..., 0] += rng.uniform(-2, 2, (n, 1, 1))
    y = 1.0 / (1.0 + np.exp(-(1.5 * X[..., 0].mean((1, 2)) - 0.5 * X[..., 1].mean((1, 2)))))
    return X, y.astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X, y = learnable_set(rng, 600)
    return DecisionModel(epochs=40, seed=1).fit(X, y)


def test_decision_model_learns_and_scores_on_held_out_data(fitted):
    X, y = learnable_set(np.random.default_rng(1), 200)
    assert fitted.predict(X).shape == (200,)
    assert fitted.score(X, y) > 0.8
    mae = np.abs(fitted.predict(X) - y).mean()
    assert mae < 0.5 * np.abs(y - y.mean()).mean()
    assert fitted.get_params()["dense_units"] == (64, 32)


def test_decision_model_errors():
    model = DecisionModel()
    with pytest.raises(RuntimeError, match="not fitted yet"):
        model.predict(np.zeros((1, 4, 4, 2)))
    with pytest.raises(ValueError, match=r"X must be \[N, rows, cols, C\]"):
        model.fit(np.zeros((3, 4, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="X has 3 samples but y has 2"):
        model.fit(np.zeros((3, 4, 4, 1)), np.zeros(2))
    with pytest.raises(ValueError, match=r"y must be confidence scores in \[0, 1\]"):
        model.fit(np.zeros((3, 4, 4, 1)), np.array([0.1, 1.5, 0.2]))


def test_decision_model_save_and_load(fitted, tmp_path):
    X, _ = learnable_set(np.random.default_rng(2), 20)
    path = tmp_path / "decision.keras"
    fitted.save(path)
    loaded = DecisionModel.load(path)
    np.testing.assert_allclose(loaded.predict(X), fitted.predict(X), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DecisionModel.load(tmp_path / "missing.keras")
    path.write_bytes(b"not a keras archive")
    with pytest.raises(ValueError, match=r"decision.keras' is not a \.keras file"):
        DecisionModel.load(path)
    (tmp_path / "alone.keras").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"alone.keras' has no metadata file beside it"):
        DecisionModel.load(tmp_path / "alone.keras")
    with pytest.raises(ValueError, match=r"path must end in \.keras"):
        fitted.save(tmp_path / "decision.h5")


class FixedConfidence:
    """A stand-in model: predicts the given confidences in turn."""

    def __init__(self, values):
        self.values = list(values)

    def predict(self, X):
        return np.array([self.values.pop(0) for _ in range(len(X))])


def make_context(t, regions=1):
    img = np.zeros((16, 16, 3), np.uint8)
    flow = np.zeros((16, 16, 2), np.float32)
    return Context(t, [img] * regions, [img] * regions, [0] * regions, flow=[flow] * regions)


def test_scheduler_updates_below_the_target_and_adapts_it():
    static = DecisionNetworkScheduler(model=FixedConfidence([0.95, 0.85]), target=0.9)
    d = static.decide(make_context(1, regions=2))
    assert d.update.tolist() == [False, True] and d.scores.tolist() == [0.95, 0.85]

    dynamic = DecisionNetworkScheduler(
        model=FixedConfidence([0.85, 0.85, 0.88]), target=0.9, dynamic=True, step_down=0.05, step_up=0.01
    )
    first = dynamic.decide(make_context(1))
    assert first.update.tolist() == [True]  # 0.85 < 0.90; the target falls to 0.85
    second = dynamic.decide(make_context(2))
    assert second.extras["targets"][0] == pytest.approx(0.85)
    assert second.update.tolist() == [False]  # 0.85 is not below 0.85; the target rises to 0.86
    third = dynamic.decide(make_context(3))
    assert third.extras["targets"][0] == pytest.approx(0.86) and third.update.tolist() == [False]
    dynamic.reset()
    assert not hasattr(dynamic, "targets_")
    with pytest.raises(ValueError, match="needs a fitted DecisionModel"):
        DecisionNetworkScheduler().decide(make_context(1))


def test_opencv_pair_features_and_resize():
    video = SyntheticVideo(height=96, width=128, num_frames=6, seed=4)
    current, key = video.frame(5), video.frame(0)
    feats = OpenCVPairFeatures()(current, key, video.flow(5, 0))
    assert feats.shape == (96, 128, 4) and feats.dtype == np.float32
    np.testing.assert_allclose(feats[..., 2], np.hypot(feats[..., 0], feats[..., 1]), rtol=1e-5, atol=1e-5)
    # With the exact flow the warp error is far below that of no warping
    # (what remains is the clip's global brightness change).
    still = OpenCVPairFeatures()(current, key, np.zeros((96, 128, 2), np.float32))
    valid = video.valid(5, 0)
    assert feats[..., 3][valid].mean() < 0.6 * still[..., 3][valid].mean()
    grid = resize_features(feats, (8, 8))
    np.testing.assert_allclose(grid[0, 0], feats[:12, :16].mean((0, 1)), rtol=1e-4, atol=1e-5)
    wide = resize_features(np.random.default_rng(0).random((16, 16, 700)), (4, 4))
    assert wide.shape == (4, 4, 700)


def test_import_and_heuristic_features_do_not_import_tensorflow():
    code = (
        "import sys, numpy as np, schedulers\n"
        "s = schedulers.DecisionNetworkScheduler(target=0.8)\n"
        "f = schedulers.OpenCVPairFeatures()(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8))\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_learned_scheduler_on_a_clip_and_its_calibration():
    """Train on (current, key) pairs of one clip with the share of label pixels
    that survive warping as target; schedule and calibrate on another clip."""
    train = SyntheticVideo(height=96, width=160, num_frames=40, seed=5, scene_cuts=(20,))
    features = OpenCVPairFeatures()
    X, y = [], []
    for key in range(0, 36, 3):
        for offset in range(0, 10, 2):
            cur = key + offset
            if cur >= len(train):
                continue
            flow = features.flow(train.frame(cur), train.frame(key))
            X.append(resize_features(features(train.frame(cur), train.frame(key), flow), (8, 8)))
            h, w = flow.shape[:2]
            xs = np.clip(np.round(np.arange(w) + flow[..., 0]), 0, w - 1).astype(int)
            ys = np.clip(np.round(np.arange(h)[:, None] + flow[..., 1]), 0, h - 1).astype(int)
            y.append(np.mean(train.label(key)[ys, xs] == train.label(cur)))
    model = DecisionModel(epochs=60, seed=0).fit(np.stack(X), np.array(y))
    assert model.score(np.stack(X), np.array(y)) > 0.5

    test = SyntheticVideo(height=96, width=160, num_frames=40, seed=6, scene_cuts=(25,))
    frames = [test.frame(t) for t in range(40)]
    scheduler = DecisionNetworkScheduler(model=model, target=0.9)
    decisions = replay(scheduler, frames)
    assert decisions[25].update.all(), "a scene cut must trigger an update"
    result = calibrate(scheduler, frames, target_key_fraction=0.2)
    assert abs(result.key_fraction - 0.2) <= 0.02 + 1e-9, result.trials
    assert 0 <= result.policy.target <= 1


def test_resize_features_against_a_loop_reference_up_and_down():
    rng = np.random.default_rng(9)
    for shape, size in [((13, 7, 14), (4, 4)), ((3, 2, 5), (4, 4)), ((16, 16, 3), (8, 8))]:
        x = rng.standard_normal(shape).astype(np.float32)
        h, w = shape[:2]
        expected = np.zeros(size + (shape[2],), np.float32)
        for i in range(size[0]):
            for j in range(size[1]):
                a, b = int(np.floor(i * h / size[0])), int(np.ceil((i + 1) * h / size[0]))
                c, d = int(np.floor(j * w / size[1])), int(np.ceil((j + 1) * w / size[1]))
                a, c = min(a, h - 1), min(c, w - 1)
                expected[i, j] = x[a:max(b, a + 1), c:max(d, c + 1)].mean((0, 1))
        np.testing.assert_allclose(resize_features(x, size), expected, rtol=1e-5, atol=1e-6)
    x = np.ones((4, 4, 2), np.float32)
    x[0, 0, 0] = np.nan
    assert np.isfinite(resize_features(x, (2, 2))).all()


def test_dynamic_target_stays_in_its_bounds():
    low = DecisionNetworkScheduler(model=FixedConfidence([0.45] * 4), target=0.3, dynamic=True, min_target=0.5)
    first = low.decide(make_context(1))
    assert first.extras["targets"][0] == 0.5 and first.update.all()  # starts clipped into [0.5, 0.99]
    with pytest.raises(ValueError, match="min_target <= max_target"):
        DecisionNetworkScheduler(model=FixedConfidence([0.5]), dynamic=True, min_target=0.9, max_target=0.8).decide(make_context(1))
    with pytest.raises(ValueError, match="target must be in"):
        DecisionNetworkScheduler(model=FixedConfidence([0.5]), target=1.5).decide(make_context(1))


def test_tracker_passes_a_features_function_to_the_learned_scheduler():
    from schedulers import FixedInterval, Tracker  # noqa: F401

    calls = []

    def features(current, key, flow):
        calls.append(flow.shape)
        return np.ones((4, 4, 2), np.float32)

    scheduler = DecisionNetworkScheduler(model=FixedConfidence([0.2, 0.95]), target=0.9, feature_size=(2, 2))
    tracker = Tracker(scheduler, flow=lambda c, k: np.zeros(c.shape[:2] + (2,), np.float32), features=features)
    frame = np.zeros((16, 16, 3), np.uint8)
    tracker.step(frame)
    assert tracker.step(frame).update.all() and not tracker.step(frame).update.any()
    assert calls == [(16, 16, 2)] * 2
    assert scheduler.get_params()["features"] is None  # hyperparameters untouched


def test_scheduler_on_a_quality_predictor_reads_signals_and_updates_where_they_are_not_finite():
    from schedulers import QualitySignals, Tracker, load_decision_model, load_default_quality
    from schedulers.quality_predictor import DEFAULT_FILE

    predictor = load_default_quality()
    scheduler = DecisionNetworkScheduler(model=predictor, target=0.5)
    assert scheduler.needs_flow and not scheduler.needs_flow_features
    assert DecisionNetworkScheduler(model=None).needs_flow_features
    rng = np.random.default_rng(8)
    key = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    current = np.roll(key, 2, axis=1)
    flows = [np.full((32, 48, 2), -1.0, np.float32), np.full((32, 48, 2), np.nan, np.float32)]
    decision = scheduler.decide(Context(3, [current, current], [key, key], [0, 0], flow=flows))
    expected = predictor.predict(QualitySignals().region(0, current, key, 0, 3, flows[0])[None])[0]
    assert decision.scores[0] == pytest.approx(expected) and decision.scores[1] == -np.inf
    assert decision.update.tolist() == [bool(expected < 0.5), True]
    assert isinstance(load_decision_model(DEFAULT_FILE), type(predictor))
    video = SyntheticVideo(height=48, width=64, num_frames=12, seed=4, camera_speed=2.0)
    tracker = Tracker(DecisionNetworkScheduler(model=predictor, target=0.95))
    assert tracker.step(video.frame(0)).update.all()
    assert all(d.scores.shape == (1,) for d in (tracker.step(video.frame(t)) for t in range(1, 12)))


def test_evidence_spearman_matches_scipy_and_bad_lengths_are_named(tmp_path, capsys):
    from scipy.stats import spearmanr

    from adaptive_dff.bench.decision_evidence import common_rows, main, spearman

    rng = np.random.default_rng(9)
    for _ in range(3):
        a, b = rng.normal(size=50), rng.integers(0, 5, 50).astype(float)  # b has ties
        assert spearman(a, b) == pytest.approx(spearmanr(a, b)[0])
        assert spearman(b, b) == pytest.approx(1.0) and spearman(a, -a) == pytest.approx(-1.0)
    assert np.isnan(spearman(a, np.ones(50)))
    frames = [np.zeros((32, 32, 3), np.uint8)] * 3
    with pytest.raises(ValueError, match="3 frames give no row: need more than max_offset=3"):
        common_rows(None, None, None, frames, max_offset=3)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "video.mp4"), "--frames", "0"])
    assert "--frames must be a positive integer, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_common_held_out_rows_compare_both_decision_models():
    from schedulers import QualityPredictor, QualitySignals, RegionGrid
    from adaptive_dff.bench.decision_evidence import common_rows, summarise

    rng = np.random.default_rng(9)
    from adaptive_dff.model import compact_dff

    model = compact_dff(num_classes=5)
    video = SyntheticVideo(height=64, width=96, num_frames=6, seed=5, camera_speed=2.0)
    frames = [video.frame(t) for t in range(6)]
    names = QualitySignals().names
    quality = QualityPredictor(names, QualitySignals.version, kind="ridge").fit(
        rng.uniform(0, 5, (40, len(names))), rng.uniform(0.5, 1, 40))

    class Constant:
        def predict(self, X):
            return np.full(len(X), 0.7)

    rows = common_rows(model, Constant(), quality, frames, key_stride=2, max_offset=2, grid=RegionGrid(1, 2, 8))
    assert rows.shape == (2 * 2 * 2, 3)  # keys 0 and 2, two frames each, two regions
    assert np.all((rows[:, 0] >= 0) & (rows[:, 0] <= 1)) and np.all(rows[:, 1] == 0.7)
    result = summarise(rows)
    assert result["rows"] == 8 and result["decision_model"]["mae"] == pytest.approx(np.abs(0.7 - rows[:, 0]).mean())


def test_a_decision_model_file_of_other_signals_is_refused_by_name(tmp_path):
    import json

    from schedulers import QualitySignals, load_decision_model
    from schedulers.quality_predictor import DEFAULT_FILE, QualityPredictor

    with open(DEFAULT_FILE) as f:
        data = json.load(f)
    data["signals"]["version"] = QualitySignals.version - 1
    old = tmp_path / "old-signals.json"
    old.write_text(json.dumps(data))
    for load in (load_decision_model, lambda p: QualityPredictor.load(p, signals=QualitySignals())):
        with pytest.raises(ValueError, match=r"old-signals\.json.*refit"):
            load(str(old))
    data["signals"]["version"] = QualitySignals.version
    data["signals"]["downsample"] = 2  # another downsample: the scheduler computes its signals at 2
    other = tmp_path / "downsample-2.json"
    other.write_text(json.dumps(data))
    assert load_decision_model(str(other)).signals_downsample == 2
    with pytest.raises(ValueError, match=r"downsample-2\.json.*downsample 2"):
        QualityPredictor.load(str(other), signals=QualitySignals())
