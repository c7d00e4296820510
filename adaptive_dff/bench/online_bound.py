"""How much of the headroom could the renewal rule reach online, if it knew the true loss?

``compare``'s ``optimal`` arm places keys knowing the whole clip. A policy
decides at each frame from the frames seen so far. This bounds what
``PropagationQuality``'s decision rule could reach on a compare run's test
clips when fed the *true* loss instead of a predicted one: the gap between a
policy and this bound is the predictor's (and the online price's) to close;
the gap between the bound and the optimum no better predictor of that loss
closes with this rule.

The loss is read from the run's pair tables
(:class:`adaptive_dff.compare.optimal.PairTable`), in the benchmark's own
units: the data set's mIoU linearised at the phase-0 fixed interval of each
budget (:func:`adaptive_dff.compare.optimal.linear_weights`), so ``v[k, d]``
is the value of frame ``k + d`` carried from the key ``k``, and carrying
instead of recomputing loses ``L_d = v[k + d, 0] - v[k, d]`` on that frame.
The rule (:func:`renewal_schedule`) keys a frame when ``d * L_d - sum_{i<d}
L_i`` (losses since the key, kept non-decreasing) reaches a price.

Rows per budget: ``renewal`` (each clip's price found with hindsight, by
bisection, to spend the clip's share of the budget,
:func:`adaptive_dff.compare.ceiling.clip_targets`), ``renewal, one price``
(one price for all clips, spending the data set's share), ``renewal, pixel
loss`` (each clip's price; the loss counted in pixels, as a predictor of pixel
accuracy counts it, instead of the benchmark's units), and
``optimal_per_clip``. Bounds on the rule, not policies: the price is known
in hindsight. Headroom captured is against the phase-fair fixed interval and
the per-clip optimum, as in ``compare``.

Run on a compare run made in oracle mode with an arm read from the pair
tables (``optimal``, ``fixed_interval`` or ``copy``)::

    python -m adaptive_dff.bench.online_bound runs/compare-... --budgets 0.1 0.2 0.33
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Callable, Sequence

import numpy as np

from adaptive_dff.compare.ceiling import (
    clip_targets, headroom_captured, interpolate, optimal_curve, phase_fair_fixed, same_share_curve,
    same_share_fractions, score,
)
from adaptive_dff.compare.optimal import PairTable, fixed_schedule, linear_weights, pair_values

logger = logging.getLogger(__name__)
BISECTIONS = 48


def carried_losses(values: np.ndarray, key: int) -> np.ndarray:
    """``[L_1 .. L_n]``: the value lost on frames ``key + d`` by carrying the key instead of
    recomputing (``values`` from :func:`~adaptive_dff.compare.optimal.pair_values`), up to the
    window or the clip's end."""
    T, width = values.shape
    d = np.arange(1, min(width, T - key))
    return values[key + d, 0] - values[key, d]


def renewal_schedule(values: np.ndarray, price: float) -> list:
    """Key frames of the renewal rule fed the true losses: a key at ``key + d`` when
    ``d * L_d - sum_{i<d} L_i >= price`` (``L`` kept non-decreasing), or when the window ends."""
    T, width = values.shape
    keys, key = [0], 0
    losses = np.maximum.accumulate(carried_losses(values, 0))
    for t in range(1, T):
        d = t - key
        if d >= width or d * losses[d - 1] - losses[: d - 1].sum() >= price:
            keys.append(t)
            key = t
            losses = np.maximum.accumulate(carried_losses(values, key))
    return keys


def priced(rule: Callable[[float], list], target: int) -> list:
    """The schedule of ``rule(price)`` whose number of keys is nearest ``target``, the price
    bisected on a log scale (more keys at a lower price)."""
    return priced_together([rule], target)[0]


def priced_together(rules: Sequence[Callable[[float], list]], target: int) -> list:
    """One price for all ``rules`` (one per clip), the one whose keys in all are nearest ``target``:
    the schedules."""
    def run(price):
        return [rule(price) for rule in rules]

    low, high = 1e-9, 1e6
    best = run(high)
    for _ in range(BISECTIONS):
        price = float(np.sqrt(low * high))
        schedules = run(price)
        keys = sum(len(s) for s in schedules)
        if abs(keys - target) < abs(sum(len(s) for s in best) - target):
            best = schedules
        if keys == target:
            return schedules
        low, high = (price, high) if keys > target else (low, price)
    return best


def bounds(tables: Sequence[PairTable], budgets: Sequence[float]) -> list:
    """Per budget and rule: ``{"budget", "rule", "key_fraction", "accuracy", "gain", "headroom_captured"}``
    (gain over the phase-fair fixed interval at the key fraction spent; headroom against the per-clip
    optimum; ``None`` where the key fraction lies outside those curves). Rules: ``renewal`` (a price
    per clip), ``renewal, one price`` (one price for all clips), ``renewal, pixel loss`` (the loss
    counted in pixels, not in the benchmark's units) and ``optimal_per_clip``."""
    tables = list(tables)
    frames = sum(t.frames for t in tables)
    truth = sum(t.truth.sum(axis=0) for t in tables)
    fixed = [(f["key_fraction"], f["accuracy"]) for f in phase_fair_fixed(tables)]
    _, _, same = optimal_curve(tables, list(budgets), same_fractions=same_share_fractions(tables[0].window))
    ceiling = same_share_curve(same)
    classes = truth.shape[0]
    pixels = [pair_values(t, np.ones(classes), np.zeros(classes)) for t in tables]
    out = []

    def row(budget, name, schedules):
        kf = sum(len(s) for s in schedules) / frames
        accuracy = score(tables, schedules)
        low = interpolate(fixed, kf)
        return {"budget": budget, "rule": name, "key_fraction": kf, "accuracy": accuracy,
                "gain": None if low is None else accuracy - low,
                "headroom_captured": headroom_captured(accuracy, kf, fixed, ceiling)}

    for budget in budgets:
        interval = int(min(max(round(1 / budget), 1), tables[0].window + 1))
        counts = [t.counts(fixed_schedule(t.frames, interval)) for t in tables]
        a, b = linear_weights(sum(c[0] for c in counts), sum(c[1] for c in counts), truth)
        values = [pair_values(t, a, b) for t in tables]
        targets = clip_targets(tables, budget)

        def renewal(v):
            return lambda price: renewal_schedule(v, price)

        out.append(row(budget, "renewal", [priced(renewal(v), n) for v, n in zip(values, targets)]))
        out.append(row(budget, "renewal, one price", priced_together([renewal(v) for v in values], sum(targets))))
        out.append(row(budget, "renewal, pixel loss", [priced(renewal(v), n) for v, n in zip(pixels, targets)]))
        out.append(row(budget, "optimal_per_clip", same[budget].schedules))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a compare run folder (oracle mode, with optimal, fixed_interval or copy)")
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.1, 0.2])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from adaptive_dff.compare import ceiling_rows
    from adaptive_dff.compare.store import ResultFolder

    if not os.path.isdir(args.run):
        parser.error(f"{args.run!r} is no folder")
    if any(not 0 < b <= 1 for b in args.budgets):
        parser.error(f"budgets must be key-frame fractions in (0, 1], got {args.budgets}")
    folder = ResultFolder(args.run)
    found = ceiling_rows.pair_tables(folder.cells(), folder.signature())
    if not found:
        parser.error(f"{args.run!r} holds no data set whose test clips all have pair tables "
                     "(run compare in oracle mode with optimal, fixed_interval or copy)")
    for dataset, tables in found.items():
        logger.info(f"{dataset}: the renewal rule fed the true loss, its price found in hindsight")
        logger.info(f"{'budget':>6}  {'rule':<20} {'keys':>6} {'accuracy':>8} {'gain':>7} {'headroom':>8}")
        for row in bounds(tables["warp"], args.budgets):
            share = row["headroom_captured"]
            gain = "-" if row["gain"] is None else f"{row['gain']:+7.4f}"
            logger.info(f"{row['budget']:6.2f}  {row['rule']:<20} {row['key_fraction']:6.3f} {row['accuracy']:8.4f} "
                        f"{gain:>7} {'-' if share is None else f'{share * 100:7.0f}%':>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
