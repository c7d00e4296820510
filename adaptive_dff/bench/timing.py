"""Side-by-side timing: candidates run interleaved, medians compared in one run."""

from __future__ import annotations

import random
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
    candidates: Mapping[str, Callable[[], object]], repeats: int = 20, warmup: int = 2, seed: int = 0
) -> dict[str, float]:
    """Median wall time in milliseconds of each zero-argument callable.

    Every round runs each candidate once, so slow drifts of the machine
    (other load, frequency changes) hit all candidates alike, in an order
    drawn anew each round (from ``seed``): a call right after TensorFlow's
    work runs slower while its worker threads still spin (about 0.3 to 0.6 ms
    on two cores), and a fixed order would charge that to the same candidates
    every round.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for fn in candidates.values():
        for _ in range(warmup):
            _block(fn())
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    order = list(candidates)
    rng = random.Random(seed)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            fn = candidates[name]
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
