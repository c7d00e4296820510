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


def _conv_outputs(op: tf.Operation) -> int:
    """Output elements of a convolution. A dilated convolution may run as
    SpaceToBatchND -> Conv2D -> BatchToSpaceND on a padded grid; the padding
    is an implementation detail, so the cropped output is what counts."""
    for consumer in op.outputs[0].consumers():
        if consumer.type == "BatchToSpaceND":
            return _nelems(consumer.outputs[0].shape)
    return _nelems(op.outputs[0].shape)


def _op_macs(op: tf.Operation) -> int:
    t = op.type
    if t == "Conv2D":
        kh, kw, cin, _ = op.inputs[1].shape.as_list()
        return _conv_outputs(op) * kh * kw * cin
    if t == "DepthwiseConv2dNative":
        kh, kw, _, _ = op.inputs[1].shape.as_list()
        return _conv_outputs(op) * kh * kw
    if t == "Conv2DBackpropInput":  # transposed convolution of inputs[2]
        kh, kw, cout, _ = op.inputs[1].shape.as_list()  # filter [kh, kw, out, in]
        return _nelems(op.inputs[2].shape) * kh * kw * cout
    if t in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a = op.inputs[0].shape.as_list()
        transpose_a = op.get_attr("transpose_a") if t == "MatMul" else op.get_attr("adj_x")
        k = a[-2] if transpose_a else a[-1]
        return _nelems(op.outputs[0].shape) * k
    return 0


_CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")


def _graph_macs(graph: tf.Graph, functions: dict, memo: dict) -> int:
    """MACs of ``graph``; a nested function (tf.function call, XLA-compiled
    piece) counts once per call site."""
    total = 0
    for op in graph.get_operations():
        total += _op_macs(op)
        if op.type in _CALL_OPS:
            name = op.get_attr("f").name
            if name not in memo:
                fn = functions.get(name)
                memo[name] = 0 if fn is None or not hasattr(fn, "graph") else _graph_macs(fn.graph, functions, memo)
            total += memo[name]
    return total


def _all_functions(graph: tf.Graph) -> dict:
    found = dict(getattr(graph, "_functions", {}))
    pending = list(found.values())
    while pending:
        fn = pending.pop()
        for name, inner in getattr(getattr(fn, "graph", None), "_functions", {}).items():
            if name not in found:
                found[name] = inner
                pending.append(inner)
    return found


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
    return _graph_macs(graph, _all_functions(graph), {})
