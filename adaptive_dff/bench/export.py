"""``adaptive-dff bench export``: the exported SavedModel and its TensorFlow Lite conversion against the library.

The shipped model's two steps are exported for 480x360 frames
(:func:`adaptive_dff.export.export_saved_model`, to a temporary folder),
converted to TensorFlow Lite (:func:`adaptive_dff.export.to_tflite`, builtin
ops only), and the three ways of running each step (the library's own,
the SavedModel's signature, the TFLite interpreter) are timed interleaved on
two frames of CamVid's ``val`` clip, with the largest logit difference of
each from the library's.
"""

from __future__ import annotations

import logging

import os
import tempfile

import numpy as np
import tensorflow as tf

from adaptive_dff.bench.timing import format_table, time_interleaved


logger = logging.getLogger(__name__)

def _tflite_runner(content: bytes):
    interpreter = tf.lite.Interpreter(model_content=content, num_threads=os.cpu_count())
    return interpreter.get_signature_runner()


def _logits(outputs: dict, classes: int) -> np.ndarray:
    """The ``[H, W, K]`` output of a TFLite runner (outputs are named output_0...)."""
    return next(np.asarray(v) for v in outputs.values() if np.ndim(v) == 3 and np.shape(v)[-1] == classes)


def run(data_root: str, repeats: int = 10) -> dict:
    from adaptive_dff.export import export_saved_model, to_tflite
    from adaptive_dff.fused import FusedHead
    from adaptive_dff.pretrained import load_default
    from adaptive_dff.data.camvid import load_split

    model = load_default()
    frames, _ = load_split(data_root, "val", limit=4)
    key_frame, frame = frames[0], frames[3]
    height, width = key_frame.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "export")
        description = export_saved_model(model, folder, height, width)
        loaded = tf.saved_model.load(folder)
        try:
            lite = to_tflite(folder)
            lite_error = None
        except Exception as error:  # the converter raises many types
            lite, lite_error = None, str(error).splitlines()[0]
        classes = description["num_classes"]
        fused = FusedHead(model.head)
        padded_hw, frame_hw = tuple(description["padded"]), (height, width)

        def library_key():
            _, padded = model.pad_frames(key_frame)
            features = model.run_features(padded)
            return fused.labels(features, padded_hw, frame_hw, logits=True), features

        (_, key_logits), key_features = library_key()
        dis = model.dis_flow
        if description["propagation_flow"] != "dis":
            raise ValueError("bench export expects the shipped model's DIS propagation flow")
        flow = dis.grid_flow(dis.small(frame), dis.small(key_frame), tuple(description["grid"]))

        def library_propagate():
            grid_flow = dis.grid_flow(dis.small(frame), dis.small(key_frame), tuple(description["grid"]))
            return fused.propagate(key_features, tf.constant(grid_flow[None]), None, padded_hw, frame_hw, logits=True)

        _, prop_logits = library_propagate()
        saved_key = loaded.signatures["key_step"]
        saved_prop = loaded.signatures["propagate_step"]
        features_np = key_features.numpy()[0]
        candidates = {
            "key: library": library_key,
            "key: SavedModel": lambda: saved_key(frame=tf.constant(key_frame)),
            "propagate: library (with DIS)": library_propagate,
            "propagate: SavedModel (DIS outside)": lambda: saved_prop(
                key_features=tf.constant(features_np),
                flow=tf.constant(dis.grid_flow(dis.small(frame), dis.small(key_frame), tuple(description["grid"])))),
        }
        diffs = {
            "key: library": 0.0,
            "key: SavedModel": float(np.abs(saved_key(frame=tf.constant(key_frame))["logits"].numpy() - key_logits.numpy()[0]).max()),
            "propagate: library (with DIS)": 0.0,
            "propagate: SavedModel (DIS outside)": float(np.abs(
                saved_prop(key_features=tf.constant(features_np), flow=tf.constant(flow))["logits"].numpy()
                - prop_logits.numpy()[0]).max()),
        }
        if lite is not None:
            lite_key, lite_prop = _tflite_runner(lite["key_step"]), _tflite_runner(lite["propagate_step"])
            candidates["key: TFLite"] = lambda: lite_key(frame=key_frame)
            order = ["key: library", "key: SavedModel", "key: TFLite", "propagate: library (with DIS)",
                     "propagate: SavedModel (DIS outside)"]
            candidates = {name: candidates[name] for name in order}
            candidates["propagate: TFLite (DIS outside)"] = lambda: lite_prop(
                key_features=features_np,
                flow=dis.grid_flow(dis.small(frame), dis.small(key_frame), tuple(description["grid"])))
            diffs["key: TFLite"] = float(np.abs(_logits(lite_key(frame=key_frame), classes) - key_logits.numpy()[0]).max())
            diffs["propagate: TFLite (DIS outside)"] = float(np.abs(
                _logits(lite_prop(key_features=features_np, flow=flow), classes) - prop_logits.numpy()[0]).max())
        times = time_interleaved(candidates, repeats=repeats)
    logger.info(f"export benchmark: the shipped model's steps at {width}x{height}, median of {repeats} interleaved rounds")
    rows = []
    for name in times:
        base = times["key: library" if name.startswith("key") else "propagate: library (with DIS)"]
        rows.append((name, f"{times[name]:.1f}", f"{times[name] / base:.2f}", f"{diffs[name]:.1e}"))
    logger.info(format_table(rows, ("step", "ms", "/ library", "max |logit diff|")))
    if lite is None:
        logger.info(f"\nTensorFlow Lite conversion failed: {lite_error}")
    else:
        logger.info(f"\nTensorFlow Lite (builtin ops): key step {len(lite['key_step']) / 1e6:.1f} MB, "
              f"propagate step {len(lite['propagate_step']) / 1e6:.2f} MB")
    return {"ms": times, "max_logit_diff": diffs, "tflite": lite is not None}
