"""Replay a compare run's propagation-quality budget arms on its stored pair signals, in seconds.

``compare`` in oracle mode keeps, beside each test clip's pair table, the
quality signals of every (key, frame) pair, computed along the same flow, frame
after frame since the key, as the policy computes them (``cells/*.signals.npz``,
:class:`adaptive_dff.compare.optimal.PairSignals`). ``PropagationQuality`` on
whole frames, under a per-stream ``KeyBudget`` or one ``SharedBudget`` over the
test clips side by side, reads nothing else, so replayed from those signals
with the run's starting prices it places the keys ``compare`` placed, and the
pair tables score them. This replays the arms ``propagation_quality@budget``,
``propagation_quality@shared`` and their ``propagation_quality_hindsight``
twins with the run's predictor, or another (``--quality-model``) or another
rule (``--rule``): a predictor or rule judged under the online price in
seconds, without running ``compare`` again.

Exact where the keys stay within the run's window (``compare --window``,
default 30) of each other: the pair tables carry no farther, so the replay keys
a frame that far from its key, and the row says how many keys fell there
(``at window``); none, and the keys are those ``compare`` placed.

    python -m adaptive_dff.bench.replay runs/compare-...
    python -m adaptive_dff.bench.replay runs/compare-... --quality-model runs/quality/quality.json --rule hindsight
    python -m adaptive_dff.bench.replay runs/compare-... --arm propagation_quality@shared
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

import numpy as np

from adaptive_dff.compare.ceiling import (
    headroom_captured, interpolate, optimal_curve, phase_fair_fixed, same_share_curve, same_share_fractions, score,
)
from adaptive_dff.compare.config import QUALITY_ARMS as ARMS  # the arms replayed, and each one's rule
from schedulers import KeyBudget, PropagationQuality, SharedBudget
from schedulers.base import Context

logger = logging.getLogger(__name__)
REPLAYED = tuple(f"{arm}@{mode}" for arm in ARMS for mode in ("budget", "shared"))  # the arms --arm takes


class StoredQuality(PropagationQuality):
    """``PropagationQuality`` whose predicted quality of a frame is read from a table
    (:func:`adaptive_dff.bench.online_bound.pair_qualities`) by its key and distance instead of computed from the frames; every rule
    and its state are ``PropagationQuality``'s own. Past the table's window the quality is unknown
    (NaN), so the region is keyed."""

    def __init__(self, table: np.ndarray, threshold: float = 1.0, rule: str = "renewal", monotone: bool = True):
        super().__init__(predictor=_NoPredictor(), threshold=threshold, rule=rule, monotone=monotone)
        self.table = table

    def quality(self, context: Context) -> np.ndarray:
        key, frame = int(context.key_indices[0]), int(context.frame_index)
        d = frame - key
        if d >= self.table.shape[1]:
            return np.array([np.nan])
        return np.array([self.table[key, d]])


class _NoPredictor:
    """Stands in for the predictor :class:`StoredQuality` never asks."""

    signal_names: tuple = ()

    def predict(self, X):  # pragma: no cover - StoredQuality reads its table instead
        raise AssertionError("StoredQuality reads its table; the predictor is never asked")


def fits_window(budget: float, width: int) -> bool:
    """Whether a budget's keys stay within pair tables ``width`` wide (``window + 1``): ``budget``
    at least ``1 / width``, so that a key never falls due past the tables' window."""
    return not budget < 1 / width


def _check_window(budget: float, width: int) -> None:
    if not fits_window(budget, width):
        raise ValueError(f"budget {budget:g} is below 1 / {width}: keys that far apart pass the pair tables' "
                         f"window ({width - 1} frames), which is all a replay can score")


def _at_window(keys: Sequence[int], width: int) -> int:
    return int(np.sum(np.diff(keys) >= width))


_NO_PIXELS = [np.zeros((1, 1, 3), np.uint8)]  # StoredQuality reads key and frame indices alone


def _decide(policy, t: int, keys: list) -> None:
    """Ask ``policy`` about frame ``t`` of a whole-frame clip whose keys so far are ``keys``; a key is appended."""
    context = Context(frame_index=t, regions=_NO_PIXELS, key_regions=_NO_PIXELS, key_indices=[keys[-1]])
    if policy.decide(context).update.any():
        keys.append(t)


def replay_clip(table: np.ndarray, budget: float, price: Optional[float], rule: str) -> tuple[list, int]:
    """``(keys, at_window)``: the key frames ``KeyBudget(StoredQuality(table, rule=rule), target=budget,
    price=price)`` places on one clip (``price`` dropped for ``rule="greedy"``, whose scores are no cost), frame 0 a key, and how many fell at the table's end: the
    budget takes ``max_interval`` = the table's width (``window + 1``), as the pair tables carry no
    farther, where ``compare``'s policy has no such bound; where none falls there the keys are
    ``compare``'s."""
    width = table.shape[1]
    _check_window(budget, width)
    policy = StoredQuality(table, rule=rule)  # a rule whose scores are no cost takes the rank rule: no price
    budgeted = KeyBudget(policy, target=budget, price=price if policy.score_is_cost else None, max_interval=width)
    keys = [0]
    for t in range(1, table.shape[0]):
        _decide(budgeted, t, keys)
    return keys, _at_window(keys, width)


def replay_shared(tables: Sequence[np.ndarray], budget: float, price: Optional[float],
                  rule: str) -> tuple[list, int]:
    """``(schedules, at_window)``: per clip, the key frames one ``SharedBudget(StoredQuality,
    target=budget, price=price)`` places over the clips run side by side as ``compare``'s
    ``@shared`` arm runs them (every clip's stream opened first, then frame by frame, each clip in
    turn, each until its own end), and how many keys fell at the tables' end (``max_interval`` =
    the narrowest table's width, as :func:`replay_clip`). ``tables``: per clip, in the run's order,
    the predicted quality of each (key, distance)."""
    tables = list(tables)
    if not tables:
        raise ValueError("replay_shared needs at least one clip's table")
    width = min(t.shape[1] for t in tables)
    _check_window(budget, width)
    policies = [StoredQuality(table, rule=rule) for table in tables]
    made = iter(policies)  # SharedBudget makes each stream's policy in the order the streams open
    shared = SharedBudget(lambda: next(made), target=budget,
                          price=price if policies[0].score_is_cost else None, max_interval=width)
    streams = [shared.stream(f"clip{i}") for i in range(len(tables))]
    schedules = [[0] for _ in tables]
    for t in range(1, max(table.shape[0] for table in tables)):
        for stream, table, keys in zip(streams, tables, schedules):
            if t < table.shape[0]:
                _decide(stream, t, keys)
    return schedules, sum(_at_window(keys, width) for keys in schedules)


def replay(folder, signature: dict, dataset: str, tables: Sequence, arm: str, budgets: Sequence[float],
           predictor, rule: str, metric: str = "miou") -> list:
    """Per budget: ``{"budget", "key_fraction", "accuracy", "gain", "headroom_captured", "at_window",
    "compare"}`` of ``arm`` (``<quality arm>@budget``, each clip under its own ``KeyBudget``, or
    ``<quality arm>@shared``, the test clips side by side under one ``SharedBudget``) replayed on
    ``dataset``'s test clips with ``predictor`` and ``rule``, from the starting price the run's cell
    (each clip's, or the budget's one shared cell) started from (``gain`` over the phase-fair fixed
    interval at the key fraction spent, headroom against the optimum of the arm's kind: per clip for
    ``@budget``, spread over the clips for ``@shared``, as ``compare`` reports them); ``compare``:
    the run's own row of ``arm`` there (its ``key_fraction`` and ``accuracy`` among others; ``None``
    where it has none). ``ValueError`` naming what is missing."""
    from adaptive_dff.bench.online_bound import benchmark_scoring, pair_qualities, stored_signals
    from adaptive_dff.compare.config import SHARED_CLIP, parse_arm
    from adaptive_dff.compare.planning import Cell

    shared = parse_arm(arm)[1] == "shared"

    qualities = []
    for clip, signals in stored_signals(folder, signature, dataset).items():
        if signals is None:
            raise ValueError(f"{dataset} clip {clip!r} has no stored pair signals; a compare run of this version "
                             "in oracle mode with optimal, fixed_interval or copy keeps them")
        qualities.append((clip, pair_qualities(signals, predictor)))
    cells = folder.cells()
    own = _compare_rows(folder)
    tables, scoring = benchmark_scoring(tables, metric)
    fixed = [(f["key_fraction"], f["accuracy"]) for f in phase_fair_fixed(tables, metric=scoring)]
    curve, _, same = optimal_curve(tables, list(budgets), same_fractions=same_share_fractions(tables),
                                   metric=scoring)
    ceiling = [(p.key_fraction, p.accuracy) for p in curve] if shared else same_share_curve(same)
    frames = sum(t.frames for t in tables)
    out = []

    def starting_price(budget, clip):
        cell = cells.get(Cell(dataset, arm, "1x1", budget, "budget", clip).ident)
        if cell is None:
            where = "" if clip == SHARED_CLIP else f" on {dataset} clip {clip!r}"
            raise ValueError(f"the run has no cell of {arm} at budget {budget:g}{where}; replay the budgets it ran")
        return cell.get("starting_price")

    for budget in budgets:
        if shared:
            schedules, at_window = replay_shared([quality for _, quality in qualities], budget,
                                                 starting_price(budget, SHARED_CLIP), rule)
        else:
            schedules, at_window = [], 0
            for clip, quality in qualities:
                keys, extra = replay_clip(quality, budget, starting_price(budget, clip), rule)
                schedules.append(keys)
                at_window += extra
        key_fraction = sum(len(s) for s in schedules) / frames
        accuracy = score(tables, schedules, scoring)
        low = interpolate(fixed, key_fraction)
        out.append({"budget": budget, "key_fraction": key_fraction, "accuracy": accuracy,
                    "gain": None if low is None else accuracy - low,
                    "headroom_captured": headroom_captured(accuracy, key_fraction, fixed, ceiling),
                    "at_window": at_window,
                    "compare": next((r for r in own if (r["dataset"], r["policy"], r["regions"]) == (dataset, arm, "1x1")
                                     and abs(r["budget"] - budget) < 1e-9), None)})
    return out


def _compare_rows(folder) -> list:
    """The run's own rows (results.json), or none where it wrote no results yet."""
    import json

    path = folder.path("results.json")
    if not os.path.isfile(path):
        return []
    with open(path) as handle:
        return json.load(handle).get("rows", [])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a compare run folder (oracle mode, with a propagation-quality @budget or "
                                    "@shared arm on 1x1 and optimal, fixed_interval or copy)")
    parser.add_argument("--arm", default="propagation_quality@budget",
                        help=f"the arm replayed, whose cells give the starting prices: {', '.join(REPLAYED)} "
                             "(default propagation_quality@budget)")
    parser.add_argument("--rule", default=None, help="renewal, hindsight or greedy (default: the arm's own)")
    parser.add_argument("--quality-model", default=None, metavar="FILE",
                        help="a quality predictor of adaptive-dff train quality (default: the shipped one the "
                             "arm ran on, which reads the key labels)")
    parser.add_argument("--budgets", nargs="+", type=float, default=None,
                        help="budgets to replay (default: the run's fair budgets)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    from adaptive_dff.bench.online_bound import open_run
    from adaptive_dff.compare.config import parse_arm
    from schedulers.quality import RULES
    from schedulers.quality_predictor import load_default_quality, load_quality_predictor

    try:
        arm, mode = parse_arm(args.arm)
    except ValueError as error:
        parser.error(str(error))
    if arm not in ARMS or mode not in ("budget", "shared"):
        parser.error(f"--arm must be one of {', '.join(REPLAYED)}, got {args.arm!r}")
    rule = ARMS[arm] if args.rule is None else args.rule
    if rule not in RULES:
        parser.error(f"--rule must be one of {RULES}, got {rule!r}")
    folder, signature, found = open_run(parser, args.run)
    config = signature["config"]
    if args.arm not in config.get("policies", []) or "1x1" not in config.get("regions", []):
        parser.error(f"{args.run!r} did not run {args.arm} on 1x1 (its policies: {' '.join(config.get('policies', []))})")
    budgets = args.budgets or list(config.get("budgets", []))
    try:
        predictor = (load_quality_predictor(args.quality_model) if args.quality_model
                     else load_default_quality(key_labels=True))
    except (OSError, ValueError) as error:
        parser.error(f"--quality-model: {error}")
    logger.info(f"{args.arm} replayed on the stored pair signals: rule {rule}, predictor "
                f"{args.quality_model or 'shipped (key labels)'}; gain over the phase-fair fixed interval at the key "
                f"fraction spent, headroom captured against the {'shared' if mode == 'shared' else 'per-clip'} "
                "optimum; compare: the run's own figures")
    for dataset, tables in found.items():
        try:
            rows = replay(folder, signature, dataset, tables["warp"], f"{arm}@{mode}", budgets, predictor, rule,
                          config.get("metric", "miou"))
        except ValueError as error:
            parser.error(str(error))
        logger.info("")
        logger.info(f"{dataset}:")
        logger.info(f"{'budget':>6} {'keys':>6} {'accuracy':>8} {'gain':>7} {'headroom':>8}  {'compare':>15}  at window")
        for row in rows:
            gain = "-" if row["gain"] is None else f"{row['gain']:+7.4f}"
            share = row["headroom_captured"]
            own = row["compare"]
            theirs = "-" if own is None else f"{own['key_fraction']:.3f} {own['accuracy']:.4f}"
            logger.info(f"{row['budget']:6.2f} {row['key_fraction']:6.3f} {row['accuracy']:8.4f} {gain:>7} "
                        f"{'-' if share is None else f'{share * 100:7.0f}%':>8}  {theirs:>15}  {row['at_window']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
