"""adaptive-dff: fast video recognition by Deep Feature Flow and key-frame scheduling.

The expensive image network runs on key frames only; the other frames get the
key frame's deep features warped along a flow field (Zhu et al., "Deep Feature
Flow for Video Recognition", CVPR 2017).

Public names are loaded lazily, so ``import adaptive_dff.data`` or the command
line's ``--help`` do not pay for importing TensorFlow.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "bilinear_warp": "adaptive_dff.warp",
    "FlowWarp": "adaptive_dff.warp",
    "DFFModel": "adaptive_dff.model",
    "KeyFrame": "adaptive_dff.model",
    "load_model": "adaptive_dff.model",
    "compact_dff": "adaptive_dff.model",
    "load_default": "adaptive_dff.pretrained",
    "load_default_decision": "adaptive_dff.pretrained",
    "count_macs": "adaptive_dff.macs",
    "VideoRunner": "adaptive_dff.runner",
    "StepResult": "adaptive_dff.runner",
    "VideoReader": "adaptive_dff.video",
    "CompactFeatures": "adaptive_dff.networks",
    "ResNetFeatures": "adaptive_dff.networks",
    "resnet50_features": "adaptive_dff.networks",
    "resnet101_features": "adaptive_dff.networks",
    "FlowNetS": "adaptive_dff.networks",
    "flownet_half": "adaptive_dff.networks",
    "flownet_quarter": "adaptive_dff.networks",
    "FlowNetInception": "adaptive_dff.networks",
    "SegmentationHead": "adaptive_dff.networks",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'adaptive_dff' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
