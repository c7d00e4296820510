"""Rows, tables and plots from a compare folder's finished cells.

A row sums the cells of one (policy, regions, budget) over the test clips:
``accuracy`` is the mIoU of the summed confusion matrix (or, with the
configuration's ``metric="j"``, the region similarity ``J`` of
:mod:`adaptive_dff.compare.objects`), ``key_fraction``
the share of (frame, region) pairs recomputed, ``fps`` the timed frames over
the summed stage times (each clip's first frame left out). A row with fewer
clips than planned is marked in ``clips`` / ``clips_planned``.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Optional

import numpy as np

from adaptive_dff.compare import ceiling_rows
from adaptive_dff.compare.ceiling_rows import OPTIMAL_ROWS
from adaptive_dff.compare.config import parse_arm
from adaptive_dff.compare.datasets import PSEUDO_KIND
from adaptive_dff.compare.planning import config_of, plan_cells, test_clips
from adaptive_dff.compare.plot import plot
from adaptive_dff.compare.scoring import CellResult
from adaptive_dff.compare.store import ResultFolder
from schedulers.files import write_bytes_atomic, write_json_atomic

logger = logging.getLogger(__name__)

COLUMNS = [
    "dataset", "mode", "policy", "regions", "kind", "budget", "threshold_param", "threshold",
    "calibration_key_fraction", "calibration_met", "key_fraction", "accuracy", "accuracy_metric",
    "agreement", "fps", "ms_per_frame", "ms_prepare", "ms_flow", "ms_decision", "ms_feature", "ms_warp",
    "ms_head", "ms_carry", "ms_merge", "clips", "clips_planned", "frames",
    "phase_fair", "accuracy_phase0", "key_fraction_phase0", "fixed_at_key_fraction", "fixed_phase_low",
    "fixed_phase_high", "ceiling",
    "optimal_at_key_fraction", "headroom_captured", "headroom_captured_shared", "note",
]


def rows_from(folder: ResultFolder, cells: Optional[dict] = None) -> tuple[list, dict]:
    """``(rows, signature)`` of the finished cells in ``folder`` (or of ``cells``, its cells
    already read); pair-table cells make no row of their own (see :mod:`.ceiling_rows`)."""
    signature = folder.signature()
    mode = signature["config"]["mode"]
    metric = signature["config"].get("metric", "miou")
    planned = defaultdict(int)
    for cell in _planned(signature):
        planned[(cell.dataset, cell.policy, cell.regions, cell.budget)] += 1
    groups: dict = {}
    for payload in (folder.cells() if cells is None else cells).values():
        cell = payload["cell"]
        if cell["kind"] == "table":
            continue
        key = (cell["dataset"], cell["policy"], cell["regions"], cell["budget"])
        result = CellResult.from_json(payload["result"])
        group = groups.setdefault(key, {"cell": cell, "result": None, "clips": 0, "threshold": payload["threshold"]})
        group["result"] = result if group["result"] is None else group["result"] + result
        group["clips"] += 1
    calibrations = folder.calibrations()
    labelled = {d["name"]: d["labelled"] for d in signature["datasets"]}
    pseudo = {d["name"] for d in signature["datasets"] if d.get("spec", {}).get("kind") == PSEUDO_KIND}
    order = [d["name"] for d in signature["datasets"]]
    rows = []
    for key in sorted(groups, key=lambda k: (order.index(k[0]), k[1] != "per_frame", k[1], k[2], k[3])):
        group = groups[key]
        result: CellResult = group["result"]
        cell = group["cell"]
        # a budget arm's threshold (its starting price) is its bare arm's calibration
        policy = key[1] if group["threshold"] is None else parse_arm(key[1])[0]
        calibration = calibrations.get(f"{key[0]}__{policy}__{key[2]}__{key[3]:.4f}", {})
        row = {
            "dataset": key[0], "mode": mode, "policy": key[1], "regions": key[2],
            "kind": cell["kind"], "budget": key[3], "threshold_param": calibration.get("threshold_param"),
            "threshold": group["threshold"], "calibration_key_fraction": calibration.get("key_fraction"),
            "calibration_met": calibration.get("met"), "key_fraction": result.key_fraction,
            "accuracy": result.score(metric),
            "accuracy_metric": _metric(labelled[key[0]], key[0] in pseudo, metric),
            "agreement": _agreement(result, key[0] in pseudo),
            "fps": result.fps, "ms_per_frame": result.ms_per_frame,
            "clips": group["clips"], "clips_planned": planned.get(key, 0), "frames": result.frames,
        }
        for stage, value in result.ms.items():
            row[f"ms_{stage}"] = value / result.timed_frames if result.timed_frames else None
        rows.append(row)
    return rows, signature


def _metric(labelled: bool, pseudo: bool, metric: str = "miou") -> str:
    name = "J (region similarity, mean over objects)" if metric == "j" else "mIoU"
    if pseudo:
        return f"{name} against the model's per-frame prediction (its pseudo-labels, not ground truth)"
    return name if labelled else f"{name} against the per-frame prediction"


def _agreement(result: CellResult, pseudo: bool):
    """Share of pixels equal to the per-frame prediction: counted in model mode on unlabelled
    clips; on pseudo-labelled ones the confusion matrix's diagonal (no pixel is ignored there)."""
    if result.pixels:
        return result.agree_pixels / result.pixels
    total = int(result.confusion.sum())
    return float(np.trace(result.confusion)) / total if pseudo and total else None


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


# A test key fraction further than this from its budget is marked "!" (its
# threshold, calibrated on other clips, did not transfer).
OFF_BUDGET = 0.03
TIE = 0.005  # a gain over fixed interval within this is a tie (mIoU or J)
# Without a curve of fixed interval to read at the key fraction a row spent, its own row at the budget
# stands for it only within this: a keyframe more or less per hundred frames moves mIoU by about a TIE.
SAME_COST = 0.01


def budget_table(rows: list) -> tuple[list, list]:
    """Rows of (policy, regions) by fair budget: ``accuracy (key fraction)``; the best per budget
    among rows that kept to it marked ``*``, rows that missed it by more than :data:`OFF_BUDGET` ``!``."""
    budgets = sorted({r["budget"] for r in rows if r["kind"] == "budget"})
    series = sorted({(r["policy"], r["regions"]) for r in rows if r["kind"] == "budget"})
    by_key = {(r["policy"], r["regions"], r["budget"]): r for r in rows}
    best = {}
    for b in budgets:
        scored = [(by_key[(p, g, b)]["accuracy"], p, g) for p, g in series
                  if (p, g, b) in by_key and p not in OPTIMAL_ROWS and not math.isnan(by_key[(p, g, b)]["accuracy"])
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


def comparisons(rows: list, tolerance: float = SAME_COST) -> list:
    """Each policy's row at each fair budget against fixed interval on the same regions:
    ``(row, reference, how)``, ``reference`` fixed interval's accuracy at equal cost (``None``
    outside its curve) and ``how`` the words for how it was taken, ordered by budget, regions
    and policy.

    Thresholds are calibrated on other clips, so a policy's key fraction on the
    test clips can miss the budget; the comparison is made at the key fraction
    it really spent: on the phase-fair fixed interval's dense curve where the
    run has one (``fixed_at_key_fraction``, oracle mode: as the headroom table),
    else interpolated along fixed interval's rows (fair budgets and sweep), or,
    outside them, against its row at this budget when the row spent at most
    ``tolerance`` more than it (or up to :data:`OFF_BUDGET` fewer, a comparison
    that can only count against the policy). A row that spent 0.119 of the
    frames is not judged against a fixed interval that spent 0.090: the keys
    it spent more would count as its gain.
    """
    by_key = {(r["policy"], r["regions"], r["budget"]): r for r in rows}
    out = []
    for (policy, grid, budget), row in sorted(by_key.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        base = by_key.get(("fixed_interval", grid, budget))
        if row["kind"] != "budget" or policy == "fixed_interval" or base is None:
            continue
        spent = row["key_fraction"]
        dense = row.get("fixed_at_key_fraction")
        if isinstance(dense, (int, float)) and np.isfinite(dense):
            reference, how = dense, f"at the {spent:.3f} of the frames it spent, on fixed_interval's phase-fair curve"
        elif (along := fixed_interval_at(rows, grid, spent)) is not None:
            reference, how = along, f"at the {spent:.3f} of the frames it spent, fixed_interval interpolated there"
        elif -OFF_BUDGET <= spent - base["key_fraction"] <= tolerance:  # fewer keys: against the policy
            reference, how = base["accuracy"], f"at key fractions {spent:.3f} vs {base['key_fraction']:.3f}"
        else:
            reference = None
            how = f"it spent {spent:.3f} of the frames, outside fixed_interval's curve"
        out.append((row, reference, how))
    return out


def within_phase_luck(row: dict) -> bool:
    """Whether ``row``'s accuracy lies within the fixed interval's single phases at its key fraction
    (``fixed_phase_low`` .. ``fixed_phase_high``, see :mod:`.ceiling_rows`): a figure a fixed interval
    can show by where its first key falls alone. ``False`` where the run has no such range."""
    low, high = row.get("fixed_phase_low"), row.get("fixed_phase_high")
    return low is not None and high is not None and low <= row["accuracy"] <= high


def findings(rows: list, tolerance: float = SAME_COST) -> list:
    """Plain sentences: each policy at each fair budget against fixed interval on the same regions,
    at equal cost (:func:`comparisons`); a difference within :data:`TIE` is a tie, and a win or loss
    whose accuracy lies within the fixed interval's single phases there (``fixed_phase_low`` ..
    ``fixed_phase_high``) says so."""
    out = []
    for row, reference, how in comparisons(rows, tolerance):
        policy, grid, budget, spent = row["policy"], row["regions"], row["budget"], row["key_fraction"]
        if reference is None:
            out.append(f"budget {budget:.2f}, {grid}: {policy} spent {spent:.3f} of the frames on the test clips, "
                       f"outside fixed_interval's curve; no comparison at equal cost")
            continue
        delta = row["accuracy"] - reference
        verdict = "beats" if delta > TIE else ("trails" if delta < -TIE else "ties with")
        phases = ""
        if verdict != "ties with" and within_phase_luck(row):
            phases = (f"; within the fixed interval's single phases there ({_fmt(row['fixed_phase_low'])}.."
                      f"{_fmt(row['fixed_phase_high'])}): where its first key falls alone moves it that far")
        out.append(f"budget {budget:.2f}, {grid}: {policy} {verdict} fixed_interval "
                   f"({_fmt(row['accuracy'])} vs {_fmt(reference)}; {how}{phases})")
    return out


NOT_SCHEDULERS = (*ceiling_rows.PHASE_FAIR, *OPTIMAL_ROWS, "per_frame")  # baselines and ceilings


def at_a_glance(rows: list) -> tuple[list, list]:
    """``(header, lines)`` of one table over every data set: per data set and region grid, at each
    fair budget, the scheduling policy (baselines and the optimum left out) with the largest gain
    over fixed interval at equal cost (:func:`comparisons`), its gain and, where the run has it, the
    share of the headroom it captures (``headroom_captured``), marked ``~`` where it is no tie (more
    than :data:`TIE`) and its accuracy lies within the fixed interval's single phases
    (:func:`within_phase_luck`), as the findings say. Policies whose gains print
    the same (to 0.001) are named together, with the first one's share and mark."""
    gains: dict = {}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for row, reference, _ in comparisons([r for r in rows if r["dataset"] == dataset]):
            if row["policy"] not in NOT_SCHEDULERS and reference is not None:
                gains.setdefault((dataset, row["regions"], row["budget"]), []).append(
                    (round(row["accuracy"] - reference, 3), row))
    best = {}
    for key, found in gains.items():
        top = max(gain for gain, _ in found)
        best[key] = ([row for gain, row in found if gain == top], top)
    budgets = sorted({budget for _, _, budget in best})
    header = ["data set", "regions", *[f"budget {b:.2f}" for b in budgets]]
    lines = []
    for dataset, grid in dict.fromkeys((d, g) for d, g, _ in best):
        cells = []
        for budget in budgets:
            found = best.get((dataset, grid, budget))
            if found is None:
                cells.append("")
                continue
            tied, gain = found
            share = tied[0].get("headroom_captured")
            captured = f" ({share:.0%})" if isinstance(share, (int, float)) and np.isfinite(share) else ""
            luck = " ~" if abs(gain) > TIE and within_phase_luck(tied[0]) else ""
            cells.append(f"{', '.join(r['policy'] for r in tied)} {gain:+.3f}{captured}{luck}")
        lines.append([dataset, grid, *cells])
    return header, lines


FLOW_TEXT = {"dis": "OpenCV DIS", "model": "the model's flow network", "exact": "the generator's exact flow"}
MODE_TEXT = {
    "oracle": ("Oracle mode: key frames take the true labels; the other frames carry them along the flow "
               "({flow}). This scores the policies' choices alone, apart from any model. Speed is that of "
               "the scheduling pipeline (decision, flow, carrying labels), not of a network."),
    "model": ("Model mode: the DFF model runs under each policy. Speed is the time of the model's stages and "
              "the policy's decision per frame, decoding and drawing excluded; each clip's first frame is "
              "left out of the timings."),
}


def write(folder: ResultFolder, config_extra: Optional[dict] = None, log=logger.info) -> dict:
    """Write results.csv, results.json, pareto.png and summary.md from the finished cells; print the tables."""
    cells = folder.cells()
    rows, signature = rows_from(folder, cells)
    config = signature["config"]
    curves = ceiling_rows.apply(rows, cells, signature)
    order = [d["name"] for d in signature["datasets"]]
    rows.sort(key=lambda r: (order.index(r["dataset"]), r["policy"] != "per_frame", r["policy"], r["regions"],
                             r["budget"]))
    folder.write_csv(rows, COLUMNS)
    planned = len(_planned(signature))
    done = len(cells)
    calibrations = folder.calibrations()
    report = {"signature": signature, **(config_extra or {}), "cells_done": done, "cells_planned": planned,
              "calibration": calibrations, "rows": rows, "curves": curves}
    write_json_atomic(folder.path("results.json"), report)
    title = f"{config['mode']} mode"
    if rows:
        plot(rows, folder.path("pareto.png"), "Scheduling policies at equal key-frame budgets, " + title,
             config["mode"], curves, config.get("cost_ratio", 0.4))
    text = [
        f"# Scheduling policies compared, {title}",
        "",
        MODE_TEXT[config["mode"]].format(flow=FLOW_TEXT.get(config["flow"], config["flow"])),
        "",
        "Each policy's threshold was calibrated on a data set's calibration clips to each key-frame budget, "
        f"then scored on its separate test clips. Cells: {done} of {planned} finished.",
        "",
    ]
    glance_header, glance_lines = at_a_glance(rows)
    if glance_lines:
        text += [
            "## At a glance",
            "",
            "Per data set and region grid, at each fair budget: the scheduling policy with the largest gain over "
            f"fixed interval at the key fraction it really spent (a gain within {TIE} is a tie; a negative one: "
            "every policy trails fixed interval there, as region grids often do in oracle mode, where they are "
            "judged against whole-frame fixed interval and optimum), and in brackets "
            "the share of the headroom to the optimal schedule it captures, where the run has an optimum; "
            "~: its accuracy lies within the fixed interval's single phases there (`fixed's phases` below), "
            "a figure a fixed interval can show by where its first key falls alone. "
            "The sections below give every policy.",
            "",
            markdown_table(glance_header, glance_lines),
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
            *ceiling_rows.summary_lines(mine, curves.get(entry["name"]), config.get("window")),
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
    write_bytes_atomic(folder.path("summary.md"), "\n".join(text).encode())
    if glance_lines:
        log("")
        log("At a glance: the scheduling policy with the largest gain over fixed interval at equal cost "
            "(negative: every policy trails it; headroom captured; ~ within the fixed interval's single phases)")
        log(text_table(glance_header, glance_lines))
    log(f"\nwrote {folder.path('results.csv')}, results.json, pareto.png, summary.md ({done} of {planned} cells)")
    return report


def _planned(signature: dict):
    return plan_cells(config_of(signature), test_clips(signature))
