"""``pareto.png``: per data set, accuracy against key-frame fraction and against speed.

Left panel: one curve per policy (colour) and region grid (line style); in
oracle mode with pair tables also the ceilings (the optimal schedule at every
number of whole-frame keys spread over the clips, thick black; with every clip
spending the same share, dashed black) and the phase-fair fixed interval at
every interval up to the window (thin grey), shaded from its lowest to its
highest single phase (where the first key after frame 0 falls).

Right panel: in model mode the measured frames per second. In oracle mode
there is no network whose speed would mean anything, so the x axis is the
speedup a DFF model with cost ratio ``r`` (a propagated frame's cost over a
key frame's) would get at each row's key fraction ``f``:
``1 / (f + (1 - f) r)`` (``l / (1 + (l - 1) r)`` for an interval ``l``).
"""

from __future__ import annotations

import io
import math
from typing import Optional

from schedulers.files import write_bytes_atomic


def speedup(key_fraction: float, cost_ratio: float) -> float:
    """Speedup over per-frame inference at ``key_fraction`` for cost ratio ``cost_ratio``."""
    return 1.0 / (key_fraction + (1.0 - key_fraction) * cost_ratio)


def plot(rows: list, path: str, title: str, mode: str = "model", curves: Optional[dict] = None,
         cost_ratio: float = 0.4) -> None:
    """Write ``pareto.png`` to ``path`` (see the module docstring); ``curves`` as
    :func:`adaptive_dff.compare.ceiling_rows.apply` returns them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = curves or {}
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, grid_axes = plt.subplots(len(datasets), 2, figsize=(12, 4.2 * len(datasets)), squeeze=False)
    policies = sorted({r["policy"] for r in rows if r["policy"] != "per_frame"})
    colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(policies)}
    grids = sorted({r["regions"] for r in rows if r["policy"] != "per_frame"})
    styles = {g: s for g, s in zip(grids, ["-", "--", ":", "-."] * 4)}

    def x_of(row_or_fraction, panel):
        if panel == 0:
            return row_or_fraction if isinstance(row_or_fraction, float) else row_or_fraction["key_fraction"]
        if mode == "model":
            return row_or_fraction["fps"]
        f = row_or_fraction if isinstance(row_or_fraction, float) else row_or_fraction["key_fraction"]
        return speedup(f, cost_ratio)

    for dataset, axes in zip(datasets, grid_axes):
        mine = [r for r in rows if r["dataset"] == dataset]
        dense = curves.get(dataset, {})
        for panel, ax in enumerate(axes):
            if mode == "model" and panel == 1:
                continue
            if dense.get("optimal"):
                points = [(x_of(float(f), panel), a) for f, a in dense["optimal"]]
                ax.plot(*zip(*points), "-", color="black", linewidth=2.2, alpha=0.8,
                        label="ceiling: optimal schedule, budget shared by the clips (1x1)", zorder=1)
            if dense.get("optimal_per_clip"):
                points = [(x_of(float(f), panel), a) for f, a in dense["optimal_per_clip"]]
                ax.plot(*zip(*points), "--", color="black", linewidth=1.4, alpha=0.8,
                        label="ceiling: optimal schedule, same share per clip (1x1)", zorder=1)
            if dense.get("fixed_interval"):
                points = [(x_of(float(f), panel), a) for f, a, _ in dense["fixed_interval"]]
                ax.plot(*zip(*points), "-", color="grey", linewidth=1.0,
                        label="fixed interval 1..window, phase-fair (1x1)", zorder=1)
            if dense.get("fixed_interval_phases"):
                xs, lows, highs = zip(*((x_of(float(f), panel), low, high)
                                        for f, low, high in dense["fixed_interval_phases"]))
                ax.fill_between(xs, lows, highs, color="grey", alpha=0.2, linewidth=0,
                                label="fixed interval, lowest to highest single phase (1x1)", zorder=0)
        for policy in policies:
            for grid in grids:
                points = sorted((r for r in mine if r["policy"] == policy and r["regions"] == grid
                                 and r.get("key_fraction") is not None), key=lambda r: r["key_fraction"])
                if not points:
                    continue
                for panel, ax in enumerate(axes):
                    xs = [x_of(r, panel) for r in points]
                    ax.plot(xs, [r["accuracy"] for r in points], styles[grid], color=colours[policy], marker="o",
                            markersize=3, label=f"{policy} {grid}")
                    fair = [r for r in points if r["kind"] == "budget"]
                    ax.plot([x_of(r, panel) for r in fair], [r["accuracy"] for r in fair], "o",
                            color=colours[policy], markersize=7)
        for r in mine:
            if r["policy"] == "per_frame":
                for panel, ax in enumerate(axes):
                    ax.axhline(r["accuracy"], color="black", linewidth=0.8, linestyle=":")
                    ax.plot([x_of(r, panel)], [r["accuracy"]], "k*", markersize=10, label="per frame")
        if mode == "model":
            speeds = [r["fps"] for r in mine if r.get("fps") and math.isfinite(r["fps"]) and r["fps"] > 0]
            if speeds and max(speeds) > 10 * min(speeds):
                axes[1].set_xscale("log")
        metric = mine[0]["accuracy_metric"] if mine else "accuracy"
        axes[0].set_xlabel("key-frame fraction f (share of frame-regions recomputed)")
        axes[1].set_xlabel("frames per second (timed stages only)" if mode == "model" else
                           f"speedup of a DFF model with cost ratio r = {cost_ratio:.2f} at each key fraction: "
                           "1 / (f + (1 - f) r)", fontsize=8)
        for ax in axes:
            ax.set_ylabel(metric)
            ax.set_title(dataset, fontsize=10)
            ax.grid(alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        axes[0].legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
    fig.suptitle(title + "  (large dots: the fair budgets)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
