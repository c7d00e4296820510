"""``adaptive-dff train flow``: flow-network pretraining on FlyingChairs-style pairs.

Pairs come from :class:`training.pairs.ChairsPairs` (textures: procedural
clips, or CamVid training frames with ``source=camvid``). The flow net sees
``current = image0`` and ``key = image1`` and predicts the flow from current
to key on its stride-16 grid, in grid pixels; the loss is the end-point error
(EPE) at full resolution, in frame pixels: the grid flow upsampled bilinearly
(vectors times 16) against the exact flow, i.e. the figure the evaluation
reports. (Against the flow averaged over each 16x16 cell instead, a cell half
covered by a fast object is pulled to the mean of the two motions, which is
the worst choice for the pixels of either; the full-resolution EPE asks for
their median.)

Evaluation on real FlyingChairs examples (``eval_examples``, e.g.
``../shared/data/flyingchairs_examples``): the predicted grid flow is
upsampled bilinearly to full resolution (vectors times 16) and its EPE is
reported beside that of zero flow.
"""

from __future__ import annotations

import glob
import os

import cv2
import numpy as np
import tensorflow as tf

from adaptive_dff.data import SyntheticVideo
from adaptive_dff.networks import FLOW_NETS, FlowNetS
from training import runtime
from adaptive_dff.data.flo import read_flo
from training.pairs import ChairsPairs

STRIDE = 16


def signature(config: dict) -> dict:
    return {k: config[k] for k in ("flow_net", "width_multiplier", "feature_channels")}


def build_flow_net(config: dict):
    name = config["flow_net"]
    if name not in FLOW_NETS:
        raise ValueError(f"config key 'flow_net' must be one of {sorted(FLOW_NETS)}, got {name!r}")
    if name == "flownet_s":
        return FlowNetS(width=config["width_multiplier"], feature_channels=config["feature_channels"])
    return FLOW_NETS[name](feature_channels=config["feature_channels"])


def source_images(config: dict) -> list:
    """Texture sources of the pairs; errors name a missing or empty folder."""
    if config["source"] == "synthetic":
        images = []
        for seed in range(4):
            video = SyntheticVideo(height=240, width=320, num_frames=40, seed=1000 + seed)
            images += [video.frame(t) for t in range(0, 40, 10)]
        return images
    if config["source"] == "camvid":
        folder = os.path.join(config["data_root"], "camvid", "train")
        paths = sorted(glob.glob(os.path.join(folder, "*.png")))
        if not paths:
            raise ValueError(f"no CamVid training frames (*.png) in {folder!r}; set data_root to the data folder")
        images = []
        for path in paths[:: max(len(paths) // 60, 1)]:
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"cannot decode image {path!r}")
            images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        return images
    raise ValueError(f"config key 'source' must be 'synthetic' or 'camvid', got {config['source']!r}")


def load_examples(folder: str) -> list:
    """``[(image0, image1, flow)]`` from a FlyingChairs examples folder."""
    flows = sorted(glob.glob(os.path.join(folder, "*-gt.flo")))
    if not flows:
        raise ValueError(f"no FlyingChairs examples (*-gt.flo) in {folder!r}")
    examples = []
    for path in flows:
        images = []
        for suffix in ("-img0.ppm", "-img1.ppm"):
            image_path = path.replace("-gt.flo", suffix)
            image = cv2.imread(image_path, cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"missing or corrupt image {image_path!r}")
            images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        flow = read_flo(path)
        if flow.shape[:2] != images[0].shape[:2]:
            raise ValueError(f"{path!r} has shape {flow.shape[:2]} but its images {images[0].shape[:2]}")
        examples.append((images[0], images[1], flow))
    return examples


def evaluate(flow_net, examples) -> dict:
    """Mean EPE (pixels, full resolution) of the flow net and of zero flow."""
    ours, zero = [], []
    for image0, image1, truth in examples:
        h, w = truth.shape[:2]
        ph, pw = -(-h // flow_net.size_divisor) * flow_net.size_divisor, -(-w // flow_net.size_divisor) * flow_net.size_divisor
        pad = [(0, ph - h), (0, pw - w), (0, 0)]
        current = np.pad(image0, pad).astype(np.float32)[None]
        key = np.pad(image1, pad).astype(np.float32)[None]
        grid = np.asarray(flow_net({"current": current, "key": key}, training=False)["flow"])[0]
        full = cv2.resize(grid, (pw, ph), interpolation=cv2.INTER_LINEAR)[:h, :w] * STRIDE
        ours.append(np.linalg.norm(full - truth, axis=-1).mean())
        zero.append(np.linalg.norm(truth, axis=-1).mean())
    return {"epe": float(np.mean(ours)), "zero_flow_epe": float(np.mean(zero)), "examples": len(examples)}


def full_resolution_epe(grid_flow, flow):
    """Per-sample mean EPE ``[B]`` in frame pixels of a stride-16 grid flow ``[B, H/16, W/16, 2]``
    (grid pixels) against a full-resolution flow ``[B, H, W, 2]`` (frame pixels).

    The grid flow is upsampled bilinearly with half-pixel centres (as
    ``cv2.resize`` with ``INTER_LINEAR``, which the evaluation uses) and its
    vectors multiplied by 16."""
    grid_flow = tf.cast(grid_flow, tf.float32)
    size = tf.shape(flow)[1:3]
    upsampled = tf.image.resize(grid_flow, size, method="bilinear") * STRIDE
    return tf.reduce_mean(tf.norm(upsampled - flow + 1e-12, axis=-1), axis=[1, 2])


def run(config: dict, out: str, log=print, strategy=None) -> dict:
    """Train (or resume) and evaluate; returns the metrics.

    ``strategy`` defaults to :func:`training.runtime.choose_strategy`.
    """
    runtime.check_run_folder(out, "flow", signature(config))
    examples = load_examples(config["eval_examples"]) if config["eval_examples"] else None
    images = source_images(config)
    h, w = runtime.check_frame_size(config)
    pairs = ChairsPairs(images, height=h, width=w, seed=config["seed"], max_shift=config["max_shift"],
                        background_shift=config["background_shift"],
                        motion_scale=(config["motion_scale_min"], config["motion_scale_max"]),
                        photometric=config["photometric"])
    strategy, flow_net = runtime.start("flow", config, out, signature(config), lambda: build_flow_net(config), strategy)

    def make_sample(index):
        pair = pairs[index]
        return pair["image0"].astype(np.float32), pair["image1"].astype(np.float32), pair["flow"].astype(np.float32)

    sample_spec = (
        tf.TensorSpec((h, w, 3), tf.float32), tf.TensorSpec((h, w, 3), tf.float32), tf.TensorSpec((h, w, 2), tf.float32),
    )

    def loss_fn(model, batch, training):
        current, key, target = batch
        return full_resolution_epe(model({"current": current, "key": key}, training=training)["flow"], target)

    trainer = runtime.Trainer(
        out=out, model=flow_net, loss_fn=loss_fn, make_sample=make_sample, sample_spec=sample_spec,
        config=config, strategy=strategy, log=log,
    )
    summary = trainer.run()
    metrics = {"final_loss_epe": summary["loss"], "steps": summary["steps"]}
    if examples is not None:
        metrics.update(evaluate(flow_net, examples))
        log(f"EPE on {metrics['examples']} FlyingChairs examples: {metrics['epe']:.3f} px "
            f"(zero flow: {metrics['zero_flow_epe']:.3f} px)")
    trainer.write_scalars(metrics)
    runtime.finish(out, "flow", flow_net, config, metrics)
    return metrics
