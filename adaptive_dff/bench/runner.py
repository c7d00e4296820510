"""``adaptive-dff bench runner`` and ``bench memory``.

``runner``: the compact DFF model runs a generated clip per frame and with
``FixedInterval(l)``, both through :class:`adaptive_dff.VideoRunner`, in one
process (the two runs alternate in chunks so machine drift hits both). The
first frame is excluded from speed (DVSNet's protocol). r is measured in the
same run: mean propagated-frame time / mean key-frame time; DFF's ideal
speedup is ``l / (1 + (l - 1) r)``.

``memory``: resident memory of this process before and after many frames
through :class:`schedulers.Tracker` and :class:`adaptive_dff.VideoRunner`.
"""

from __future__ import annotations

import logging
import resource
import time

import numpy as np

from adaptive_dff.bench.model import ideal_speedup
from adaptive_dff.bench.timing import format_table
from adaptive_dff.data import SyntheticVideo
from adaptive_dff.model import compact_dff

logger = logging.getLogger(__name__)


def _timed_run(runner, frames) -> tuple[list, list]:
    """Wall time per frame (s) and whether it was a key frame, frame 0 excluded."""
    runner.reset()
    seconds, keys = [], []
    for t, frame in enumerate(frames):
        start = time.perf_counter()
        result = runner.step(frame)
        if t > 0:
            seconds.append(time.perf_counter() - start)
            keys.append(bool(result.update.any()))
    return seconds, keys


def run(frames: int = 200, interval: int = 10, height: int = 256, width: int = 512, seed: int = 0) -> dict:
    """Measured speedup of FixedInterval(interval) over per-frame inference, against DFF's ideal."""
    from adaptive_dff.runner import VideoRunner
    from schedulers import FixedInterval

    video = SyntheticVideo(height=height, width=width, num_frames=frames, seed=seed)
    clip = [video.frame(t) for t in range(frames)]
    model = compact_dff(num_classes=7)
    per_frame = VideoRunner(model, FixedInterval(1))
    scheduled = VideoRunner(model, FixedInterval(interval))
    _timed_run(per_frame, clip[:3])  # trace and compile both paths
    _timed_run(scheduled, clip[:3])

    base_s, sched_s, sched_keys = [], [], []
    for _ in range(2):  # alternate the two runs
        s, _ = _timed_run(per_frame, clip)
        base_s += s
        s, k = _timed_run(scheduled, clip)
        sched_s += s
        sched_keys += k
    sched_s, sched_keys = np.array(sched_s), np.array(sched_keys)
    base_ms = 1e3 * float(np.mean(base_s))
    sched_ms = 1e3 * float(np.mean(sched_s))
    key_ms = 1e3 * float(np.mean(sched_s[sched_keys]))
    prop_ms = 1e3 * float(np.mean(sched_s[~sched_keys]))
    r = prop_ms / key_ms
    measured = base_ms / sched_ms
    ideal = ideal_speedup(interval, r)
    logger.info(f"runner benchmark: compact model, {frames} frames of {height}x{width}, two alternating passes, frame 0 excluded")
    rows = [
        ("per frame (FixedInterval(1))", f"{base_ms:.1f}", "1.00"),
        (f"FixedInterval({interval})", f"{sched_ms:.1f}", f"{measured:.2f}"),
        ("  of which key frames", f"{key_ms:.1f}", ""),
        ("  of which propagated frames", f"{prop_ms:.1f}", ""),
    ]
    logger.info(format_table(rows, ("schedule", "ms / frame", "speedup")))
    logger.info(f"\nmeasured r = propagated / key frame = {r:.3f}")
    logger.info(f"ideal speedup l / (1 + (l-1) r) = {ideal:.2f}x; measured {measured:.2f}x = {100 * measured / ideal:.1f}% of ideal (target >= 90%)")
    return {"speedup": measured, "ideal": ideal, "r": r, "fraction_of_ideal": measured / ideal}


def resident_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_memory(frames: int = 10_000, height: int = 128, width: int = 256, warmup: int = 200) -> dict:
    """Resident memory growth over ``frames`` frames through Tracker and VideoRunner.

    Returns ``{subject: {"frames", "rss_before_mb", "rss_after_mb", "growth_mb", "seconds"}}`` (MB = MiB).
    """
    from adaptive_dff.runner import VideoRunner
    from schedulers import FixedInterval, FlowMagnitude, RegionGrid, Tracker

    video = SyntheticVideo(height=height, width=width, num_frames=64, seed=1)
    clip = [video.frame(t) for t in range(64)]  # cycled: memory does not depend on content
    growth = {}
    subjects = {
        "Tracker(FlowMagnitude, 2x2 regions, DIS flow)": Tracker(FlowMagnitude(2.0), regions=RegionGrid(2, 2, 16)),
        "VideoRunner(compact model, FixedInterval(10))": VideoRunner(compact_dff(num_classes=7), FixedInterval(10)),
    }
    rows = []
    logger.info(f"memory benchmark: {frames} frames of {height}x{width} after {warmup} warm-up frames, "
                f"{len(subjects)} subjects (a few minutes; the table comes at the end)")
    for name, subject in subjects.items():
        logger.info(f"  {name} ...")
        for t in range(warmup):
            subject.step(clip[t % len(clip)])
        before = resident_mb()
        start = time.perf_counter()
        for t in range(frames):
            subject.step(clip[t % len(clip)])
        after = resident_mb()
        seconds = time.perf_counter() - start
        growth[name] = {"frames": frames, "rss_before_mb": before, "rss_after_mb": after,
                        "growth_mb": after - before, "seconds": seconds}
        rows.append((name, frames, f"{before:.1f}", f"{after:.1f}", f"{after - before:+.1f}", f"{seconds:.0f}"))
    logger.info(format_table(rows, ("subject", "frames", "RSS before MB", "RSS after MB", "growth MB", "seconds")))
    logger.info("\ntarget: growth below 50 MB")
    return growth
