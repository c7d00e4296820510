"""Feature networks: dilated ResNet-50/101 at output stride 16, and a compact
residual backbone for CPUs.

Both end, as in Deep Feature Flow (Zhu et al. 2017, sec. 4), with a randomly
initialised 3x3 convolution (dilation 6 for the ResNets) + ReLU reducing the
channels to the feature size (1024 for the ResNets).

The layout is data: ``stages`` is a list of ``[blocks, width, stride,
dilation]``, so output stride 16 is ``stride 1, dilation 2`` in the last stage
rather than a second builder.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
from keras import layers

from adaptive_dff.networks.base import (
    NetworkContract,
    OutputSpec,
    check_positive_int,
    conv_bn_act,
    normalize_image,
)

# ResNet v1.5 (stride on the 3x3 conv), conv5 with stride 1 and dilation 2.
RESNET50_STAGES = ((3, 64, 1, 1), (4, 128, 2, 1), (6, 256, 2, 1), (3, 512, 1, 2))
RESNET101_STAGES = ((3, 64, 1, 1), (4, 128, 2, 1), (23, 256, 2, 1), (3, 512, 1, 2))


def _check_stages(stages) -> list:
    try:
        stages = [[int(v) for v in stage] for stage in stages]
    except (TypeError, ValueError):
        raise ValueError(f"stages must be a list of [blocks, width, stride, dilation], got {stages!r}")
    if not stages or any(len(s) != 4 or min(s) < 1 for s in stages):
        raise ValueError(
            f"stages must be a non-empty list of [blocks, width, stride, dilation] "
            f"with positive entries, got {stages!r}"
        )
    for blocks, width, stride, dilation in stages:
        if stride > 1 and dilation > 1:
            raise ValueError(f"a stage cannot have both stride {stride} and dilation {dilation}")
    return stages


def _bottleneck(x, width, stride, dilation, name):
    out_channels = 4 * width
    shortcut = x
    if stride != 1 or x.shape[-1] != out_channels:
        shortcut = conv_bn_act(x, out_channels, 1, strides=stride, name=f"{name}_proj", activation=None)
    y = conv_bn_act(x, width, 1, name=f"{name}_1")
    y = conv_bn_act(y, width, 3, strides=stride, dilation=dilation, name=f"{name}_2")
    y = conv_bn_act(y, out_channels, 1, name=f"{name}_3", activation=None)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _basic(x, width, stride, dilation, name):
    shortcut = x
    if stride != 1 or x.shape[-1] != width:
        shortcut = conv_bn_act(x, width, 1, strides=stride, name=f"{name}_proj", activation=None)
    y = conv_bn_act(x, width, 3, strides=stride, dilation=dilation, name=f"{name}_1")
    y = conv_bn_act(y, width, 3, dilation=dilation, name=f"{name}_2", activation=None)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _stages_and_feature_conv(x, stages, block, first_stage, feature_channels, feature_dilation):
    """The residual stages after a stem, then the 3x3 feature conv + ReLU."""
    for s, (blocks, width, stride, dilation) in enumerate(stages):
        for b in range(blocks):
            x = block(x, width, stride if b == 0 else 1, dilation, f"stage{s + first_stage}_block{b + 1}")
    x = layers.Conv2D(feature_channels, 3, dilation_rate=feature_dilation, padding="same", name="feat_conv")(x)
    return layers.Activation("relu", name="features")(x)


@keras.saving.register_keras_serializable(package="adaptive_dff")
class ResNetFeatures(NetworkContract, keras.Model):
    """Dilated bottleneck ResNet + 3x3 feature conv: ``[B, H, W, 3] -> [B, H/s, W/s, C]``.

    Args:
        stages: ``[blocks, width, stride, dilation]`` per stage after the stem
            (7x7 conv stride 2 + 3x3 max-pool stride 2, i.e. stride 4).
            Defaults to ResNet-50 at output stride 16.
        feature_channels: channels of the output features (DFF: 1024).
        feature_dilation: dilation of the final 3x3 conv (DFF: 6).
    """

    def __init__(
        self,
        *,
        stages: Sequence[Sequence[int]] = RESNET50_STAGES,
        feature_channels: int = 1024,
        feature_dilation: int = 6,
        name: str = "resnet_features",
        **kwargs,
    ):
        stages = _check_stages(stages)
        check_positive_int(feature_channels, "feature_channels")
        check_positive_int(feature_dilation, "feature_dilation")
        image = keras.Input((None, None, 3), name="image")
        x = normalize_image(image)
        x = conv_bn_act(x, 64, 7, strides=2, name="stem")
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
        features = _stages_and_feature_conv(x, stages, _bottleneck, 2, feature_channels, feature_dilation)
        super().__init__(inputs=image, outputs=features, name=name, **kwargs)
        self.stages = stages
        self.feature_channels = feature_channels
        self.feature_dilation = feature_dilation
        stride = 4 * math.prod(s[2] for s in stages)
        self.output_spec = OutputSpec(channels=feature_channels, stride=stride, size_divisor=stride)

    def get_config(self):
        return {
            **self._base_config(),
            "stages": self.stages,
            "feature_channels": self.feature_channels,
            "feature_dilation": self.feature_dilation,
        }


def resnet50_features(**kwargs) -> ResNetFeatures:
    """ResNet-50 at output stride 16 with a 1024-channel feature conv (DFF)."""
    kwargs.setdefault("name", "resnet50_features")
    return ResNetFeatures(stages=RESNET50_STAGES, **kwargs)


def resnet101_features(**kwargs) -> ResNetFeatures:
    """ResNet-101 at output stride 16 with a 1024-channel feature conv (DFF)."""
    kwargs.setdefault("name", "resnet101_features")
    return ResNetFeatures(stages=RESNET101_STAGES, **kwargs)


COMPACT_STAGES = ((1, 32, 2, 1), (2, 64, 2, 1), (2, 128, 2, 1), (2, 192, 1, 2))


@keras.saving.register_keras_serializable(package="adaptive_dff")
class CompactFeatures(NetworkContract, keras.Model):
    """A small residual backbone (basic blocks) that trains and runs on a CPU.

    Stem: 3x3 conv stride 2 (24 ch); then ``stages`` of basic residual blocks,
    ``[blocks, width, stride, dilation]``; then a 3x3 conv (dilation
    ``feature_dilation``) + ReLU to ``feature_channels``. Default: output
    stride 16, 256 channels, about 1/20 of ResNet-50's cost.
    """

    def __init__(
        self,
        *,
        stages: Sequence[Sequence[int]] = COMPACT_STAGES,
        stem_channels: int = 24,
        feature_channels: int = 256,
        feature_dilation: int = 2,
        name: str = "compact_features",
        **kwargs,
    ):
        stages = _check_stages(stages)
        check_positive_int(stem_channels, "stem_channels")
        check_positive_int(feature_channels, "feature_channels")
        check_positive_int(feature_dilation, "feature_dilation")
        image = keras.Input((None, None, 3), name="image")
        x = normalize_image(image)
        x = conv_bn_act(x, stem_channels, 3, strides=2, name="stem")
        features = _stages_and_feature_conv(x, stages, _basic, 1, feature_channels, feature_dilation)
        super().__init__(inputs=image, outputs=features, name=name, **kwargs)
        self.stages = stages
        self.stem_channels = stem_channels
        self.feature_channels = feature_channels
        self.feature_dilation = feature_dilation
        stride = 2 * math.prod(s[2] for s in stages)
        self.output_spec = OutputSpec(channels=feature_channels, stride=stride, size_divisor=stride)

    def get_config(self):
        return {
            **self._base_config(),
            "stages": self.stages,
            "stem_channels": self.stem_channels,
            "feature_channels": self.feature_channels,
            "feature_dilation": self.feature_dilation,
        }
