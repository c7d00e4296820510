"""``adaptive-dff train dff``: Deep Feature Flow end to end on (key, current) pairs.

Pairs with a frame offset ``0 <= i - k <= max_offset`` (DFF: 9), the loss
(cross-entropy, void ignored) on the current frame only, gradients to the
feature net, the flow net and the head.

Sources:

* ``synthetic`` (default, no data needed): procedural clips with exact labels
  (:class:`adaptive_dff.data.SyntheticVideo`), key ``t`` and current ``t + k``;
* ``camvid``: CamVid training frames; the current frame is the key seen
  through a known camera motion whose size grows with ``k``
  (:func:`training.pairs.moved_pair`).

Evaluation (mIoU, void ignored): on CamVid's 15 fps ``val`` clip when a data
root is given (the source ``camvid``), else on a held-out synthetic clip:
per-frame prediction on every evaluated frame, and prediction propagated from
frame ``t`` to ``t + k`` for ``k`` in 1, 5, 9.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from adaptive_dff.data import NUM_CLASSES as SYNTHETIC_CLASSES
from adaptive_dff.data import SyntheticVideo
from adaptive_dff.metrics import confusion_matrix, mean_iou
from adaptive_dff.model import DFFModel, load_model
from adaptive_dff.networks import FEATURE_NETS, FLOW_NETS, SegmentationHead
from adaptive_dff.data import camvid
from training import runtime
from training.losses import masked_cross_entropy, median_frequency_weights
from training.pairs import moved_pair

OFFSETS = (1, 5, 9)


def signature(config: dict) -> dict:
    return {k: config[k] for k in ("feature_net", "flow_net", "source")}


def num_classes(config: dict) -> int:
    return camvid.NUM_CLASSES if config["source"] == "camvid" else SYNTHETIC_CLASSES


def void_label(config: dict) -> int:
    return camvid.VOID if config["source"] == "camvid" else 255


def build_model(config: dict) -> DFFModel:
    for key, registry in (("feature_net", FEATURE_NETS), ("flow_net", FLOW_NETS)):
        if config[key] not in registry:
            raise ValueError(f"config key {key!r} must be one of {sorted(registry)}, got {config[key]!r}")
    feature_net = FEATURE_NETS[config["feature_net"]]()
    flow_net = FLOW_NETS[config["flow_net"]](feature_channels=feature_net.output_channels)
    if config.get("flow_init"):
        pretrained = load_model(config["flow_init"])
        if [w.shape for w in pretrained.weights] != [w.shape for w in flow_net.weights]:
            raise ValueError(f"flow_init {config['flow_init']!r} is not a {config['flow_net']} with "
                             f"{feature_net.output_channels} feature channels")
        flow_net.set_weights(pretrained.get_weights())
    head = SegmentationHead(num_classes=num_classes(config), input_channels=feature_net.output_channels)
    model = DFFModel(feature_net=feature_net, flow_net=flow_net, head=head)
    if config.get("features_init"):
        pretrained = load_model(config["features_init"])
        for part in ("feature_net", "head"):
            ours, theirs = getattr(model, part), getattr(pretrained, part, None)
            if theirs is None or [v.shape for v in theirs.weights] != [v.shape for v in ours.weights]:
                raise ValueError(f"features_init {config['features_init']!r} has no {part} like this run's")
            ours.set_weights(theirs.get_weights())
    return model


def _crop(rng, h, w, *arrays):
    top = int(rng.integers(0, arrays[0].shape[0] - h + 1))
    left = int(rng.integers(0, arrays[0].shape[1] - w + 1))
    return [a[top : top + h, left : left + w] for a in arrays]


def sample_maker(config: dict, data: dict):
    """``make_sample(index) -> (key, current, label_current)`` for the configured source."""
    h, w, seed, max_offset = config["height"], config["width"], config["seed"], config["max_offset"]
    if config["source"] == "camvid":
        frames, labels = data["train"]

        def make(index):
            rng = np.random.default_rng([seed, index])
            i = int(rng.integers(len(frames)))
            image, label = _crop(rng, h, w, frames[i], labels[i])
            offset = int(rng.integers(0, max_offset + 1))
            pair = moved_pair(np.ascontiguousarray(image), np.ascontiguousarray(label), rng,
                              strength=offset / 9.0, void=camvid.VOID)
            return pair["key"].astype(np.float32), pair["current"].astype(np.float32), pair["label_current"].astype(np.int32)

        return make

    clips = data["clips"]

    def make(index):
        rng = np.random.default_rng([seed, index])
        clip = clips[int(rng.integers(len(clips)))]
        key = int(rng.integers(0, len(clip) - max_offset))
        current = key + int(rng.integers(0, max_offset + 1))
        return (clip.frame(key).astype(np.float32), clip.frame(current).astype(np.float32),
                clip.label(current).astype(np.int32))

    return make


def evaluate(model: DFFModel, frames: list, labels: list, classes: int, void: int, stride: int) -> dict:
    """Per-frame and propagated (k = 1, 5, 9) mIoU over a labelled clip."""
    starts = list(range(0, len(frames) - max(OFFSETS), stride))
    if not starts:
        raise ValueError(f"the evaluation clip has {len(frames)} frames; it needs more than {max(OFFSETS)}")
    ignore = void if void < 256 else None
    per_frame = np.zeros((classes, classes), np.int64)
    propagated = {k: np.zeros((classes, classes), np.int64) for k in OFFSETS}
    for t in starts:
        logits, key = model.key_step(frames[t])
        guess = np.argmax(logits.numpy()[0], -1)
        per_frame += confusion_matrix(*_valid(labels[t], guess, ignore), classes)
        for k in OFFSETS:
            logits, _ = model.propagate_step(frames[t + k], key)
            guess = np.argmax(logits.numpy()[0], -1)
            propagated[k] += confusion_matrix(*_valid(labels[t + k], guess, ignore), classes)
            frame_logits, _ = model.key_step(frames[t + k])
            per_frame += confusion_matrix(*_valid(labels[t + k], np.argmax(frame_logits.numpy()[0], -1), ignore), classes)
    metrics = {"per_frame_miou": mean_iou(per_frame), "evaluated_starts": len(starts)}
    for k in OFFSETS:
        metrics[f"propagated_miou_k{k}"] = mean_iou(propagated[k])
    return metrics


def _valid(truth, guess, ignore):
    if ignore is None:
        return truth, guess
    keep = truth != ignore
    return truth[keep], guess[keep]


def load_data(config: dict) -> dict:
    """Everything the run reads, checked before training starts."""
    if config["source"] == "camvid":
        if not config["data_root"]:
            raise ValueError("source 'camvid' needs the data folder: pass --data-root (or set data_root)")
        train = camvid.load_split(config["data_root"], "train", limit=config["train_limit"])
        for frame in train[0]:
            if frame.shape[0] < config["height"] or frame.shape[1] < config["width"]:
                raise ValueError(f"CamVid frames of {frame.shape[1]}x{frame.shape[0]} are smaller than the "
                                 f"training crop {config['width']}x{config['height']}")
        val = camvid.load_split(config["data_root"], "val")
        return {"train": train, "eval": val}
    if config["source"] != "synthetic":
        raise ValueError(f"config key 'source' must be 'synthetic' or 'camvid', got {config['source']!r}")
    clips = [SyntheticVideo(height=config["height"], width=config["width"], num_frames=60, seed=config["seed"] * 100 + i)
             for i in range(4)]
    held_out = SyntheticVideo(height=config["height"], width=config["width"], num_frames=40, seed=config["seed"] * 100 + 99)
    return {"clips": clips, "eval": ([held_out.frame(t) for t in range(40)], [held_out.label(t) for t in range(40)])}


def run(config: dict, out: str, log=print, strategy=None) -> dict:
    runtime.check_run_folder(out, "dff", signature(config))
    h, w = runtime.check_frame_size(config)
    if not 0 <= config["max_offset"] <= 30:
        raise ValueError(f"config key 'max_offset' must be in 0..30, got {config['max_offset']}")
    if config["class_weighting"] != "none" and config["source"] != "camvid":
        raise ValueError("config key 'class_weighting' = 'median_frequency' needs source 'camvid'")
    data = load_data(config)
    classes, void = num_classes(config), void_label(config)
    weights = None
    if config["class_weighting"] == "median_frequency":
        weights = median_frequency_weights(data["train"][1], classes, void)
        log("class weights (median frequency): " + " ".join(f"{v:.2f}" for v in weights))
    strategy, model = runtime.start("dff", config, out, signature(config), lambda: build_model(config), strategy)
    make_sample = sample_maker(config, data)
    spec = (tf.TensorSpec((h, w, 3), tf.float32), tf.TensorSpec((h, w, 3), tf.float32), tf.TensorSpec((h, w), tf.int32))

    def loss_fn(model, batch, training):
        key, current, label = batch
        return masked_cross_entropy(label, model({"key": key, "current": current}, training=training), void, weights)

    trainer = runtime.Trainer(out=out, model=model, loss_fn=loss_fn, make_sample=make_sample, sample_spec=spec,
                              config=config, strategy=strategy, log=log)
    summary = trainer.run()
    metrics = {"final_loss": summary["loss"], "steps": summary["steps"]}
    frames, labels = data["eval"]
    metrics.update(evaluate(model, frames, labels, classes, void, config["eval_stride"]))
    log("mIoU: per frame {:.3f}; propagated k=1 {:.3f}, k=5 {:.3f}, k=9 {:.3f}".format(
        metrics["per_frame_miou"], *(metrics[f"propagated_miou_k{k}"] for k in OFFSETS)))
    trainer.write_scalars(metrics)
    runtime.finish(out, "dff", model, config, metrics)
    return metrics
