"""What every network of adaptive-dff reports about itself, and shared blocks.

Each network is a Keras functional model subclass (keras-hub's style): keyword
arguments with defaults, ``get_config()`` that round-trips, registered as
serializable. Each reports:

* ``output_stride``: input pixels per output pixel (16 for feature nets);
* ``output_channels``: channels of the main output;
* ``size_divisor``: input height and width must be multiples of this (the
  DFF model pads its frames to it).

Images enter every network as RGB floats in ``[0, 255]``; the networks
normalise them internally.
"""

from __future__ import annotations

from keras import layers


class NetworkContract:
    """Mixin: the stride/channels/divisor report shared by all networks."""

    output_stride: int
    output_channels: int
    size_divisor: int

    def describe(self) -> dict:
        """``{"name", "output_stride", "output_channels", "size_divisor"}``."""
        return {
            "name": self.name,
            "output_stride": self.output_stride,
            "output_channels": self.output_channels,
            "size_divisor": self.size_divisor,
        }

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
