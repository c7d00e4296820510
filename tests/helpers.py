"""Small instances of every network class, and folders of small frames, for the fast test tier."""

import os

import cv2
import numpy as np

from adaptive_dff.networks import (
    CompactFeatures,
    FlowNetInception,
    FlowNetS,
    ResNetFeatures,
    SegmentationHead,
)

TINY_STAGES = [[1, 8, 2, 1], [1, 8, 2, 1], [1, 8, 2, 1], [1, 8, 1, 2]]
TINY_RESNET = [[1, 8, 1, 1], [1, 8, 2, 1], [1, 8, 2, 1], [1, 8, 1, 2]]


def tiny_parts(channels: int = 16, classes: int = 5) -> dict:
    return {
        "resnet": ResNetFeatures(stages=TINY_RESNET, feature_channels=channels),
        "compact": CompactFeatures(stages=TINY_STAGES, feature_channels=channels),
        "flownet_s": FlowNetS(width=0.0625, feature_channels=channels),
        "flownet_inception": FlowNetInception(
            stem_channels=4, encoder=[[8, 2], [8, 2], [8, 2], [8, 2], [8, 2]],
            decoder=[8, 8, 8, 8], feature_channels=channels,
        ),
        "head": SegmentationHead(num_classes=classes, input_channels=channels),
    }


def tiny_dff(channels: int = 16, classes: int = 5):
    from adaptive_dff import DFFModel

    parts = tiny_parts(channels, classes)
    return DFFModel(feature_net=parts["compact"], flow_net=parts["flownet_s"], head=parts["head"])


def saved_tiny_dff(folder, seed: int, classes: int = 4) -> str:
    """Path of a built tiny DFF model (random weights from ``seed``) saved as ``folder/tiny.keras``."""
    import keras
    import numpy as np

    from schedulers.files import save_keras_atomic

    keras.utils.set_random_seed(seed)
    model = tiny_dff(classes=classes)
    model.key_step(np.zeros((32, 32, 3), np.uint8))
    path = os.path.join(str(folder), "tiny.keras")
    save_keras_atomic(model, path)
    return path


def write_folder(folder, count, size=(48, 64), seed=0, odd=None):
    """A folder of ``count`` PNG frames: a bright square moving over noise; frame ``odd`` of another size."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    frames = []
    for t in range(count):
        h, w = (size[0] + 16, size[1]) if t == odd else size
        frame = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
        frame[10:30, 5 + 2 * t:25 + 2 * t] = 230
        cv2.imwrite(os.path.join(folder, f"f{t}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        frames.append(frame)
    return str(folder), frames
