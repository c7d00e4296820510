"""adaptive-dff: fast video recognition by Deep Feature Flow and key-frame scheduling.

The expensive image network runs on key frames only; the other frames get the
key frame's deep features warped along a flow field (Zhu et al., "Deep Feature
Flow for Video Recognition", CVPR 2017).

Public names are loaded lazily, so ``import adaptive_dff.data`` or the command
line's ``--help`` do not pay for importing TensorFlow.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys

__version__ = "0.1.0"

# Library code logs under "adaptive_dff..."; nothing shows unless the application configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())


def keras_backend() -> str:
    """The backend Keras runs on (or will run on once imported), without importing it:
    ``keras.backend.backend()`` when Keras is loaded, else ``$KERAS_BACKEND``, else the
    ``backend`` of ``keras.json`` (in ``$KERAS_HOME`` or ``~/.keras``), else ``"tensorflow"``."""
    loaded = sys.modules.get("keras")
    if loaded is not None and hasattr(loaded, "backend") and hasattr(loaded.backend, "backend"):
        return str(loaded.backend.backend())
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return str(json.load(f).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def require_tensorflow_backend() -> None:
    """Raise ``ImportError`` naming the backend when Keras runs on another backend than TensorFlow
    (the warp, the networks and the training programs are built on TensorFlow ops)."""
    backend = keras_backend()
    if backend != "tensorflow":
        source = "KERAS_BACKEND" if os.environ.get("KERAS_BACKEND") else "Keras's configuration (keras.json)"
        raise ImportError(
            f"adaptive-dff needs Keras on its TensorFlow backend, but Keras is set to run on {backend!r} "
            f"(by {source}); run with KERAS_BACKEND=tensorflow (or unset it)"
        )


require_tensorflow_backend()

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
