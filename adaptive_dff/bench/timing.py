"""Side-by-side timing: candidates run interleaved, medians compared in one run."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping


def _block(result) -> None:
    """Wait for asynchronous work (TensorFlow tensors) to finish."""
    if hasattr(result, "numpy"):
        result.numpy()
    elif isinstance(result, dict):
        for value in result.values():
            _block(value)
    elif isinstance(result, (list, tuple)):
        for value in result:
            _block(value)


def time_interleaved(
    candidates: Mapping[str, Callable[[], object]], repeats: int = 20, warmup: int = 2
) -> dict[str, float]:
    """Median wall time in milliseconds of each zero-argument callable.

    Every round runs each candidate once, in turn, so slow drifts of the
    machine (other load, frequency changes) hit all candidates alike.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for fn in candidates.values():
        for _ in range(warmup):
            _block(fn())
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            _block(fn())
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def format_table(rows: list[tuple], headers: tuple) -> str:
    """A plain fixed-width text table."""
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
