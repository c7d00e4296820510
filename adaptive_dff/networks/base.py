"""What every network of adaptive-dff reports about itself, and shared blocks.

Each network is a Keras functional model subclass (keras-hub's style): keyword
arguments with defaults, ``get_config()`` that round-trips, registered as
serializable. Each states its main output as one value, ``output_spec``
(an :class:`OutputSpec`: channels, stride, size divisor; detectron2's
``Backbone.output_shape()`` in spirit), which :class:`adaptive_dff.DFFModel`
checks its parts against; ``output_channels``, ``output_stride`` and
``size_divisor`` read it.

Images enter every network as RGB floats in ``[0, 255]``; the networks
normalise them internally.
"""

from __future__ import annotations

from dataclasses import dataclass

from keras import layers


@dataclass(frozen=True)
class OutputSpec:
    """A network's main output.

    Attributes:
        channels: channels of the output (feature channels; for a flow net,
            those of its scale field; for a head, the classes).
        stride: input pixels per output pixel (16 for feature and flow nets,
            1 for a head that keeps the feature grid).
        size_divisor: input height and width must be multiples of this (the
            DFF model pads its frames to it).
    """

    channels: int
    stride: int
    size_divisor: int


class NetworkContract:
    """Mixin: a network's :class:`OutputSpec` and the attributes that read it."""

    output_spec: OutputSpec

    @property
    def output_channels(self) -> int:
        return self.output_spec.channels

    @property
    def output_stride(self) -> int:
        return self.output_spec.stride

    @property
    def size_divisor(self) -> int:
        return self.output_spec.size_divisor

    def _base_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def normalize_image(x):
    """RGB in [0, 255] to roughly zero mean, unit range."""
    return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(x)


def conv_bn_act(x, filters, kernel, *, strides=1, dilation=1, name, activation="relu"):
    """Conv (no bias) + BatchNorm + activation; ``activation=None`` skips it."""
    x = layers.Conv2D(
        filters, kernel, strides=strides, dilation_rate=dilation, padding="same",
        use_bias=False, name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(epsilon=1e-5, name=f"{name}_bn")(x)
    if activation is not None:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
