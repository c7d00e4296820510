"""Bilinear warping of feature maps along a flow field, built on ``tf.raw_ops``.

Convention (fixed by the design notes):

* ``features``: ``[B, H, W, C]``, any floating dtype.
* ``flow``: ``[B, H, W, 2]``, ``flow[..., 0] = dx`` and ``flow[..., 1] = dy``,
  in pixels of the ``H x W`` grid being warped.
* ``out[b, y, x] = features[b, y + dy, x + dx]``, sampled bilinearly; a
  neighbour that falls outside the grid contributes zero, exactly as
  ``cv2.remap(..., INTER_LINEAR, borderMode=BORDER_CONSTANT, borderValue=0)``
  with ``map_x = x + dx`` and ``map_y = y + dy``.
* A non-finite flow vector (NaN or +-inf) samples outside the grid: the output
  there is zero and nothing non-finite reaches the output or the gradients.

Sampling coordinates and blending weights are computed in float32, so the
warp is safe under the ``mixed_float16`` policy (float16 coordinates would
round 1000.3 to 1000.5), and in float64 when the features or the flow are
float64; the gathered values keep the dtype of ``features``.

There is no core TensorFlow op that samples at arbitrary points, so the four
neighbours of every sampling point are gathered from the flattened feature map
(``GatherV2``) and blended. Everything is differentiable with respect to the
features and the flow, and every op used has an XLA kernel: the warp is always compiled with XLA,
which fuses the gathers and the blend into a single pass.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from adaptive_dff._validation import check_floating, static_shape

__all__ = ["bilinear_warp", "FlowWarp", "warp_graph"]

_raw = tf.raw_ops


def check_warp_inputs(features: tf.Tensor, flow: tf.Tensor) -> None:
    """Raise a clear error when ``features`` and ``flow`` do not fit together.

    Only statically known dimensions are compared; unknown ones (symbolic
    batch size, for instance) are left to the run time.
    """
    f_shape = static_shape(features, "features", rank=4)
    m_shape = static_shape(flow, "flow", rank=4)
    check_floating(features, "features")
    check_floating(flow, "flow")
    if m_shape[3] is not None and m_shape[3] != 2:
        raise ValueError(
            f"flow must have 2 channels (dx, dy) in its last axis, got shape {m_shape}"
        )
    for axis, name in ((0, "batch"), (1, "height"), (2, "width")):
        a, b = f_shape[axis], m_shape[axis]
        if a is not None and b is not None and a != b:
            raise ValueError(
                f"flow must lie on the feature grid: features have shape {f_shape} "
                f"but flow has shape {m_shape} ({name} {a} != {b}); resize the flow "
                "to the feature grid (and scale its vectors) before warping"
            )


def bilinear_warp(features: tf.Tensor, flow: tf.Tensor) -> tf.Tensor:
    """Warp ``features`` ``[B, H, W, C]`` by ``flow`` ``[B, H, W, 2]`` (dx, dy).

    Returns a tensor of the shape and dtype of ``features`` with
    ``out[b, y, x] = features[b, y + dy, x + dx]`` (bilinear, zero outside the
    grid, zero where the flow is not finite). See the module docstring for the
    full convention.

    Raises:
        ValueError: wrong rank, flow without 2 channels, or flow not on the
            feature grid.
        TypeError: non-floating inputs.
    """
    features = tf.convert_to_tensor(features)
    flow = tf.convert_to_tensor(flow)
    check_warp_inputs(features, flow)
    return _warp_compiled(features, flow)


def _clip(t: tf.Tensor, low, high) -> tf.Tensor:
    """``min(max(t, low), high)``: ClipByValue from two builtins TensorFlow Lite also has."""
    return _raw.Minimum(x=_raw.Maximum(x=t, y=tf.cast(low, t.dtype)), y=tf.cast(high, t.dtype))


def warp_graph(features: tf.Tensor, flow: tf.Tensor) -> tf.Tensor:
    """The ops of :func:`bilinear_warp` without its checks and without XLA (``bilinear_warp``
    runs them compiled); for callers that compile themselves and for benchmarks."""
    # Coordinates and weights in float32 (also under mixed precision), float64 for float64 inputs.
    coord = tf.float64 if tf.float64 in (features.dtype, flow.dtype) else tf.float32
    i32 = tf.int32
    shape = _raw.Shape(input=features, out_type=i32)
    batch, height, width, channels = (shape[0], shape[1], shape[2], shape[3])
    width_f = _raw.Cast(x=width, DstT=coord)
    height_f = _raw.Cast(x=height, DstT=coord)

    flow = _raw.Cast(x=flow, DstT=coord) if flow.dtype != coord else flow
    dx = flow[..., 0]
    dy = flow[..., 1]
    grid_x = _raw.Cast(x=_raw.Range(start=0, limit=width, delta=1), DstT=coord)
    grid_y = _raw.Cast(x=_raw.Range(start=0, limit=height, delta=1), DstT=coord)
    x = _raw.AddV2(x=dx, y=_raw.Reshape(tensor=grid_x, shape=[1, 1, -1]))
    y = _raw.AddV2(x=dy, y=_raw.Reshape(tensor=grid_y, shape=[1, -1, 1]))

    # Non-finite coordinates and coordinates far outside go to -2, where both
    # neighbours are outside the grid. Clipping keeps the int32 cast defined.
    finite = _raw.LogicalAnd(x=_raw.IsFinite(x=x), y=_raw.IsFinite(x=y))
    outside = _raw.Fill(dims=_raw.Shape(input=x), value=tf.constant(-2.0, coord))
    x = _raw.SelectV2(condition=finite, t=x, e=outside)
    y = _raw.SelectV2(condition=finite, t=y, e=outside)
    x = _clip(x, -2.0, width_f + 1.0)
    y = _clip(y, -2.0, height_f + 1.0)

    x0 = _raw.Floor(x=x)
    y0 = _raw.Floor(x=y)
    ax = _raw.Sub(x=x, y=x0)  # weight of the right neighbour
    ay = _raw.Sub(x=y, y=y0)  # weight of the lower neighbour
    x0i = _raw.Cast(x=x0, DstT=i32)
    y0i = _raw.Cast(x=y0, DstT=i32)
    x1i = x0i + 1
    y1i = y0i + 1

    def inside(i, size):
        return _raw.Cast(
            x=_raw.LogicalAnd(x=_raw.GreaterEqual(x=i, y=0), y=_raw.Less(x=i, y=size)),
            DstT=coord,
        )

    wx0 = (1.0 - ax) * inside(x0i, width)
    wx1 = ax * inside(x1i, width)
    wy0 = (1.0 - ay) * inside(y0i, height)
    wy1 = ay * inside(y1i, height)

    # Flat row index into features reshaped to [B * H * W, C].
    batch_offset = _raw.Reshape(
        tensor=_raw.Range(start=0, limit=batch, delta=1) * (height * width),
        shape=[-1, 1, 1],
    )
    cx0 = _clip(x0i, 0, width - 1)
    cx1 = _clip(x1i, 0, width - 1)
    row0 = batch_offset + _clip(y0i, 0, height - 1) * width
    row1 = batch_offset + _clip(y1i, 0, height - 1) * width

    # Four gathers from features flattened to [B * H * W, C], blended by their
    # weights. Under XLA the gathers and the blend fuse into one loop over the
    # output, which is what makes this warp as cheap as an element-wise op.
    flat = _raw.Reshape(tensor=features, shape=_raw.Pack(values=[-1, channels], axis=0))
    out = None
    for rows, cols, wy, wx in (
        (row0, cx0, wy0, wx0),
        (row0, cx1, wy0, wx1),
        (row1, cx0, wy1, wx0),
        (row1, cx1, wy1, wx1),
    ):
        index = _raw.Reshape(tensor=rows + cols, shape=[-1])
        weight = _raw.Reshape(tensor=wy * wx, shape=[-1, 1])
        if features.dtype != coord:
            weight = _raw.Cast(x=weight, DstT=features.dtype)
        term = _raw.Mul(x=_raw.GatherV2(params=flat, indices=index, axis=0), y=weight)
        out = term if out is None else _raw.AddV2(x=out, y=term)
    return _raw.Reshape(tensor=out, shape=shape)


# Compiled with XLA even when the caller is not: XLA fuses the four gathers and
# the blend into one pass over the output (about 4x faster on CPU than the same
# graph run op by op; see ``adaptive-dff bench warp``). Inside a caller that is
# itself compiled with XLA the function is simply inlined.
_warp_compiled = tf.function(warp_graph, jit_compile=True, autograph=False)


@keras.saving.register_keras_serializable(package="adaptive_dff")
class FlowWarp(keras.layers.Layer):
    """Keras layer around :func:`bilinear_warp`: ``FlowWarp()([features, flow])``.

    ``features`` is cast to the layer's compute dtype; ``flow`` is kept in
    float32 (it is never autocast to float16 under ``mixed_float16``), so the
    sampling coordinates stay exact.
    """

    def __init__(self, **kwargs):
        # Without autocast, Keras leaves the flow in float32 under mixed precision.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                "FlowWarp expects a pair [features, flow], got "
                f"{type(inputs).__name__} of length {len(inputs) if isinstance(inputs, (list, tuple)) else 'n/a'}"
            )
        features, flow = inputs
        features = tf.convert_to_tensor(features)
        flow = tf.convert_to_tensor(flow)
        if features.dtype != self.compute_dtype:
            features = tf.cast(features, self.compute_dtype)
        flow = tf.cast(flow, "float32") if flow.dtype != tf.float32 else flow
        return bilinear_warp(features, flow)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])
