"""The report's rows read from the pair tables: phase-fair fixed interval and copy, the optimum, headroom.

In oracle mode each test clip has a pair-table cell (every key's labels
carried to the ``window`` frames after it, along the comparison's flow, and
copied). From a data set's tables (:mod:`adaptive_dff.compare.ceiling`):

* the ``fixed_interval`` and ``copy`` rows on whole frames (``1x1``) become
  the mean over the phases of their calibrated interval; the cells' own
  figure (phase 0) stays in ``accuracy_phase0`` / ``key_fraction_phase0``;
* the ``optimal`` arm gets two rows per budget: ``optimal`` (the data set's
  budget spread over its clips) and ``optimal_per_clip`` (every clip spends
  the same share: what a per-stream budget can reach);
* every row gets the phase-fair fixed interval's accuracy at the key fraction
  it really spent (``fixed_at_key_fraction``), and that plus the lowest and
  highest gain over it of a single phase that spends about as much
  (``fixed_phase_low``, ``fixed_phase_high``;
  :meth:`~adaptive_dff.compare.ceiling.PhaseLuck.band`): on a few short
  clips where the first key falls moves a fixed interval's figure by as much
  as a policy's gain, and a gain inside that range is one a fixed interval
  can show by its phase alone;
* every row gets ``headroom_captured`` at the key fraction it really spent,
  against the dense phase-fair fixed curve (intervals ``1..window``) and the
  optimal schedule *of the same kind* (:func:`ceiling_of`): the per-clip
  optimum (every clip the same share, traced at every count a clip can
  spend) for per-stream budgets and fixed intervals, the shared optimum
  (every number of keys, spread by knapsack) for ``@shared`` arms and bare
  thresholds. ``headroom_captured_shared``
  holds every row's figure against the shared optimum, the stricter ceiling.
  All ceilings are on whole frames (a region grid can pass them: it is a
  different, finer choice of keys). Every figure is in the configuration's
  ``metric`` (mIoU, or ``J`` from :func:`~adaptive_dff.compare.objects.j_tables`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from adaptive_dff.compare.ceiling import (
    PhaseLuck, headroom_captured, interpolate, optimal_curve, phase_fair_fixed, same_share_curve,
    same_share_fractions,
)
from adaptive_dff.compare.config import ARMS, PAIR_TABLE, parse_arm
from adaptive_dff.compare.objects import j_tables
from adaptive_dff.compare.optimal import PairTable

PHASE_FAIR = ("fixed_interval", "copy")
OPTIMAL_ROWS = ("optimal", "optimal_per_clip")


def ceiling_of(policy: str) -> str:
    """Which optimum a row is judged against: ``"per_clip"`` (every clip the same share) for
    what spends the same share of every stream (``@budget`` arms, a fixed interval, copy,
    ``optimal_per_clip``), else ``"shared"``: ``@shared`` arms, and bare thresholds, whose one
    calibrated threshold acts as one price over all clips and may spend more on some."""
    if policy == "optimal_per_clip":
        return "per_clip"
    if policy == "optimal" or (policy not in ARMS and "@" not in policy):
        return "shared"
    arm, mode = parse_arm(policy)
    # a fixed interval (the phase-fair arms) spends the same share of every clip
    return "per_clip" if mode == "budget" or (mode is None and arm in PHASE_FAIR) else "shared"


def pair_tables(cells: dict, signature: dict) -> dict:
    """``{data set: {"warp": [PairTable], "copy": [PairTable]}}`` for data sets whose test clips all have one."""
    found: dict = {}
    for payload in cells.values():
        cell = payload["cell"]
        if cell["policy"] != PAIR_TABLE:
            continue
        found.setdefault(cell["dataset"], {})[cell["clip"]] = payload["tables"]
    out = {}
    for entry in signature["datasets"]:
        mine = found.get(entry["name"], {})
        if not entry["test_clips"] or any(c not in mine for c in entry["test_clips"]):
            continue
        out[entry["name"]] = {
            propagation: [PairTable(*(np.asarray(mine[c][propagation][k], np.int64)
                                      for k in ("tp", "predicted", "truth")))
                          for c in entry["test_clips"]]
            for propagation in ("warp", "copy")}
    return out


def apply(rows: list, cells: dict, signature: dict) -> dict:
    """Update ``rows`` in place (phase-fair figures, optimal rows, headroom); return the dense
    curves per data set: ``{"optimal": [[key fraction, mIoU]], "fixed_interval": [[.., .., interval]],
    "copy": [...], "fixed_interval_phases": [[key fraction, low, high]]}`` (low and high:
    :meth:`~adaptive_dff.compare.ceiling.PhaseLuck.band`)."""
    config = signature["config"]
    budgets = _budgets(config)
    curves = {}
    for dataset, tables in pair_tables(cells, signature).items():
        metrics = {p: None for p in tables}
        if config.get("metric", "miou") == "j":
            for p in tables:
                tables[p], metrics[p] = j_tables(tables[p])
        fixed = {name: phase_fair_fixed(tables[p], metric=metrics[p])
                 for name, p in (("fixed_interval", "warp"), ("copy", "copy"))}
        mine = [r for r in rows if r["dataset"] == dataset]
        for row in mine:
            if row["policy"] in PHASE_FAIR and row["regions"] == "1x1":
                _phase_fair(row, fixed[row["policy"]])
        dense = {"fixed_interval": [[f["key_fraction"], f["accuracy"], f["interval"]] for f in fixed["fixed_interval"]],
                 "copy": [[f["key_fraction"], f["accuracy"], f["interval"]] for f in fixed["copy"]]}
        luck = PhaseLuck(fixed["fixed_interval"])
        dense["fixed_interval_phases"] = luck.curves()
        if "optimal" in (config.get("policies") or ()):
            curve, at_budget, same = optimal_curve(tables["warp"], [b for b, _ in budgets],
                                                   same_fractions=same_share_fractions(tables["warp"]),
                                                   metric=metrics["warp"])
            dense["optimal"] = [[p.key_fraction, p.accuracy] for p in curve]
            dense["optimal_per_clip"] = [list(p) for p in same_share_curve(same)]
            template = dict(mine[0]) if mine else {"dataset": dataset, "mode": "oracle"}
            for budget, kind in budgets:
                for policy, point in (("optimal", at_budget[budget]), ("optimal_per_clip", same[budget])):
                    row = {k: None for k in template}
                    per_clip = [len(s) for s in point.schedules]
                    row.update(dataset=dataset, mode=config["mode"], policy=policy, regions="1x1", kind=kind,
                               budget=budget, key_fraction=point.key_fraction, accuracy=point.accuracy,
                               accuracy_metric=template.get("accuracy_metric"), clips=len(per_clip),
                               clips_planned=len(per_clip), frames=point.frames,
                               note=_note(policy, point, budget, per_clip))
                    rows.append(row)
                    mine.append(row)
        fixed_curve = [(x, y) for x, y, _ in dense["fixed_interval"]]
        ceilings = {kind: [(x, y) for x, y in dense.get(name, [])]
                    for kind, name in (("shared", "optimal"), ("per_clip", "optimal_per_clip"))}
        for row in mine:
            kf, acc = row.get("key_fraction"), row.get("accuracy")
            if kf is None or acc is None or not np.isfinite(kf) or not np.isfinite(acc):
                continue
            row["fixed_at_key_fraction"] = interpolate(fixed_curve, kf)
            row["fixed_phase_low"], row["fixed_phase_high"] = luck.band(kf) or (None, None)
            if not ceilings["shared"]:
                continue
            kind = ceiling_of(row["policy"])
            row["ceiling"] = kind
            row["optimal_at_key_fraction"] = interpolate(ceilings[kind], kf)
            row["headroom_captured"] = headroom_captured(acc, kf, fixed_curve, ceilings[kind])
            row["headroom_captured_shared"] = headroom_captured(acc, kf, fixed_curve, ceilings["shared"])
        curves[dataset] = dense
    return curves


def _budgets(config: dict) -> list:
    from adaptive_dff.compare.planning import config_of

    return config_of({"config": config}).all_budgets()


def _phase_fair(row: dict, fixed: list) -> None:
    interval = row.get("threshold")
    row["accuracy_phase0"], row["key_fraction_phase0"] = row["accuracy"], row["key_fraction"]
    if interval is None or not 1 <= int(interval) <= len(fixed):
        row["phase_fair"] = False
        row["note"] = f"interval {interval} beyond the window {len(fixed)}: phase 0 only"
        return
    entry = fixed[int(interval) - 1]
    # The pixel agreement counted is phase 0's: dropped rather than shown beside phase-fair figures.
    row.update(accuracy=entry["accuracy"], key_fraction=entry["key_fraction"], phase_fair=True, agreement=None)


def _note(policy: str, point, budget: float, per_clip: list) -> Optional[str]:
    if policy == "optimal":
        return f"{point.keys} keys over {point.frames} frames (nearest to {budget:.2f}), spread by knapsack: {per_clip}"
    return f"keys per clip {per_clip}: the nearest each clip can spend to {budget:.2f} of its frames"


def _fmt(value, digits=3) -> str:
    return "-" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def _phases(row: dict) -> str:
    low, high = row.get("fixed_phase_low"), row.get("fixed_phase_high")
    return "-" if low is None or high is None else f"{_fmt(low)}..{_fmt(high)}"


def summary_lines(rows: list, curves: Optional[dict], window: Optional[int]) -> list:
    """Markdown lines for ``summary.md``: the headroom table of one data set (empty without pair tables)."""
    if not curves:
        return []
    lines = [
        "Headroom at the fair budgets: each row against the fixed interval (phase-fair: the mean over "
        f"where its first key falls; every interval 1..{window + 1 if window else window}) and the optimal "
        "schedule of the same kind: `per_clip` (every clip spends the same share: the ceiling of a "
        "per-stream budget, `@budget`, and of a fixed interval) or `shared` (the data set's keys spread over "
        "its clips by knapsack: the ceiling of an `@shared` arm and of a bare threshold, which spends more on "
        "some clips), both on whole frames (a region grid may pass them) and "
        "interpolated at the key fraction the row really spent. Headroom "
        "captured = (row - fixed) / (optimal - fixed); the last column is against the shared optimum for "
        "every row. `fixed_interval` and `copy` on 1x1 are phase-fair "
        "(their phase-0 figures are in results.csv); `optimal` spreads the data set's budget over its clips, "
        "`optimal_per_clip` gives every clip the same share. `fixed's phases` adds to `fixed there` the lowest and "
        "highest gain a fixed interval shows with its first key at a single phase, among the phases that spend "
        "about as much (each phase judged at the key fraction it spent): an accuracy inside that range is one a "
        "fixed interval can show by where its first key falls alone.",
        "",
        "| policy | regions | budget | key fraction | accuracy | fixed there | fixed's phases | ceiling "
        "| optimal there | headroom captured | against shared |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.get("kind") != "budget":
            continue
        lines.append(f"| {row['policy']} | {row['regions']} | {row['budget']:.2f} | {_fmt(row['key_fraction'])} | "
                     f"{_fmt(row['accuracy'])} | {_fmt(row.get('fixed_at_key_fraction'))} | {_phases(row)} | "
                     f"{row.get('ceiling') or '-'} | {_fmt(row.get('optimal_at_key_fraction'))} | "
                     f"{_fmt(row.get('headroom_captured'), 2)} | {_fmt(row.get('headroom_captured_shared'), 2)} |")
    notes = [f"- {row['policy']} {row['budget']:.2f}: {row['note']}" for row in rows
             if row.get("note") and row.get("kind") == "budget"]
    return lines + [""] + notes + ([""] if notes else [])
