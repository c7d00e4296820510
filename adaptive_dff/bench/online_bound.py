"""How much of the headroom could PropagationQuality's rules reach online, if they knew the true loss?

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
budget (:func:`adaptive_dff.compare.optimal.linear_weights`), or in a run of
``compare --metric j`` its region similarity J (exact: J is a sum over
frames, :mod:`adaptive_dff.compare.objects`), so ``v[k, d]``
is the value of frame ``k + d`` carried from the key ``k``, and carrying
instead of recomputing loses ``L_d = v[k + d, 0] - v[k, d]`` on that frame.
The rule (:func:`renewal_schedule`) keys a frame when ``d * L_d - sum_{i<d}
L_i`` (losses since the key, kept non-decreasing from 0; floored at a share
of ``(d + 1) / 2 * L_d``, as ``PropagationQuality`` floors it) reaches a price.

Rows per budget: ``renewal`` (each clip's price found with hindsight: among
the prices that spend the clip's share of the budget,
:func:`adaptive_dff.compare.ceiling.clip_targets`, the one whose schedule is
worth the most), ``renewal, median price`` (the same at the median, by
value, of the prices that spend the clip's share: a typical price, not the
luckiest), ``renewal, one price``
(one price for all clips, spending the clips' shares summed; judged against
the optimum that spreads the keys over the clips, as it may), ``renewal, pixel
loss`` (each clip's price; the loss counted in pixels, as a predictor of pixel
accuracy counts it, instead of the benchmark's units), ``KeyBudget, true
loss`` and ``KeyBudget, pixel loss`` (no price known in hindsight: the policy
``propagation_quality@budget`` as ``compare`` runs it, ``KeyBudget`` around
the renewal rule, online, fed the true loss in the benchmark's units or in
pixels, from the price ``KeyBudget`` finds in the clip's own scores,
:func:`budget_schedule`; what a perfect predictor would get under the budget's
online price and band; for budgets of at least ``1 / (window + 1)``), ``hindsight`` (each
clip's price; ``PropagationQuality``'s hindsight rule,
:func:`hindsight_schedule`), ``hindsight, every pair`` (each clip's price; the
hindsight rule told how well *every* frame since the key would have carried to
the current one, :func:`pair_hindsight_schedule`: what a pipeline would know
that also took the flow from each of those frames), ``renewal, predicted
loss`` (each clip's price; the loss a quality predictor predicts from each
pair's signals, which ``compare`` keeps beside the pair tables: the shipped
predictor, or ``--quality-model FILE``), ``predicted, median price`` (the
same loss, each clip at the median, by value, of the prices that spend its
share: a typical price, not the luckiest; a noisy loss spends the same keys
in many ways, and the best of them flatters it), ``hindsight, predicted`` and
``every pair, predicted`` (the two hindsight rules on the predicted loss, each
clip's best price), and ``optimal_per_clip``.
Above the rows, per budget, the correlation frame by frame of the loss in
pixels with the loss in the benchmark's units within each clip, beyond the
growth with the distance both share (median and lowest over the clips,
:func:`unit_correlations`): how much the pixel count tells about which keys
go stale faster in the benchmark's units.
Bounds on the rule, not policies: the price is known in hindsight (except in the
two ``KeyBudget`` rows). Between ``renewal`` and the predicted-loss rows lies
what a better predictor could win; between them and the policy, what the
online price (``KeyBudget``) loses or wins against a price known in
hindsight. The ``KeyBudget`` rows split the other way: between ``renewal`` and
``KeyBudget, true loss`` lies what the online price and band lose with a
perfect predictor; between that row and the policy, what the predictor
loses under them. That split holds for one
predictor; it does not rank predictors for the online policy (on a few clips
the rows move widely between fits of nearly the same held-out error, and the
policy does not follow them). Headroom captured is against the phase-fair
fixed interval and the optimum of the same kind, as in ``compare``.

Run on a compare run made in oracle mode with an arm read from the pair
tables (``optimal``, ``fixed_interval`` or ``copy``)::

    python -m adaptive_dff.bench.online_bound runs/compare-...
    python -m adaptive_dff.bench.online_bound runs/compare-... --quality-model runs/quality/quality.json
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from functools import partial
from typing import Callable, Optional, Sequence

import numpy as np

from adaptive_dff.compare.ceiling import (
    MeanIoU, clip_targets, headroom_captured, interpolate, optimal_curve, phase_fair_fixed, same_share_curve,
    same_share_fractions, score,
)
from adaptive_dff.compare.objects import check_metric, j_tables
from adaptive_dff.compare.optimal import PairTable, fixed_schedule, pair_values
from schedulers.quality import RAMP_FLOOR, hindsight_score, ramp_floor, renewal_score

logger = logging.getLogger(__name__)
BISECTIONS = 48
PLATEAU_SAMPLES = 24  # prices tried across the range that spends the target number of keys
PICKS = ("best", "median")  # which of the schedules that spend the target a price search returns


def carried_losses(values: np.ndarray, key: int) -> np.ndarray:
    """``[L_1 .. L_n]``: the value lost on frames ``key + d`` by carrying the key instead of
    recomputing (``values`` from :func:`~adaptive_dff.compare.optimal.pair_values`), up to the
    window or the clip's end."""
    T, width = values.shape
    d = np.arange(1, min(width, T - key))
    return values[key + d, 0] - values[key, d]


def renewal_schedule(values: np.ndarray, price: float) -> list:
    """Key frames of the renewal rule fed the true losses: a key at ``key + d`` when the renewal
    score of ``PropagationQuality`` (:func:`schedulers.quality.renewal_score`: ``d * L_d - sum_{i<d}
    L_i``, floored at a share of ``(d + 1) / 2 * L_d``; ``L`` kept non-decreasing) reaches ``price``,
    or when the window ends."""
    T, width = values.shape
    keys, key = [0], 0
    losses = _kept_losses(values, 0)
    for t in range(1, T):
        d = t - key
        if d >= width or renewal_score(d, float(losses[d - 1]), float(losses[: d - 1].sum())) >= price:
            keys.append(t)
            key = t
            losses = _kept_losses(values, key)
    return keys


def quality_table(values: np.ndarray) -> np.ndarray:
    """float64 ``[T, width]``: ``1 - L_d`` for each pair (key ``k``, frame ``k + d``) of the true losses
    :func:`carried_losses` reads from ``values``, the table of predicted qualities a policy that knew
    the loss would read (:class:`adaptive_dff.bench.replay.StoredQuality`); NaN for ``d = 0`` and past
    the clip's end."""
    T, width = values.shape
    table = np.full((T, width), np.nan)
    for key in range(T):
        losses = carried_losses(values, key)
        table[key, 1:1 + losses.size] = 1.0 - losses
    return table


def budget_schedule(values: np.ndarray, budget: float) -> list:
    """Key frames of ``propagation_quality@budget`` fed the true losses: ``KeyBudget(target=budget)``
    around the renewal rule of ``PropagationQuality`` (losses kept non-decreasing), run online as
    ``compare`` runs it, at the price ``KeyBudget`` finds from the clip's own scores (no starting price:
    none is calibrated in the true loss's units), ``max_interval`` the table's width, ``window + 1``
    (:func:`adaptive_dff.bench.replay.replay_clip`). ``ValueError`` for a budget below ``1 / width``."""
    from adaptive_dff.bench.replay import replay_clip

    return replay_clip(quality_table(values), budget, None, "renewal")[0]


def hindsight_schedule(values: np.ndarray, price: float, floor: float = RAMP_FLOOR) -> list:
    """Key frames of ``PropagationQuality``'s hindsight rule fed the true losses: a key at ``key + d``
    when :func:`schedulers.quality.hindsight_score` of the losses since the key (kept
    non-decreasing; floored at ``floor``) reaches ``price``, or when the window ends."""
    T, width = values.shape
    keys, key = [0], 0
    losses = _kept_losses(values, 0)
    for t in range(1, T):
        d = t - key
        if d >= width or hindsight_score(losses[:d], floor) >= price:
            keys.append(t)
            key = t
            losses = _kept_losses(values, key)
    return keys


def pair_hindsight_schedule(values: np.ndarray, price: float, floor: float = RAMP_FLOOR) -> list:
    """Key frames of the hindsight rule told every pair's true loss: a key at ``t`` when a key at one
    of the frames ``s`` since the last key ``k`` would have saved at least ``price`` by now,
    ``sum_{u=s..t} K(k, u) - K(s, u)``, or when the window ends. ``K(s, u)`` is the true loss of
    carrying ``s`` to ``u``, ``v[u, 0] - v[s, u - s]``, kept non-decreasing from 0 along ``u`` as
    :func:`hindsight_schedule` keeps the key's (``K(s, s) = 0``); the score is floored at ``floor``
    as :func:`schedulers.quality.hindsight_score` floors. So it differs from
    :func:`hindsight_schedule` in what it knows alone: there ``K(s, u)`` is the key's loss at the
    same distance. Not a rule a pipeline can run as it is: it needs how well each recent frame
    would have carried to the current one, i.e. the flow and warp from every frame since the key,
    where ``PropagationQuality`` has those of the key alone."""
    T, width = values.shape
    keys, key = [0], 0
    own = values[:, 0]
    since_key = 0.0  # sum_{u=key+1..t} K(key, u)
    prefix = [0.0]  # prefix[j]: that sum over the first j frames after the key
    peaks = np.zeros(0)  # per s = key+1..t-1: K(s, t-1), the kept loss so far
    carried = np.zeros(0)  # per s = key+1..t-1: sum_{u=s..t-1} K(s, u)
    peak = 0.0  # K(key, t-1)
    for t in range(1, T):
        d = t - key
        if d >= width:
            fire = True
        else:
            peak = max(peak, own[t] - values[key, d], 0.0)
            since_key += peak
            prefix.append(since_key)
            starts = np.arange(key + 1, t)
            peaks = np.maximum(peaks, np.maximum(own[t] - values[starts, t - starts], 0.0))
            peaks, carried = np.append(peaks, 0.0), np.append(carried + peaks, 0.0)  # s = t carries itself
            saved = (since_key - np.asarray(prefix[:-1])) - carried  # s = key+1..t
            fire = max(float(saved.max()), ramp_floor(d, peak, floor)) >= price
        if fire:
            keys.append(t)
            key, since_key, prefix, peaks, carried, peak = t, 0.0, [0.0], np.zeros(0), np.zeros(0), 0.0
    return keys


def _kept_losses(values: np.ndarray, key: int) -> np.ndarray:
    """The losses since ``key`` kept non-decreasing from 0, as ``PropagationQuality`` keeps them."""
    return np.maximum.accumulate(np.maximum(carried_losses(values, key), 0.0))


def price_range(values: Sequence[np.ndarray]) -> tuple:
    """``(low, high)``: prices between which every renewal count lies (``high`` above any score:
    ``d * L_d <= window * 2 max |v|``)."""
    top = max(float(np.abs(v[np.isfinite(v)]).max(initial=0.0)) * 2 * v.shape[1] for v in values) + 1.0
    return top * 1e-15, top


def priced(rule: Callable[[float], list], target: int, prices: tuple,
           value: Optional[Callable[[list], float]] = None, pick: str = "best") -> list:
    """The best (or median, ``pick``) schedule of ``rule(price)`` that spends ``target`` keys (see
    :func:`priced_together`)."""
    return priced_together([rule], target, prices, None if value is None else lambda s: value(s[0]), pick)[0]


def priced_together(rules: Sequence[Callable[[float], list]], target: int, prices: tuple,
                    value: Optional[Callable[[list], float]] = None, pick: str = "best") -> list:
    """One price for all ``rules`` (one per clip): the schedules that spend ``target`` keys in all
    and, among the prices that do, score the highest ``value(schedules)`` (the price that hits a
    count is a range, and different prices in it place the keys differently). The price is
    bisected on a log scale within ``prices = (low, high)`` (more keys at a lower price), then
    :data:`PLATEAU_SAMPLES` prices are tried across the range that hits ``target``. Where no price
    hits it, the schedules nearest to it. ``pick="median"``: among those prices, the schedules of
    median ``value`` instead of the highest."""
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {PICKS}, got {pick!r}")

    def run(price):
        schedules = [rule(price) for rule in rules]
        return schedules, sum(len(s) for s in schedules)

    low, high = prices
    best, best_keys = run(high)
    hit = None
    for _ in range(BISECTIONS):
        price = float(np.sqrt(low * high))
        schedules, keys = run(price)
        if abs(keys - target) < abs(best_keys - target):
            best, best_keys = schedules, keys
        if keys == target:
            hit = price
            break
        low, high = (price, high) if keys > target else (low, price)
    if hit is None or value is None:
        return best
    below, above = _edge(run, target, low, hit, more=True), _edge(run, target, hit, high, more=False)
    found = [run(p) for p in np.geomspace(below, above, PLATEAU_SAMPLES)]
    hits = [best] + [s for s, keys in found if keys == target]
    if pick == "median":  # a typical price that spends the target: neither the luckiest nor the unluckiest
        return sorted(hits, key=value)[len(hits) // 2]
    return max(hits, key=value)


def _edge(run, target: int, low: float, high: float, more: bool) -> float:
    """The edge of the price range that spends ``target`` keys, between ``low`` and ``high``: its
    lower edge when ``more`` (``low`` spends more), else its upper edge (``high`` spends fewer)."""
    for _ in range(BISECTIONS // 2):
        price = float(np.sqrt(low * high))
        inside = run(price)[1] == target
        if more:
            low, high = (low, price) if inside else (price, high)
        else:
            low, high = (price, high) if inside else (low, price)
    return high if more else low


def pair_qualities(signals, predictor) -> np.ndarray:
    """float64 ``[T, window + 1]``: the quality ``predictor`` (a :class:`schedulers.QualityPredictor`,
    checked against the signal set) predicts for each pair (key ``k``, frame ``k + d``) from its
    signals (:class:`~adaptive_dff.compare.optimal.PairSignals`); NaN for ``d = 0``, past the clip's
    end (no signals there) and where a signal is not finite (the predictor's NaN)."""
    signals = signals.select(predictor.signal_names)
    predictor.check_signals(signals)
    T, width, count = signals.values.shape
    rows = signals.values.reshape(-1, count)
    have = ~np.all(np.isnan(rows), axis=1)
    quality = np.full(rows.shape[0], np.nan)
    if have.any():
        quality[have] = predictor.predict(rows[have])
    return quality.reshape(T, width)


def predicted_values(signals, predictor) -> np.ndarray:
    """float64 ``[T, window + 1]`` values whose carried losses (:func:`carried_losses`) are the
    losses ``1 - q`` that ``predictor`` predicts (:func:`pair_qualities`); a pair whose signals
    are not finite loses 1, the most there is (``PropagationQuality`` keys it)."""
    quality = pair_qualities(signals, predictor)
    have = ~np.all(np.isnan(signals.select(predictor.signal_names).values), axis=2)  # d = 0, past the end: none
    loss = np.where(np.isfinite(quality), 1.0 - quality, 1.0)
    return -np.where(have, loss, 0.0)


def schedule_value(values: np.ndarray, keys: Sequence[int]) -> float:
    """The summed value of a clip's frames under ``keys`` (each frame carried from its last key)."""
    T, width = values.shape
    ends = list(keys[1:]) + [T]
    if any(e - k > width for k, e in zip(keys, ends)):
        raise ValueError(f"keys {list(keys)} leave a frame more than the window ({width - 1}) after its key")
    return float(sum(values[k, : e - k].sum() for k, e in zip(keys, ends)))


def benchmark_values(tables: Sequence[PairTable], scoring, budget: float) -> list:
    """Per clip, the pair values (:func:`~adaptive_dff.compare.optimal.pair_values`) in the benchmark's
    units: ``scoring`` (:class:`~adaptive_dff.compare.ceiling.MeanIoU`, or J's scoring of
    :func:`~adaptive_dff.compare.objects.j_tables`) linearised at the phase-0 fixed interval of ``budget``."""
    interval = int(min(max(round(1 / budget), 1), tables[0].window + 1))
    counts = [t.counts(fixed_schedule(t.frames, interval)) for t in tables]
    a, b = scoring.weights(sum(c[0] for c in counts), sum(c[1] for c in counts))
    return [pair_values(t, a, b) for t in tables]


def loss_correlation(first: Sequence[np.ndarray], second: Sequence[np.ndarray]) -> float:
    """Pearson correlation of the losses :func:`carried_losses` reads from two sets of pair values
    of the same clips (e.g. in pixels and in the benchmark's units), over every carried frame (each
    key ``k`` of each clip, each distance ``d >= 1`` in the window and the clip), *beyond their
    growth with the distance*: each loss less its mean over the carried frames at the same ``d``.
    Both losses grow with ``d``; that shared trend alone would correlate them, and it says nothing
    about which keys go stale faster. Pairs where either loss is not finite are left out; NaN when
    fewer than two remain or either loss does not vary beyond its trend."""
    first, second = list(first), list(second)
    if not first or len(first) != len(second):
        raise ValueError(f"loss_correlation needs the pair values of the same clips, at least one: got "
                         f"{len(first)} and {len(second)}")
    a, b, d = [], [], []
    for u, v in zip(first, second):
        if u.shape != v.shape:
            raise ValueError(f"pair values of different clips: shapes {u.shape} and {v.shape}")
        for k in range(u.shape[0]):
            la, lb = carried_losses(u, k), carried_losses(v, k)
            a.append(la)
            b.append(lb)
            d.append(np.arange(1, la.size + 1))
    a, b, d = (np.concatenate(x) if x else np.zeros(0) for x in (a, b, d))
    finite = np.isfinite(a) & np.isfinite(b)
    a, b, d = a[finite], b[finite], d[finite].astype(np.int64)
    if a.size < 2:
        return float("nan")
    counts = np.bincount(d)
    safe = np.maximum(counts, 1)
    a = a - (np.bincount(d, weights=a) / safe)[d]
    b = b - (np.bincount(d, weights=b) / safe)[d]
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def benchmark_scoring(tables: Sequence[PairTable], metric: str) -> tuple:
    """``(tables, scoring)`` of the benchmark's units for ``metric``: ``"miou"``, the tables and
    :class:`~adaptive_dff.compare.ceiling.MeanIoU`; ``"j"``, :func:`~adaptive_dff.compare.objects.j_tables`."""
    tables = list(tables)
    return j_tables(tables) if check_metric(metric) == "j" else (tables, MeanIoU(tables))


def _pixel_values_and_scoring(tables: Sequence[PairTable], metric: str) -> tuple:
    """``(pixel values per clip, tables, scoring)``: each clip's pair values counting pixels right
    (:func:`~adaptive_dff.compare.optimal.pair_values` with weight 1 on every class's ``tp``), and the
    benchmark's tables and scoring for ``metric`` (:func:`benchmark_scoring`)."""
    classes = tables[0].tp.shape[2]
    pixels = [pair_values(t, np.ones(classes), np.zeros(classes)) for t in tables]
    return (pixels, *benchmark_scoring(tables, metric))


def unit_correlations(tables: Sequence[PairTable], budgets: Sequence[float], metric: str = "miou") -> dict:
    """``{budget: [r per clip]}``: how closely, within each clip, the loss in pixels (what a
    predictor of pixel accuracy estimates) follows the loss in the benchmark's units (``metric``,
    linearised at each budget's fixed interval as in :func:`bounds`), frame by frame
    (:func:`loss_correlation`: beyond the growth with the distance both share). Per clip, as the
    rule prices each clip on its own: high, the pixel count tells which keys of the clip go stale
    faster in the benchmark's units too; low, the benchmark's loss there lies in errors the pixel
    count barely sees (a rare class or small object appearing, flicker of per-frame labels)."""
    tables = list(tables)
    if not tables:
        raise ValueError("unit_correlations needs at least one pair table")
    pixels, tables, scoring = _pixel_values_and_scoring(tables, metric)
    out = {}
    for budget in budgets:
        values = benchmark_values(tables, scoring, budget)
        out[budget] = [loss_correlation([p], [v]) for p, v in zip(pixels, values)]
    return out


def bounds(tables: Sequence[PairTable], budgets: Sequence[float],
           predicted: Optional[Sequence[np.ndarray]] = None, metric: str = "miou",
           hindsight_floor: float = RAMP_FLOOR) -> list:
    """Per budget and rule: ``{"budget", "rule", "ceiling", "key_fraction", "accuracy", "gain",
    "headroom_captured"}`` (gain over the phase-fair fixed interval at the key fraction spent;
    headroom against the per-clip optimum, or for one price over all clips the shared one; ``None``
    where the key fraction lies outside those curves). Rules: ``renewal`` (a price per clip),
    ``renewal, median price`` (the same at the median of the prices that spend the clip's share),
    ``renewal, one price`` (one price for all clips), ``renewal, pixel loss`` (a price per clip, the
    loss counted in pixels, not in the benchmark's units), ``KeyBudget, true loss`` and ``KeyBudget,
    pixel loss`` (no price in hindsight: :func:`budget_schedule` fed either loss; only for budgets of
    at least ``1 / (window + 1)``), ``hindsight`` and ``hindsight, every
    pair`` (:func:`hindsight_schedule`, :func:`pair_hindsight_schedule`; a price per clip), with
    ``predicted`` (per clip, from :func:`predicted_values`) ``renewal, predicted loss`` (a price per
    clip, the predicted loss), ``predicted, median price`` (the same, at the median of the prices
    that spend the clip's share rather than the best), ``hindsight, predicted`` and ``every pair,
    predicted`` (the hindsight rules on the predicted loss, a price per clip), and
    ``optimal_per_clip``. ``metric``: the benchmark's units,
    ``"miou"`` or ``"j"`` (compare's ``--metric``; J's pair values are exact, not linearised).
    ``hindsight_floor``: the floor of the hindsight rules' scores (``PropagationQuality``'s,
    :data:`schedulers.quality.RAMP_FLOOR`, by default; 0: none)."""
    from adaptive_dff.bench.replay import fits_window

    tables = list(tables)
    frames = sum(t.frames for t in tables)
    width = min(t.window for t in tables) + 1  # the narrowest pair tables' (the KeyBudget rows' max_interval)
    pixels, tables, scoring = _pixel_values_and_scoring(tables, metric)
    fixed = [(f["key_fraction"], f["accuracy"]) for f in phase_fair_fixed(tables, metric=scoring)]
    curve, _, same = optimal_curve(tables, list(budgets), same_fractions=same_share_fractions(tables),
                                   metric=scoring)
    ceilings = {"per_clip": same_share_curve(same), "shared": [(p.key_fraction, p.accuracy) for p in curve]}
    pixel_prices = price_range(pixels)  # the pixel and predicted losses do not depend on the budget
    predicted_prices = None if predicted is None else price_range(predicted)
    out = []

    def row(budget, name, ceiling, schedules):
        kf = sum(len(s) for s in schedules) / frames
        accuracy = score(tables, schedules, scoring)
        low = interpolate(fixed, kf)
        return {"budget": budget, "rule": name, "ceiling": ceiling, "key_fraction": kf, "accuracy": accuracy,
                "gain": None if low is None else accuracy - low,
                "headroom_captured": headroom_captured(accuracy, kf, fixed, ceilings[ceiling])}

    def renewal(v):
        return lambda price: renewal_schedule(v, price)

    if not 0 <= hindsight_floor <= 1:  # price_range's top price lies above every score up to a floor of 1
        raise ValueError(f"hindsight_floor must be a share in [0, 1], got {hindsight_floor}")
    hindsight = partial(hindsight_schedule, floor=hindsight_floor)
    every_pair = partial(pair_hindsight_schedule, floor=hindsight_floor)

    for budget in budgets:
        values = benchmark_values(tables, scoring, budget)
        targets = clip_targets(tables, budget)
        prices = price_range(values)
        out.append(row(budget, "renewal", "per_clip", [
            priced(renewal(v), n, prices, lambda keys, v=v: schedule_value(v, keys)) for v, n in zip(values, targets)]))
        out.append(row(budget, "renewal, median price", "per_clip", [
            priced(renewal(v), n, prices, lambda keys, v=v: schedule_value(v, keys), "median")
            for v, n in zip(values, targets)]))
        out.append(row(budget, "renewal, one price", "shared", priced_together(
            [renewal(v) for v in values], sum(targets), prices, lambda schedules: score(tables, schedules, scoring))))
        out.append(row(budget, "renewal, pixel loss", "per_clip", [
            priced(renewal(p), n, pixel_prices, lambda keys, v=v: schedule_value(v, keys))
            for p, v, n in zip(pixels, values, targets)]))
        if fits_window(budget, width):
            out.append(row(budget, "KeyBudget, true loss", "per_clip", [budget_schedule(v, budget) for v in values]))
            out.append(row(budget, "KeyBudget, pixel loss", "per_clip", [budget_schedule(p, budget) for p in pixels]))
        for name, rule in (("hindsight", hindsight), ("hindsight, every pair", every_pair)):
            out.append(row(budget, name, "per_clip", [
                priced(lambda price, v=v, rule=rule: rule(v, price), n, prices,
                       lambda keys, v=v: schedule_value(v, keys)) for v, n in zip(values, targets)]))
        if predicted is not None:
            for name, rule, pick in (("renewal, predicted loss", renewal_schedule, "best"),
                                     ("predicted, median price", renewal_schedule, "median"),
                                     ("hindsight, predicted", hindsight, "best"),
                                     ("every pair, predicted", every_pair, "best")):
                out.append(row(budget, name, "per_clip", [
                    priced(lambda price, p=p, rule=rule: rule(p, price), n, predicted_prices,
                           lambda keys, v=v: schedule_value(v, keys), pick)
                    for p, v, n in zip(predicted, values, targets)]))
        out.append(row(budget, "optimal_per_clip", "per_clip", same[budget].schedules))
    return out


def stored_signals(folder, signature: dict, dataset: str) -> dict:
    """``{test clip: PairSignals or None}`` of ``dataset`` (in the run's order): the signals
    ``compare`` kept beside each clip's pair table, ``None`` where a clip has none."""
    from adaptive_dff.compare.optimal import read_pair_signals
    from adaptive_dff.compare.planning import pair_table_cell
    from adaptive_dff.compare.workspace import SIGNALS_SUFFIX

    entry = next(e for e in signature["datasets"] if e["name"] == dataset)
    return {clip: read_pair_signals(folder.path("cells", pair_table_cell(dataset, clip).ident + SIGNALS_SUFFIX),
                                    logger.warning) for clip in entry["test_clips"]}


def stored_predictions(folder, signature: dict, dataset: str, predictor) -> Optional[list]:
    """Per test clip of ``dataset`` (in the run's order), :func:`predicted_values` of ``predictor``
    from the signals ``compare`` kept beside the clip's pair table (:func:`stored_signals`), or
    ``None`` when a clip has none. ``ValueError`` when the predictor was fitted on other signals."""
    signals = list(stored_signals(folder, signature, dataset).values())
    if any(s is None for s in signals):
        return None
    return [predicted_values(s, predictor) for s in signals]


def open_run(parser: argparse.ArgumentParser, path: str) -> tuple:
    """``(folder, signature, pair tables per data set)`` of the compare run at ``path``
    (:func:`adaptive_dff.compare.ceiling_rows.pair_tables`); ``parser.error`` names a missing
    folder, a folder that is no compare run, and a run without pair tables."""
    from adaptive_dff.compare import ceiling_rows
    from adaptive_dff.compare.store import ResultFolder

    if not os.path.exists(path):
        parser.error(f"{path!r} does not exist")
    if not os.path.isdir(path):
        parser.error(f"{path!r} is not a folder")
    folder = ResultFolder(path)
    try:
        signature = folder.signature()
    except ValueError as error:
        parser.error(str(error))
    found = ceiling_rows.pair_tables(folder.cells(), signature)
    if not found:
        parser.error(f"{path!r} holds no data set whose test clips all have pair tables "
                     "(run compare in oracle mode with optimal, fixed_interval or copy)")
    return folder, signature, found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a compare run folder (oracle mode, with optimal, fixed_interval or copy)")
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.1, 0.2, 0.33],
                        help="key-frame budgets (default: compare's fair budgets 0.1 0.2 0.33)")
    parser.add_argument("--quality-model", default=None, metavar="FILE",
                        help="the quality predictor of the row 'renewal, predicted loss' (a file of adaptive-dff "
                             "train quality; default: the shipped one that reads the key labels, or on a run "
                             "whose pair signals lack them the one that does not)")
    parser.add_argument("--hindsight-floor", type=float, default=RAMP_FLOOR, metavar="SHARE",
                        help="the floor of the hindsight rows' scores, a share in [0, 1] of (d + 1) / 2 times the "
                             f"loss at d (default {RAMP_FLOOR}, PropagationQuality's; 0: none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if any(not 0 < b <= 1 for b in args.budgets):
        parser.error(f"budgets must be key-frame fractions in (0, 1], got {args.budgets}")
    if not 0 <= args.hindsight_floor <= 1:  # NaN fails too
        parser.error(f"--hindsight-floor must be a share in [0, 1], got {args.hindsight_floor}")
    folder, signature, found = open_run(parser, args.run)
    from adaptive_dff.bench.replay import fits_window
    from schedulers.quality_predictor import load_default_quality, load_quality_predictor

    try:  # by default the shipped predictor compare's policy uses (it reads the key labels, which compare gives)
        predictors = ([load_default_quality(key_labels=True), load_default_quality()] if args.quality_model is None
                      else [load_quality_predictor(args.quality_model)])
    except (OSError, ValueError) as error:
        parser.error(f"--quality-model: {error}")
    predictions, fallbacks = {}, {}
    for dataset in found:  # every predictor checked before anything is printed
        for number, predictor in enumerate(predictors):
            try:
                predictions[dataset] = stored_predictions(folder, signature, dataset, predictor)
                break
            except ValueError as error:
                if number == len(predictors) - 1:
                    named = "the shipped predictor" if args.quality_model is None else repr(args.quality_model)
                    parser.error(f"--quality-model: {named} cannot be judged on the signals {args.run!r} keeps "
                                 f"({error}); run compare with --quality-model to judge it on its own signals")
                # e.g. a run of an earlier version keeps no key-label signal: the shipped predictor without it
                fallbacks[dataset] = error
    logger.info("The rules of PropagationQuality fed the true loss, at the best constant price in hindsight "
                "(a bound on the rule, not a policy), except where a row says otherwise. renewal: the loss in the "
                "benchmark's units (mIoU linearised at the budget's fixed interval, or J in a run of compare "
                "--metric j), a price per clip; renewal, median price: the same at the median of the prices that "
                "spend the clip's share; renewal, one price: the same, one price for all clips; renewal, pixel loss: "
                "the loss in pixels, a price per clip; KeyBudget, true loss and "
                "KeyBudget, pixel loss: no price in hindsight, the policy itself (KeyBudget around the renewal rule, "
                "online, from the price it finds) fed the true loss in either unit; hindsight: the hindsight rule, "
                "a price per clip; hindsight, every pair: the same told how well every frame since the key would "
                "have carried (not a rule a pipeline can run on the key's flow alone); renewal, predicted loss: the loss "
                "a quality predictor predicts from each pair's signals, a price per clip; predicted, median price: the "
                "same at the median of the prices that spend the clip's share; hindsight, predicted and every pair, "
                "predicted: the two hindsight rules on that loss. Headroom captured against "
                "the optimum of the ceiling named: per_clip (every clip the same share) or shared.")
    for dataset, tables in found.items():
        logger.info("")
        logger.info(f"{dataset}:")
        predicted = predictions[dataset]
        if dataset in fallbacks:
            logger.info(f"  (the shipped predictor that reads key labels does not fit its pair signals: "
                        f"{fallbacks[dataset]}; the rows of the predicted loss use the shipped predictor without them)")
        if predicted is None:
            logger.info("  (no rows 'renewal, predicted loss' and 'predicted, median price': its pair tables keep "
                        "no signals; a compare run of this version keeps them)")
        metric = signature["config"].get("metric", "miou")
        correlations = unit_correlations(tables["warp"], args.budgets, metric)
        logger.info("  loss in pixels against the loss in the benchmark's units, frame by frame within each clip, "
                    "beyond their growth with the distance (correlation, median and lowest over the clips): "
                    + ", ".join(f"{np.nanmedian(r):.2f} and {np.nanmin(r):.2f} at {b:g}" if np.isfinite(r).any()
                                else f"- at {b:g}" for b, r in correlations.items()))
        window = min(t.window for t in tables["warp"])
        below = [b for b in args.budgets if not fits_window(b, window + 1)]
        if below:
            logger.info(f"  (no KeyBudget rows at {', '.join(f'{b:g}' for b in below)}: below 1 / {window + 1}, a "
                        f"key falls due past the pair tables' window of {window} frames)")
        logger.info(f"{'budget':>6}  {'rule':<23} {'keys':>6} {'accuracy':>8} {'gain':>7} {'headroom':>8}  ceiling")
        for row in bounds(tables["warp"], args.budgets, predicted, metric, args.hindsight_floor):
            share = row["headroom_captured"]
            gain = "-" if row["gain"] is None else f"{row['gain']:+7.4f}"
            logger.info(f"{row['budget']:6.2f}  {row['rule']:<23} {row['key_fraction']:6.3f} {row['accuracy']:8.4f} "
                        f"{gain:>7} {'-' if share is None else f'{share * 100:7.0f}%':>8}  {row['ceiling']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
