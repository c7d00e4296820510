"""Fused inference: the matrix upsampling against tf.image.resize, the fused head and
propagation against the stage-by-stage path, and the fused runner against the staged one."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_dff

from adaptive_dff import VideoRunner
from adaptive_dff.data import SyntheticVideo
from adaptive_dff.fused import FusedHead, bilinear_matrix
from adaptive_dff.warp import bilinear_warp
from schedulers import FixedInterval, FlowMagnitude, RegionGrid


@pytest.fixture(scope="module")
def clip():
    video = SyntheticVideo(height=96, width=160, num_frames=6, seed=4)
    return [video.frame(t) for t in range(6)]


@pytest.fixture(scope="module")
def model():
    return tiny_dff()


@pytest.mark.parametrize("n_in, n_out", [(6, 96), (10, 160), (7, 23), (5, 5), (12, 5)])
def test_bilinear_matrix_equals_tf_image_resize(n_in, n_out):
    rng = np.random.default_rng(n_in * 100 + n_out)
    x = rng.normal(size=(1, n_in, 3, 2)).astype(np.float32)
    reference = tf.image.resize(x, (n_out, 3), method="bilinear").numpy()[0, :, :, :]
    ours = np.einsum("Yy,ywc->Ywc", bilinear_matrix(n_out, n_in), x[0])
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert bilinear_matrix(n_out, n_in, keep=3).shape == (3, n_in)
    with pytest.raises(ValueError, match="keep"):
        bilinear_matrix(n_out, n_in, keep=n_out + 1)
    with pytest.raises(ValueError, match="n_in"):
        bilinear_matrix(n_out, 0)


def test_fused_head_equals_resize_then_argmax(model):
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(1, 8, 12, 16)).astype(np.float32))
    logits = tf.image.resize(model.head(features), (128, 192), method="bilinear").numpy()[0, :100, :170]
    labels, fused_logits = FusedHead(model.head).labels(features, (128, 192), (100, 170), logits=True)
    np.testing.assert_allclose(fused_logits.numpy()[0], logits, atol=1e-4)
    assert labels.shape == (1, 100, 170) and labels.dtype == tf.int32
    # Equal to the argmax of the reference logits wherever the top two classes are not a float-rounding tie.
    top2 = np.sort(logits, -1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 1e-4
    np.testing.assert_array_equal(labels.numpy()[0][clear], np.argmax(logits, -1)[clear])
    with pytest.raises(ValueError, match="fit in the padded size"):
        FusedHead(model.head).labels(features, (128, 192), (130, 170))


def test_fused_propagation_equals_warp_scale_head(model):
    rng = np.random.default_rng(1)
    features = tf.constant(rng.normal(size=(1, 8, 12, 16)).astype(np.float32))
    flow = tf.constant(rng.uniform(-3, 3, size=(1, 8, 12, 2)).astype(np.float32))
    scale = tf.constant(rng.uniform(0.5, 1.5, size=(1, 8, 12, 16)).astype(np.float32))
    fused = FusedHead(model.head)
    for s in (scale, None):
        warped = bilinear_warp(features, flow) * (1.0 if s is None else s)
        reference = model.run_head(warped, (1, 128, 192, 3), 100, 170).numpy()[0]
        _, logits = fused.propagate(features, flow, s, (128, 192), (100, 170), logits=True)
        np.testing.assert_allclose(logits.numpy()[0], reference, atol=1e-4)


@pytest.mark.parametrize("propagation_flow", ["network", "dis"])
def test_fused_runner_equals_the_staged_runner(clip, propagation_flow):
    model = tiny_dff().with_propagation_flow(propagation_flow)
    staged = list(VideoRunner(model, FixedInterval(3), keep_logits=True, fused=False).run(clip))
    fused_runner = VideoRunner(model, FixedInterval(3), keep_logits=True)
    assert fused_runner.fused
    fused = list(fused_runner.run(clip))
    for a, b in zip(staged, fused):
        np.testing.assert_allclose(b.logits, a.logits, atol=1e-4)
        agree = np.mean(a.labels == b.labels)
        assert agree > 0.999, agree  # float-rounding ties only
        assert b.labels.shape == (96, 160) and b.labels.dtype == np.int32
        np.testing.assert_array_equal(b.update, a.update)
    assert fused[1].timings["warp"] > 0 and fused[1].timings["feature"] == 0
    assert fused[3].timings["feature"] > 0 and fused[3].timings["warp"] == 0
    # Without logits, the same labels.
    plain = list(VideoRunner(model, FixedInterval(3)).run(clip))
    for a, b in zip(fused, plain):
        np.testing.assert_array_equal(a.labels, b.labels)
        assert b.logits is None


def test_dis_propagation_matches_the_models_own_step(clip):
    model = tiny_dff().with_propagation_flow("dis", dis_downscale=4)
    results = list(VideoRunner(model, FixedInterval(4), keep_logits=True).run(clip[:4]))
    _, key = model.key_step(clip[0])
    for t in (1, 2, 3):
        logits, out = model.propagate_step(clip[t], key)
        np.testing.assert_allclose(results[t].logits, logits.numpy()[0], atol=1e-4)
        assert "features" not in out and np.all(out["scale"].numpy() == 1.0)


def test_dis_propagation_needs_no_flow_network(clip, monkeypatch):
    model = tiny_dff().with_propagation_flow("dis", dis_downscale=4)  # DIS needs 12 px a side: regions of 96x88
    calls = []
    monkeypatch.setattr(model, "run_flow", lambda *a: calls.append(1))
    list(VideoRunner(model, FixedInterval(3)).run(clip))
    list(VideoRunner(model, FlowMagnitude(threshold=1e9)).run(clip))  # the policy's flow is DIS flow too
    list(VideoRunner(model, FixedInterval(3), regions=RegionGrid(1, 2, 16)).run(clip))  # the staged path
    assert calls == []


def test_fused_needs_one_region_and_warping(model):
    with pytest.raises(ValueError, match="one region"):
        VideoRunner(model, FixedInterval(2), regions=RegionGrid(2, 2, 16), fused=True)
    with pytest.raises(ValueError, match="one region"):
        VideoRunner(model, FixedInterval(2), propagation="copy", fused=True)
    assert not VideoRunner(model, FixedInterval(2), regions=RegionGrid(2, 2, 16)).fused
