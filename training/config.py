"""Training configurations: typed fields, named presets, JSON files.

A configuration is a flat dict of known keys with known types. It comes from
a named preset (``smoke``: under a minute on a CPU; ``default``) or a JSON
file, plus optional ``key=value`` overrides. Unknown keys and wrong types are
errors that name the key, before anything is trained or written.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Optional

# Fields shared by every program: (type, default).
COMMON = {
    "steps": (int, 1000),
    "batch_size": (int, 4),  # per replica
    "learning_rate": (float, 1e-3),
    "lr_schedule": (str, "constant"),  # "constant" or "poly" (to 0 at `steps`, power 0.9)
    "height": (int, 256),
    "width": (int, 384),
    "checkpoint_every": (int, 100),
    "seed": (int, 0),
    "mixed_precision": (bool, False),
    "jit_compile": (bool, False),
}

PROGRAM_FIELDS = {
    "flow": {
        "flow_net": (str, "flownet_inception"),
        "width_multiplier": (float, 1.0),
        "feature_channels": (int, 256),
        "source": (str, "synthetic"),  # "synthetic" or "camvid" (textures of the pairs)
        "data_root": (str, ""),
        "eval_examples": (str, ""),  # folder of FlyingChairs examples (*-img0.ppm, *-img1.ppm, *-gt.flo)
        # The pairs (training.pairs.ChairsPairs): largest crop and background translations in px, a per-pair
        # factor on both drawn log-uniformly in [motion_scale_min, motion_scale_max], and photometric changes.
        "max_shift": (float, 24.0),
        "background_shift": (float, 12.0),  # not derived from max_shift: set both to change both
        "motion_scale_min": (float, 1.0),
        "motion_scale_max": (float, 1.0),
        "photometric": (float, 0.0),
    },
    "dff": {
        "feature_net": (str, "compact"),
        "flow_net": (str, "flownet_inception"),
        "source": (str, "synthetic"),  # "synthetic" or "camvid"
        "data_root": (str, ""),
        "flow_init": (str, ""),  # model.keras of a 'train flow' run
        "features_init": (str, ""),  # model.keras of a 'train features' run
        "max_offset": (int, 9),
        "eval_stride": (int, 4),
        "train_limit": (int, 0),  # use only the first n training frames (0: all)
        "class_weighting": (str, "none"),  # "none" or "median_frequency" (as 'train features'; CamVid only)
    },
    "features": {
        "feature_net": (str, "compact"),
        "flow_net": (str, "flownet_inception"),
        "source": (str, "synthetic"),  # "synthetic" or "camvid"
        "data_root": (str, ""),
        "train_limit": (int, 0),
        "eval_limit": (int, 0),
        "scale_min": (float, 1.0),  # random rescaling of each training frame before the crop
        "scale_max": (float, 1.0),
        "colour_jitter": (float, 0.0),  # brightness and contrast changes of up to this fraction
        "class_weighting": (str, "none"),  # "none" or "median_frequency" (SegNet's class balancing)
    },
    "decision": {
        "model": (str, ""),  # model.keras of a 'train dff' run ("" : an untrained compact model)
        # "synthetic", or comma-separated video files or image folders, each optionally PATH@FIRST:LAST (a frame
        # span); the last is held out
        "videos": (str, "synthetic"),
        "max_frames": (int, 120),
        "max_offset": (int, 12),
        "key_stride": (int, 6),
        "regions": (int, 2),
        "overlap": (int, 64),
        "feature_size": (int, 8),
        "epochs": (int, 40),
    },
    "quality": {
        "frames": (int, 60),  # length of each generated clip
        "synthetic_clips": (int, 16),  # generated clips, cycling through training.quality.REGIMES
        "max_offset": (int, 30),  # frames carried from each key
        "key_stride": (int, 5),
        "overlap": (int, 16),  # of the 2x2 grid (the 1x1 grid is always used too)
        "downsample": (int, 4),  # of the signals (schedulers.QualitySignals)
        # The most pixels of the signals' grid (a larger region is shrunk further; 0: no limit). The default keeps
        # every training region at 1/downsample: CamVid's 360x480 frames at 1/4 are 90x120.
        "max_pixels": (int, 90 * 120),  # = schedulers.quality_signals.DEFAULT_MAX_PIXELS (a test holds them equal)
        # Add the key labels' colour disagreement (key_label_disagreement): the predictor then needs each key
        # frame's labels at run time (Tracker.label_keys; compare gives them in every mode).
        "key_labels": (bool, False),
        "camvid": (bool, True),  # add CamVid val frames 0..33 (never 34..100)
        # The generated clips' labels: "classes" (semantic classes) or "objects" (0 the background, each moving
        # object its own id, as object video is labelled; the targets are then about objects, and CamVid's classes,
        # which are no objects, must be left out: camvid=false).
        "synthetic_labels": (str, "classes"),
        "camvid_weight": (float, 3.0),  # CamVid rows count this many times in the fit
        "target": (str, "pixel_accuracy"),  # or "miou"
        "kinds": (str, "ridge,mlp,network"),  # predictor kinds fitted (ridge, mlp, network: DVSNet's dense decision
        # network, Keras); the one with the lowest mean over sources of the held-out error is written
        "network_epochs": (int, 150),  # the network kind's longest fit (it stops earlier); every fold uses it
        # The fits' seed (initialisation, shuffling, the network's validation rows); -1: `seed`, which also seeds
        # the generated clips. Not part of the data set: another fit_seed refits on the rows already built.
        "fit_seed": (int, -1),
        # Comma-separated unlabelled video files or image folders; targets: agreement with video_model's per-frame
        # predictions; only each video's calibration part (its first third) is used.
        "videos": (str, ""),
        "video_model": (str, ""),  # the DFF model file of those predictions ("": the shipped CamVid model)
        "video_scale": (float, 1.0),  # shrink video frames by this factor first (as compare's --video-scale)
        # Comma-separated label folders, one per entry of videos, in order (ground truth, as compare's
        # --labels FOLDER): the targets are then the true accuracy; no video_model is used.
        "label_folders": (str, ""),
    },
}

PRESETS = {
    "flow": {
        "smoke": {"steps": 20, "batch_size": 2, "height": 128, "width": 128, "checkpoint_every": 10,
                  "learning_rate": 1e-3, "width_multiplier": 0.25},
        "default": {"steps": 6000, "batch_size": 8, "height": 256, "width": 384, "checkpoint_every": 200,
                    "learning_rate": 5e-4, "max_shift": 24.0, "background_shift": 24.0, "motion_scale_min": 0.1,
                    "motion_scale_max": 1.5, "photometric": 0.1, "lr_schedule": "poly"},
    },
    "features": {
        "smoke": {"steps": 6, "batch_size": 2, "height": 128, "width": 128, "checkpoint_every": 3, "eval_limit": 6},
        "default": {"steps": 4000, "batch_size": 8, "height": 256, "width": 384, "checkpoint_every": 200,
                    "learning_rate": 1e-3, "lr_schedule": "poly", "scale_min": 0.75, "scale_max": 1.5,
                    "colour_jitter": 0.2, "class_weighting": "median_frequency"},
    },
    "decision": {
        "smoke": {"height": 128, "width": 128, "max_frames": 16, "max_offset": 4, "key_stride": 6,
                  "regions": 1, "overlap": 0, "epochs": 3},
        "default": {"height": 256, "width": 384, "max_frames": 120, "max_offset": 12, "key_stride": 6,
                    "regions": 2, "overlap": 64, "epochs": 40},
    },
    "quality": {
        "smoke": {"height": 64, "width": 128, "frames": 16, "synthetic_clips": 5, "max_offset": 6,
                  "key_stride": 4, "camvid": False, "network_epochs": 20},
        "default": {"height": 128, "width": 256, "frames": 60, "synthetic_clips": 16, "max_offset": 30,
                    "key_stride": 5},
    },
    "dff": {
        "smoke": {"steps": 6, "batch_size": 2, "height": 128, "width": 128, "checkpoint_every": 3,
                  "eval_stride": 12},
        "default": {"steps": 4000, "batch_size": 4, "height": 256, "width": 384, "checkpoint_every": 200,
                    "learning_rate": 5e-4},
    },
}


def fields(program: str) -> dict:
    if program not in PROGRAM_FIELDS:
        raise ValueError(f"unknown training program {program!r}; choose from {sorted(PROGRAM_FIELDS)}")
    return {**COMMON, **PROGRAM_FIELDS[program]}


def _coerce(key: str, value, kind):
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str and isinstance(value, str):
        return value
    raise ValueError(f"config key {key!r} must be of type {kind.__name__}, got {value!r}")


def validate(program: str, values: dict) -> dict:
    """The full configuration: defaults, then ``values``; errors name bad keys and types."""
    spec = fields(program)
    unknown = sorted(set(values) - set(spec))
    if unknown:
        raise ValueError(f"unknown config keys for 'train {program}': {unknown}; known keys: {sorted(spec)}")
    config = {key: default for key, (_, default) in spec.items()}
    for key, value in values.items():
        config[key] = _coerce(key, value, spec[key][0])
    for key in ("steps", "batch_size", "height", "width", "checkpoint_every"):
        if config[key] < 1:
            raise ValueError(f"config key {key!r} must be >= 1, got {config[key]}")
    if config["learning_rate"] <= 0:
        raise ValueError(f"config key 'learning_rate' must be > 0, got {config['learning_rate']}")
    if config["lr_schedule"] not in ("constant", "poly"):
        raise ValueError(f"config key 'lr_schedule' must be 'constant' or 'poly', got {config['lr_schedule']!r}")
    if "motion_scale_min" in config:
        _check_range(config, "motion_scale_min", "motion_scale_max")
        _check_fraction(config, "photometric")
        for key in ("max_shift", "background_shift"):
            if config[key] < 0:
                raise ValueError(f"config key {key!r} must be >= 0, got {config[key]}")
    if config.get("class_weighting", "none") not in ("none", "median_frequency"):
        raise ValueError("config key 'class_weighting' must be 'none' or 'median_frequency', "
                         f"got {config['class_weighting']!r}")
    if "scale_min" in config:
        _check_range(config, "scale_min", "scale_max")
        _check_fraction(config, "colour_jitter")
    return config


def _check_range(config: dict, low: str, high: str) -> None:
    """``0 < config[low] <= config[high]``, else an error naming both keys."""
    if not 0 < config[low] <= config[high]:
        raise ValueError(f"config keys need 0 < {low} <= {high}, got {config[low]} and {config[high]}")


def _check_fraction(config: dict, key: str) -> None:
    """``0 <= config[key] < 1``, else an error naming the key."""
    if not 0 <= config[key] < 1:
        raise ValueError(f"config key {key!r} must be in [0, 1), got {config[key]}")


def load_config(program: str, preset_or_file: str = "default", overrides: Optional[Iterable[str]] = None) -> dict:
    """A preset name or a JSON file, then ``key=value`` overrides; validated."""
    spec_presets = PRESETS.get(program, {})
    if preset_or_file in spec_presets:
        values = dict(spec_presets[preset_or_file])
    elif os.path.isfile(preset_or_file):
        try:
            with open(preset_or_file) as f:
                values = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"config file {preset_or_file!r} is not valid JSON: {error}") from None
        if not isinstance(values, dict):
            raise ValueError(f"config file {preset_or_file!r} must hold a JSON object, got {type(values).__name__}")
    else:
        raise ValueError(
            f"--config {preset_or_file!r} is neither a preset of 'train {program}' "
            f"({sorted(spec_presets)}) nor an existing JSON file"
        )
    for item in overrides or ():
        if "=" not in item:
            raise ValueError(f"override {item!r} must be key=value")
        key, value = item.split("=", 1)
        values[key.strip()] = value.strip()
    return validate(program, values)
