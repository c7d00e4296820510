"""Flow networks: FlowNetS, FlowNet-Half and FlowNet-Inception, as used by DFF.

Inputs: the current frame and the key frame, ``[B, H, W, 3]`` RGB in
``[0, 255]`` each, ``H`` and ``W`` multiples of 128. The pair is averaged down
to half resolution inside the network (as DFF does), so the encoder sees
``H/2 x W/2``.

Outputs (a dict), all on the feature grid ``[B, H/16, W/16, .]``:

* ``flow``: ``(dx, dy)`` from the current frame to the key frame, in pixels of
  the feature grid (the warp convention of :mod:`adaptive_dff.warp`), float32;
* ``scale``: the scale field, one channel per feature channel, initialised to
  ones (kernel zero, bias one);
* ``features``: the decoder's last activations on the feature grid, which a
  learned scheduler reads (DVSNet's "flow network features").

The architecture follows FlowNetS (Dosovitskiy et al., ICCV 2015) with DFF's
changes (Zhu et al. 2017): the decoder stops at stride 4 of its input, the
last concatenation is average-pooled by 2 to the stride-16 grid, where a 3x3
conv predicts the flow and a 1x1 conv the scale field.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from adaptive_dff.networks.base import NetworkContract, OutputSpec, check_positive_int

FEATURE_STRIDE = 16
SIZE_DIVISOR = 128  # half resolution, then six stride-2 stages

# (kernel, channels, stride) of the FlowNetS encoder at width 1.
FLOWNET_S_ENCODER = (
    (7, 64, 2), (5, 128, 2), (5, 256, 2), (3, 256, 1), (3, 512, 2),
    (3, 512, 1), (3, 512, 2), (3, 512, 1), (3, 1024, 2), (3, 1024, 1),
)
FLOWNET_S_DECODER = (512, 256, 128, 64)


def _lrelu(x, name):
    return layers.LeakyReLU(negative_slope=0.1, name=name)(x)


def _conv(x, filters, kernel, stride, name):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", name=name)(x)
    return _lrelu(x, f"{name}_lrelu")


def _inception(x, filters, stride, name):
    """Inception block: 1x1 | 1x1-3x3 | 1x1-3x3-3x3, concatenated to ``filters``."""
    quarter = max(filters // 4, 1)
    b1 = _conv(x, quarter, 1, stride, f"{name}_b1")
    b2 = _conv(x, max(filters // 4, 1), 1, 1, f"{name}_b2a")
    b2 = _conv(b2, filters // 2, 3, stride, f"{name}_b2b")
    b3 = _conv(x, max(filters // 8, 1), 1, 1, f"{name}_b3a")
    b3 = _conv(b3, max(filters // 8, 1), 3, 1, f"{name}_b3b")
    b3 = _conv(b3, filters - quarter - filters // 2, 3, stride, f"{name}_b3c")
    return layers.Concatenate(name=f"{name}_cat")([b1, b2, b3])


class _FlowNetBase(NetworkContract, keras.Model):
    """Shared encoder-decoder assembly; subclasses choose the encoder blocks."""

    def _build(self, encoder_blocks, decoder_channels, feature_channels, name, **kwargs):
        current = keras.Input((None, None, 3), name="current")
        key = keras.Input((None, None, 3), name="key")
        x = layers.Concatenate(name="pair")([current, key])
        x = layers.Rescaling(1.0 / 255.0, offset=-0.5, name="normalize")(x)
        x = layers.AveragePooling2D(2, name="half_resolution")(x)

        skips = {}  # stride (relative to the half-resolution input) -> last tensor
        for i, block in enumerate(encoder_blocks):
            x = block(x, f"enc{i + 1}")
            skips[self._stride_after(i, encoder_blocks)] = x
        deepest = max(skips)
        x = skips[deepest]
        flow = layers.Conv2D(2, 3, padding="same", name=f"flow{deepest}")(x)
        s = deepest
        for channels in decoder_channels:
            s //= 2
            up = layers.Conv2DTranspose(channels, 4, strides=2, padding="same", name=f"deconv{s}")(x)
            up = _lrelu(up, f"deconv{s}_lrelu")
            up_flow = layers.Conv2DTranspose(2, 4, strides=2, padding="same", name=f"upflow{s}")(flow)
            x = layers.Concatenate(name=f"concat{s}")([skips[s], up, up_flow])
            if s > 4:
                flow = layers.Conv2D(2, 3, padding="same", name=f"flow{s}")(x)
        if s != 4:
            raise ValueError("the decoder must end at stride 4 of the half-resolution input")
        x = layers.AveragePooling2D(2, name="to_feature_grid")(x)
        features = layers.Activation("linear", name="features")(x)
        # Zero-initialised: an untrained flow net predicts no motion, so DFF
        # starts by reusing the key features as they are.
        flow = layers.Conv2D(
            2, 3, padding="same", kernel_initializer="zeros", dtype="float32", name="flow",
        )(features)
        scale = layers.Conv2D(
            feature_channels, 1, kernel_initializer="zeros", bias_initializer="ones", name="scale",
        )(features)
        super().__init__(
            inputs={"current": current, "key": key},
            outputs={"flow": flow, "scale": scale, "features": features},
            name=name,
            **kwargs,
        )
        self.feature_channels = feature_channels
        self.output_spec = OutputSpec(channels=feature_channels, stride=FEATURE_STRIDE, size_divisor=SIZE_DIVISOR)

    def call(self, inputs, training=None, mask=None):
        if isinstance(inputs, dict) and set(inputs) == {"current", "key"}:
            shapes = {k: tuple(v.shape) for k, v in inputs.items()}
            if shapes["current"] != shapes["key"]:
                raise ValueError(f"current and key frames must have the same shape, got {shapes}")
            for axis, name in ((1, "height"), (2, "width")):
                size = shapes["current"][axis] if len(shapes["current"]) == 4 else None
                if size is not None and size % self.size_divisor:
                    raise ValueError(
                        f"{self.name}: frame {name} must be a multiple of {self.size_divisor}, got shape "
                        f"{shapes['current']} (DFFModel pads frames for you)"
                    )
        return super().call(inputs, training=training, mask=mask)

    @staticmethod
    def _stride_after(index, blocks):
        return 2 ** sum(1 for b in blocks[: index + 1] if b.stride == 2)


class _Block:
    """A callable encoder block with its stride known up front."""

    def __init__(self, fn, stride):
        self.fn = fn
        self.stride = stride

    def __call__(self, x, name):
        return self.fn(x, name)


@keras.saving.register_keras_serializable(package="adaptive_dff")
class FlowNetS(_FlowNetBase):
    """FlowNetS with DFF's outputs. ``width`` scales every channel count:
    ``width=0.5`` is FlowNet-Half (about 1/4 of the cost).

    Args:
        width: channel multiplier of encoder and decoder.
        feature_channels: channels of the scale field (= the feature net's).
    """

    def __init__(self, *, width: float = 1.0, feature_channels: int = 1024, name: str = "flownet_s", **kwargs):
        if not isinstance(width, (int, float)) or not 0 < width <= 4:
            raise ValueError(f"width must be a number in (0, 4], got {width!r}")
        check_positive_int(feature_channels, "feature_channels")

        def scaled(c):
            return max(int(round(c * width)), 2)

        blocks = [
            _Block(lambda x, n, k=k, c=scaled(c), s=s: _conv(x, c, k, s, n), s)
            for k, c, s in FLOWNET_S_ENCODER
        ]
        self._build(blocks, [scaled(c) for c in FLOWNET_S_DECODER], feature_channels, name, **kwargs)
        self.width = float(width)

    def get_config(self):
        return {**self._base_config(), "width": self.width, "feature_channels": self.feature_channels}


def flownet_half(**kwargs) -> FlowNetS:
    """FlowNet-Half: FlowNetS with half the channels (DFF)."""
    if "width" in kwargs:
        raise ValueError("flownet_half fixes width=0.5; use FlowNetS(width=...) for other widths")
    kwargs.setdefault("name", "flownet_half")
    return FlowNetS(width=0.5, **kwargs)


def flownet_quarter(**kwargs) -> FlowNetS:
    """FlowNet-Quarter: FlowNetS with a quarter of the channels (about 1/12 of
    its MACs). Not one of DFF's nets: the flow net of the CPU default model,
    where FlowNet-Inception's many small layers cost nearly as much time as the
    compact feature net."""
    if "width" in kwargs:
        raise ValueError("flownet_quarter fixes width=0.25; use FlowNetS(width=...) for other widths")
    kwargs.setdefault("name", "flownet_quarter")
    return FlowNetS(width=0.25, **kwargs)


# (channels, stride) of the FlowNet-Inception encoder after a 7x7 stem conv.
FLOWNET_INCEPTION_ENCODER = (
    (64, 2), (128, 2), (128, 1), (256, 2), (256, 1), (256, 2), (256, 1), (512, 2), (512, 1),
)
FLOWNET_INCEPTION_DECODER = (256, 128, 48, 32)


@keras.saving.register_keras_serializable(package="adaptive_dff")
class FlowNetInception(_FlowNetBase):
    """A FlowNet whose encoder is built from Inception blocks (1x1 | 1x1-3x3 |
    1x1-3x3-3x3) and whose decoder is half as wide as FlowNetS': about 1/8 of
    FlowNetS' cost, the budget of DFF's FlowNet-Inception.

    Args:
        stem_channels: channels of the 7x7 stride-2 stem conv.
        encoder: ``[channels, stride]`` per Inception block.
        decoder: channels of the four transposed convs.
        feature_channels: channels of the scale field (= the feature net's).
    """

    def __init__(
        self,
        *,
        stem_channels: int = 24,
        encoder: Sequence[Sequence[int]] = FLOWNET_INCEPTION_ENCODER,
        decoder: Sequence[int] = FLOWNET_INCEPTION_DECODER,
        feature_channels: int = 1024,
        name: str = "flownet_inception",
        **kwargs,
    ):
        check_positive_int(stem_channels, "stem_channels")
        check_positive_int(feature_channels, "feature_channels")
        try:
            encoder = [[int(c), int(s)] for c, s in encoder]
            decoder = [int(c) for c in decoder]
        except (TypeError, ValueError):
            raise ValueError(
                f"encoder must be a list of [channels, stride] pairs and decoder a list of widths, "
                f"got encoder={encoder!r}, decoder={decoder!r}"
            ) from None
        if any(c < 1 or s not in (1, 2) for c, s in encoder) or any(c < 1 for c in decoder):
            raise ValueError(f"encoder needs channels >= 1 and stride 1 or 2, got {encoder}, decoder {decoder}")
        if sum(1 for _, s in encoder if s == 2) != 5 or len(decoder) != 4:
            raise ValueError(
                "FlowNetInception needs five stride-2 encoder blocks after the stem "
                f"and four decoder widths, got encoder={encoder}, decoder={decoder}"
            )
        blocks = [_Block(lambda x, n: _conv(x, stem_channels, 7, 2, n), 2)]
        blocks += [
            _Block(lambda x, n, c=c, s=s: _inception(x, c, s, n), s) for c, s in encoder
        ]
        self._build(blocks, decoder, feature_channels, name, **kwargs)
        self.stem_channels = stem_channels
        self.encoder = encoder
        self.decoder = decoder

    def get_config(self):
        return {
            **self._base_config(),
            "stem_channels": self.stem_channels,
            "encoder": self.encoder,
            "decoder": self.decoder,
            "feature_channels": self.feature_channels,
        }
