"""Propagation quality: signals against independent references, the predictor file, the policy's rules."""

import json

import cv2
import numpy as np
import pytest

from schedulers import Context, PropagationQuality, QualityPredictor, QualitySignals, Tracker, load_default_quality
from schedulers.quality_signals import BASE_SIGNALS


def _bilinear_replicate(image, map_x, map_y):
    """Independent bilinear sampling with edge replication (numpy only)."""
    h, w = image.shape
    x = np.clip(map_x, 0, w - 1)
    y = np.clip(map_y, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    return ((1 - fy) * ((1 - fx) * image[y0, x0] + fx * image[y0, x1])
            + fy * ((1 - fx) * image[y1, x0] + fx * image[y1, x1]))


def _gray(rgb):
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float64)


def test_warp_signals_match_a_numpy_reference_on_random_data():
    rng = np.random.default_rng(1)
    key = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    current = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    flow = rng.uniform(-3, 3, (40, 52, 2)).astype(np.float32)
    signals = QualitySignals(downsample=1)
    values = dict(zip(signals.names, signals.region(0, current, key, 0, 3, flow)))
    gy, gx = np.mgrid[0:40, 0:52].astype(np.float64)
    warped = _bilinear_replicate(_gray(key), gx + flow[..., 0], gy + flow[..., 1])
    error = np.abs(_gray(current) - warped)
    # OpenCV rounds grey levels to integers and remaps with fixed-point weights: allow for both.
    assert values["warp_error_mean"] == pytest.approx(error.mean(), abs=0.6)
    assert values["warp_error_p90"] == pytest.approx(np.quantile(error, 0.9), abs=1.5)
    assert values["warp_error_share"] == pytest.approx(np.mean(error > 24), abs=0.02)
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    assert values["flow_mean"] == pytest.approx(magnitude.mean(), rel=1e-4)
    assert values["flow_p90"] == pytest.approx(np.quantile(magnitude, 0.9), abs=0.02)
    assert values["frame_difference"] == pytest.approx(np.abs(_gray(current) - _gray(key)).mean(), abs=0.6)
    assert values["frames_since_key"] == 3


def test_flow_signals_at_downsample_four_match_a_numpy_reference():
    rng = np.random.default_rng(11)
    frame = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    flow = rng.uniform(-6, 6, (40, 56, 2)).astype(np.float32)
    values = dict(zip(BASE_SIGNALS, QualitySignals(downsample=4).region(0, frame, frame, 0, 2, flow)))
    # Shrinking by 4: each working pixel is the mean of the 2x2 pixels at the centre of its 4x4 block,
    # and the vectors are expressed in pixels of the 10x14 working grid.
    blocks = flow.reshape(10, 4, 14, 4, 2)[:, 1:3, :, 1:3].mean(axis=(1, 3)) / 4
    assert values["flow_mean"] == pytest.approx(np.hypot(blocks[..., 0], blocks[..., 1]).mean(), rel=1e-3)
    gradient = (np.abs(np.diff(blocks, axis=1)).mean(axis=(0, 1)).sum()
                + np.abs(np.diff(blocks, axis=0)).mean(axis=(0, 1)).sum())
    assert values["flow_gradient"] == pytest.approx(gradient, rel=1e-3)


def test_flow_on_a_coarse_grid_is_read_in_pixels_of_the_region():
    rng = np.random.default_rng(14)
    frame = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    full = np.zeros((64, 96, 2), np.float32)
    full[..., 0], full[..., 1] = 8.0, -4.0
    coarse = full[::16, ::16].copy()  # a stride-16 grid, vectors still in region pixels
    at_full = QualitySignals(downsample=4).region(0, frame, frame, 0, 1, full)
    at_coarse = QualitySignals(downsample=4).region(0, frame, frame, 0, 1, coarse)
    np.testing.assert_allclose(at_coarse, at_full, rtol=1e-5)
    assert dict(zip(BASE_SIGNALS, at_full))["flow_mean"] == pytest.approx(np.hypot(2.0, 1.0), rel=1e-5)


def test_exact_flow_gives_a_smaller_warp_error_than_zero_flow():
    rng = np.random.default_rng(2)
    import cv2

    key = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 1.5)
    current = np.roll(key, 3, axis=1)  # current[y, x] = key[y, x - 3]: flow dx = -3
    flow = np.zeros((48, 64, 2), np.float32)
    flow[..., 0] = -3
    exact = dict(zip(BASE_SIGNALS, QualitySignals(downsample=1).region(0, current, key, 0, 1, flow)))
    still = dict(zip(BASE_SIGNALS, QualitySignals(downsample=1).region(0, current, key, 0, 1, 0 * flow)))
    assert exact["warp_error_mean"] < 0.2 * still["warp_error_mean"]
    assert exact["flow_mean"] == pytest.approx(3.0)
    assert exact["flow_gradient"] == pytest.approx(0.0, abs=1e-6)


def test_warp_error_sum_counts_each_frame_once_and_resets_at_a_new_key():
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    flow = np.zeros((32, 32, 2), np.float32)
    signals = QualitySignals(downsample=1)
    i_sum, i_mean = signals.names.index("warp_error_sum"), signals.names.index("warp_error_mean")
    key = frames[0]
    means = []
    for t in (1, 2, 3):
        v = signals.region(0, frames[t], key, 0, t, flow)
        means.append(v[i_mean])
        assert v[i_sum] == pytest.approx(sum(means))
    again = signals.region(0, frames[3], key, 0, 3, flow)  # asked twice about frame 3
    assert again[i_sum] == pytest.approx(sum(means))
    new_key = frames[3].copy()
    v = signals.region(0, frames[4], new_key, 3, 4, flow)
    assert v[i_sum] == pytest.approx(v[i_mean])


def test_backward_flow_adds_the_inconsistency_signal():
    rng = np.random.default_rng(4)
    a, b = (rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(2))
    flow = np.full((24, 24, 2), 2.0, np.float32)
    consistent = QualitySignals(downsample=1, backward_flow=lambda k, c: -flow)
    broken = QualitySignals(downsample=1, backward_flow=lambda k, c: flow)
    assert consistent.names[-1] == "fb_inconsistency"
    assert consistent.region(0, a, b, 0, 1, flow)[-1] == pytest.approx(0.0)
    assert broken.region(0, a, b, 0, 1, flow)[-1] == pytest.approx(1.0)


def _fitted(kind="ridge", names=BASE_SIGNALS, n=300, downsample=4):
    rng = np.random.default_rng(5)
    X = rng.uniform(0, 20, (n, len(names)))  # noqa: N806
    y = np.clip(0.95 - 0.03 * X[:, min(1, len(names) - 1)], 0, 1)
    predictor = QualityPredictor(names, QualitySignals.version, kind=kind, signals_downsample=downsample)
    return predictor.fit(X, y), X, y


@pytest.mark.parametrize("kind", ["ridge", "mlp"])
def test_predictor_fits_and_round_trips_through_its_file(tmp_path, kind):
    predictor, X, y = _fitted(kind)
    assert predictor.mean_absolute_error(X, y) < 0.5 * np.abs(y - y.mean()).mean()
    path = tmp_path / "q.json"
    predictor.save(path, target="pixel_accuracy")
    loaded = QualityPredictor.load(path, signals=QualitySignals())
    np.testing.assert_allclose(loaded.predict(X), predictor.predict(X))
    bad = X[:3].copy()
    bad[1, 4] = np.nan
    bad[2, 0] = np.inf
    out = loaded.predict(bad)
    assert np.isfinite(out[0]) and np.isnan(out[1]) and np.isnan(out[2])


def test_network_kind_predicts_in_numpy_what_its_keras_model_predicts(tmp_path):
    rng = np.random.default_rng(13)
    X = rng.uniform(0, 20, (400, len(BASE_SIGNALS)))  # noqa: N806
    y = np.clip(0.95 - 0.03 * X[:, 1], 0, 1)
    predictor = QualityPredictor(BASE_SIGNALS, QualitySignals.version, kind="network", hidden=(8, 4), max_epochs=3)
    predictor.fit(X, y)
    Z = (np.sign(X) * np.log1p(np.abs(X)) - predictor.mean_) / predictor.scale_  # noqa: N806
    keras_out = np.asarray(predictor.network_(Z.astype(np.float32))).reshape(-1)
    np.testing.assert_allclose(predictor.predict(X), keras_out, atol=1e-5)
    predictor.save(tmp_path / "n.json")
    loaded = QualityPredictor.load(tmp_path / "n.json", signals=QualitySignals())
    assert loaded.kind == "network" and [w.shape for w, _ in loaded.layers_] == [(12, 8), (8, 4), (4, 1)]
    np.testing.assert_allclose(loaded.predict(X), keras_out, atol=1e-5)


def test_predictor_files_of_other_signals_or_versions_are_refused(tmp_path):
    predictor, _, _ = _fitted(names=BASE_SIGNALS[:-1] + ("something_else",))
    path = tmp_path / "q.json"
    predictor.save(path)
    with pytest.raises(ValueError, match="something_else"):
        QualityPredictor.load(path, signals=QualitySignals())
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="format version 99"):
        QualityPredictor.load(path)
    data["format_version"] = 1
    data["layers"][0]["weights"] = [[1.0]]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="damaged"):
        QualityPredictor.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not readable"):
        QualityPredictor.load(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        QualityPredictor.load(tmp_path / "missing.json")
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(IsADirectoryError, match="folder.json' is a folder, not a file"):
        QualityPredictor.load(tmp_path / "folder.json")


def test_a_policy_given_the_path_of_a_predictor_file_loads_it_and_refuses_what_is_no_predictor(tmp_path):
    predictor, _, _ = _fitted()
    predictor.save(tmp_path / "q.json")
    policy = PropagationQuality(predictor=tmp_path / "q.json")
    assert isinstance(policy.predictor, QualityPredictor) and policy.predictor.signal_names == predictor.signal_names
    assert isinstance(policy.clone().predictor, QualityPredictor)
    with pytest.raises(FileNotFoundError, match="missing.json' does not exist"):
        PropagationQuality(predictor=str(tmp_path / "missing.json"))
    with pytest.raises(TypeError, match="predictor must be a QualityPredictor, the path of its file, or None; got int"):
        PropagationQuality(predictor=3)


@pytest.mark.parametrize("damage, message", [
    (lambda d: d["layers"][0]["weights"][0].__setitem__(0, float("nan")), "layer 0 weights hold 1 values that are not"),
    (lambda d: d["layers"][-1].__setitem__("bias", [float("inf")]), r"layer \d bias hold 1 values that are not finite"),
    (lambda d: d["mean"].__setitem__(2, float("-inf")), "its mean hold 1 values that are not finite"),
    (lambda d: d["scale"].__setitem__(1, 0.0), "scale holds values at or below 0 .signal 'warp_error_mean'"),
    (lambda d: d.__setitem__("kind", "forest"), "kind 'forest' is not one of"),
])
def test_predictor_files_with_numbers_that_cannot_predict_are_refused(tmp_path, damage, message):
    """NaN or infinite weights (JSON allows them), a scale of 0 or an unknown kind would predict
    nothing useful for every region: refused at load, naming the file and the array."""
    predictor, _, _ = _fitted()
    path = tmp_path / "q.json"
    predictor.save(path)
    data = json.loads(path.read_text())
    damage(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"q.json' is damaged: .*{message}"):
        QualityPredictor.load(path)


def test_a_predictor_fitted_at_another_downsample_is_refused(tmp_path):
    rng = np.random.default_rng(12)
    X = rng.uniform(0, 20, (100, len(BASE_SIGNALS)))  # noqa: N806
    predictor = QualityPredictor(BASE_SIGNALS, QualitySignals.version, kind="ridge", signals_downsample=2)
    predictor.fit(X, np.clip(0.9 - 0.01 * X[:, 1], 0, 1)).save(tmp_path / "q.json")
    with pytest.raises(ValueError, match="downsample 2.*downsample 4"):
        QualityPredictor.load(tmp_path / "q.json", signals=QualitySignals(downsample=4))
    assert QualityPredictor.load(tmp_path / "q.json", signals=QualitySignals(downsample=2)).signals_downsample == 2


def test_the_policy_computes_signals_at_its_predictors_downsample_unless_told_otherwise():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    flow = rng.normal(0, 2, (32, 48, 2)).astype(np.float32)
    context = Context(2, [frame], [frame], [0], flow=[flow])
    for downsample in (2, 8):
        predictor = _fitted(downsample=downsample)[0]
        policy = PropagationQuality(predictor)
        expected = predictor.predict(QualitySignals(downsample=downsample)(context))
        np.testing.assert_allclose(policy.quality(context), expected, rtol=1e-9)  # sums in threads: rounding
        assert policy.signals_.downsample == downsample
    with pytest.raises(ValueError, match=r"downsample=4\): .*fitted on signals at downsample 8; drop downsample="):
        PropagationQuality(predictor, downsample=4).quality(context)


def test_load_quality_predictor_checks_the_file_against_its_own_signals(tmp_path):
    """The loader of ``--quality-model``: the downsample the file records picks the signals it is
    checked against; a .keras DecisionModel and a file of other signals are named."""
    from schedulers import load_quality_predictor

    rng = np.random.default_rng(5)
    X = rng.uniform(0, 20, (100, len(BASE_SIGNALS)))  # noqa: N806
    predictor = QualityPredictor(BASE_SIGNALS, QualitySignals.version, kind="ridge", signals_downsample=2)
    predictor.fit(X, np.clip(0.9 - 0.01 * X[:, 1], 0, 1)).save(tmp_path / "q.json")
    loaded = load_quality_predictor(tmp_path / "q.json")
    assert loaded.signals_downsample == 2
    np.testing.assert_allclose(loaded.predict(X), predictor.predict(X))
    with pytest.raises(ValueError, match="DecisionModel.*--decision-model"):
        load_quality_predictor(tmp_path / "d.keras")
    other, _, _ = _fitted(names=BASE_SIGNALS[:-1] + ("something_else",))
    other.save(tmp_path / "other.json")
    with pytest.raises(ValueError, match="other.json.*something_else"):
        load_quality_predictor(tmp_path / "other.json")


def test_the_shipped_predictor_loads_for_the_default_signals():
    predictor = load_default_quality()
    assert predictor.signal_names == QualitySignals().names
    assert predictor.metrics["models"][predictor.kind]["held_out_mae"]["all"] < predictor.metrics[
        "mean_predictor_mae"]["all"]


class _LinearLoss:
    """A stand-in predictor: quality 1 - g * frames since the key."""

    def __init__(self, g):
        self.g = g

    def check_signals(self, signals):
        pass

    def predict(self, X):
        return 1.0 - self.g * X[:, 0]


@pytest.mark.parametrize("g, price", [(0.01, 1.0), (0.04, 1.0), (0.02, 3.0)])
def test_renewal_rule_keys_at_the_interval_that_minimises_cost_per_frame(g, price):
    # Brute force: the segment length m minimising (price + sum_{i<m} g i) / m.
    costs = {m: (price + g * m * (m - 1) / 2) / m for m in range(1, 200)}
    best = min(costs, key=costs.get)
    policy = PropagationQuality(_LinearLoss(g), threshold=price, rule="renewal", downsample=4)
    tracker = Tracker(policy, flow=lambda c, k: np.zeros(c.shape[:2] + (2,), np.float32))
    frame = np.zeros((32, 32, 3), np.uint8)
    keys = [t for t in range(4 * best + 2) if tracker.step(frame).update[0]]
    intervals = set(np.diff(keys))
    assert intervals <= {best, best + 1} and len(keys) >= 4


@pytest.mark.parametrize("level, price", [(0.2, 1.01), (0.5, 0.97), (0.1, 3.03)])
def test_renewal_rule_keys_a_saturated_loss_by_its_floor(level, price):
    # A loss at its level from the first frame on: the renewal score stays at the level, so only
    # the floor RAMP_FLOOR * (n + 1) / 2 * level passes the price (update = score > threshold), at the
    # first n it does (prices off the floor's steps, so rounding cannot move it).
    from schedulers.quality import RAMP_FLOOR

    expected = next(n for n in range(1, 1000) if max(level, RAMP_FLOOR * (n + 1) / 2 * level) > price)
    policy = PropagationQuality(_SequenceQuality({n: 1.0 - level for n in range(1, 1000)}), threshold=price,
                                downsample=4)
    tracker = Tracker(policy, flow=lambda c, k: np.zeros(c.shape[:2] + (2,), np.float32))
    frame = np.zeros((32, 32, 3), np.uint8)
    keys = [t for t in range(4 * expected + 2) if tracker.step(frame).update[0]]
    assert set(np.diff(keys)) == {expected} and len(keys) >= 4


def _saved_in_hindsight(losses):
    """Reference: the most one key placed at frame s (1..n since the key) would have saved by frame n,
    each frame u >= s carried from it losing the segment's own loss at distance u - s (L_0 = 0)."""
    curve = [0.0] + list(losses)
    n = len(losses)
    best = -np.inf
    for s in range(1, n + 1):
        best = max(best, sum(curve[u] - curve[u - s] for u in range(s, n + 1)))
    return best


def test_hindsight_score_is_the_most_one_earlier_key_would_have_saved():
    from schedulers.quality import RAMP_FLOOR, hindsight_score

    rng = np.random.default_rng(12)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        losses = np.maximum.accumulate(rng.random(n) * rng.choice([0.05, 0.5]))
        if rng.random() < 0.3:  # a cut: the loss jumps and stays
            losses[int(rng.integers(0, n)):] += 0.5
        expected = max(_saved_in_hindsight(losses), RAMP_FLOOR * (n + 1) / 2 * losses[-1])
        assert hindsight_score(losses) == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert hindsight_score(losses, floor=0.0) == pytest.approx(_saved_in_hindsight(losses), rel=1e-12, abs=1e-12)
    # A loss growing linearly at g: (n + 1)^2 / 4 * g for odd n (the key halfway); a jump J after c
    # quiet frames, f frames on: J min(f, c + 1), climbing to the renewal score's (c + 1) J.
    assert hindsight_score(0.1 * np.arange(1, 8)) == pytest.approx(0.1 * 16)
    assert hindsight_score([0, 0, 0, 1, 1, 1, 1]) == pytest.approx(4.0)
    assert hindsight_score([]) == 0.0
    assert hindsight_score([np.inf, 1.0]) == hindsight_score([1.0, np.nan]) == np.inf  # unknown: keyed
    assert hindsight_score([0, 0, 0, 2, 2]) == pytest.approx(4.0)  # a jump J after c quiet frames: J min(f, c + 1)


@pytest.mark.parametrize("price", [0.3, 1.0, 2.5])
def test_hindsight_rule_keys_at_the_first_frame_whose_score_passes_the_price(price):
    losses = {n: min(0.02 * n + (0.4 if n >= 6 else 0.0), 1.0) for n in range(1, 1000)}  # a step at frame 6
    from schedulers.quality import hindsight_score

    expected = next(n for n in range(1, 1000) if hindsight_score([losses[i] for i in range(1, n + 1)]) > price)
    policy = PropagationQuality(_SequenceQuality({n: 1.0 - v for n, v in losses.items()}), threshold=price,
                                rule="hindsight", downsample=4)
    assert policy.score_is_cost
    tracker = Tracker(policy, flow=lambda c, k: np.zeros(c.shape[:2] + (2,), np.float32))
    frame = np.zeros((32, 32, 3), np.uint8)
    keys = [t for t in range(4 * expected + 2) if tracker.step(frame).update[0]]
    assert set(np.diff(keys)) == {expected} and len(keys) >= 4


def test_greedy_rule_and_non_finite_signals_update():
    policy = PropagationQuality(_LinearLoss(0.1), threshold=0.25, rule="greedy", downsample=4)
    tracker = Tracker(policy, flow=lambda c, k: np.zeros(c.shape[:2] + (2,), np.float32))
    frame = np.zeros((32, 32, 3), np.uint8)
    keys = [t for t in range(10) if tracker.step(frame).update[0]]
    assert keys == [0, 3, 6, 9]
    rng = np.random.default_rng(6)
    regions = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(2)]
    flow = [np.zeros((16, 16, 2), np.float32), np.full((16, 16, 2), np.nan, np.float32)]
    predictor, _, _ = _fitted(downsample=1)
    policy = PropagationQuality(predictor, threshold=1e9, downsample=1)
    decision = policy.decide(Context(1, regions, regions, [0, 0], flow=flow))
    assert decision.update.tolist() == [False, True] and np.isinf(decision.scores[1])
    # One non-finite pixel where the shrinking to the signals' grid samples none (downsample 4 reads
    # the 2x2 centre of each 4x4 block): still updated, never kept.
    policy = PropagationQuality(_fitted(downsample=4)[0], threshold=1e9, downsample=4)
    for value in (np.nan, np.inf):
        flow = [np.zeros((16, 16, 2), np.float32), np.zeros((16, 16, 2), np.float32)]
        flow[1][0, 0, 1] = value
        decision = policy.reset().decide(Context(1, regions, regions, [0, 0], flow=flow))
        assert decision.update.tolist() == [False, True] and np.isinf(decision.scores[1])
    # A float64 flow finite as given but beyond float32's range once shrunk: updated too.
    flow = [np.zeros((16, 16, 2)), np.full((16, 16, 2), 1e300)]
    decision = policy.reset().decide(Context(1, regions, regions, [0, 0], flow=flow))
    assert decision.update.tolist() == [False, True] and np.isinf(decision.scores[1])


def test_an_unknown_rule_is_named_when_the_policy_is_made_and_when_it_is_set_later():
    with pytest.raises(ValueError, match="rule must be one of .*got 'bogus'"):
        PropagationQuality(_LinearLoss(0.1), rule="bogus")
    policy = PropagationQuality(_LinearLoss(0.1), downsample=4)
    policy.rule = "bogus"
    tracker = Tracker(policy, flow=lambda c, k: np.zeros(c.shape[:2] + (2,), np.float32))
    frame = np.zeros((32, 32, 3), np.uint8)
    tracker.step(frame)  # the first frame is a key: nothing is scored
    with pytest.raises(ValueError, match="rule must be one of .*got 'bogus'"):
        tracker.step(frame)


def test_policy_refuses_a_predictor_of_other_signals():
    predictor, _, _ = _fitted(names=("frames_since_key",))
    policy = PropagationQuality(predictor)
    frame = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="refit"):
        policy.decide(Context(1, [frame], [frame], [0], flow=[np.zeros((16, 16, 2), np.float32)]))


def test_the_signal_set_follows_a_predictor_changed_in_place_or_a_set_given_from_outside():
    from schedulers.quality_signals import KEY_LABEL_SIGNAL

    rng = np.random.default_rng(12)
    frames = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(2)]
    labels = rng.integers(0, 3, (16, 16))
    context = Context(1, [frames[1]], [frames[0]], [0], flow=[rng.normal(0, 1, (16, 16, 2)).astype(np.float32)],
                      key_labels=[labels])
    predictor, _, _ = _fitted()
    policy = PropagationQuality(predictor)
    policy.quality(context)
    # Refitted in place on the key labels too: the policy builds that signal set at the next frame.
    refit, _, _ = _fitted(names=BASE_SIGNALS + (KEY_LABEL_SIGNAL,))
    for name in ("signal_names", "mean_", "scale_", "layers_"):
        setattr(predictor, name, getattr(refit, name))
    assert np.isfinite(policy.quality(context)).all()
    assert policy.signals_.names == BASE_SIGNALS + (KEY_LABEL_SIGNAL,)
    # A set of another downsample put in place from outside is replaced by the one the predictor needs.
    policy.signals_ = QualitySignals(downsample=2, key_labels=True)
    assert np.isfinite(policy.quality(context)).all() and policy.signals_.downsample == 4


def test_train_quality_smoke_writes_a_loadable_predictor(tmp_path):
    from training.config import load_config
    from training.quality import run

    config = load_config("quality", "smoke", ["frames=12", "max_offset=3", "kinds=ridge"])
    metrics = run(config, str(tmp_path), log=lambda *a: None)
    loaded = QualityPredictor.load(tmp_path / "quality.json", signals=QualitySignals())
    assert loaded.kind == "ridge" and metrics["held_out_rows"] > 0
    assert set(metrics["mean_predictor_mae"]) == {"all", "generated", "camvid"}
    import sklearn

    assert loaded.metrics["versions"]["scikit-learn"] == sklearn.__version__  # what the fit ran on
    with pytest.raises(ValueError, match="target"):
        run(load_config("quality", "smoke", ["target=iou"]), str(tmp_path / "other"))


def test_fit_seed_refits_on_the_rows_already_built(tmp_path):
    from training.config import load_config
    from training.quality import run

    settings = ["frames=12", "max_offset=3", "kinds=mlp"]
    messages = []
    run(load_config("quality", "smoke", settings), str(tmp_path), log=messages.append)
    first = QualityPredictor.load(tmp_path / "quality.json")
    rows = np.load(tmp_path / "dataset.npz")["X"]
    run(load_config("quality", "smoke", settings + ["fit_seed=0"]), str(tmp_path), log=messages.append)
    same = QualityPredictor.load(tmp_path / "quality.json")  # -1 means `seed`, which is 0 here
    # Without videos, a data set of an earlier version (no per-video records) is reused too.
    with np.load(tmp_path / "dataset.npz") as stored:
        np.savez(tmp_path / "dataset.npz", **{k: stored[k] for k in stored.files if not k.startswith("video_")})
    run(load_config("quality", "smoke", settings + ["fit_seed=5"]), str(tmp_path), log=messages.append)
    other = QualityPredictor.load(tmp_path / "quality.json")
    assert sum("reusing the data set" in m for m in messages) == 2  # the rows are not rebuilt
    assert other.metrics["data"]["videos"] == []
    np.testing.assert_array_equal(np.load(tmp_path / "dataset.npz")["X"], rows)
    np.testing.assert_allclose(same.predict(rows), first.predict(rows))
    assert other.seed == 5 and np.abs(other.predict(rows) - first.predict(rows)).max() > 1e-6
    with pytest.raises(ValueError, match="fit_seed"):
        run(load_config("quality", "smoke", ["fit_seed=-2"]), str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()


def test_train_quality_on_object_labels_of_the_generated_clips(tmp_path):
    from training.config import load_config
    from training.quality import run, synthetic_clips

    config = load_config("quality", "smoke", ["frames=12", "max_offset=3", "kinds=ridge",
                                              "synthetic_labels=objects"])
    (_, frames, by_object), = synthetic_clips({**config, "synthetic_clips": 1})
    (_, same_frames, by_class), = synthetic_clips({**config, "synthetic_clips": 1, "synthetic_labels": "classes"})
    np.testing.assert_array_equal(frames[3], same_frames[3])
    assert by_object[3].max() <= 6 and (by_object[3] == 0).any() and not np.array_equal(by_object[3], by_class[3])
    metrics = run(config, str(tmp_path / "objects"), log=lambda *a: None)
    assert metrics["data"]["generated"]["labels"] == "objects"
    plain = run(load_config("quality", "smoke", ["frames=12", "max_offset=3", "kinds=ridge"]),
                str(tmp_path / "classes"), log=lambda *a: None)
    assert plain["mean_predictor_mae"] != metrics["mean_predictor_mae"]  # other targets
    with pytest.raises(ValueError, match="camvid=false"):
        run(load_config("quality", "smoke", ["synthetic_labels=objects", "camvid=true"]), str(tmp_path / "c"))
    with pytest.raises(ValueError, match="'synthetic_labels' must be one of"):
        run(load_config("quality", "smoke", ["synthetic_labels=masks"]), str(tmp_path / "d"))


class _SequenceQuality:
    """A stand-in predictor: the quality of frame n since the key is ``values[n]``."""

    def __init__(self, values):
        self.values = values

    def check_signals(self, signals):
        pass

    def predict(self, X):
        return np.array([self.values[int(n)] for n in X[:, 0]])


def test_monotone_envelope_keeps_the_worst_loss_since_the_key():
    values = {1: 0.9, 2: 0.6, 3: 0.95, 4: 0.9}
    frame = np.zeros((16, 16, 3), np.uint8)
    flow = [np.zeros((16, 16, 2), np.float32)]
    for monotone, expected in ((True, [0.1, 0.7, 0.7, 0.7]), (False, [0.1, 0.7, 0.05, 0.125])):
        policy = PropagationQuality(_SequenceQuality(values), threshold=1e9, monotone=monotone, downsample=4)
        # renewal score n * L_n - sum_{i<n} L_i, with L the (running maximum of the) loss, floored at
        # (n + 1) / 4 * L_n (without the envelope: max(-0.35, 0.05) and max(-0.15, 0.125))
        scores = [policy.decide(Context(t, [frame], [frame], [0], flow=flow)).scores[0] for t in (1, 2, 3, 4)]
        np.testing.assert_allclose(scores, expected, atol=1e-9)


class _ScriptedQuality:
    """A stand-in predictor: the next quality of ``values`` at each call, whatever the signals."""

    def __init__(self, values):
        self.values = list(values)

    def check_signals(self, signals):
        pass

    def predict(self, X):
        return np.full(X.shape[0], self.values.pop(0))


def test_hindsight_rule_counts_a_frame_asked_twice_once_and_keeps_the_worst_loss():
    frame = np.zeros((16, 16, 3), np.uint8)
    flow = [np.zeros((16, 16, 2), np.float32)]
    # frame 1 asked twice (losses 0.3, then 0.1: the second replaces the first), a dip at frame 2
    # (0.05, kept at 0.1), then 0.6 and 0.8: the hindsight scores of [0.3], [0.1], [0.1, 0.1],
    # [0.1, 0.1, 0.6] and [0.1, 0.1, 0.6, 0.8] (at frame 4 the best key is two frames back:
    # 1.4 - 0.1), each at least the floor (n + 1) / 4 * L_n
    policy = PropagationQuality(_ScriptedQuality([0.7, 0.9, 0.95, 0.4, 0.2]), threshold=1e9, rule="hindsight",
                                downsample=4)
    scores = [policy.decide(Context(t, [frame], [frame], [0], flow=flow)).scores[0] for t in (1, 1, 2, 3, 4)]
    np.testing.assert_allclose(scores, [0.3, 0.1, 0.1, 0.6, 1.3], atol=1e-9)
    # a new key starts the history afresh
    policy.predictor.values = [0.5]
    assert policy.decide(Context(5, [frame], [frame], [5], flow=flow)).scores[0] == pytest.approx(0.5)


def test_quality_policy_holds_a_budget_under_key_budget():
    from schedulers import KeyBudget, key_fraction

    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(100)]
    policy = KeyBudget(PropagationQuality(load_default_quality()), target=0.2)
    tracker = Tracker(policy, flow=lambda c, k: rng.normal(0, 1, c.shape[:2] + (2,)).astype(np.float32))
    decisions = [tracker.step(f) for f in frames]
    assert abs(key_fraction(decisions) - 0.2) <= 0.03


@pytest.mark.parametrize("size", [1, 5, 1024, 19200])
def test_p90_is_the_element_of_rank_nine_tenths_in_sorted_order(size):
    from schedulers.quality_signals import _p90

    rng = np.random.default_rng(size)
    k = int(0.9 * (size - 1))
    cases = [
        (rng.random(size) ** 4 * 80).astype(np.float32),  # heavy tail
        np.round(rng.random(size) * 3).astype(np.float32),  # many ties
        np.full(size, 7.5, np.float32),  # all equal
    ]
    for values in cases:
        assert _p90(values.reshape(1, -1)) == float(np.sort(values)[k])
    wide = rng.random((3, size)).astype(np.float32)[1::2]  # a non-contiguous view
    assert _p90(wide[:, ::-1]) == float(np.sort(wide.reshape(-1))[k])


def test_all_finite_agrees_with_numpy_on_any_layout_and_dtype():
    from schedulers.quality_signals import _all_finite

    rng = np.random.default_rng(8)
    for trial in range(400):
        shape = tuple(rng.integers(1, 30, 2)) + (() if trial % 3 == 0 else (int(rng.integers(1, 6)),))
        dtype = (np.float32, np.float64, np.float16)[trial % 3 if trial % 5 else 0]
        values = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4)).astype(dtype)
        if trial % 2:
            values[tuple(int(rng.integers(0, n)) for n in shape)] = (np.nan, np.inf, -np.inf)[trial % 3]
        if trial % 7 == 0:
            values = values[:, ::2]
        assert _all_finite(values) == bool(np.isfinite(values).all()), (shape, dtype)
    assert _all_finite(np.full((64, 64, 2), 3.0e38, np.float32))  # finite, though their sum is not in float32
    assert _all_finite(np.zeros((3, 4, 0), np.float32)) and _all_finite(np.zeros((0, 4), np.float32))  # empty


def test_warp_to_current_names_a_flow_on_another_grid():
    from schedulers.quality_signals import warp_to_current

    with pytest.raises(ValueError, match=r"\(10, 12\).*\(5, 6\)"):
        warp_to_current(np.zeros((10, 12), np.float32), np.zeros((5, 6, 2), np.float32))


def test_the_signal_grid_is_the_first_factor_from_the_downsample_up_that_fits_the_limit():
    from schedulers.quality_signals import DEFAULT_MAX_PIXELS, signal_grid
    from training.config import PROGRAM_FIELDS

    assert PROGRAM_FIELDS["quality"]["max_pixels"][1] == DEFAULT_MAX_PIXELS
    assert signal_grid(360, 480, 4) == (90, 120)  # the largest training region: at 1/4, as without a limit
    assert signal_grid(128, 256, 4) == (32, 64)
    assert signal_grid(480, 640, 4) == (80, 106)  # 1/6
    assert signal_grid(1024, 2048, 4) == (73, 146)  # 1/14
    assert signal_grid(480, 640, 4, None) == (120, 160)
    assert signal_grid(4, 100_000, 4) == (1, 10_000)  # a strip: the short side stays one pixel
    for bad in ((480, 640, 0, 100), (480, 640, 4, 0)):
        with pytest.raises(ValueError, match="must be an integer >= 1, got 0"):
            signal_grid(*bad)
    rng = np.random.default_rng(8)
    for _ in range(300):  # against a search over every factor
        h, w, d = int(rng.integers(1, 3000)), int(rng.integers(1, 3000)), int(rng.integers(1, 9))
        limit = int(rng.integers(1, 40_000))
        sides = [(max(h // f, 1), max(w // f, 1)) for f in range(d, max(h, w) + 2)]
        assert signal_grid(h, w, d, limit) == next(s for s in sides if s[0] * s[1] <= limit or s == (1, 1))


def test_signals_of_a_region_above_the_limit_are_those_at_the_coarser_downsample():
    from schedulers.quality_signals import DEFAULT_MAX_PIXELS

    rng = np.random.default_rng(4)
    for (h, w), factor in (((480, 640), 6), ((200, 300), 5)):
        limit = DEFAULT_MAX_PIXELS if factor == 6 else (200 // 5) * (300 // 5)
        key = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        current = np.roll(key, 3, axis=1)
        flow = rng.normal(0, 3, (h, w, 2)).astype(np.float32)
        labels = rng.integers(0, 5, (h, w))
        capped = QualitySignals(downsample=4, key_labels=True, max_pixels=limit)
        plain = QualitySignals(downsample=factor, key_labels=True, max_pixels=None)
        for t in (1, 2):
            np.testing.assert_allclose(capped.region(0, current, key, 0, t, flow, labels),
                                       plain.region(0, current, key, 0, t, flow, labels), rtol=1e-9)
    # Below the limit nothing changes: the rows the shipped predictors were fitted on.
    small_key = rng.integers(0, 256, (90 * 4, 120 * 4, 3), dtype=np.uint8)
    small_flow = rng.normal(0, 2, (360, 480, 2)).astype(np.float32)
    np.testing.assert_allclose(QualitySignals().region(0, small_key, small_key, 0, 1, small_flow),
                               QualitySignals(max_pixels=None).region(0, small_key, small_key, 0, 1, small_flow),
                               rtol=1e-9)


def test_a_predictor_file_records_its_grid_limit_and_one_without_it_has_none(tmp_path):
    predictor = _fitted()[0]
    predictor.save(tmp_path / "q.json")
    assert QualityPredictor.load(tmp_path / "q.json").signals_max_pixels == QualitySignals().max_pixels
    data = json.loads((tmp_path / "q.json").read_text())
    del data["signals"]["max_pixels"]  # as written before the limit
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = QualityPredictor.load(tmp_path / "old.json")
    assert old.signals_max_pixels is None
    with pytest.raises(ValueError, match="no limit of the grid.*a grid of at most 10800 pixels"):
        old.check_signals(QualitySignals())
    # A policy on it computes the signals it was fitted on: no limit.
    frame = np.zeros((480, 640, 3), np.uint8)
    policy = PropagationQuality(old)
    policy.quality(Context(1, [frame], [frame], [0], flow=[np.zeros((480, 640, 2), np.float32)]))
    assert policy.signals_.max_pixels is None and policy.signals_.grid(frame.shape) == (120, 160)
    data["signals"]["max_pixels"] = "many"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="bad.json' is damaged: .*max_pixels must be a positive integer or null"):
        QualityPredictor.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="max_pixels must be a positive integer or null .no limit., got 0"):
        QualityPredictor(BASE_SIGNALS, QualitySignals.version, signals_max_pixels=0)


def test_a_key_of_another_shape_is_compared_on_the_current_regions_grid():
    rng = np.random.default_rng(6)
    current = rng.integers(0, 256, (405, 480, 3), dtype=np.uint8)  # 1/5 at the limit
    key = rng.integers(0, 256, (404, 480, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, (404, 480))
    signals = QualitySignals(key_labels=True)
    values = signals.region(0, current, key, 0, 1, np.zeros((405, 480, 2), np.float32), labels)
    assert np.all(np.isfinite(values))
    assert signals.state_[0]["gray"].shape == signals.grid(current.shape) == (81, 96)


def test_a_training_folder_built_before_the_grid_limit_continues_with_max_pixels_zero():
    from training.config import load_config
    from training.quality import signature

    config = load_config("quality", "default")
    assert signature(config)["max_pixels"] == 10800
    assert "max_pixels" not in signature({**config, "max_pixels": 0})  # as such folders were signed
