"""Export a DFF model's two inference steps as a TensorFlow SavedModel for deployment.

The SavedModel runs in any process with TensorFlow alone (no adaptive-dff
code): ``tf.saved_model.load(folder).signatures["key_step"]`` and
``["propagate_step"]``. Both take one RGB frame of the size given at export,
``[H, W, 3]`` uint8; a frame of another size fails with an error that says
so (``InvalidArgumentError``: "frame must be HxWx3 ...").

Signatures (tensors without a batch axis; ``h, w`` = padded frame / 16,
``C`` feature channels, ``K`` classes):

* ``key_step(frame)`` -> ``labels`` ``[H, W]`` int32, ``logits``
  ``[H, W, K]`` float32, ``features`` ``[h, w, C]`` float32 (keep them for
  the next propagated frames);
* ``propagate_step``, by the exported propagation flow:

  - ``"network"``: ``(frame, key_frame, key_features)`` -> ``labels``,
    ``logits``, ``flow`` ``[h, w, 2]``: the flow net, warp, scale field,
    head, upsampling and argmax, all in the graph;
  - ``"dis"``: ``(key_features, flow)`` -> ``labels``, ``logits``; ``flow``
    ``[h, w, 2]`` float32 (dx, dy in grid pixels, from the current frame to
    the key frame) is computed by the caller with OpenCV, as
    :class:`adaptive_dff.dis_propagation.DISGridFlow` does (recorded in
    ``adaptive_dff_export.json``): both frames to gray
    (``cv2.COLOR_RGB2GRAY``), shrunk by ``downscale`` with ``cv2.INTER_AREA``
    to ``(ceil(W/d), ceil(H/d))``, ``cv2.DISOpticalFlow_create(preset).calc(current,
    key, None)``, padded by edge replication to ``(h * 16/d, w * 16/d)``,
    ``cv2.resize(..., (w, h), interpolation=cv2.INTER_AREA)``, times ``d / 16``.

The outputs equal the library's (:meth:`DFFModel.key_step`,
:meth:`DFFModel.propagate_step`, :class:`VideoRunner`) up to float rounding.
The folder also holds ``adaptive_dff_export.json`` (sizes, classes,
propagation settings, signatures); an export only replaces a folder that is
empty or holds an earlier export, and it is written beside the target first,
so a failed export leaves the old one as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import tensorflow as tf

from adaptive_dff.fused import bilinear_matrix
from adaptive_dff.warp import bilinear_warp

MARKER = "adaptive_dff_export.json"

__all__ = ["export_saved_model", "MARKER"]


def _check_folder(folder: str) -> None:
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"export folder {folder!r} is a file; give a folder")
    if os.path.isdir(folder) and os.listdir(folder) and not os.path.isfile(os.path.join(folder, MARKER)):
        raise ValueError(f"export folder {folder!r} is not empty and holds no adaptive-dff export "
                         f"(no {MARKER}); refusing to overwrite it, give an empty or new folder")


class _Steps(tf.Module):
    """The two steps for frames of one size, as tf.functions with fixed signatures."""

    def __init__(self, model, height: int, width: int, propagation_flow: str):
        super().__init__(name="adaptive_dff_steps")
        self.feature_net, self.flow_net, self.head = model.feature_net, model.flow_net, model.head
        d, stride = model.size_divisor, model.output_stride
        self.height, self.width = height, width
        self.padded = (-(-height // d) * d, -(-width // d) * d)
        self.grid = (self.padded[0] // stride, self.padded[1] // stride)
        self.channels = int(model.feature_net.output_channels)
        self.rows = tf.constant(bilinear_matrix(self.padded[0], self.grid[0], height))
        self.cols = tf.constant(bilinear_matrix(self.padded[1], self.grid[1], width))
        frame = tf.TensorSpec([None, None, 3], tf.uint8, name="frame")
        features = tf.TensorSpec([None, None, self.channels], tf.float32, name="key_features")
        # The head, upsampling and argmax (and the warp, below) run as one XLA
        # program in the loading process too, as in the library.
        self._finish_compiled = tf.function(self._finish_impl, jit_compile=True)
        self._warp_finish = tf.function(lambda f, m, s: self._finish_impl(bilinear_warp(f, m) * s), jit_compile=True)
        self._warp_finish_no_scale = tf.function(lambda f, m: self._finish_impl(bilinear_warp(f, m)), jit_compile=True)
        self.key_step = tf.function(self._key, input_signature=[frame])
        if propagation_flow == "network":
            key_frame = tf.TensorSpec([None, None, 3], tf.uint8, name="key_frame")
            self.propagate_step = tf.function(self._propagate_network, input_signature=[frame, key_frame, features])
        else:
            flow = tf.TensorSpec([None, None, 2], tf.float32, name="flow")
            self.propagate_step = tf.function(self._propagate_flow, input_signature=[features, flow])

    def _checked(self, tensor, expected: tuple, what: str):
        expected_text = "x".join(str(s) for s in expected)
        check = tf.debugging.assert_equal(
            tf.shape(tensor), tf.constant(expected, tf.int32),
            message=f"{what} must be {expected_text} (the size this model was exported for)")
        with tf.control_dependencies([check]):
            return tf.reshape(tensor, expected)  # a static shape (TFLite has no EnsureShape)

    def _padded_frame(self, frame, what: str):
        frame = self._checked(frame, (self.height, self.width, 3), what)
        x = tf.cast(frame, tf.float32)[None]
        return tf.pad(x, [[0, 0], [0, self.padded[0] - self.height], [0, self.padded[1] - self.width], [0, 0]])

    def _finish(self, features):
        return self._finish_compiled(features)

    def _finish_impl(self, features):
        logits = tf.cast(self.head(features, training=False), tf.float32)
        up = tf.einsum("Yy,bkyx->bkYx", self.rows, tf.transpose(logits, (0, 3, 1, 2)))
        up = tf.einsum("bkYx,Xx->bkYX", up, self.cols)[0]  # [K, H, W]
        return tf.argmax(up, axis=0, output_type=tf.int32), tf.transpose(up, (1, 2, 0))

    def _key(self, frame):
        features = self.feature_net(self._padded_frame(frame, "frame"), training=False)
        labels, logits = self._finish(features)
        return {"labels": labels, "logits": logits, "features": features[0]}

    def _propagate_network(self, frame, key_frame, key_features):
        key_features = self._checked(key_features, (*self.grid, self.channels), "key_features")
        out = self.flow_net({"current": self._padded_frame(frame, "frame"),
                             "key": self._padded_frame(key_frame, "key_frame")}, training=False)
        labels, logits = self._warp_finish(key_features[None], out["flow"], tf.cast(out["scale"], key_features.dtype))
        return {"labels": labels, "logits": logits, "flow": out["flow"][0]}

    def _propagate_flow(self, key_features, flow):
        key_features = self._checked(key_features, (*self.grid, self.channels), "key_features")
        flow = self._checked(flow, (*self.grid, 2), "flow")
        labels, logits = self._warp_finish_no_scale(key_features[None], flow[None])
        return {"labels": labels, "logits": logits}


def export_saved_model(model, folder, height: int = 360, width: int = 480, propagation_flow: str | None = None) -> dict:
    """Save ``model``'s key-frame and propagation steps for ``height x width`` frames as a SavedModel.

    Args:
        model: an :class:`adaptive_dff.DFFModel`.
        folder: the target folder: new, empty, or an earlier export (replaced).
        height, width: the frame size the signatures accept.
        propagation_flow: ``"network"`` or ``"dis"`` (see the module
            docstring); default the model's own.

    Returns:
        The description written to ``folder/adaptive_dff_export.json``.

    Raises:
        ValueError: the folder holds something else, a bad size, or an
            unknown propagation flow; nothing is written then.
    """
    from adaptive_dff.model import DFFModel

    if not isinstance(model, DFFModel):
        raise TypeError(f"export needs an adaptive_dff.DFFModel, got {type(model).__name__}")
    for value, name in ((height, "height"), (width, "width")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    flow_kind = propagation_flow or model.propagation_flow
    if flow_kind not in ("network", "dis"):
        raise ValueError(f"propagation_flow must be 'network' or 'dis', got {propagation_flow!r}")
    folder = os.path.abspath(os.fspath(folder))
    _check_folder(folder)
    steps = _Steps(model, height, width, flow_kind)
    description = {
        "format": "adaptive-dff SavedModel", "height": height, "width": width,
        "padded": list(steps.padded), "grid": list(steps.grid), "stride": model.output_stride,
        "feature_channels": steps.channels, "num_classes": int(model.head.output_channels),
        "propagation_flow": flow_kind,
        "signatures": {
            "key_step": {"inputs": ["frame"], "outputs": ["labels", "logits", "features"]},
            "propagate_step": ({"inputs": ["frame", "key_frame", "key_features"], "outputs": ["labels", "logits", "flow"]}
                               if flow_kind == "network" else
                               {"inputs": ["key_features", "flow"], "outputs": ["labels", "logits"]}),
        },
    }
    if flow_kind == "dis":
        dis = model.dis_flow
        description["dis"] = {"downscale": dis.downscale if dis else 8, "preset": dis.preset if dis else "ultrafast"}
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        tf.saved_model.save(steps, staging, signatures={"key_step": steps.key_step,
                                                        "propagate_step": steps.propagate_step})
        with open(os.path.join(staging, MARKER), "w") as f:
            json.dump(description, f, indent=2)
        _check_folder(folder)  # still ours to replace
        if os.path.isdir(folder):
            old = folder + ".old-" + os.path.basename(staging)
            os.replace(folder, old)
            os.replace(staging, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return description


def to_tflite(folder) -> dict:
    """Convert an export's two signatures to TensorFlow Lite flatbuffers (builtin ops only).

    Each signature is frozen (variables to constants) and converted on its
    own, so each ``.tflite`` holds only the weights it uses. Returns
    ``{"key_step": bytes, "propagate_step": bytes}``; run them with
    ``tf.lite.Interpreter(model_content=...).get_signature_runner()``
    (inputs by name, outputs ``output_0``.. in the order of the names sorted).

    Raises:
        ValueError: ``folder`` holds no adaptive-dff export.
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    folder = os.fspath(folder)
    if not os.path.isfile(os.path.join(folder, MARKER)):
        raise ValueError(f"{folder!r} holds no adaptive-dff export (no {MARKER})")
    loaded = tf.saved_model.load(folder)
    out = {}
    for name in ("key_step", "propagate_step"):
        frozen = convert_variables_to_constants_v2(loaded.signatures[name])
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], loaded)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        out[name] = converter.convert()
    return out
