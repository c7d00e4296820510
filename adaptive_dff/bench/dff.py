"""``adaptive-dff bench dff``: Deep Feature Flow's speed on the shipped model, stage by stage.

The shipped CamVid model (:func:`adaptive_dff.load_default`) runs the first
``frames`` frames of CamVid's 15 fps ``val`` clip (480x360) through
:class:`adaptive_dff.VideoRunner` under ``FixedInterval(1)`` (every frame a
key frame), ``FixedInterval(5)`` and ``FixedInterval(10)``, in one process,
for each configuration compared:

* ``shipped``: the model as :func:`~adaptive_dff.load_default` returns it,
  run as the runner runs it by default;
* ``before``: the same weights with the flow net as propagation flow and the
  runner's stage-by-stage path (``fused=False``): how the model ran before.

All (configuration, schedule) runs go in lockstep, frame by frame (every
run steps frame t before any steps frame t + 1), so drifts of a shared
machine hit them alike. Frame 0 of each pass is left out (tracing,
and no schedule has a choice there). Per stage the table gives ms per frame
(mean over frames); r is the mean time of a propagated frame over that of a
key frame, both measured in the interval runs; the measured speedup at
interval l is (ms per frame every frame) / (ms per frame at l), printed beside
DFF's ideal ``l / (1 + (l - 1) r)``.
"""

from __future__ import annotations

import logging

import time

import numpy as np

from adaptive_dff.bench.model import ideal_speedup
from adaptive_dff.bench.timing import format_table

STAGE_COLUMNS = ("flow", "feature", "warp", "head", "merge", "prepare", "decision")
INTERVALS = (1, 5, 10)


logger = logging.getLogger(__name__)

def _configurations():
    from adaptive_dff.pretrained import load_default

    shipped = load_default()
    before = load_default().with_propagation_flow("network")
    return {"shipped": (shipped, None), "before": (before, False)}


def _lockstep_pass(runners: dict, frames) -> dict:
    """Every runner steps frame t in turn before any steps frame t + 1.

    Returns ``(total ms, key frame?, timings)`` per frame and runner, frame 0 excluded.
    """
    out = {key: [] for key in runners}
    for runner in runners.values():
        runner.reset()
    for t, frame in enumerate(frames):
        for key, runner in runners.items():
            start = time.perf_counter()
            result = runner.step(frame)
            total = (time.perf_counter() - start) * 1e3
            if t > 0:
                out[key].append((total, bool(result.update.any()), dict(result.timings)))
    return out


def run(data_root: str, frames: int = 60, passes: int = 2) -> dict:
    """Time the shipped model and the previous way of running it; print the tables, r and the speedups."""
    from adaptive_dff.runner import VideoRunner
    from schedulers import FixedInterval
    from adaptive_dff.data.camvid import load_split

    if frames < 11:
        raise ValueError(f"frames must be at least 11 (one key frame and nine propagated at interval 10), got {frames}")
    clip, _ = load_split(data_root, "val", limit=frames)
    configs = _configurations()
    runners = {
        (name, l): VideoRunner(model, FixedInterval(l), fused=fused)
        for name, (model, fused) in configs.items() for l in INTERVALS
    }
    _lockstep_pass(runners, clip[:3])  # trace and compile every path
    samples = {key: [] for key in runners}
    for _ in range(passes):
        for key, s in _lockstep_pass(runners, clip).items():
            samples[key] += s

    report = {}
    height, width = clip[0].shape[:2]
    logger.info(f"DFF benchmark: the shipped CamVid model, the first {len(clip)} frames of the val clip at {width}x{height}, "
          f"{passes} passes, all runs in lockstep, frame 0 of each left out; ms per frame")
    for name, (model, _) in configs.items():
        per = {}
        rows = []
        for l in INTERVALS:
            s = samples[(name, l)]
            total = float(np.mean([x[0] for x in s]))
            stages = {stage: float(np.mean([x[2].get(stage, 0.0) for x in s])) for stage in STAGE_COLUMNS}
            per[l] = {"ms": total, "stages": stages, "samples": s}
        base = per[1]["ms"]
        key_ms = float(np.mean([x[0] for l in INTERVALS[1:] for x in per[l]["samples"] if x[1]]))
        prop_ms = float(np.mean([x[0] for l in INTERVALS[1:] for x in per[l]["samples"] if not x[1]]))
        r = prop_ms / key_ms
        for l in INTERVALS:
            label = "every frame" if l == 1 else f"interval {l}"
            rows.append((label, f"{per[l]['ms']:.1f}", f"{base / per[l]['ms']:.2f}x",
                         *(f"{per[l]['stages'][stage]:.1f}" for stage in STAGE_COLUMNS)))
        flow = model.propagation_flow
        if flow == "dis":
            flow = f"dis (downscale {model.dis_downscale}, preset {model.dis_preset})"
        path = ("fused (on propagated frames warp, head, upsampling and argmax are one program, timed as warp)"
                if runners[(name, 5)].fused else "stage by stage")
        logger.info(f"\n{name}: propagation flow {flow}, {path}")
        logger.info(format_table(rows, ("schedule", "ms / frame", "speedup") + STAGE_COLUMNS))
        key_med = float(np.median([x[0] for l in INTERVALS[1:] for x in per[l]["samples"] if x[1]]))
        prop_med = float(np.median([x[0] for l in INTERVALS[1:] for x in per[l]["samples"] if not x[1]]))
        logger.info(f"key frame {key_ms:.1f} ms, propagated frame {prop_ms:.1f} ms (means): r = {r:.3f}; "
              f"from medians ({key_med:.1f}, {prop_med:.1f} ms): r = {prop_med / key_med:.3f}")
        speedups = {}
        for l in INTERVALS[1:]:
            measured = base / per[l]["ms"]
            speedups[l] = {"measured": measured, "ideal": ideal_speedup(l, r)}
            logger.info(f"interval {l}: measured speedup {measured:.2f}x, ideal l / (1 + (l - 1) r) = {ideal_speedup(l, r):.2f}x")
        report[name] = {"r": r, "r_medians": prop_med / key_med, "key_ms": key_ms, "propagated_ms": prop_ms, "speedups": speedups,
                        "ms_per_frame": {l: per[l]["ms"] for l in INTERVALS},
                        "stages": {l: per[l]["stages"] for l in INTERVALS}}
    ratio = report["before"]["ms_per_frame"][10] / report["shipped"]["ms_per_frame"][10]
    logger.info(f"\nshipped vs before at interval 10: {ratio:.2f}x faster; r {report['before']['r']:.3f} -> "
          f"{report['shipped']['r']:.3f} (target r <= 0.15)")
    return report
