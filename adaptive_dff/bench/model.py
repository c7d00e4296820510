"""``adaptive-dff bench model``: latency of each DFF part and the cost ratio r.

DFF (Zhu et al. 2017, eq. 5) runs the feature net on one frame in ``l`` and
the flow net + warp on the others, so its ideal speedup over per-frame
inference is ``l / (1 + (l - 1) r)`` with
``r = (flow + warp + head) / (feature + head)``. Every part is timed on the
same frame size, interleaved in one run, and r comes from those medians; the
ratio predicted from multiply-adds is printed beside it.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from adaptive_dff.bench.timing import format_table, time_interleaved
from adaptive_dff.frames import lcm
from adaptive_dff.macs import count_macs
from adaptive_dff.networks import FEATURE_NETS, FLOW_NETS, SegmentationHead
from adaptive_dff.warp import bilinear_warp

logger = logging.getLogger(__name__)


def ideal_speedup(interval: int, r: float) -> float:
    """DFF's ideal speedup ``l / (1 + (l - 1) r)`` for key-frame interval ``l``."""
    return interval / (1.0 + (interval - 1) * r)


def run(
    feature: str = "resnet101",
    flow: str = "flownet_s",
    height: int = 512,
    width: int = 1024,
    num_classes: int = 19,
    repeats: int = 5,
    seed: int = 0,
) -> dict:
    """Time feature net, flow net, warp (with scale) and head at ``height x width``."""
    if feature not in FEATURE_NETS:
        raise ValueError(f"feature must be one of {sorted(FEATURE_NETS)}, got {feature!r}")
    if flow not in FLOW_NETS:
        raise ValueError(f"flow must be one of {sorted(FLOW_NETS)}, got {flow!r}")
    feature_net = FEATURE_NETS[feature]()
    flow_net = FLOW_NETS[flow](feature_channels=feature_net.output_channels)
    head = SegmentationHead(num_classes=num_classes, input_channels=feature_net.output_channels)
    divisor = lcm(feature_net.size_divisor, flow_net.size_divisor)
    if height % divisor or width % divisor:
        raise ValueError(f"height and width must be multiples of {divisor}, got {height}x{width}")

    stride = feature_net.output_stride
    rng = np.random.default_rng(seed)
    image = tf.constant(rng.uniform(0, 255, (1, height, width, 3)).astype(np.float32))
    other = tf.constant(rng.uniform(0, 255, (1, height, width, 3)).astype(np.float32))
    features = feature_net(image, training=False)
    flow_out = flow_net({"current": other, "key": image}, training=False)

    run_feature = tf.function(lambda x: feature_net(x, training=False))
    run_flow = tf.function(lambda a, b: flow_net({"current": a, "key": b}, training=False))
    run_head = tf.function(
        lambda f: tf.image.resize(head(f, training=False), (height, width), method="bilinear")
    )
    candidates = {
        "feature": lambda: run_feature(image),
        "flow": lambda: run_flow(other, image),
        "warp": lambda: bilinear_warp(features, flow_out["flow"]) * flow_out["scale"],
        "head": lambda: run_head(features),
    }
    times = time_interleaved(candidates, repeats=repeats)
    macs = {
        "feature": count_macs(feature_net, (1, height, width, 3)),
        "flow": count_macs(flow_net, {"current": (1, height, width, 3), "key": (1, height, width, 3)}),
        "head": count_macs(head, (1, height // stride, width // stride, feature_net.output_channels)),
    }
    macs["warp"] = 0
    r = (times["flow"] + times["warp"] + times["head"]) / (times["feature"] + times["head"])
    r_macs = (macs["flow"] + macs["head"]) / (macs["feature"] + macs["head"])

    logger.info(f"model benchmark: {feature} + {flow} + head, frame {height}x{width}, median of {repeats} interleaved rounds")
    rows = [(name, f"{times[name]:.1f}", f"{macs[name] / 1e9:.2f}") for name in ("feature", "flow", "warp", "head")]
    logger.info(format_table(rows, ("part", "ms", "GMACs")))
    logger.info(f"\nmeasured r = (flow + warp + head) / (feature + head) = {r:.4f}   (from MACs: {r_macs:.4f})")
    speedups = {}
    for interval in (5, 10):
        speedups[interval] = ideal_speedup(interval, r)
        logger.info(f"DFF ideal speedup at key interval l={interval}: {speedups[interval]:.2f}x   (from MACs: {ideal_speedup(interval, r_macs):.2f}x)")
    return {"times_ms": times, "macs": macs, "r": r, "r_macs": r_macs, "ideal_speedup": speedups}
