"""Feature, flow and head networks: contracts, shapes, .keras round trips, MACs."""

import keras
import numpy as np
import pytest
from helpers import TINY_RESNET, tiny_parts

from adaptive_dff.macs import count_macs
from adaptive_dff.networks import (
    CompactFeatures,
    FlowNetInception,
    FlowNetS,
    OutputSpec,
    ResNetFeatures,
    SegmentationHead,
    flownet_half,
    flownet_quarter,
    resnet50_features,
    resnet101_features,
)


def sample_input(model, rng, h=128, w=256):
    if isinstance(model, SegmentationHead):
        return rng.standard_normal((2, h // 16, w // 16, model.input_channels)).astype(np.float32)
    if isinstance(model, (FlowNetS, FlowNetInception)):
        return {"current": rng.uniform(0, 255, (2, h, w, 3)).astype(np.float32),
                "key": rng.uniform(0, 255, (2, h, w, 3)).astype(np.float32)}
    return rng.uniform(0, 255, (2, h, w, 3)).astype(np.float32)


@pytest.mark.parametrize("kind", ["resnet", "compact", "flownet_s", "flownet_inception", "head"])
def test_contract_shapes_and_keras_round_trip(kind, tmp_path):
    model = tiny_parts()[kind]
    rng = np.random.default_rng(0)
    x = sample_input(model, rng)
    out = model(x, training=False)
    info = model.output_spec
    assert isinstance(info, OutputSpec)
    if kind == "head":
        assert out.shape == (2, 8, 16, 5) and info.stride == 1
    elif kind.startswith("flownet"):
        assert info.stride == 16 and info.size_divisor == 128
        assert out["flow"].shape == (2, 8, 16, 2) and out["flow"].dtype == "float32"
        assert out["scale"].shape == (2, 8, 16, 16)
        assert out["features"].shape[:3] == (2, 8, 16)
        # The scale field starts at one everywhere: warped features pass unchanged.
        np.testing.assert_allclose(out["scale"].numpy(), 1.0)
    else:
        assert info.stride == 16 and info.channels == 16
        assert out.shape == (2, 8, 16, 16)

    path = tmp_path / f"{kind}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.output_spec == info
    assert loaded.get_config() == model.get_config()
    again = loaded(x, training=False)
    for a, b in zip(keras.tree.flatten(out), keras.tree.flatten(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_stages_are_data_and_set_the_stride():
    os8 = ResNetFeatures(stages=[[1, 8, 1, 1], [1, 8, 2, 1], [1, 8, 1, 2], [1, 8, 1, 4]], feature_channels=8)
    assert os8.output_stride == 8
    out = os8(np.zeros((1, 64, 96, 3), np.float32))
    assert out.shape == (1, 8, 12, 8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stages": [[1, 8, 2, 2]]}, "both stride 2 and dilation 2"),
        ({"stages": [[1, 8, 2]]}, "blocks, width, stride, dilation"),
        ({"feature_channels": 0}, "feature_channels must be a positive integer"),
    ],
)
def test_bad_feature_net_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNetFeatures(**{"stages": TINY_RESNET, **kwargs})


def test_flownet_rejects_bad_arguments_and_sizes():
    with pytest.raises(ValueError, match="width must be a number"):
        FlowNetS(width=0)
    with pytest.raises(ValueError, match=r"encoder must be a list of \[channels, stride\] pairs"):
        FlowNetInception(encoder=[8, 2])
    with pytest.raises(ValueError, match="stride 1 or 2"):
        FlowNetInception(encoder=[[8, 3]] * 5)
    with pytest.raises(ValueError, match="flownet_half fixes width=0.5"):
        flownet_half(width=0.25)
    with pytest.raises(ValueError, match="flownet_quarter fixes width=0.25"):
        flownet_quarter(width=0.5)
    net = tiny_parts()["flownet_s"]
    frames = np.zeros((1, 100, 150, 3), np.float32)
    with pytest.raises(ValueError, match=r"frame height must be a multiple of 128, got shape \(1, 100, 150, 3\)"):
        net({"current": frames, "key": frames})
    with pytest.raises(ValueError, match="current and key frames must have the same shape"):
        net({"current": np.zeros((1, 128, 128, 3), np.float32), "key": np.zeros((1, 128, 256, 3), np.float32)})
    assert resnet50_features(name="mine", feature_channels=8).name == "mine"


def test_count_macs_counts_a_nested_function_at_each_call():
    import tensorflow as tf

    kernel = tf.ones([3, 3, 4, 8])
    conv = tf.function(lambda x: tf.nn.conv2d(x, kernel, 1, "SAME"), autograph=False)

    class Twice(keras.Model):
        def call(self, x):
            return conv(conv(x)[..., :4])

    assert count_macs(Twice(), (1, 8, 8, 4)) == 2 * 8 * 8 * 9 * 4 * 8


def test_count_macs_matches_hand_count():
    """An independent count: the textbook formula per layer."""
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inp)  # 16x20 out
    x = keras.layers.DepthwiseConv2D(5, padding="same")(x)
    x = keras.layers.Conv2DTranspose(4, 4, strides=2, padding="same")(x)  # 32x40 out
    x = keras.layers.Conv2D(6, 3, dilation_rate=2, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(7)(x)
    model = keras.Model(inp, x)
    expected = 3 * (
        16 * 20 * 3 * 3 * 3 * 8  # conv
        + 16 * 20 * 5 * 5 * 8  # depthwise
        + 16 * 20 * 4 * 4 * 8 * 4  # transposed conv: input pixels x kernel x cin x cout
        + 32 * 40 * 3 * 3 * 4 * 6  # dilated conv
        + 6 * 7  # dense
    )
    assert count_macs(model, (3, 32, 40, 3)) == expected


def test_flownet_cost_ratios_tiny():
    half = count_macs(FlowNetS(width=0.5, feature_channels=8), {"current": (1, 128, 256, 3), "key": (1, 128, 256, 3)})
    full = count_macs(FlowNetS(width=1.0, feature_channels=8), {"current": (1, 128, 256, 3), "key": (1, 128, 256, 3)})
    assert 3.3 < full / half < 4.0


@pytest.mark.parametrize("size", [(256, 512), pytest.param((1024, 2048), marks=pytest.mark.slow)])
def test_dff_cost_ratios(size):
    """DFF (Zhu et al. 2017, table 1) reports feature/flow cost ratios at
    1024x2048 of 9.20, 33.56, 68.97 (ResNet-50) and 12.71, 46.30, 95.24
    (ResNet-101) for FlowNet, FlowNet-Half and FlowNet-Inception; ours must be
    within 10%. Every conv scales with the pixel count, so the ratios do not
    depend on the size (the fast tier checks 256x512)."""
    image = (1, *size, 3)
    pair = {"current": image, "key": image}
    feat = {"r50": count_macs(resnet50_features(), image), "r101": count_macs(resnet101_features(), image)}
    flow = [count_macs(m, pair) for m in (FlowNetS(), flownet_half(), FlowNetInception())]
    published = {"r50": (9.20, 33.56, 68.97), "r101": (12.71, 46.30, 95.24)}
    for net, ratios in published.items():
        for cost, ratio in zip(flow, ratios):
            assert feat[net] / cost == pytest.approx(ratio, rel=0.10)


@pytest.mark.slow
@pytest.mark.parametrize("builder", [resnet50_features, resnet101_features, FlowNetS, flownet_half, flownet_quarter,
                                     FlowNetInception, CompactFeatures])
def test_full_size_round_trip(builder, tmp_path):
    model = builder()
    x = sample_input(model, np.random.default_rng(1), 128, 128)
    x = {k: v[:1] for k, v in x.items()} if isinstance(x, dict) else x[:1]
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(keras.tree.flatten(model(x)), keras.tree.flatten(loaded(x))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_count_macs_of_a_dilated_conv_ignores_space_to_batch_padding():
    inp = keras.Input((None, None, 4))
    model = keras.Model(inp, keras.layers.Conv2D(8, 3, dilation_rate=6, padding="same")(inp))
    assert count_macs(model, (1, 10, 14, 4)) == 10 * 14 * 9 * 4 * 8
