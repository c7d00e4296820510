"""bilinear_warp and FlowWarp against cv2.remap, numpy and finite differences."""

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from adaptive_dff import FlowWarp, bilinear_warp


def remap_reference(features: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """cv2.remap (INTER_LINEAR, BORDER_CONSTANT 0) per image, 4 channels at a time.

    OpenCV samples float32 images with 1, 3 or 4 channels exactly; other channel
    counts go through a fixed-point path quantised to 1/32 px, so chunks of 4
    and single channels for the remainder.
    """
    b, h, w, c = features.shape
    out = np.zeros_like(features, dtype=np.float32)
    grid_x = np.arange(w, dtype=np.float32)[None, :]
    grid_y = np.arange(h, dtype=np.float32)[:, None]
    for i in range(b):
        map_x = (grid_x + flow[i, ..., 0]).astype(np.float32)
        map_y = (grid_y + flow[i, ..., 1]).astype(np.float32)
        starts = list(range(0, c - c % 4, 4)) + list(range(c - c % 4, c))
        for c0 in starts:
            c1 = c0 + 4 if c0 < c - c % 4 else c0 + 1
            chunk = np.ascontiguousarray(features[i, ..., c0:c1], dtype=np.float32)
            warped = cv2.remap(
                chunk, map_x, map_y, cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT, borderValue=0,
            )
            out[i, ..., c0:c1] = warped.reshape(h, w, -1)
    return out


def random_case(rng, b=3, h=11, w=17, c=37, reach=8.0):
    features = rng.standard_normal((b, h, w, c)).astype(np.float32)
    # Flows large enough to send many sampling points outside the grid.
    flow = (rng.standard_normal((b, h, w, 2)) * reach).astype(np.float32)
    return features, flow


@pytest.mark.parametrize("shape", [(3, 11, 17, 37), (2, 24, 9, 130), (1, 5, 5, 1)])
def test_matches_cv2_remap_on_random_data(shape):
    rng = np.random.default_rng(sum(shape))
    features, flow = random_case(rng, *shape)
    outside = (
        (np.arange(shape[2])[None, None, :] + flow[..., 0] < 0)
        | (np.arange(shape[1])[None, :, None] + flow[..., 1] > shape[1] - 1)
    )
    assert outside.mean() > 0.2, "the case must reach outside the grid"
    ours = bilinear_warp(features, flow).numpy()
    np.testing.assert_allclose(ours, remap_reference(features, flow), atol=1e-5, rtol=0)


def test_matches_numpy_gather_blend_at_fractional_points():
    rng = np.random.default_rng(7)
    features = rng.standard_normal((2, 6, 8, 5))
    flow = rng.uniform(-1.5, 1.5, (2, 6, 8, 2))
    ours = bilinear_warp(features.astype(np.float32), flow.astype(np.float32)).numpy()
    expected = np.zeros_like(features)
    for b in range(2):
        for y in range(6):
            for x in range(8):
                sx, sy = x + flow[b, y, x, 0], y + flow[b, y, x, 1]
                x0, y0 = int(np.floor(sx)), int(np.floor(sy))
                for yy, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
                    for xx, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
                        if 0 <= yy < 6 and 0 <= xx < 8:
                            expected[b, y, x] += wy * wx * features[b, yy, xx]
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_integer_shift_moves_content():
    rng = np.random.default_rng(3)
    features = rng.standard_normal((1, 6, 7, 3)).astype(np.float32)
    flow = np.zeros((1, 6, 7, 2), np.float32)
    flow[..., 0] = 2.0  # out[y, x] = features[y, x + 2]
    flow[..., 1] = -1.0  # ... and from the row above
    out = bilinear_warp(features, flow).numpy()
    np.testing.assert_allclose(out[0, 1:, :-2], features[0, :-1, 2:], atol=1e-6)
    assert np.all(out[0, 0] == 0) and np.all(out[0, :, -2:] == 0)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(11)
    features = rng.standard_normal((2, 5, 6, 3))
    # Keep sampling points away from integer coordinates, where the bilinear
    # warp has kinks and finite differences are meaningless.
    flow = rng.uniform(-2.5, 2.5, (2, 5, 6, 2))
    frac = flow - np.floor(flow)
    flow = np.where(np.abs(frac - 0.5) > 0.4, flow + 0.25, flow)
    probe = rng.standard_normal((2, 5, 6, 3))

    def loss(f, m):
        return float(np.sum(bilinear_warp(f.astype(np.float32), m.astype(np.float32)).numpy() * probe))

    f_t = tf.constant(features, tf.float32)
    m_t = tf.constant(flow, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([f_t, m_t])
        value = tf.reduce_sum(bilinear_warp(f_t, m_t) * probe.astype(np.float32))
    g_f, g_m = tape.gradient(value, [f_t, m_t])
    g_f, g_m = g_f.numpy(), g_m.numpy()

    eps = 1e-2  # the warp is linear in features and piecewise smooth in flow
    for index in [tuple(rng.integers(0, s) for s in features.shape) for _ in range(12)]:
        d = np.zeros_like(features)
        d[index] = eps
        numeric = (loss(features + d, flow) - loss(features - d, flow)) / (2 * eps)
        assert g_f[index] == pytest.approx(numeric, abs=2e-3)
    checked = 0
    for index in [tuple(rng.integers(0, s) for s in flow.shape) for _ in range(20)]:
        d = np.zeros_like(flow)
        d[index] = eps
        numeric = (loss(features, flow + d) - loss(features, flow - d)) / (2 * eps)
        assert g_m[index] == pytest.approx(numeric, abs=2e-3, rel=1e-2)
        checked += abs(numeric) > 1e-3
    assert checked >= 5, "the flow gradient check must see non-zero gradients"


def test_runs_inside_xla_compiled_function():
    rng = np.random.default_rng(5)
    features, flow = random_case(rng, 2, 9, 14, 6)

    @tf.function(jit_compile=True)
    def compiled(f, m):
        return bilinear_warp(f, m) * 2.0

    out = compiled(tf.constant(features), tf.constant(flow)).numpy()
    np.testing.assert_allclose(out, 2.0 * remap_reference(features, flow), atol=2e-5)


def test_mixed_float16_keeps_coordinates_in_float32():
    rng = np.random.default_rng(9)
    # A wide grid: in float16 the coordinate 1000.3 would round to 1000.5.
    features = rng.standard_normal((1, 2, 1200, 4)).astype(np.float32)
    flow = np.zeros((1, 2, 1200, 2), np.float32)
    flow[..., 0] = 0.3
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = FlowWarp()
        out = layer([tf.constant(features, tf.float16), tf.constant(flow)])
    finally:
        keras.config.set_dtype_policy(previous)
    assert out.dtype == tf.float16
    expected = remap_reference(features.astype(np.float16).astype(np.float32), flow)
    np.testing.assert_allclose(out.numpy().astype(np.float32), expected, atol=2e-2)
    # Coordinates in float16 would shift x=1000 by 0.2 px: a visible error.
    assert np.abs(out.numpy()[0, :, 1000:1100].astype(np.float32) - expected[0, :, 1000:1100]).max() < 2e-2


def test_non_finite_flow_samples_zero_and_does_not_spread():
    rng = np.random.default_rng(2)
    features, flow = random_case(rng, 1, 8, 8, 3, reach=1.0)
    flow[0, 2, 3, 0] = np.nan
    flow[0, 5, 1, 1] = np.inf
    flow[0, 6, 6, 0] = -np.inf
    f_t, m_t = tf.constant(features), tf.constant(flow)
    with tf.GradientTape() as tape:
        tape.watch([f_t, m_t])
        out = bilinear_warp(f_t, m_t)
        value = tf.reduce_sum(out)
    g_f, g_m = tape.gradient(value, [f_t, m_t])
    out = out.numpy()
    assert np.all(np.isfinite(out))
    for y, x in ((2, 3), (5, 1), (6, 6)):
        assert np.all(out[0, y, x] == 0)
    clean = np.isfinite(flow).all(-1)
    reference = remap_reference(features, np.where(np.isfinite(flow), flow, 0))
    np.testing.assert_allclose(out[0][clean[0]], reference[0][clean[0]], atol=1e-5)
    assert np.all(np.isfinite(g_f.numpy())) and np.all(np.isfinite(g_m.numpy()))


def test_huge_flow_is_outside_not_overflow():
    features = np.ones((1, 4, 4, 2), np.float32)
    flow = np.full((1, 4, 4, 2), 3e9, np.float32)
    assert np.all(bilinear_warp(features, flow).numpy() == 0)


@pytest.mark.parametrize(
    "f_shape, m_shape, message",
    [
        ((4, 4, 3), (1, 4, 4, 2), "features must have rank 4"),
        ((1, 4, 4, 3), (4, 4, 2), "flow must have rank 4"),
        ((1, 4, 4, 3), (1, 4, 4, 3), "flow must have 2 channels"),
        ((1, 4, 4, 3), (1, 8, 8, 2), "flow must lie on the feature grid"),
        ((2, 4, 4, 3), (1, 4, 4, 2), "batch 2 != 1"),
    ],
)
def test_rejects_bad_shapes_with_named_error(f_shape, m_shape, message):
    with pytest.raises(ValueError, match=message):
        bilinear_warp(np.zeros(f_shape, np.float32), np.zeros(m_shape, np.float32))


def test_rejects_integer_inputs():
    with pytest.raises(TypeError, match="features must be a floating tensor"):
        bilinear_warp(np.zeros((1, 4, 4, 3), np.int32), np.zeros((1, 4, 4, 2), np.float32))


def test_flow_warp_layer_in_a_saved_model(tmp_path):
    rng = np.random.default_rng(4)
    features, flow = random_case(rng, 2, 6, 10, 8)
    f_in = keras.Input((None, None, 8))
    m_in = keras.Input((None, None, 2))
    model = keras.Model([f_in, m_in], FlowWarp(name="warp")([f_in, m_in]))
    path = tmp_path / "warp.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded([features, flow]).numpy(), remap_reference(features, flow), atol=1e-5)
    assert isinstance(loaded.get_layer("warp"), FlowWarp)


def test_flow_warp_layer_accepts_numpy():
    rng = np.random.default_rng(8)
    features, flow = random_case(rng, 1, 5, 7, 3)
    out = FlowWarp()([features, flow])
    np.testing.assert_allclose(np.asarray(out), remap_reference(features, flow), atol=1e-5)


def test_gradients_inside_xla_with_float16_features():
    rng = np.random.default_rng(12)
    features, flow = random_case(rng, 2, 6, 9, 4, reach=2.0)
    f16 = tf.constant(features, tf.float16)
    m = tf.constant(flow)

    @tf.function(jit_compile=True)
    def grads(f, m):
        with tf.GradientTape() as tape:
            tape.watch([f, m])
            loss = tf.reduce_sum(tf.cast(bilinear_warp(f, m), tf.float32) ** 2)
        return tape.gradient(loss, [f, m])

    g_f, g_m = grads(f16, m)
    assert g_f.dtype == tf.float16 and g_m.dtype == tf.float32
    f32 = tf.constant(f16.numpy().astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch([f32, m])
        loss = tf.reduce_sum(bilinear_warp(f32, m) ** 2)
    r_f, r_m = tape.gradient(loss, [f32, m])
    np.testing.assert_allclose(g_f.numpy().astype(np.float32), r_f.numpy(), atol=2e-2, rtol=1e-2)
    np.testing.assert_allclose(g_m.numpy(), r_m.numpy(), atol=5e-2, rtol=2e-2)
    assert np.abs(r_m.numpy()).max() > 0.1


def test_float64_keeps_float64_coordinates_and_matches_finite_differences():
    rng = np.random.default_rng(12)
    features = rng.standard_normal((1, 6, 7, 2))
    flow = rng.uniform(-2.5, 2.5, (1, 6, 7, 2))
    frac = flow - np.floor(flow)
    flow = np.where(np.abs(frac - 0.5) > 0.4, flow + 0.25, flow)  # away from the kinks
    probe = rng.standard_normal((1, 6, 7, 2))

    def loss(m):
        return float(np.sum(bilinear_warp(features, m).numpy() * probe))

    f_t, m_t = tf.constant(features), tf.constant(flow)
    with tf.GradientTape() as tape:
        tape.watch(m_t)
        out = bilinear_warp(f_t, m_t)
        value = tf.reduce_sum(out * probe)
    assert out.dtype == tf.float64
    np.testing.assert_allclose(out.numpy(), remap_reference(features, flow), atol=1e-5)
    g_m = tape.gradient(value, m_t).numpy()
    eps = 1e-6
    worst = 0.0
    for index in [tuple(rng.integers(0, s) for s in flow.shape) for _ in range(20)]:
        d = np.zeros_like(flow)
        d[index] = eps
        numeric = (loss(flow + d) - loss(flow - d)) / (2 * eps)
        worst = max(worst, abs(g_m[index] - numeric) / max(abs(numeric), 1e-3))
    assert worst < 1e-4
