"""Rows, tables and plots from a compare folder's finished cells.

A row sums the cells of one (policy, regions, budget) over the test clips:
``accuracy`` is the mIoU of the summed confusion matrix, ``key_fraction``
the share of (frame, region) pairs recomputed, ``fps`` the timed frames over
the summed stage times (each clip's first frame left out). A row with fewer
clips than planned is marked in ``clips`` / ``clips_planned``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Optional

import numpy as np

from adaptive_dff.compare.planning import config_of, plan_cells, test_clips
from adaptive_dff.compare.scoring import CellResult
from adaptive_dff.compare.store import ResultFolder, write_atomic, write_json

COLUMNS = [
    "dataset", "mode", "policy", "regions", "kind", "budget", "threshold_param", "threshold",
    "calibration_key_fraction", "calibration_met", "key_fraction", "accuracy", "accuracy_metric",
    "agreement", "fps", "ms_per_frame", "ms_prepare", "ms_flow", "ms_decision", "ms_feature", "ms_warp",
    "ms_head", "ms_carry", "ms_merge", "clips", "clips_planned", "frames",
]


def rows_from(folder: ResultFolder) -> tuple[list, dict]:
    """``(rows, signature)`` of the finished cells in ``folder``."""
    signature = folder.signature()
    mode = signature["config"]["mode"]
    planned = defaultdict(int)
    for cell in _planned(signature):
        planned[(cell.dataset, cell.policy, cell.regions, cell.budget)] += 1
    groups: dict = {}
    for payload in folder.cells().values():
        cell = payload["cell"]
        key = (cell["dataset"], cell["policy"], cell["regions"], cell["budget"])
        result = CellResult.from_json(payload["result"])
        group = groups.setdefault(key, {"cell": cell, "result": None, "clips": 0, "threshold": payload["threshold"]})
        group["result"] = result if group["result"] is None else group["result"] + result
        group["clips"] += 1
    calibrations = folder.calibrations()
    labelled = {d["name"]: d["labelled"] for d in signature["datasets"]}
    order = [d["name"] for d in signature["datasets"]]
    rows = []
    for key in sorted(groups, key=lambda k: (order.index(k[0]), k[1] != "per_frame", k[1], k[2], k[3])):
        group = groups[key]
        result: CellResult = group["result"]
        cell = group["cell"]
        calibration = calibrations.get("__".join(key[:3]) + f"__{key[3]:.4f}", {})
        row = {
            "dataset": key[0], "mode": mode, "policy": key[1], "regions": key[2],
            "kind": cell["kind"], "budget": key[3], "threshold_param": calibration.get("threshold_param"),
            "threshold": group["threshold"], "calibration_key_fraction": calibration.get("key_fraction"),
            "calibration_met": calibration.get("met"), "key_fraction": result.key_fraction,
            "accuracy": result.accuracy,
            "accuracy_metric": "mIoU" if labelled[key[0]] else "mIoU against the per-frame prediction",
            "agreement": result.agree_pixels / result.pixels if result.pixels else None,
            "fps": result.fps, "ms_per_frame": result.ms_per_frame,
            "clips": group["clips"], "clips_planned": planned.get(key, 0), "frames": result.frames,
        }
        for stage, value in result.ms.items():
            row[f"ms_{stage}"] = value / result.timed_frames if result.timed_frames else None
        rows.append(row)
    return rows, signature


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


# A test key fraction further than this from its budget is marked "!" (its
# threshold, calibrated on other clips, did not transfer).
OFF_BUDGET = 0.03


def budget_table(rows: list) -> tuple[list, list]:
    """Rows of (policy, regions) by fair budget: ``accuracy (key fraction)``; the best per budget
    among rows that kept to it marked ``*``, rows that missed it by more than :data:`OFF_BUDGET` ``!``."""
    budgets = sorted({r["budget"] for r in rows if r["kind"] == "budget"})
    series = sorted({(r["policy"], r["regions"]) for r in rows if r["kind"] == "budget"})
    by_key = {(r["policy"], r["regions"], r["budget"]): r for r in rows}
    best = {}
    for b in budgets:
        scored = [(by_key[(p, g, b)]["accuracy"], p, g) for p, g in series
                  if (p, g, b) in by_key and not math.isnan(by_key[(p, g, b)]["accuracy"])
                  and abs(by_key[(p, g, b)]["key_fraction"] - b) <= OFF_BUDGET]
        if scored:
            best[b] = max(scored)[1:]
    table = []
    for p, g in series:
        line = [p, g]
        for b in budgets:
            row = by_key.get((p, g, b))
            if row is None:
                line.append("(not run)")
                continue
            text = f"{_fmt(row['accuracy'])} ({_fmt(row['key_fraction'], 2)})"
            if abs(row["key_fraction"] - b) > OFF_BUDGET:
                text += " !"
            line.append(text + (" *" if best.get(b) == (p, g) else ""))
        table.append(line)
    header = ["policy", "regions"] + [f"budget {b:.2f}" for b in budgets]
    return header, table


def markdown_table(header: list, lines: list) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(v) for v in line) + " |" for line in lines]
    return "\n".join(out)


def text_table(header: list, lines: list) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*map(str, line)) for line in lines])


def speed_table(rows: list) -> tuple[list, list]:
    """Time per frame at the fair budgets, split by stage (ms)."""
    stages = [c for c in COLUMNS if c.startswith("ms_") and c != "ms_per_frame" and any(r.get(c) for r in rows)]
    lines = [
        [r["policy"], r["regions"], f"{r['budget']:.2f}", _fmt(r["fps"], 1), _fmt(r["ms_per_frame"], 2)]
        + [_fmt(r.get(s), 2) for s in stages]
        for r in rows if r["kind"] in ("budget", "baseline")
    ]
    return ["policy", "regions", "budget", "fps", "ms/frame"] + [s[3:] for s in stages], lines


def fixed_interval_at(rows: list, grid: str, key_fraction: float) -> Optional[float]:
    """Fixed interval's accuracy at ``key_fraction``, interpolated linearly along its curve
    (fair budgets and sweep) on the same regions; ``None`` outside the curve."""
    curve = sorted((r["key_fraction"], r["accuracy"]) for r in rows
                   if r["policy"] == "fixed_interval" and r["regions"] == grid)
    if len(curve) < 2 or not curve[0][0] <= key_fraction <= curve[-1][0]:
        return None
    xs, ys = zip(*curve)
    return float(np.interp(key_fraction, xs, ys))


def findings(rows: list, tolerance: float = OFF_BUDGET) -> list:
    """Plain sentences: each policy at each fair budget against fixed interval on the same regions.

    Thresholds are calibrated on other clips, so a policy's key fraction on the
    test clips can miss the budget; the comparison is then made at the key
    fraction it really spent, along fixed interval's curve.
    """
    by_key = {(r["policy"], r["regions"], r["budget"]): r for r in rows}
    out = []
    for (policy, grid, budget), row in sorted(by_key.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        base = by_key.get(("fixed_interval", grid, budget))
        if row["kind"] != "budget" or policy == "fixed_interval" or base is None:
            continue
        spent = row["key_fraction"]
        if abs(spent - base["key_fraction"]) <= tolerance:
            reference, how = base["accuracy"], f"at key fractions {spent:.3f} vs {base['key_fraction']:.3f}"
        else:
            reference = fixed_interval_at(rows, grid, spent)
            how = f"it spent {spent:.3f} of the frames, not {budget:.2f}; fixed_interval interpolated there"
            if reference is None:
                out.append(f"budget {budget:.2f}, {grid}: {policy} spent {spent:.3f} of the frames on the test clips, "
                           f"outside fixed_interval's curve; no comparison at equal cost")
                continue
        delta = row["accuracy"] - reference
        verdict = "beats" if delta > 0.005 else ("trails" if delta < -0.005 else "ties with")
        out.append(f"budget {budget:.2f}, {grid}: {policy} {verdict} fixed_interval "
                   f"({_fmt(row['accuracy'])} vs {_fmt(reference)}; {how})")
    return out


def plot(rows: list, path: str, title: str, mode: str = "model") -> None:
    """``pareto.png``: per data set (one row of panels), accuracy against key-frame fraction
    and against fps; one curve per policy (colour) and region grid (line style)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, grid_axes = plt.subplots(len(datasets), 2, figsize=(12, 4.2 * len(datasets)), squeeze=False)
    policies = sorted({r["policy"] for r in rows if r["policy"] != "per_frame"})
    colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(policies)}
    grids = sorted({r["regions"] for r in rows if r["policy"] != "per_frame"})
    styles = {g: s for g, s in zip(grids, ["-", "--", ":", "-."] * 4)}
    for dataset, axes in zip(datasets, grid_axes):
        mine = [r for r in rows if r["dataset"] == dataset]
        for policy in policies:
            for grid in grids:
                points = sorted((r for r in mine if r["policy"] == policy and r["regions"] == grid),
                                key=lambda r: r["key_fraction"])
                if not points:
                    continue
                for ax, x in zip(axes, ("key_fraction", "fps")):
                    ax.plot([r[x] for r in points], [r["accuracy"] for r in points], styles[grid],
                            color=colours[policy], marker="o", markersize=3, label=f"{policy} {grid}")
                    fair = [r for r in points if r["kind"] == "budget"]
                    ax.plot([r[x] for r in fair], [r["accuracy"] for r in fair], "o", color=colours[policy],
                            markersize=7)
        for r in mine:
            if r["policy"] == "per_frame":
                for ax, x in zip(axes, ("key_fraction", "fps")):
                    ax.axhline(r["accuracy"], color="black", linewidth=0.8, linestyle=":")
                    ax.plot([r[x]], [r["accuracy"]], "k*", markersize=10, label="per frame")
        speeds = [r["fps"] for r in mine if r.get("fps") and math.isfinite(r["fps"]) and r["fps"] > 0]
        if speeds and max(speeds) > 10 * min(speeds):
            axes[1].set_xscale("log")  # e.g. copy (no flow) runs orders of magnitude faster than the rest
        metric = mine[0]["accuracy_metric"] if mine else "accuracy"
        axes[0].set_xlabel("key-frame fraction (share of frame-regions recomputed)")
        axes[1].set_xlabel("frames per second (timed stages only)" if mode == "model"
                           else "frames per second of the oracle pipeline (no network)")
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
    write_atomic(path, buffer.getvalue())


MODE_TEXT = {
    "oracle": ("Oracle mode: key frames take the true labels; the other frames carry them along the flow "
               "({flow}). This scores the policies' choices alone, apart from any model. Speed is that of "
               "the scheduling pipeline (decision, flow, carrying labels), not of a network."),
    "model": ("Model mode: the DFF model runs under each policy. Speed is the time of the model's stages and "
              "the policy's decision per frame, decoding and drawing excluded; each clip's first frame is "
              "left out of the timings."),
}


def write(folder: ResultFolder, config_extra: Optional[dict] = None, log=print) -> dict:
    """Write results.csv, results.json, pareto.png and summary.md from the finished cells; print the tables."""
    rows, signature = rows_from(folder)
    config = signature["config"]
    folder.write_csv(rows, COLUMNS)
    planned = len(_planned(signature))
    done = len(folder.cells())
    calibrations = folder.calibrations()
    report = {"signature": signature, **(config_extra or {}), "cells_done": done, "cells_planned": planned,
              "calibration": calibrations, "rows": rows}
    write_json(folder.path("results.json"), report)
    title = f"{config['mode']} mode"
    if rows:
        plot(rows, folder.path("pareto.png"), "Scheduling policies at equal key-frame budgets, " + title, config["mode"])
    text = [
        f"# Scheduling policies compared, {title}",
        "",
        MODE_TEXT[config["mode"]].format(flow="OpenCV DIS" if config["flow"] == "dis" else "the model's flow network"),
        "",
        "Each policy's threshold was calibrated on a data set's calibration clips to each key-frame budget, "
        f"then scored on its separate test clips. Cells: {done} of {planned} finished.",
        "",
    ]
    for entry in signature["datasets"]:
        mine = [r for r in rows if r["dataset"] == entry["name"]]
        if not mine:
            continue
        metric = mine[0]["accuracy_metric"]
        header, lines = budget_table(mine)
        speed_header, speed_lines = speed_table(mine)
        notes = findings(mine)
        text += [
            f"## {entry['name']}",
            "",
            f"Test clips: {', '.join(entry['test_clips'])}.",
            "",
            f"{metric} (key-frame fraction on the test clips) at the fair budgets; * best per budget among "
            f"the rows that kept to it; ! key fraction off the budget by more than {OFF_BUDGET} (the threshold "
            "calibrated on the calibration clips spent more or less on the test clips):",
            "",
            markdown_table(header, lines),
            "",
            *[f"- {n}" for n in notes],
            "",
            "Time per frame (ms) by stage:",
            "",
            markdown_table(speed_header, speed_lines),
            "",
        ]
        log("")
        log(f"{entry['name']}: {metric} (key-frame fraction) at the fair budgets, {title}; "
            f"* best that kept to its budget, ! off budget by > {OFF_BUDGET}")
        log(text_table(header, lines))
        for n in notes:
            log("  " + n)
    unmet = [f"{c['dataset']}, {c['policy']} {c['regions']} budget {c['budget']:.2f}: {c['warning']}"
             for c in calibrations.values() if not c.get("met", True)]
    if unmet:
        text += ["## Budgets a policy could not meet on the calibration clips", "", *[f"- {u}" for u in unmet], ""]
    text += ["Files: `results.csv` (every row, the sweep included), `results.json` (with versions, machine and "
             "configuration), `pareto.png`.", ""]
    write_atomic(folder.path("summary.md"), "\n".join(text).encode())
    log(f"\nwrote {folder.path('results.csv')}, results.json, pareto.png, summary.md ({done} of {planned} cells)")
    return report


def _planned(signature: dict):
    return plan_cells(config_of(signature), test_clips(signature))
