"""DFFModel: contracts, key/propagation steps against a hand-built reference,
end-to-end gradients, odd sizes and channel layouts, .keras round trip."""

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_dff, tiny_parts

from adaptive_dff import DFFModel, KeyFrame
from adaptive_dff.networks import FlowNetS, SegmentationHead


def frames(rng, n=2, h=100, w=150):
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_contracts_are_checked_up_front():
    parts = tiny_parts(channels=16)
    with pytest.raises(ValueError, match="scale field has 32 channels but feature_net outputs 16"):
        DFFModel(feature_net=parts["compact"], flow_net=FlowNetS(width=0.0625, feature_channels=32), head=parts["head"])
    with pytest.raises(ValueError, match="head expects 7 input channels"):
        DFFModel(feature_net=parts["compact"], flow_net=parts["flownet_s"], head=SegmentationHead(input_channels=7))
    plain = keras.Sequential([keras.layers.Conv2D(16, 3)])
    with pytest.raises(TypeError, match="feature_net .* must report output_stride"):
        DFFModel(feature_net=plain, flow_net=parts["flownet_s"], head=parts["head"])


def test_key_and_propagation_steps_match_a_hand_built_reference():
    """A known flow (set through the flow layer's bias) and scale: the propagated
    logits must equal head(shift(key features) * scale), upsampled, cropped."""
    rng = np.random.default_rng(0)
    model = tiny_dff()
    flow_layer = model.flow_net.get_layer("flow")
    flow_layer.kernel.assign(np.zeros(flow_layer.kernel.shape, np.float32))
    flow_layer.bias.assign([1.25, -0.5])  # dx, dy in feature-grid pixels
    scale_layer = model.flow_net.get_layer("scale")
    scale_layer.bias.assign(rng.uniform(0.5, 1.5, scale_layer.bias.shape).astype(np.float32))

    key, current = frames(rng, 2, 100, 150)[:1], frames(rng, 1, 100, 150)
    key_logits, kf = model.key_step(key)
    assert key_logits.shape == (1, 100, 150, 5)
    assert kf.features.shape == (1, 8, 16, 16) and (kf.height, kf.width) == (100, 150)

    prop_logits, flow_out = model.propagate_step(current, kf)
    assert prop_logits.shape == (1, 100, 150, 5)
    np.testing.assert_allclose(flow_out["flow"].numpy()[..., 0], 1.25, atol=1e-6)

    # Reference: cv2.remap on the key features, scale, the head's 1x1 conv in numpy.
    feats = kf.features.numpy()[0]
    h, w, c = feats.shape
    map_x = (np.arange(w)[None, :] + 1.25 + np.zeros((h, 1))).astype(np.float32)
    map_y = (np.arange(h)[:, None] - 0.5 + np.zeros((1, w))).astype(np.float32)
    warped = np.stack(
        [cv2.remap(np.ascontiguousarray(feats[..., i]), map_x, map_y, cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_CONSTANT, borderValue=0) for i in range(c)], -1)
    warped *= scale_layer.bias.numpy()
    classifier = model.head.get_layer("classifier")
    grid = warped @ classifier.kernel.numpy()[0, 0] + classifier.bias.numpy()
    # Bilinear upsampling to the padded 128x256 frame (cv2: half-pixel centres), then crop.
    up = cv2.resize(grid.astype(np.float32), (256, 128), interpolation=cv2.INTER_LINEAR)[None, :100, :150]
    np.testing.assert_allclose(prop_logits.numpy(), up, atol=1e-4)

    # Key step: the head on the key features, same upsampling.
    grid_key = feats @ classifier.kernel.numpy()[0, 0] + classifier.bias.numpy()
    up_key = cv2.resize(grid_key.astype(np.float32), (256, 128), interpolation=cv2.INTER_LINEAR)[None, :100, :150]
    np.testing.assert_allclose(key_logits.numpy(), up_key, atol=1e-4)
    # The key features are the feature net's on the frame zero-padded to 128x256.
    padded = np.pad(key.astype(np.float32), [(0, 0), (0, 28), (0, 106), (0, 0)])
    np.testing.assert_allclose(feats, model.feature_net(padded, training=False).numpy()[0], atol=1e-5)


def test_training_call_reaches_all_three_parts_and_learns():
    rng = np.random.default_rng(1)
    keras.utils.set_random_seed(1)
    model = tiny_dff(classes=3)
    # A learnable task: 32x32 blocks of pure red, green or blue, labelled by colour.
    labels = np.kron(rng.integers(0, 3, (2, 4, 4)), np.ones((32, 32), int))
    current = (np.eye(3)[labels] * 200 + rng.uniform(0, 40, (2, 128, 128, 3))).astype(np.float32)
    key = np.roll(current, 5, axis=2)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        logits = model({"key": key, "current": current}, training=True)
        loss = loss_fn(labels, logits)
    assert logits.shape == (2, 128, 128, 3)
    grads = tape.gradient(loss, model.trainable_variables)
    by_part = {}
    for var, grad in zip(model.trainable_variables, grads):
        owner = next(p.name for p in (model.feature_net, model.flow_net, model.head) if any(v is var for v in p.trainable_variables))
        norm = 0.0 if grad is None else float(tf.norm(tf.convert_to_tensor(grad)))
        by_part[owner] = by_part.get(owner, 0.0) + norm
    assert set(by_part) == {model.feature_net.name, model.flow_net.name, model.head.name}
    assert all(v > 0 for v in by_part.values()), by_part
    # The flow layer itself gets a gradient (through the warp's sampling weights).
    flow_kernel = model.flow_net.get_layer("flow").kernel
    with tf.GradientTape() as tape2:
        loss2 = loss_fn(labels, model({"key": key, "current": current}, training=True))
    assert float(tf.norm(tape2.gradient(loss2, flow_kernel))) > 0

    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss_fn)
    history = model.fit({"key": key, "current": current}, labels, epochs=10, batch_size=2, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]


@pytest.mark.parametrize(
    "frame, expected_shape",
    [
        (np.zeros((37, 50), np.uint8), (1, 37, 50, 5)),  # grayscale
        (np.zeros((37, 50, 1), np.uint8), (1, 37, 50, 5)),  # grayscale, channel axis
        (np.zeros((37, 50, 4), np.uint8), (1, 37, 50, 5)),  # RGBA: alpha dropped
        (np.zeros((3, 37, 50, 3), np.float32), (3, 37, 50, 5)),  # float batch
    ],
)
def test_frame_layouts_handled_as_documented(frame, expected_shape):
    logits, _ = tiny_dff().key_step(frame)
    assert logits.shape == expected_shape


@pytest.mark.parametrize(
    "frame, message",
    [
        (np.zeros((37, 50, 2), np.uint8), r"frame of rank 3 must be one frame \[H, W, C\]"),
        (np.zeros((1, 37, 50, 5), np.uint8), "must have 3 \\(RGB\\), 1 \\(grayscale\\) or 4"),
        (np.zeros((37,), np.uint8), "frame must be \\[H, W, 3\\]"),
        (np.zeros((37, 50, 3), np.int64), "frame must be uint8 or floating RGB, got dtype int64"),
        (np.zeros((0, 50, 3), np.uint8), "frame is empty"),
    ],
)
def test_bad_frames_are_named(frame, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tiny_dff().key_step(frame)


@pytest.mark.parametrize(
    "key_shape, current_shape, message",
    [
        ((1, 64, 96, 3), (1, 32, 96, 3), "key and current frames must have the same shape"),
        ((2, 64, 96, 3), (1, 64, 96, 3), "key and current frames must have the same shape"),
        ((1, 64, 96, 2), (1, 64, 96, 2), "key must have 3 \\(RGB\\), 1 \\(grayscale\\) or 4"),
    ],
)
def test_training_call_rejects_bad_pairs(key_shape, current_shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_dff()({"key": np.zeros(key_shape, np.uint8), "current": np.zeros(current_shape, np.uint8)})


def test_training_call_accepts_grayscale_pairs():
    out = tiny_dff()({"key": np.zeros((1, 40, 50, 1), np.uint8), "current": np.zeros((1, 40, 50, 1), np.uint8)})
    assert out.shape == (1, 40, 50, 5)


def test_propagation_rejects_a_frame_of_another_size():
    rng = np.random.default_rng(2)
    model = tiny_dff()
    _, kf = model.key_step(frames(rng, 1, 64, 64))
    with pytest.raises(ValueError, match=r"frame has shape \(1, 64, 80, 3\) but the key frame was"):
        model.propagate_step(frames(rng, 1, 64, 80), kf)
    with pytest.raises(TypeError, match="key must be the KeyFrame"):
        model.propagate_step(frames(rng, 1, 64, 64), kf.features)


def test_keras_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    model = tiny_dff()
    key, current = frames(rng, 1, 70, 90), frames(rng, 1, 70, 90)
    before = model({"key": key, "current": current})
    path = tmp_path / "dff.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, DFFModel) and loaded.size_divisor == 128
    np.testing.assert_array_equal(loaded({"key": key, "current": current}).numpy(), before.numpy())
    logits_a, kf_a = model.key_step(key)
    logits_b, kf_b = loaded.key_step(key)
    np.testing.assert_array_equal(logits_a.numpy(), logits_b.numpy())
    np.testing.assert_array_equal(model.propagate_step(current, kf_a)[0].numpy(), loaded.propagate_step(current, kf_b)[0].numpy())
    assert isinstance(kf_b, KeyFrame)


def test_mixed_float16_model_runs_and_trains():
    rng = np.random.default_rng(5)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = tiny_dff(classes=3)
        key, current = frames(rng, 1, 64, 96), frames(rng, 1, 64, 96)
        logits, kf = model.key_step(key)
        assert kf.features.dtype == tf.float16 and logits.dtype == tf.float32
        prop, out = model.propagate_step(current, kf)
        assert out["flow"].dtype == tf.float32 and np.all(np.isfinite(prop.numpy()))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model({"key": key, "current": current}, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        assert all(g is not None for g in grads)
    finally:
        keras.config.set_dtype_policy(previous)


def test_load_model_in_a_fresh_process_and_named_errors(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "dff.keras"
    tiny_dff().save(path)
    code = f"import adaptive_dff; m = adaptive_dff.load_model({str(path)!r}); print(type(m).__name__)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "DFFModel"
    from adaptive_dff import load_model

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.keras")
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"bad.keras' is not a \.keras file"):
        load_model(tmp_path / "bad.keras")
