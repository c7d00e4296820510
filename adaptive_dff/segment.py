"""``adaptive-dff segment``: a video in; an annotated video, a CSV and a summary out.

The DFF model (the shipped CamVid model by default) runs under a key-frame
policy, region by region (:class:`adaptive_dff.VideoRunner`), over a video
file or a folder of numbered images. Written:

* the annotated video (``.mp4``, MPEG-4 Part 2, or ``.avi``, Motion JPEG) at
  the source's frame rate and size: class colours blended over each frame, a
  legend, a red border and ``KEY`` on key frames (per region with
  ``regions``), the model's milliseconds for the frame;
* a CSV beside it (or at ``csv``), one row per frame: ``frame``, per region
  ``key_r<i>`` (1 recomputed, 0 propagated) and ``score_r<i>`` (the policy's
  score; empty on frame 0), milliseconds per stage (``ms_<stage>``, see
  :data:`adaptive_dff.runner.STAGES`) and ``ms_total``; ``ms_every_frame`` and
  ``agreement`` on the frames where the per-frame model also ran;
* a summary (returned, and printed by the command): key fraction, frames per
  second, the speedup over running the model on every frame and, with
  ``compare_every_frame``, the share of pixels whose label agrees with the
  per-frame prediction.

Times are the model's own (decoding, drawing and writing excluded), after a
warm-up on the first frame. The per-frame model runs beside the policy on
the same frames, interleaved: on every frame with ``compare_every_frame``,
else on every :data:`SAMPLE_EVERY`-th frame (its cost hardly depends on the
content).

Both files are written atomically: a failure or an interrupt leaves no file
under their names. A video whose decoding stops part-way (or a folder with
an image that does not decode) still gives both files, holding the frames
decoded so far; the summary says where it stopped.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
import warnings
from typing import Callable, Optional

import cv2
import numpy as np

from adaptive_dff.console import Progress
from adaptive_dff.overlay import blend_labels, class_palette, draw_legend, draw_regions, put_label
from adaptive_dff.runner import STAGES, VideoRunner
from adaptive_dff.video import VideoDecodeWarning, VideoReader
from schedulers import POLICIES, FixedInterval, RegionGrid
from schedulers.budget import resolve_rule
from schedulers.files import atomic_path

logger = logging.getLogger(__name__)

CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
SAMPLE_EVERY = 8
FOLDER_FPS = 30.0


def check_outputs(out: str, csv_path: Optional[str] = None, source: Optional[str] = None,
                  overwrite: bool = False) -> tuple[str, str]:
    """``(video path, csv path)`` after checking them: a known suffix, an existing folder,
    no existing file unless ``overwrite``, never the source itself."""
    suffix = os.path.splitext(out)[1].lower()
    if suffix not in CODECS:
        raise ValueError(f"--out {out!r}: write a {' or '.join(CODECS)} file")
    csv_path = csv_path or os.path.splitext(out)[0] + ".csv"
    for path in (out, csv_path):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"output {path!r}: folder {folder!r} does not exist")
        if os.path.isdir(path):
            raise ValueError(f"output {path!r} is a folder")
        if source and os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
            raise ValueError(f"output {path!r} is the source itself")
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"output {path!r} exists; pass --overwrite to replace it")
    if os.path.abspath(out) == os.path.abspath(csv_path):
        raise ValueError(f"the video and the CSV would both be {out!r}")
    return out, csv_path


def make_policy(name: str, decision_model=None, quality_model=None):
    """A policy from :data:`schedulers.POLICIES` by name; ``decision_network`` runs on ``decision_model``
    (a :class:`schedulers.DecisionModel` or :class:`schedulers.QualityPredictor`; ``None``: the shipped
    quality predictor), ``propagation_quality`` on ``quality_model`` (a :class:`schedulers.QualityPredictor`,
    at the downsample it was fitted for; ``None``: the shipped one)."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(sorted(POLICIES))}")
    if name == "decision_network":
        if decision_model is None:
            from schedulers import load_default_quality

            decision_model = load_default_quality(key_labels=True)  # the best learned model that ships
        return POLICIES[name](model=decision_model)
    if name == "propagation_quality" and quality_model is not None:
        return POLICIES[name](predictor=quality_model)
    return POLICIES[name]()


def describe(policy) -> str:
    """``Name(threshold_param=value)``: a policy in a few words (its threshold only)."""
    value = getattr(policy, policy.threshold_param, None)
    value = f"{value:.4g}" if isinstance(value, float) else repr(value)
    return f"{type(policy).__name__}({policy.threshold_param}={value})"


def set_threshold(policy, value: float):
    """``policy`` with its threshold parameter set to ``value`` (whole numbers for ``fixed_interval``)."""
    if policy.integer_threshold:
        if float(value) != int(value):
            raise ValueError(f"{type(policy).__name__}'s {policy.threshold_param} takes a whole number, got {value}")
        value = int(value)
    policy.set_params(**{policy.threshold_param: value})
    policy.decision_threshold()  # a finite number?
    return policy


def annotate(frame: np.ndarray, step, boxes, names, palette, total_frames: int, alpha: float = 0.5) -> np.ndarray:
    """The annotated RGB frame of one :class:`adaptive_dff.runner.StepResult`."""
    image = blend_labels(frame, step.labels, palette, alpha)
    draw_regions(image, boxes, step.update)
    present = np.unique(step.labels)
    draw_legend(image, names, palette, present=present)
    of = f"/{total_frames}" if total_frames else ""
    keys = int(np.sum(step.update))
    what = ("key frame" if keys else "propagated") if len(boxes) == 1 else f"{keys}/{len(boxes)} regions recomputed"
    put_label(image, f"frame {step.frame_index}{of}  {step.total_ms:.0f} ms  {what}", (4, 4))
    return image


def _warm_up(model, grid: RegionGrid, frame: np.ndarray) -> None:
    """Trace the model's key and propagation paths on the region shapes before anything is timed."""
    for regions in {(grid.rows, grid.cols, grid.overlap), (1, 1, 0)}:
        runner = VideoRunner(model, FixedInterval(2), regions=RegionGrid(*regions))
        for _ in range(3):
            runner.step(frame)


def calibrate_on_first_frames(policy, model, frames: list, grid: RegionGrid, key_fraction: float):
    """:func:`schedulers.calibrate` on ``frames`` (the source's first ones), with the model's flow
    and flow features for the policies that use them."""
    from adaptive_dff.compare.scoring import model_flow, model_pair_features
    from schedulers import calibrate
    from schedulers.base import reads_key_labels

    labels = None
    if reads_key_labels(policy):  # the key labels the runner gives it later: the model's own predictions
        every_frame = VideoRunner(model, FixedInterval(1), regions=grid)
        labels = [every_frame.step(frame).labels for frame in frames]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = calibrate(
            policy, frames, target_key_fraction=key_fraction, regions=grid,
            flow=model_flow(model) if getattr(policy, "needs_flow", False) else None,
            features=model_pair_features(model) if getattr(policy, "needs_flow_features", False) else None,
            labels=labels,
        )
    note = str(caught[0].message) if caught else None
    return found, note


def _key_budget(policy, model, frames: list, grid: RegionGrid, budget: float, price_rule: bool, log):
    """``(KeyBudget around policy, calibration or None)``; under the price rule its starting price
    calibrated on ``frames`` (see :func:`segment_video`)."""
    from schedulers import KeyBudget

    if not price_rule:
        return KeyBudget(policy, target=budget), None
    calibration = {"frames": len(frames), "target": budget, "threshold_param": policy.threshold_param,
                   "threshold": None, "key_fraction": None, "met": False, "note": None, "starting_price": None}
    if len(frames) < 2:
        calibration["note"] = f"{len(frames)} frame: nothing to calibrate a starting price on"
    else:
        found, note = calibrate_on_first_frames(policy, model, frames, grid, budget)
        if found.met and found.starting_price is None:
            note = f"the calibrated threshold {found.threshold!r} is no positive finite price"
        calibration.update(threshold=found.threshold, key_fraction=found.key_fraction, met=found.met, note=note,
                           starting_price=found.starting_price)
    price = calibration["starting_price"]
    where = f"frames 0..{len(frames) - 1} of the source"
    if price is not None:
        log(f"starting price {price:.4g} for KeyBudget(target={budget:g}): {type(policy).__name__}."
            f"{policy.threshold_param} calibrated on {where} (there: {calibration['key_fraction']:.3f} keys)")
    else:
        log(f"note: no starting price for KeyBudget(target={budget:g}) from {where}"
            f"{' (' + calibration['note'] + ')' if calibration['note'] else ''}; the first price is guessed "
            "from the stream")
    return KeyBudget(policy, target=budget, price=price), calibration


def segment_video(source: str, out: str, model, policy, *, regions: Optional[RegionGrid] = None,
                  class_names=None, key_fraction: Optional[float] = None, budget: Optional[float] = None,
                  calibration_frames: int = 30,
                  compare_every_frame: bool = False, fps: Optional[float] = None, csv_path: Optional[str] = None,
                  overwrite: bool = False, max_frames: Optional[int] = None, progress: bool = False,
                  log: Callable = logger.info) -> dict:
    """Run ``model`` under ``policy`` over ``source``; write the annotated video ``out`` and the CSV.

    Args:
        source: a video file or a folder of numbered images.
        out: the annotated video (``.mp4`` or ``.avi``).
        model: an :class:`adaptive_dff.DFFModel`.
        policy: a :class:`schedulers.Policy` (its threshold is replaced when
            ``key_fraction`` is given).
        regions: a :class:`schedulers.RegionGrid` (default: the whole frame).
        class_names: one name per class of the model (default ``class 0`` ...).
        key_fraction: calibrate the policy's threshold to this key-frame
            fraction on the first ``calibration_frames`` frames of the source.
        budget: hold this key-frame fraction online with a
            :class:`schedulers.KeyBudget` around ``policy`` (not with
            ``key_fraction``). For a policy whose scores are costs
            (``propagation_quality``: the price rule) the budget's starting
            price is the policy's threshold calibrated to ``budget`` on the first
            ``calibration_frames`` frames, as ``compare`` does; where that
            calibration misses its target, the first price is guessed from the
            stream. Rank-rule policies calibrate nothing.
        compare_every_frame: run the per-frame model on every frame, for the
            agreement and an exact speedup.
        fps: the output's frame rate when the source has none (an image
            folder: default 30).
        csv_path: default: ``out`` with ``.csv``.
        overwrite: replace existing outputs.
        max_frames: stop after this many frames.
        progress: a progress bar with the time left on stderr.
        log: ``log(message)`` for notes and the calibration (default: this module's logger, ``INFO``).
            A source that broke part-way is a ``WARNING`` of this module's logger; each frame a
            ``DEBUG`` record.

    Returns the summary (see the module docstring), with ``stopped`` set to a
    message when the source broke part-way.
    """
    out, csv_path = check_outputs(out, csv_path, source, overwrite)
    if key_fraction is not None and not 0 < key_fraction <= 1:
        raise ValueError(f"--key-fraction must be in (0, 1], got {key_fraction}")
    if budget is not None and not 0 < budget <= 1:
        raise ValueError(f"--budget must be a key-frame fraction in (0, 1], got {budget}")
    if budget is not None and key_fraction is not None:
        raise ValueError("give a budget (held online) or a key fraction (a calibrated threshold), not both")
    if calibration_frames < 2:
        raise ValueError(f"--calibration-frames must be at least 2, got {calibration_frames}")
    grid = regions or RegionGrid(1, 1)
    price_rule = budget is not None and resolve_rule(policy, "auto") == "price"
    if not hasattr(getattr(model, "head", None), "get_config") or not hasattr(model, "run_features"):
        raise TypeError(f"model must be an adaptive_dff.DFFModel, got {type(model).__name__}")
    num_classes = int(model.head.get_config()["num_classes"])
    names = list(class_names) if class_names else [f"class {k}" for k in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names given; the model predicts {num_classes} classes")
    palette, unknown = class_palette(names)
    if unknown:
        log(f"note: {len(unknown)} of {num_classes} classes have no palette entry; their colours are generated")

    reader = VideoReader(source, max_frames=max_frames)
    frames = iter(reader)
    buffered, stopped = [], None
    wanted = calibration_frames if key_fraction is not None or price_rule else 1
    try:
        for frame in frames:
            buffered.append(frame)
            if len(buffered) >= wanted:
                break
    except ValueError as error:  # an image of a folder that does not decode
        if not buffered:
            raise
        stopped = str(error)
    if not buffered:
        raise ValueError(f"video {source!r} holds no decodable frame")
    height, width = buffered[0].shape[:2]
    boxes = grid.boxes(height, width)
    rate = reader.fps if reader.fps and math.isfinite(reader.fps) and reader.fps > 0 else (fps or FOLDER_FPS)
    if not reader.fps or not reader.fps > 0:
        log(f"note: {source!r} gives no frame rate; writing at {rate:g} fps")

    calibration = None
    if key_fraction is not None:
        if len(buffered) < 2:
            raise ValueError(f"calibrating needs at least 2 frames; {source!r} gave {len(buffered)}")
        found, note = calibrate_on_first_frames(policy, model, buffered, grid, key_fraction)
        policy = found.policy
        calibration = {"frames": len(buffered), "target": key_fraction, "threshold_param": policy.threshold_param,
                       "threshold": found.threshold, "key_fraction": found.key_fraction, "met": found.met, "note": note}
        log(f"calibrated {type(policy).__name__}.{policy.threshold_param} = {found.threshold:.4g} on frames "
            f"0..{len(buffered) - 1} of the source for a key fraction of {key_fraction:g} "
            f"(there: {found.key_fraction:.3f}){'; ' + note if note else ''}")
    if budget is not None:
        policy, calibration = _key_budget(policy, model, buffered, grid, budget, price_rule, log)

    runner = VideoRunner(model, policy, regions=grid)
    every_frame = VideoRunner(model, FixedInterval(1))
    _warm_up(model, grid, buffered[0])
    total = reader.frames_expected if max_frames is None else min(max_frames, reader.frames_expected)
    bar = Progress(total, enabled=progress)
    fields = (["frame"] + [f"key_r{r}" for r in range(len(boxes))] + [f"score_r{r}" for r in range(len(boxes))]
              + [f"ms_{s}" for s in STAGES] + ["ms_total", "ms_every_frame", "agreement"])
    ours_ms, base_ms, agreements, key_counts = [], [], [], []
    started = time.perf_counter()
    with atomic_path(out, os.path.splitext(out)[1]) as video_tmp, atomic_path(csv_path, ".csv") as csv_tmp, \
            open(csv_tmp, "w", newline="") as table:
        writer = cv2.VideoWriter(video_tmp, cv2.VideoWriter_fourcc(*CODECS[os.path.splitext(out)[1].lower()]),
                                 rate, (width, height))
        if not writer.isOpened():
            raise ValueError(f"OpenCV cannot write {out!r} ({width}x{height} at {rate:g} fps)")
        rows = csv.DictWriter(table, fieldnames=fields)
        rows.writeheader()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", VideoDecodeWarning)  # reported in the summary instead
                index = 0
                while True:
                    if index < len(buffered):
                        frame = buffered[index]
                    else:
                        buffered = []  # the calibration frames are not kept past their turn
                        if stopped:
                            break
                        try:
                            frame = next(frames)
                        except StopIteration:
                            break
                        except ValueError as error:
                            stopped = str(error)
                            break
                    if frame.shape[:2] != (height, width):
                        raise ValueError(f"frame {index} of {source!r} is {frame.shape[1]}x{frame.shape[0]}; "
                                         f"the video started at {width}x{height}")
                    step = runner.step(frame)
                    row = {"frame": index, "ms_total": f"{step.total_ms:.3f}"}
                    row.update({f"key_r{r}": int(u) for r, u in enumerate(step.update)})
                    row.update({f"score_r{r}": "" if not np.isfinite(s) else f"{s:.6g}" for r, s in enumerate(step.scores)})
                    row.update({f"ms_{s}": f"{step.timings.get(s, 0.0):.3f}" for s in STAGES})
                    ours_ms.append(step.total_ms)
                    key_counts.append(int(np.sum(step.update)))
                    if compare_every_frame or index % SAMPLE_EVERY == 0:
                        base = every_frame.step(frame)
                        base_ms.append(base.total_ms)
                        row["ms_every_frame"] = f"{base.total_ms:.3f}"
                        if compare_every_frame:
                            agreements.append(float(np.mean(base.labels == step.labels)))
                            row["agreement"] = f"{agreements[-1]:.6f}"
                    image = annotate(frame, step, boxes, names, palette, total)
                    writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                    rows.writerow(row)
                    logger.debug("frame %d: update %s, scores %s, %.1f ms", index, step.update.astype(int).tolist(),
                                 np.round(step.scores, 4).tolist(), step.total_ms)
                    index += 1
                    bar.update(index)
        finally:
            writer.release()
            bar.close()
        if reader.truncated and not stopped:
            stopped = (f"decoding stopped at frame {reader.frames_read} of {reader.frames_expected} announced; "
                       f"the {reader.frames_read} frames decoded were written")
    wall = time.perf_counter() - started
    if stopped:
        logger.warning(f"{source!r} broke part-way: {stopped}; {out} and {csv_path} hold the frames before it")
    return _summary(source, out, csv_path, policy, grid, ours_ms, base_ms, agreements, key_counts, wall,
                    calibration, stopped, rate)


def _summary(source, out, csv_path, policy, grid, ours_ms, base_ms, agreements, key_counts, wall,
             calibration, stopped, rate) -> dict:
    frames = len(ours_ms)
    mean_ms = float(np.mean(ours_ms))
    every_ms = float(np.mean(base_ms)) if base_ms else float("nan")
    return {
        "source": source, "video": out, "csv": csv_path, "frames": frames, "fps_written": rate,
        "policy": describe(policy), "regions": f"{grid.rows}x{grid.cols}",
        "key_fraction": float(np.sum(key_counts)) / (frames * len(grid)),
        "key_frames": int(np.count_nonzero(key_counts)),
        "ms_per_frame": mean_ms, "fps": 1e3 / mean_ms,
        "every_frame_ms": every_ms, "every_frame_measured_on": len(base_ms),
        "speedup": every_ms / mean_ms,
        "agreement": float(np.mean(agreements)) if agreements else None,
        "wall_seconds": wall, "calibration": calibration, "stopped": stopped,
    }


def format_summary(summary: dict) -> str:
    """The summary as the lines the command prints."""
    lines = [
        f"{summary['frames']} frames of {summary['source']} -> {summary['video']} ({summary['fps_written']:g} fps) "
        f"and {summary['csv']}",
        f"policy {summary['policy']}, regions {summary['regions']}: key fraction {summary['key_fraction']:.3f} "
        f"({summary['key_frames']} frame{'s' if summary['key_frames'] != 1 else ''} with a key region)",
        f"model time {summary['ms_per_frame']:.1f} ms/frame = {summary['fps']:.1f} frames/s; every frame: "
        f"{summary['every_frame_ms']:.1f} ms/frame (measured on {summary['every_frame_measured_on']} of these frames); "
        f"speedup {summary['speedup']:.2f}x",
    ]
    if summary["agreement"] is not None:
        lines.append(f"agreement with per-frame predictions: {100 * summary['agreement']:.1f}% of pixels")
    lines.append(f"wall time {summary['wall_seconds']:.1f} s (decoding, drawing and writing included)")
    if summary["stopped"]:
        lines.append(f"the source broke part-way: {summary['stopped']}")
    return "\n".join(lines)


def run_command(args) -> None:
    """``adaptive-dff segment``: check the arguments (before the model loads), run, print the summary."""
    from adaptive_dff.compare.config import parse_grid

    if args.policy not in POLICIES:
        raise ValueError(f"unknown policy {args.policy!r}; choose from {', '.join(sorted(POLICIES))}")
    grid = parse_grid(args.regions, args.overlap)
    if args.key_fraction is not None and not 0 < args.key_fraction <= 1:
        raise ValueError(f"--key-fraction must be in (0, 1], got {args.key_fraction}")
    budget = getattr(args, "budget", None)
    if budget is not None and not 0 < budget <= 1:
        raise ValueError(f"--budget must be a key-frame fraction in (0, 1], got {budget}")
    if args.decision_model and args.policy != "decision_network":
        raise ValueError(f"--decision-model is for --policy decision_network, not {args.policy}")
    quality_path = getattr(args, "quality_model", None)
    if quality_path and args.policy != "propagation_quality":
        raise ValueError(f"--quality-model is for --policy propagation_quality, not {args.policy}")
    check_outputs(args.out, args.csv, args.video, args.overwrite)
    VideoReader(args.video)  # opens? (before the model loads)
    decision = None
    if args.decision_model:
        from schedulers import load_decision_model

        decision = load_decision_model(args.decision_model)
    quality = None
    if quality_path:
        from schedulers import load_quality_predictor

        quality = load_quality_predictor(quality_path)
    from adaptive_dff.data.camvid import CLASS_NAMES
    from adaptive_dff.model import load_model
    from adaptive_dff.pretrained import default_model_path

    model = load_model(args.model or default_model_path())
    names = None
    if args.classes == "camvid" or (args.classes is None and args.model is None):
        names = CLASS_NAMES
    elif args.classes:
        names = [n.strip() for n in args.classes.split(",")]
    policy = make_policy(args.policy, decision, quality)
    if args.threshold is not None:
        set_threshold(policy, args.threshold)
    held = f"{type(policy).__name__} under KeyBudget(target={budget:g})" if budget is not None else describe(policy)
    predictor = f" on the predictor {quality_path}" if quality_path else ""
    logger.info(f"model: {args.model or 'the shipped CamVid model'}; policy: {held}{predictor}; regions: {args.regions}")
    summary = segment_video(
        args.video, args.out, model, policy, regions=grid, class_names=names, key_fraction=args.key_fraction,
        budget=budget,
        calibration_frames=args.calibration_frames, compare_every_frame=args.compare_every_frame, fps=args.fps,
        csv_path=args.csv, overwrite=args.overwrite, max_frames=args.frames,
        progress=not args.no_progress and logger.isEnabledFor(logging.INFO),
    )
    logger.info(format_summary(summary))
