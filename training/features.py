"""``adaptive-dff train features``: the feature network + head, per frame.

DFF first trains its image network on single frames. Samples are random
crops of labelled frames (CamVid ``train`` with ``source=camvid``, else the
procedural clips), with a random horizontal flip; the loss is cross-entropy,
void ignored. The run saves a whole :class:`adaptive_dff.DFFModel` whose flow
net is untouched, so ``train dff`` can start from it (``features_init``).
Evaluation: per-frame mIoU on CamVid ``test`` (or a held-out clip).
"""

from __future__ import annotations

import cv2
import numpy as np
import tensorflow as tf

from adaptive_dff.evaluate import per_frame_confusion
from adaptive_dff.metrics import mean_iou
from adaptive_dff.data import camvid
from training import runtime
from training.losses import masked_cross_entropy, median_frequency_weights
from training.dff import _crop, build_model, num_classes, void_label


def signature(config: dict) -> dict:
    return {k: config[k] for k in ("feature_net", "flow_net", "source")}


def load_data(config: dict) -> dict:
    if config["source"] == "camvid":
        if not config["data_root"]:
            raise ValueError("source 'camvid' needs the data folder: pass --data-root (or set data_root)")
        train = camvid.load_split(config["data_root"], "train", limit=config["train_limit"])
        test = camvid.load_split(config["data_root"], "test", limit=config["eval_limit"])
        return {"train": train, "eval": test}
    if config["source"] != "synthetic":
        raise ValueError(f"config key 'source' must be 'synthetic' or 'camvid', got {config['source']!r}")
    from adaptive_dff.data import SyntheticVideo

    clips = [SyntheticVideo(height=config["height"], width=config["width"], num_frames=40, seed=config["seed"] * 100 + i)
             for i in range(4)]
    frames = [c.frame(t) for c in clips for t in range(0, 40, 2)]
    labels = [c.label(t) for c in clips for t in range(0, 40, 2)]
    held = SyntheticVideo(height=config["height"], width=config["width"], num_frames=20, seed=config["seed"] * 100 + 99)
    return {"train": (frames, labels), "eval": ([held.frame(t) for t in range(20)], [held.label(t) for t in range(20)])}


def augment(rng: np.random.Generator, frame: np.ndarray, label: np.ndarray, h: int, w: int, config: dict,
            void: int) -> tuple[np.ndarray, np.ndarray]:
    """A random ``h x w`` training crop: rescaled by a factor in ``[scale_min, scale_max]``
    (bilinear image, nearest labels; padded with black and void where the frame
    became smaller than the crop), flipped left-right half the time, brightness
    and contrast changed by up to ``colour_jitter``. Returns float32 image, labels."""
    scale = float(rng.uniform(config["scale_min"], config["scale_max"]))
    if scale != 1.0:
        size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    pad_h, pad_w = max(0, h - frame.shape[0]), max(0, w - frame.shape[1])
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)))
        label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=void)
    image, label = _crop(rng, h, w, frame, label)
    if rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    image = image.astype(np.float32)
    jitter = config["colour_jitter"]
    if jitter:
        contrast = rng.uniform(1 - jitter, 1 + jitter)
        brightness = rng.uniform(-jitter, jitter) * 255
        mean = image.mean()
        image = np.clip((image - mean) * contrast + mean + brightness, 0, 255)
    return image, label


def run(config: dict, out: str, log=print, strategy=None) -> dict:
    runtime.check_run_folder(out, "features", signature(config))
    h, w = runtime.check_frame_size(config, divisor=16)
    data = load_data(config)
    frames, labels = data["train"]
    for frame in frames:
        if frame.shape[0] < h or frame.shape[1] < w:
            raise ValueError(f"training frames of {frame.shape[1]}x{frame.shape[0]} are smaller than the crop {w}x{h}")
    strategy, model = runtime.start("features", config, out, signature(config), lambda: build_model(config), strategy)
    classes, void = num_classes(config), void_label(config)
    seed = config["seed"]
    weights = None
    if config["class_weighting"] == "median_frequency":
        weights = median_frequency_weights(labels, classes, void)
        log("class weights (median frequency): " + " ".join(f"{v:.2f}" for v in weights))

    def make_sample(index):
        rng = np.random.default_rng([seed, index])
        i = int(rng.integers(len(frames)))
        image, label = augment(rng, frames[i], labels[i], h, w, config, void)
        return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(label, np.int32)

    spec = (tf.TensorSpec((h, w, 3), tf.float32), tf.TensorSpec((h, w), tf.int32))

    def loss_fn(model, batch, training):
        image, label = batch
        grid = model.head(model.feature_net(image, training=training), training=training)
        logits = tf.image.resize(tf.cast(grid, tf.float32), (h, w), method="bilinear")
        return masked_cross_entropy(label, logits, void, weights)

    trainer = runtime.Trainer(out=out, model=model, loss_fn=loss_fn, make_sample=make_sample, sample_spec=spec,
                              config=config, strategy=strategy, log=log)
    summary = trainer.run()
    eval_frames, eval_labels = data["eval"]
    conf = per_frame_confusion(model, eval_frames, eval_labels, classes, void if void < 256 else None)
    metrics = {"final_loss": summary["loss"], "steps": summary["steps"], "per_frame_miou": mean_iou(conf),
               "evaluated_frames": len(eval_frames)}
    log(f"per-frame mIoU on {len(eval_frames)} evaluation frames: {metrics['per_frame_miou']:.3f}")
    trainer.write_scalars(metrics)
    runtime.finish(out, "features", model, config, metrics)
    return metrics
