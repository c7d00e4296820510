"""The Deep Feature Flow model, assembled from injected parts.

::

    key frame I_k --feature_net--> F_k ------------------------------+
                                                                     v
    current I_i, key I_k --flow_net--> flow M_i->k, scale S --> warp(F_k, M) * S --head--> prediction
    key frame: prediction = head(F_k)

Shapes: frames ``[B, H, W, 3]`` RGB (uint8, or floats in 0..255; see
:mod:`adaptive_dff.frames` for grayscale/RGBA); features and flow on the
feature grid ``[B, H'/16, W'/16, .]`` where ``H', W'`` are ``H, W`` padded to
the parts' common size divisor; predictions are class logits ``[B, H, W, K]``
(float32), upsampled bilinearly and cropped back to the input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from adaptive_dff.frames import as_frame_batch, lcm
from adaptive_dff.networks.base import OutputSpec
from adaptive_dff.warp import bilinear_warp



@dataclass
class KeyFrame:
    """What a key-frame step keeps for later propagation.

    Attributes:
        features: ``[B, h, w, C]`` key features on the (padded) feature grid.
        image: ``[B, H', W', 3]`` float32 padded key frame (the flow net's input).
        height, width: size of the original frame, before padding.
    """

    features: tf.Tensor
    image: tf.Tensor
    height: int
    width: int


def _output_spec(part, role: str) -> OutputSpec:
    """``part.output_spec``, or a ``TypeError`` naming ``role`` when ``part`` does not state one."""
    if not callable(part):
        raise TypeError(f"{role} must be a callable Keras model, got {type(part).__name__}")
    spec = getattr(part, "output_spec", None)
    if not isinstance(spec, OutputSpec):
        raise TypeError(
            f"{role} ({type(part).__name__}) must report output_stride, output_channels and size_divisor "
            "as one value, output_spec (an adaptive_dff.networks.OutputSpec); the networks in "
            "adaptive_dff.networks do"
        )
    return spec


@keras.saving.register_keras_serializable(package="adaptive_dff")
class DFFModel(keras.Model):
    """Deep Feature Flow (Zhu et al., CVPR 2017) from a feature net, a flow net and a head.

    Args:
        feature_net: image ``[B, H, W, 3]`` -> features ``[B, H/s, W/s, C]``.
        flow_net: ``{"current", "key"}`` images -> dict with ``flow``
            ``[B, H/s, W/s, 2]`` (current to key, feature-grid pixels) and
            ``scale`` ``[B, H/s, W/s, C]``.
        head: features ``[B, h, w, C]`` -> logits ``[B, h, w, K]``.

    The contracts (same output stride, scale channels = feature channels =
    head input channels) are checked here, before any frame is seen.

    Calling the model (``model({"key": I_k, "current": I_i})``) is the
    end-to-end training path: logits of the current frame, with gradients
    reaching all three parts. For inference on a stream use
    :meth:`key_step` and :meth:`propagate_step`.

    Inference options (saved with the model; training always uses the flow net):

    * ``propagation_flow``: where a propagated frame's flow comes from,
      ``"network"`` (the flow net: flow and scale field, DFF as published) or
      ``"dis"`` (OpenCV DIS flow on frames downscaled by ``dis_downscale``,
      scale field one; no network runs on a propagated frame, see
      :mod:`adaptive_dff.dis_propagation`).
    * ``dis_downscale`` (default 8) and ``dis_preset`` (default ``"ultrafast"``):
      the DIS settings; giving them with ``propagation_flow="network"`` is an
      error, as they would not apply.
    """

    DIS_DEFAULTS = {"dis_downscale": 8, "dis_preset": "ultrafast"}

    def __init__(self, *, feature_net, flow_net, head, name: str = "dff", propagation_flow: str = "network",
                 dis_downscale: int | None = None, dis_preset: str | None = None, **kwargs):
        features = _output_spec(feature_net, "feature_net")
        flow = _output_spec(flow_net, "flow_net")
        classes = _output_spec(head, "head")
        if features.stride != flow.stride:
            raise ValueError(
                f"flow_net must predict on the feature grid: feature_net has output stride "
                f"{features.stride}, flow_net {flow.stride}"
            )
        if flow.channels != features.channels:
            raise ValueError(
                f"flow_net's scale field has {flow.channels} channels but "
                f"feature_net outputs {features.channels}; build the flow net "
                f"with feature_channels={features.channels}"
            )
        head_in = getattr(head, "input_channels", None)
        if head_in is not None and head_in != features.channels:
            raise ValueError(
                f"head expects {head_in} input channels but feature_net outputs "
                f"{features.channels}"
            )
        if classes.stride != 1:
            raise ValueError(f"head must keep the feature grid (output stride 1), got {classes.stride}")
        super().__init__(name=name, **kwargs)
        self.feature_net = feature_net
        self.flow_net = flow_net
        self.head = head
        self.output_stride = int(features.stride)
        self.size_divisor = lcm(features.size_divisor, flow.size_divisor)
        self.num_classes = int(classes.channels)
        self._set_propagation_flow(propagation_flow, dis_downscale, dis_preset)
        self.built = True  # the parts are built functional models
        self._key_fn = tf.function(self._key_impl, reduce_retracing=True)
        self._propagate_fn = tf.function(self._propagate_impl, reduce_retracing=True)
        self._stage_fns = {
            "pad": tf.function(self._pad, reduce_retracing=True),
            "features": tf.function(lambda x: self.feature_net(x, training=False), reduce_retracing=True),
            "flow": tf.function(
                lambda c, k: self.flow_net({"current": c, "key": k}, training=False), reduce_retracing=True
            ),
            "warp": tf.function(
                lambda f, m, s: bilinear_warp(f, m) * tf.cast(s, f.dtype), reduce_retracing=True
            ),
            "head": tf.function(
                lambda f, shape, h, w: self._logits_at(self.head(f, training=False), shape, h, w),
                reduce_retracing=True,
            ),
        }

    def _set_propagation_flow(self, propagation_flow, dis_downscale, dis_preset) -> None:
        from adaptive_dff.dis_propagation import PROPAGATION_FLOWS, DISGridFlow

        if propagation_flow not in PROPAGATION_FLOWS:
            raise ValueError(f"propagation_flow must be one of {PROPAGATION_FLOWS}, got {propagation_flow!r}")
        given = {k: v for k, v in (("dis_downscale", dis_downscale), ("dis_preset", dis_preset)) if v is not None}
        if propagation_flow != "dis" and given:
            raise ValueError(f"{', '.join(sorted(given))} apply only to propagation_flow='dis'; this model "
                             f"propagates with {propagation_flow!r} flow")
        self.propagation_flow = propagation_flow
        self.dis_downscale = dis_downscale
        self.dis_preset = dis_preset
        self.dis_flow = None
        if propagation_flow == "dis":
            settings = {**self.DIS_DEFAULTS, **given}
            self.dis_downscale, self.dis_preset = settings["dis_downscale"], settings["dis_preset"]
            self.dis_flow = DISGridFlow(self.dis_downscale, self.dis_preset, stride=self.output_stride)

    def with_propagation_flow(self, propagation_flow: str, dis_downscale: int | None = None,
                              dis_preset: str | None = None) -> "DFFModel":
        """Switch where propagated frames take their flow from (see the class docstring); returns ``self``."""
        self._set_propagation_flow(propagation_flow, dis_downscale, dis_preset)
        return self

    # -- shapes -----------------------------------------------------------------

    def _pad(self, images):
        """Zero-pad ``[B, H, W, 3]`` to multiples of ``size_divisor`` (graph-safe)."""
        shape = tf.shape(images)
        d = self.size_divisor
        pad_h = (d - shape[1] % d) % d
        pad_w = (d - shape[2] % d) % d
        return tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    def _logits_at(self, grid_logits, padded_shape, height, width):
        """Bilinear upsampling of grid logits to the padded frame, cropped to ``height x width``."""
        up = tf.image.resize(grid_logits, padded_shape[1:3], method="bilinear")
        return tf.cast(up[:, :height, :width, :], tf.float32)

    # -- the three paths --------------------------------------------------------

    def call(self, inputs, training=None):
        """End-to-end training path: ``{"key", "current"}`` frames -> current logits."""
        if not isinstance(inputs, dict) or set(inputs) != {"key", "current"}:
            raise ValueError(
                "DFFModel expects a dict {'key': frames, 'current': frames}, got "
                f"{sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__}"
            )
        key = as_frame_batch(inputs["key"], "key")
        current = as_frame_batch(inputs["current"], "current")
        k_shape, c_shape = tuple(key.shape), tuple(current.shape)
        if any(a is not None and b is not None and a != b for a, b in zip(k_shape, c_shape)):
            raise ValueError(f"key and current frames must have the same shape, got key {k_shape} and current {c_shape}")
        shape = tf.shape(current)
        key_p, current_p = self._pad(key), self._pad(current)
        features = self.feature_net(key_p, training=training)
        warped, _ = self._warp(features, current_p, key_p, training)
        logits = self.head(warped, training=training)
        return self._logits_at(logits, tf.shape(current_p), shape[1], shape[2])

    def _warp(self, key_features, current_p, key_p, training=None):
        out = self.flow_net({"current": current_p, "key": key_p}, training=training)
        warped = bilinear_warp(key_features, out["flow"])
        warped = warped * tf.cast(out["scale"], warped.dtype)
        return warped, out

    def _key_impl(self, images):
        padded = self._pad(images)
        features = self.feature_net(padded, training=False)
        logits = self.head(features, training=False)
        shape = tf.shape(images)
        return self._logits_at(logits, tf.shape(padded), shape[1], shape[2]), features, padded

    def _propagate_impl(self, images, key_features, key_image):
        padded = self._pad(images)
        warped, out = self._warp(key_features, padded, key_image, training=False)
        logits = self.head(warped, training=False)
        shape = tf.shape(images)
        return self._logits_at(logits, tf.shape(padded), shape[1], shape[2]), out

    # -- the stages one by one (for runtimes that time or reuse them) ----------

    def pad_frames(self, frame) -> tuple[tf.Tensor, tf.Tensor]:
        """``(images [B, H, W, 3] float32, padded [B, H', W', 3])`` of a frame or batch."""
        images = as_frame_batch(frame, "frame")
        return images, self._stage_fns["pad"](images)

    def run_features(self, padded: tf.Tensor) -> tf.Tensor:
        """Feature net on padded frames: ``[B, H'/s, W'/s, C]``."""
        return self._stage_fns["features"](padded)

    def run_flow(self, current_padded: tf.Tensor, key_padded: tf.Tensor) -> dict:
        """Flow net outputs (``flow``, ``scale``, ``features``) from current to key."""
        return self._stage_fns["flow"](current_padded, key_padded)

    def run_warp(self, key_features: tf.Tensor, flow_out: dict) -> tf.Tensor:
        """Key features warped along ``flow_out["flow"]`` and multiplied by its scale field."""
        return self._stage_fns["warp"](key_features, flow_out["flow"], flow_out["scale"])

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """Feature-grid size ``(ceil(height / s), ceil(width / s))`` of an unpadded ``height x width``
        region (``s`` the output stride): the part of the padded grid that covers the region."""
        return -(-int(height) // self.output_stride), -(-int(width) // self.output_stride)

    def crop_to_grid(self, grid, height: int, width: int) -> np.ndarray:
        """The first item of a batch on the padded feature grid (``[B, h', w', C]``, e.g. the
        flow net's ``flow`` or ``features``) cropped to the grid of a ``height x width`` region:
        ``[ceil(height / s), ceil(width / s), C]`` numpy. Flow stays in feature-grid pixels."""
        gh, gw = self.grid_shape(height, width)
        return np.asarray(grid)[0, :gh, :gw]

    def run_head(self, features: tf.Tensor, padded_shape, height: int, width: int) -> tf.Tensor:
        """Head on grid features, logits upsampled to the padded frame and cropped to ``height x width``."""
        return self._stage_fns["head"](features, tf.constant(padded_shape, tf.int32), height, width)

    def key_step(self, frame) -> tuple[tf.Tensor, KeyFrame]:
        """Run the feature net on a key frame.

        Args:
            frame: ``[H, W, 3]`` or ``[B, H, W, 3]`` RGB.

        Returns:
            ``(logits [B, H, W, K], KeyFrame)``.
        """
        images = as_frame_batch(frame, "frame")
        logits, features, padded = self._key_fn(images)
        return logits, KeyFrame(features, padded, int(images.shape[1]), int(images.shape[2]))

    def propagate_step(self, frame, key: KeyFrame) -> tuple[tf.Tensor, dict]:
        """Carry the key features to ``frame``: flow, warp, scale, head.

        Args:
            frame: ``[H, W, 3]`` or ``[B, H, W, 3]`` RGB of the key frame's size.
            key: the :class:`KeyFrame` returned by :meth:`key_step`.

        Returns:
            ``(logits [B, H, W, K], flow_net outputs)``; the flow net's outputs
            (``flow``, ``scale``, ``features``) are returned so a scheduler can
            reuse them rather than computing the flow again. With
            ``propagation_flow="dis"`` they are ``flow`` (DIS, on the grid)
            and ``scale`` (ones) only: no flow net runs.
        """
        if not isinstance(key, KeyFrame):
            raise TypeError(f"key must be the KeyFrame returned by key_step, got {type(key).__name__}")
        images = as_frame_batch(frame, "frame")
        size = (int(images.shape[1]), int(images.shape[2]))
        if size != (key.height, key.width) or images.shape[0] != key.features.shape[0]:
            raise ValueError(
                f"frame has shape {tuple(images.shape)} but the key frame was "
                f"[{key.features.shape[0]}, {key.height}, {key.width}, 3]; frames of one stream "
                "must share batch and size"
            )
        if self.propagation_flow == "dis":
            return self._propagate_dis(images, key)
        return self._propagate_fn(images, key.features, key.image)

    def _propagate_dis(self, images: tf.Tensor, key: KeyFrame) -> tuple[tf.Tensor, dict]:
        """Propagation along OpenCV DIS flow (scale field one), frame by frame of the batch."""
        grid = tuple(key.features.shape[1:3])
        frames = images.numpy()
        keys = key.image.numpy()[:, : key.height, : key.width]
        flow = tf.constant(np.stack([
            self.dis_flow.grid_flow(self.dis_flow.small(f), self.dis_flow.small(k), grid) for f, k in zip(frames, keys)
        ]))
        warped = bilinear_warp(key.features, flow)
        padded = tf.shape(key.image)
        logits = self._stage_fns["head"](warped, padded, key.height, key.width)
        return logits, {"flow": flow, "scale": tf.ones_like(key.features)}

    # -- serialization ----------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "feature_net": keras.saving.serialize_keras_object(self.feature_net),
            "flow_net": keras.saving.serialize_keras_object(self.flow_net),
            "head": keras.saving.serialize_keras_object(self.head),
            "propagation_flow": self.propagation_flow,
            "dis_downscale": self.dis_downscale,
            "dis_preset": self.dis_preset,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for part in ("feature_net", "flow_net", "head"):
            config[part] = keras.saving.deserialize_keras_object(config[part])
        return cls(**config)


def compact_dff(num_classes: int = 11) -> DFFModel:
    """The CPU configuration: compact feature net + FlowNet-Inception + segmentation head."""
    from adaptive_dff.networks import CompactFeatures, FlowNetInception, SegmentationHead

    feature_net = CompactFeatures()
    return DFFModel(
        feature_net=feature_net,
        flow_net=FlowNetInception(feature_channels=feature_net.output_channels),
        head=SegmentationHead(num_classes=num_classes, input_channels=feature_net.output_channels),
    )


def load_model(path) -> keras.Model:
    """Load a ``.keras`` file saved from adaptive-dff parts (networks, DFFModel, FlowWarp).

    Importing this module registers every adaptive-dff class with Keras, so
    the file loads in a fresh process. Errors name the file.
    """
    import adaptive_dff.networks  # noqa: F401  (registers the networks)
    import adaptive_dff.warp  # noqa: F401  (registers FlowWarp)
    from schedulers.files import check_keras_file

    path = check_keras_file(path, "model file")
    try:
        return keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for a damaged archive
        raise ValueError(f"model file {path!r} could not be loaded: {str(error).splitlines()[0]}") from None
