"""``adaptive-dff train quality``: the propagation-quality predictor from labelled clips.

Data (oracle, exact labels): for key frames ``k`` of each clip (every
``key_stride`` frames) and each later frame ``t = k + 1 .. k + max_offset``,
per region of a 1x1 and a 2x2 grid (``overlap`` px):

* input: the :class:`schedulers.QualitySignals` of the region, computed as a
  pipeline would, frame after frame since the key, along OpenCV DIS flow from
  the current region to the key region;
* target: the accuracy of the key region's true labels carried to ``t``
  along that flow (:func:`adaptive_dff.compare.scoring.carry_labels`)
  against the true labels of ``t``: ``pixel_accuracy`` (void left out) or
  ``miou`` (mean IoU over the classes present in truth or result).

Clips: generated ones (:class:`adaptive_dff.data.SyntheticVideo`, seeds
apart from every seed ``compare`` uses; every motion regime, occlusions by
moving objects, scene cuts, brightness cycles) and, when ``camvid`` is on and
the data folder is found, CamVid's ``val`` clip frames ``0..33`` ONLY (the
calibration part; frames 34..100 are what ``compare`` scores).

Held out: every fifth generated clip and CamVid's pairs whose key is at frame
22 or later; the report gives each model's mean absolute error there against
predicting the training mean, and its prediction time. Kinds (config key
``kinds``): ``ridge``, ``mlp`` (scikit-learn) and ``network`` (DVSNet's
decision network on these signals, fitted with Keras; see
:class:`schedulers.QualityPredictor`). The rule, fixed in advance: the kind
with the lowest held-out error over all held-out rows is written to
``quality.json`` (nothing measured on CamVid frames 34..100 takes part).
"""

from __future__ import annotations

import logging

import json
import os
import time

import numpy as np

from adaptive_dff.labels import carry_labels
from adaptive_dff.data import NUM_CLASSES, SyntheticVideo
from schedulers import DISFlow, RegionGrid
from schedulers.files import atomic_path, write_json_atomic
from schedulers.quality import QualitySignals
from schedulers.quality_predictor import KINDS, QualityPredictor

CAMVID_CALIBRATION_FRAMES = 34  # frames 0..33 only; 34..100 are scored by compare
CAMVID_HELD_OUT_FROM_KEY = 22
TARGETS = ("pixel_accuracy", "miou")

# (camera_speed, object_speed, cuts as fractions, brightness): every regime, cycled over the clips.
REGIMES = (
    (0.3, 0.3, (), 0.1), (2.0, 2.0, (), 0.2), (4.0, 3.0, (), 0.2), (1.0, 1.0, (0.3, 0.7), 0.2),
    (0.0, 2.0, (), 0.0), (3.0, 0.5, (0.5,), 0.4), (1.0, 4.0, (), 0.2), (6.0, 2.0, (0.4,), 0.1),
)


logger = logging.getLogger(__name__)

def accuracies(truth: np.ndarray, carried: np.ndarray, num_classes: int, ignore_index) -> tuple[float, float]:
    """``(pixel accuracy, mean IoU over the classes present)`` of ``carried`` against ``truth``
    ``[h, w]``; pixels labelled ``ignore_index`` are left out (both NaN when nothing is left)."""
    keep = truth != ignore_index if ignore_index is not None else np.ones(truth.shape, bool)
    t, p = truth[keep].astype(np.int64), carried[keep].astype(np.int64)
    if t.size == 0:
        return float("nan"), float("nan")
    confusion = np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, -1)
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    return float(tp.sum() / t.size), float(np.mean(tp[present] / union[present]))


def clip_samples(frames, labels, grids, config: dict, num_classes: int, ignore_index=None, key_limit=None):
    """Rows of one clip: ``(X [N, S], pixel accuracy [N], miou [N], key index [N], grid cells [N])``."""
    flow = DISFlow()
    X, pixel, miou, keys, cells = [], [], [], [], []
    last_key = len(frames) - 2 if key_limit is None else min(key_limit, len(frames) - 2)
    for grid in grids:
        for key in range(0, last_key + 1, config["key_stride"]):
            key_crops = [c.copy() for c in grid.split(frames[key])]
            key_labels = grid.split(np.asarray(labels[key]))
            signals = QualitySignals(downsample=config["downsample"])
            for t in range(key + 1, min(key + config["max_offset"], len(frames) - 1) + 1):
                crops, truths = grid.split(frames[t]), grid.split(np.asarray(labels[t]))
                for r, (crop, truth) in enumerate(zip(crops, truths)):
                    region_flow = flow(crop, key_crops[r])
                    X.append(signals.region(r, crop, key_crops[r], key, t, region_flow))
                    carried, _ = carry_labels(key_labels[r], region_flow, num_classes)
                    a, m = accuracies(truth, carried, num_classes, ignore_index)
                    pixel.append(a)
                    miou.append(m)
                    keys.append(key)
                    cells.append(len(grid))
    return np.asarray(X), np.asarray(pixel), np.asarray(miou), np.asarray(keys), np.asarray(cells)


def synthetic_clips(config: dict):
    """``[(name, frames, labels)]``: ``synthetic_clips`` generated clips cycling through :data:`REGIMES`."""
    clips = []
    n = config["frames"]
    for i in range(config["synthetic_clips"]):
        camera, objects, cuts, brightness = REGIMES[i % len(REGIMES)]
        video = SyntheticVideo(height=config["height"], width=config["width"], num_frames=n,
                               seed=70_000 + 97 * i + config["seed"], camera_speed=camera, object_speed=objects,
                               brightness=brightness,
                               scene_cuts=sorted({min(max(1, round(f * n)), n - 1) for f in cuts}))
        clips.append((f"synthetic-{i}", [video.frame(t) for t in range(n)], [video.label(t) for t in range(n)]))
    return clips


def build_dataset(config: dict, data_root, log=logger.info) -> dict:
    """Every row, with its source: ``X``, ``pixel_accuracy``, ``miou``, ``source`` (0 generated,
    1 CamVid), ``held_out`` (bool)."""
    grids = [RegionGrid(1, 1), RegionGrid(2, 2, config["overlap"])]
    parts = []
    for number, (name, frames, labels) in enumerate(synthetic_clips(config)):
        X, a, m, _, _ = clip_samples(frames, labels, grids, config, NUM_CLASSES)
        parts.append((X, a, m, np.zeros(len(a), int), np.full(len(a), number % 5 == 4)))
    log(f"generated clips: {sum(len(p[1]) for p in parts)} rows from {config['synthetic_clips']} clips")
    if config["camvid"]:
        if not data_root:
            raise ValueError("config key 'camvid' is on but no data folder was found: pass --data-root PATH "
                             "or set camvid=false")
        from adaptive_dff.data.camvid import NUM_CLASSES as CAMVID_CLASSES, VOID, load_split

        frames, labels = load_split(data_root, "val")
        frames, labels = frames[:CAMVID_CALIBRATION_FRAMES], labels[:CAMVID_CALIBRATION_FRAMES]  # never 34..100
        X, a, m, keys, _ = clip_samples(frames, labels, grids, config, CAMVID_CLASSES, VOID)
        parts.append((X, a, m, np.ones(len(a), int), keys >= CAMVID_HELD_OUT_FROM_KEY))
        log(f"CamVid val frames 0..{CAMVID_CALIBRATION_FRAMES - 1}: {len(a)} rows")
    data = {name: np.concatenate([p[i] for p in parts]) for i, name in
            enumerate(("X", "pixel_accuracy", "miou", "source", "held_out"))}
    finite = np.all(np.isfinite(data["X"]), axis=1) & np.isfinite(data["pixel_accuracy"])
    return {k: v[finite] for k, v in data.items()}


def _prediction_us(predictor: QualityPredictor, X: np.ndarray) -> float:
    """Microseconds for one 4-region prediction (median of 200)."""
    rows = X[:4]
    times = []
    for _ in range(200):
        start = time.perf_counter()
        predictor.predict(rows)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)


def fit_and_report(data: dict, config: dict, log=logger.info) -> tuple[QualityPredictor, dict]:
    """Fit every kind in ``config['kinds']`` on the training rows, report held-out errors, return the best."""
    y = data[config["target"]]
    X, held, source = data["X"], data["held_out"], data["source"]
    train = ~held
    weights = np.where(source[train] == 1, config["camvid_weight"], 1.0)
    # Replicate the CamVid rows (scikit-learn's MLP takes no sample weights).
    repeat = np.maximum(np.round(weights).astype(int), 1)
    X_fit, y_fit = np.repeat(X[train], repeat, axis=0), np.repeat(y[train], repeat)
    mean = float(y_fit.mean())
    names = QualitySignals(downsample=config["downsample"]).names
    metrics = {"target": config["target"], "train_rows": int(train.sum()), "held_out_rows": int(held.sum()),
               "models": {}}
    subsets = {"all": held, "generated": held & (source == 0), "camvid": held & (source == 1)}
    metrics["mean_predictor_mae"] = {k: float(np.abs(y[s] - mean).mean()) if s.any() else None
                                     for k, s in subsets.items()}
    best, best_error = None, np.inf
    for kind in [k.strip() for k in config["kinds"].split(",") if k.strip()]:
        if kind not in KINDS:
            raise ValueError(f"config key 'kinds': unknown kind {kind!r}; choose from {KINDS}")
        start = time.perf_counter()
        predictor = QualityPredictor(names, QualitySignals.version, kind=kind, seed=config["seed"],
                                     signals_downsample=config["downsample"]).fit(X_fit, y_fit)
        fit_s = time.perf_counter() - start
        errors = {k: predictor.mean_absolute_error(X[s], y[s]) if s.any() else None for k, s in subsets.items()}
        metrics["models"][kind] = {"held_out_mae": errors, "fit_seconds": fit_s,
                                   "predict_us_4_regions": _prediction_us(predictor, X)}
        log(f"{kind}: held-out MAE {errors['all']:.4f} (generated {errors['generated']:.4f}"
            + (f", CamVid {errors['camvid']:.4f}" if errors["camvid"] is not None else "")
            + f"), fit {fit_s:.1f} s, predict {metrics['models'][kind]['predict_us_4_regions']:.0f} us / 4 regions")
        if errors["all"] < best_error:
            best, best_error = predictor, errors["all"]
    m = metrics["mean_predictor_mae"]
    log(f"predicting the training mean: held-out MAE {m['all']:.4f} (generated {m['generated']:.4f}"
        + (f", CamVid {m['camvid']:.4f}" if m["camvid"] is not None else "") + ")")
    metrics["chosen"] = best.kind
    return best, metrics


def signature(config: dict) -> dict:
    keys = ("frames", "height", "width", "synthetic_clips", "max_offset", "key_stride", "overlap", "downsample",
            "camvid", "seed")
    return {k: config[k] for k in keys}


def run(config: dict, out: str, data_root=None, log=logger.info) -> dict:
    """Build (or reuse) the data set in ``out``, fit, and write ``quality.json`` and ``metrics.json``."""
    if config["target"] not in TARGETS:
        raise ValueError(f"config key 'target' must be one of {TARGETS}, got {config['target']!r}")
    for key, minimum in (("synthetic_clips", 5), ("frames", 10), ("max_offset", 1), ("key_stride", 1),
                         ("downsample", 1), ("overlap", 0)):
        if config[key] < minimum:
            raise ValueError(f"config key {key!r} must be >= {minimum} (every fifth generated clip is held out), "
                             f"got {config[key]}")
    if config["camvid_weight"] <= 0:
        raise ValueError(f"config key 'camvid_weight' must be > 0, got {config['camvid_weight']}")
    run_file = os.path.join(out, "run.json")
    if os.path.exists(run_file):
        with open(run_file) as f:
            previous = json.load(f)
        if previous != {"program": "quality", "signature": signature(config)}:
            raise ValueError(f"--out {out!r} holds another run ({previous}); choose another folder")
    else:
        write_json_atomic(run_file, {"program": "quality", "signature": signature(config)})
    cache = os.path.join(out, "dataset.npz")
    if os.path.exists(cache):
        with np.load(cache) as stored:
            data = {k: stored[k] for k in stored.files}
        log(f"reusing the data set in {cache} ({len(data['X'])} rows)")
    else:
        data = build_dataset(config, data_root, log=log)
        with atomic_path(cache, ".npz") as tmp:
            np.savez(tmp, **data)
    predictor, metrics = fit_and_report(data, config, log=log)
    predictor.save(os.path.join(out, "quality.json"), target=config["target"], metrics=metrics)
    write_json_atomic(os.path.join(out, "metrics.json"), {"program": "quality", "metrics": metrics, "config": config})
    log(f"wrote {os.path.join(out, 'quality.json')} ({metrics['chosen']})")
    return metrics
