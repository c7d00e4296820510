"""Count the multiply-adds (MACs) of any Keras model at a given input size.

The model is traced once into a TensorFlow graph at the requested shapes and
the MACs of every convolution, transposed convolution, depthwise convolution
and matrix product in that graph are added up. Element-wise ops (bias,
batch norm, activations, pooling, the warp's blend) are not counted, as is
usual for GMAC tables (and DFF's cost ratios).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence, Union

import tensorflow as tf

Shape = Sequence[int]


def _nelems(shape) -> int:
    dims = shape.as_list()
    if any(d is None for d in dims):
        raise ValueError(f"count_macs needs fully known shapes, found {dims}")
    return math.prod(dims)


def _op_macs(op: tf.Operation) -> int:
    t = op.type
    if t == "Conv2D":
        kh, kw, cin, _ = op.inputs[1].shape.as_list()
        return _nelems(op.outputs[0].shape) * kh * kw * cin
    if t == "DepthwiseConv2dNative":
        kh, kw, _, _ = op.inputs[1].shape.as_list()
        return _nelems(op.outputs[0].shape) * kh * kw
    if t == "Conv2DBackpropInput":  # transposed convolution of inputs[2]
        kh, kw, cout, _ = op.inputs[1].shape.as_list()  # filter [kh, kw, out, in]
        return _nelems(op.inputs[2].shape) * kh * kw * cout
    if t in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a = op.inputs[0].shape.as_list()
        transpose_a = op.get_attr("transpose_a") if t == "MatMul" else op.get_attr("adj_x")
        k = a[-2] if transpose_a else a[-1]
        return _nelems(op.outputs[0].shape) * k
    return 0


def _graph_macs(graph: tf.Graph, seen: set) -> int:
    total = 0
    for op in graph.get_operations():
        total += _op_macs(op)
    # Nested functions (tf.function calls, XLA-compiled pieces).
    for name, fn in getattr(graph, "_functions", {}).items():
        if name not in seen and hasattr(fn, "graph"):
            seen.add(name)
            total += _graph_macs(fn.graph, seen)
    return total


def count_macs(
    model: Callable,
    input_shape: Union[Shape, Sequence[Shape], Mapping[str, Shape]],
) -> int:
    """Multiply-adds of one forward pass of ``model`` at ``input_shape``.

    Args:
        model: any callable Keras model (functional or subclassed).
        input_shape: the full input shape with batch, e.g. ``(1, 1024, 2048, 3)``;
            a list of shapes for a multi-input model called with a list, or a
            dict of shapes for one called with a dict.

    Returns:
        the MAC count (an int); divide by 1e9 for GMACs.
    """
    if isinstance(input_shape, Mapping):
        spec = {k: tf.TensorSpec(tuple(v), tf.float32) for k, v in input_shape.items()}
    elif input_shape and isinstance(input_shape[0], (list, tuple)):
        spec = [tf.TensorSpec(tuple(v), tf.float32) for v in input_shape]
    else:
        spec = tf.TensorSpec(tuple(input_shape), tf.float32)

    @tf.function(autograph=False)
    def forward(inputs):
        return model(inputs, training=False)

    graph = forward.get_concrete_function(spec).graph
    return _graph_macs(graph, set())
