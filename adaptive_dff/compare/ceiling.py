"""A data set's dense curves from its pair tables: the optimum, the phase-fair fixed interval, headroom.

All three read the clips' :class:`~adaptive_dff.compare.optimal.PairTable`
only (no flow is computed here), and every accuracy is, as in every compare
row, the mIoU of the confusion summed over the data set's clips
(:class:`MeanIoU`, the default ``metric``) or, given ``metric`` and tables
from :func:`adaptive_dff.compare.objects.j_tables`, the region similarity
``J``.

* :func:`optimal_curve`: for every total number of keys ``N`` the search
  reached, the best schedule found (module :mod:`~adaptive_dff.compare.optimal`
  says how), spread over clips by a knapsack (the ceiling of a budget shared
  by the clips); and the best when every clip spends the same share, at the
  budgets and, as a dense curve, at every fixed interval's share (the ceiling
  of a budget held per stream); :func:`same_budget` one such point.
* :func:`phase_fair_fixed`: a fixed interval ``l`` for ``l = 1..window + 1``, as
  the mean over its ``l`` phases (where its first key after frame 0 falls:
  frame ``1..l``; frame 0 is always a key). With short clips a fixed
  interval's accuracy depends on that phase; Deep Feature Flow's evaluation
  averages over it too.
* :func:`headroom_captured`: ``(policy - fixed) / (optimal - fixed)``, both
  curves interpolated linearly at the key fraction the policy really spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from adaptive_dff.compare.optimal import (
    EXACT_LIMIT, PairTable, clip_curve, fixed_schedule, knapsack, linear_weights, miou, pair_values,
)

REFINEMENTS = 2  # re-linearisations around the best schedule found at each budget


@dataclass
class Point:
    """One schedule of a data set: ``keys`` key frames over ``frames`` frames, its accuracy (mIoU or J),
    and (where kept) the key frames per clip."""

    keys: int
    frames: int
    accuracy: float
    schedules: Optional[list] = None

    @property
    def key_fraction(self) -> float:
        return self.keys / self.frames


def _totals(tables: Sequence[PairTable]) -> np.ndarray:
    return sum(t.truth.sum(axis=0) for t in tables)


class MeanIoU:
    """The mIoU of the confusion summed over ``tables``' clips, from summed ``(tp, predicted)``;
    ``weights``: its gradient there (the search's additive proxy). Not ``linear``: the search
    re-linearises around several schedules."""

    linear = False  # a metric whose weights are the same everywhere is searched once

    def __init__(self, tables: Sequence[PairTable]):
        self.truth = _totals(tables)

    def score(self, tp: np.ndarray, predicted: np.ndarray) -> float:
        return miou(tp, predicted, self.truth)

    def weights(self, tp: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return linear_weights(tp, predicted, self.truth)


def score(tables: Sequence[PairTable], schedules: Sequence[Sequence[int]], metric=None) -> float:
    """The data set's accuracy (``metric``, default :class:`MeanIoU`) when clip ``c`` has the key
    frames ``schedules[c]``."""
    tp, predicted = (sum(parts) for parts in zip(*(t.counts(s) for t, s in zip(tables, schedules))))
    return (metric or MeanIoU(tables)).score(tp, predicted)


def _feasible(table: PairTable, n: int) -> int:
    low = -(-table.frames // (table.window + 1))
    return int(min(max(n, low), table.frames))


def clip_targets(tables: Sequence[PairTable], fraction: float) -> list:
    """Per clip the number of keys nearest to ``fraction`` of its frames that it can spend."""
    return [_feasible(t, int(round(fraction * t.frames))) for t in tables]


class _Search:
    """Candidates per total number of keys, each kept only if its real accuracy is the best yet."""

    def __init__(self, tables, exact_limit, splits=(), metric=None):
        self.tables, self.exact_limit = tables, exact_limit
        self.metric = metric or MeanIoU(tables)
        self.frames = sum(t.frames for t in tables)
        self.best: dict = {}  # N -> (accuracy, schedules or a callable giving them)
        self.same: dict = {}  # tuple of per-clip n -> (accuracy, schedules)
        self.splits = set(splits)  # the per-clip counts whose best schedules are kept in ``same``

    def consider(self, accuracy, total, schedules, split=None):
        if total not in self.best or accuracy > self.best[total][0]:
            self.best[total] = (accuracy, schedules)
        if split is not None and (split not in self.same or accuracy > self.same[split][0]):
            self.same[split] = (accuracy, schedules)

    def around(self, tp, predicted, targets=(), splits=(), dense=()):
        """Search with the proxy linearised at the totals ``(tp, predicted)``; per-clip counts
        ``splits`` are searched for (a long clip's relaxation aims at them), ``dense`` ones only
        read off the clips' curves."""
        a, b = self.metric.weights(tp, predicted)
        curves = []
        for c, table in enumerate(self.tables):
            wanted = sorted({n[c] for n in splits} | {max(1, round(N * table.frames / self.frames)) for N in targets})
            curves.append(clip_curve(table, pair_values(table, a, b), wanted, self.exact_limit))
        for total, split in knapsack([c.value for c in curves]).items():
            tp = sum(c.tp[n] for c, n in zip(curves, split))
            predicted = sum(c.predicted[n] for c, n in zip(curves, split))
            split = tuple(split)
            self.consider(self.metric.score(tp, predicted), total,
                          _Lazy(curves, split), split if split in self.splits else None)
        for split in list(splits) + list(dense):
            chosen = [n if n in c.value else min(c.value, key=lambda m: (abs(m - n), m))
                      for c, n in zip(curves, split)]
            tp = sum(c.tp[n] for c, n in zip(curves, chosen))
            predicted = sum(c.predicted[n] for c, n in zip(curves, chosen))
            self.consider(self.metric.score(tp, predicted), sum(chosen), _Lazy(curves, chosen), tuple(chosen))

    def schedules(self, total) -> list:
        found = self.best[total][1]
        return found() if callable(found) else found


class _Lazy:
    """Key frames of a knapsack split, backtracked only when asked for."""

    def __init__(self, curves, split):
        self.curves, self.split = curves, list(split)

    def __call__(self) -> list:
        return [c.keys(n) for c, n in zip(self.curves, self.split)]


def optimal_curve(
    tables: Sequence[PairTable], fractions: Sequence[float] = (), *, same_fractions: Sequence[float] = (),
    exact_limit: int = EXACT_LIMIT, metric=None,
) -> tuple[list, dict, dict]:
    """The ceiling of a data set.

    Returns ``(curve, budget_points, same_budget_points)``: ``curve`` a list of
    :class:`Point` for every total number of keys reached (no schedules kept);
    per fraction in ``fractions``: the best :class:`Point` for the data set's
    budget (the nearest reachable total); per fraction in ``fractions`` and
    ``same_fractions``: the best :class:`Point` when every clip spends the same
    share (:func:`clip_targets`), schedules kept. Only the points of
    ``fractions`` are refined around the best schedule found; those of
    ``same_fractions`` come from the search's first linearisations (a dense
    curve at a fraction of the cost: each point is a real schedule's score,
    possibly a little below the best). ``metric``: see the module notes.
    """
    window = tables[0].window
    splits = [tuple(clip_targets(tables, f)) for f in fractions]
    dense_splits = [tuple(clip_targets(tables, f)) for f in same_fractions]
    search = _Search(list(tables), exact_limit, splits + dense_splits, metric)
    targets = [int(round(f * search.frames)) for f in fractions]
    dense_only = list(dict.fromkeys(s for s in dense_splits if s not in splits))
    # fixed intervals at every phase: candidates and references
    references = []
    for interval in range(1, window + 2):
        for first in range(1, interval + 1):
            schedules = [fixed_schedule(t.frames, interval, first) for t in tables]
            counts = [t.counts(s) for t, s in zip(tables, schedules)]
            tp, predicted = sum(c[0] for c in counts), sum(c[1] for c in counts)
            split = tuple(len(s) for s in schedules)
            search.consider(search.metric.score(tp, predicted), sum(split), schedules,
                            split if split in search.splits else None)
            if first == interval and interval in (1, 2, 3, 5, 8, 13, 21, window):
                references.append((tp, predicted))
    # A linear metric's proxy is the metric itself, the same around any schedule: one search is exact.
    for tp, predicted in references[:1] if search.metric.linear else references:
        search.around(tp, predicted, targets, splits, dense_only)
    for _ in range(0 if search.metric.linear else REFINEMENTS):
        for target, split in zip(targets, splits):
            for chosen in ([search.schedules(_nearest(search.best, target))],
                           [search.same[split][1]] if split in search.same else []):
                for schedules in chosen:
                    schedules = schedules() if callable(schedules) else schedules
                    counts = [t.counts(s) for t, s in zip(tables, schedules)]
                    search.around(sum(c[0] for c in counts), sum(c[1] for c in counts), [target], [split])
    curve = [Point(n, search.frames, acc) for n, (acc, _) in sorted(search.best.items())]
    budget = {}
    same = {}
    for fraction, target in zip(fractions, targets):
        total = _nearest(search.best, target)
        budget[fraction] = Point(total, search.frames, search.best[total][0], search.schedules(total))
    for fraction, split in zip(list(same_fractions) + list(fractions), dense_splits + splits):
        found = search.same.get(split) or min(search.same.items(), key=lambda kv: abs(sum(kv[0]) - sum(split)))[1]
        schedules = found[1]() if callable(found[1]) else found[1]
        same[fraction] = Point(sum(len(s) for s in schedules), search.frames, found[0], schedules)
    return curve, budget, same


def same_share_fractions(tables: Sequence[PairTable]) -> list:
    """The shares a dense per-stream ceiling is traced at: every ``n / T`` of every clip (``T``
    frames) from ``1 / (window + 1)`` (the phase-fair fixed curve's own span) to 1, so that the
    curve passes through every count each clip can spend."""
    low = 1.0 / (tables[0].window + 1) - 1e-12
    return sorted({n / t.frames for t in tables for n in range(1, t.frames + 1) if n / t.frames >= low})


def same_share_curve(same: dict) -> list:
    """``[(key fraction, accuracy)]`` of same-share points (``optimal_curve``'s third result), sorted,
    one point per key fraction (the best)."""
    best: dict = {}
    for point in same.values():
        best[point.key_fraction] = max(best.get(point.key_fraction, -np.inf), point.accuracy)
    return sorted(best.items())


def _nearest(best: dict, target: int) -> int:
    return min(best, key=lambda n: (abs(n - target), n))


def same_budget(tables: Sequence[PairTable], fraction: float, **kwargs) -> Point:
    """The best schedule found when every clip spends the same share ``fraction`` of its frames."""
    return optimal_curve(tables, [fraction], **kwargs)[2][fraction]


def phase_fair_fixed(tables: Sequence[PairTable], intervals: Optional[Sequence[int]] = None, metric=None) -> list:
    """Per interval ``l`` (default ``1..window + 1``: every interval whose keys carry at most
    ``window`` frames): ``{"interval", "key_fraction", "accuracy", "phase0_key_fraction",
    "phase0_accuracy", "phases"}``: means over the phases ``first = 1..l`` (``first = l`` is
    phase 0, the policy's own schedule), phase 0's figures, and every phase's ``[key fraction,
    accuracy]`` (see :class:`PhaseLuck`); ``metric``: see the module notes."""
    tables = list(tables)
    metric = metric or MeanIoU(tables)
    window = tables[0].window
    frames = sum(t.frames for t in tables)
    out = []
    for interval in intervals or range(1, window + 2):
        if not 1 <= interval <= window + 1:
            raise ValueError(f"interval {interval} outside 1..{window + 1} (the window {window} plus one)")
        runs = []
        for first in range(1, interval + 1):
            schedules = [fixed_schedule(t.frames, interval, first) for t in tables]
            runs.append((sum(len(s) for s in schedules) / frames, score(tables, schedules, metric)))
        out.append({"interval": interval, "key_fraction": float(np.mean([r[0] for r in runs])),
                    "accuracy": float(np.mean([r[1] for r in runs])),
                    "phase0_key_fraction": runs[-1][0], "phase0_accuracy": runs[-1][1],
                    "phases": [list(r) for r in runs]})
    return out


class PhaseLuck:
    """How far a fixed interval's figure moves with where its first key falls alone.

    From the intervals of ``fixed`` (:func:`phase_fair_fixed`), every single phase's *gain*: its
    accuracy minus the phase-fair curve at the key fraction that phase spent (phases spend
    different numbers of keys, so each is judged at its own cost, as a policy is; a phase outside
    the curve is left out: at the curve's low end, where the longest interval's phases that spend
    fewer keys than its mean lie, the band may reach only down). :meth:`band` gives, at a key
    fraction, the range of those gains among the phases that spend about as much.
    """

    def __init__(self, fixed: Sequence[dict]):
        self.curve = [(f["key_fraction"], f["accuracy"]) for f in fixed]
        self.means = sorted({f["key_fraction"] for f in fixed})
        self.phases = []  # (key fraction, gain, the interval's mean key fraction)
        for f in fixed:
            for fraction, accuracy in f["phases"]:
                at = interpolate(self.curve, fraction)
                if at is not None:
                    self.phases.append((fraction, accuracy - at, f["key_fraction"]))

    def band(self, key_fraction: float) -> Optional[tuple]:
        """``(low, high)``: the phase-fair accuracy at ``key_fraction`` plus the lowest and highest
        gain of a single phase that spends about as much: a phase of the two intervals whose mean
        key fractions lie nearest below and above it (one interval when it is that interval's
        mean), or any phase whose key fraction lies between those two means. ``low`` is never above
        the phase-fair figure and ``high`` never below; ``None`` outside the curve."""
        fair = interpolate(self.curve, key_fraction)
        if fair is None:
            return None
        slack = 1e-12
        below = max(m for m in self.means if m <= key_fraction + slack)
        above = min(m for m in self.means if m >= key_fraction - slack)
        gains = [gain for fraction, gain, mean in self.phases
                 if mean in (below, above) or below - slack <= fraction <= above + slack]
        return fair + min(0.0, min(gains, default=0.0)), fair + max(0.0, max(gains, default=0.0))

    def curves(self) -> list:
        """``[[key fraction, low, high]]`` of :meth:`band` at every interval's mean and every
        phase's key fraction inside the curve, in order (for drawing the band)."""
        points = sorted({*self.means, *(fraction for fraction, _, _ in self.phases)})
        return [[x, *band] for x in points if (band := self.band(x)) is not None]


def interpolate(curve: Sequence[tuple], x: float) -> Optional[float]:
    """Linear interpolation of ``[(key fraction, accuracy)]`` at ``x``; ``None`` outside it
    (points at one key fraction are averaged)."""
    if not curve:
        return None
    xs = np.array([p[0] for p in curve], float)
    ys = np.array([p[1] for p in curve], float)
    ux = np.unique(xs)
    uy = np.array([ys[xs == u].mean() for u in ux])
    if not ux[0] - 1e-12 <= x <= ux[-1] + 1e-12:
        return None
    return float(np.interp(x, ux, uy))


def headroom_captured(accuracy: float, key_fraction: float, fixed: Sequence[tuple],
                      optimal: Sequence[tuple], minimum_gap: float = 1e-6) -> Optional[float]:
    """``(accuracy - fixed) / (optimal - fixed)`` at ``key_fraction``, the two curves
    ``[(key fraction, accuracy)]`` interpolated there; ``None`` outside either curve or
    where the optimum is not above the fixed interval by ``minimum_gap``."""
    low, high = interpolate(fixed, key_fraction), interpolate(optimal, key_fraction)
    if low is None or high is None or high - low < minimum_gap:
        return None
    return float((accuracy - low) / (high - low))
