"""Task heads: what turns (warped) features into predictions."""

from __future__ import annotations

import keras
from keras import layers

from adaptive_dff.networks.base import NetworkContract, OutputSpec, check_positive_int


@keras.saving.register_keras_serializable(package="adaptive_dff")
class SegmentationHead(NetworkContract, keras.Model):
    """One 1x1 conv from features ``[B, h, w, input_channels]`` to class scores
    ``[B, h, w, num_classes]`` (logits, float32), on the same grid (stride 1).
    """

    def __init__(
        self, *, num_classes: int = 11, input_channels: int = 1024, name: str = "segmentation_head", **kwargs
    ):
        check_positive_int(num_classes, "num_classes")
        check_positive_int(input_channels, "input_channels")
        features = keras.Input((None, None, input_channels), name="features")
        logits = layers.Conv2D(num_classes, 1, dtype="float32", name="classifier")(features)
        super().__init__(inputs=features, outputs=logits, name=name, **kwargs)
        self.num_classes = num_classes
        self.input_channels = input_channels
        self.output_spec = OutputSpec(channels=num_classes, stride=1, size_divisor=1)

    def get_config(self):
        return {**self._base_config(), "num_classes": self.num_classes, "input_channels": self.input_channels}
