"""The ceiling of key-frame scheduling: the best placement of whole-frame keys, found offline.

Oracle mode scores a schedule by giving key frames their true labels and
carrying them to the other frames along ``flow(current, key)`` with
:func:`carry_labels`. A schedule's score is then fixed by which key each frame
carries from, so everything any schedule can reach is in one **pair table**
per clip: for every key ``k`` and frame ``t = k + d``, ``0 <= d <= window``,
the per-class counts of that carried frame (true positives and predicted
pixels; the true counts of frame ``t`` do not depend on the key). The mIoU of
the summed confusion of any schedule (the metric of every compare row) is
exact from these counts, without computing a flow again.

mIoU is not a sum over frames, so the search runs on an additive proxy and
every schedule found is **re-scored with the real metric**. The proxy is the
first-order expansion of the data set's mIoU around a reference schedule
(``dIoU_c = ((G_c + P_c) dTP_c - TP_c dP_c) / U_c^2``, per class, averaged
over the classes present): a per-pair value ``sum_c a_c tp_c - b_c pred_c``.
The search is repeated around several references (fixed intervals of a few
lengths, then the best schedule found at each budget), and at each number of
keys the schedule with the best real mIoU is kept; the fixed interval's own
schedules at every phase are candidates too, so the ceiling is never below
them at equal keys.

Search (frame 0 always a key; a key carries to at most ``window`` frames
after it):

* per clip, a dynamic program over key placements for every number of keys
  ``n`` (:func:`best_schedules`): ``O(T * window * n_max)`` time,
  ``O(T * n_max)`` memory;
* above :data:`EXACT_LIMIT` frames, a Lagrangian relaxation instead
  (:func:`lagrangian_schedule`): a penalty ``lam`` per key, ``O(T * window)``
  per ``lam``, bisection on ``lam`` for a number of keys and a grid of ``lam``
  for the curve; it finds the points of the curve's concave hull only;
* over clips, a multiple-choice knapsack on the per-clip curves
  (:func:`knapsack`): the data set's budget spent where it gains most.

Building the table costs ``T * window`` flows and carries per clip; it
dominates everything else.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

DEFAULT_WINDOW = 30
EXACT_LIMIT = 2000  # frames: longer clips use the Lagrangian relaxation
LAGRANGE_POINTS = 48  # penalties traced for a long clip's curve


def check_window(window) -> int:
    """``window`` as an int >= 1, else a ``ValueError`` naming the value."""
    if isinstance(window, bool) or not isinstance(window, (int, float, np.integer, np.floating)) \
            or not float(window).is_integer() or window < 1:
        raise ValueError(f"window must be a whole number of frames >= 1, got {window!r}")
    return int(window)


@dataclass
class PairTable:
    """Carried-label counts of every (key ``k``, frame ``k + d``) pair of one clip.

    Attributes:
        tp: int64 ``[T, window + 1, K]``: pixels of class ``c`` labelled right
            in frame ``k + d`` when it carries the labels of key ``k``
            (``d = 0``: the key itself, every kept pixel right).
        predicted: int64 ``[T, window + 1, K]``: kept pixels predicted as ``c``.
        truth: int64 ``[T, K]``: kept pixels of class ``c`` in frame ``t``.
        carried: ``None``, or (``build_pair_table(..., confusions=True)``)
            each pair's whole confusion matrix and cost, :class:`CarriedPairs`.
        signals: ``None``, or (``build_pair_table(..., signals=QualitySignals(...))``)
            each pair's propagation-quality signals, :class:`PairSignals`.
        Entries with ``k + d >= T`` are zero and never used.
    """

    tp: np.ndarray
    predicted: np.ndarray
    truth: np.ndarray
    carried: Optional["CarriedPairs"] = None
    signals: Optional["PairSignals"] = None

    @property
    def frames(self) -> int:
        return self.truth.shape[0]

    @property
    def window(self) -> int:
        return self.tp.shape[1] - 1

    def counts(self, keys: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(tp [K], predicted [K])`` summed over the clip under the key frames ``keys``."""
        keys = check_schedule(keys, self.frames, self.window)
        ends = list(keys[1:]) + [self.frames]
        tp = np.zeros(self.tp.shape[2], self.tp.dtype)
        predicted = np.zeros(self.predicted.shape[2], self.predicted.dtype)
        for k, end in zip(keys, ends):
            tp += self.tp[k, : end - k].sum(axis=0)
            predicted += self.predicted[k, : end - k].sum(axis=0)
        return tp, predicted


@dataclass
class CarriedPairs:
    """What carrying each (key ``k``, frame ``k + d``) pair of one clip gave and cost, so a
    policy's whole-frame cell is scored without carrying again
    (:func:`~adaptive_dff.compare.scoring.oracle_steps`).

    Attributes:
        confusion: int32 ``[T, window + 1, K, K]``: the confusion matrix (rows: truth) of
            frame ``k + d`` carrying the labels of key ``k`` (``d = 0``: the key's own labels).
        flow_ms, carry_ms: float64 ``[T, window + 1]``: milliseconds the pair's flow and
            carrying took (0 for ``d = 0`` and for copied labels, as a cell counts them).
    """

    confusion: np.ndarray
    flow_ms: np.ndarray
    carry_ms: np.ndarray

    ARRAYS = ("confusion", "flow_ms", "carry_ms")


@dataclass
class PairSignals:
    """The :class:`schedulers.QualitySignals` of every (key ``k``, frame ``k + d``) pair of one
    clip, computed as a pipeline would (frame after frame since the key, along the pair's flow), so
    any quality predictor fitted on those signals can be judged on the clip's schedules without a
    flow computed again (``python -m adaptive_dff.bench.online_bound RUN``).

    Attributes:
        values: float64 ``[T, window + 1, S]`` (NaN for ``d = 0`` and past the clip's end).
        names: the ``S`` signal names, in order; ``version``, ``downsample``, ``max_pixels``: the
            signal set's (``max_pixels`` ``None``: no limit of the grid, as in runs written before it).
    """

    values: np.ndarray
    names: tuple
    version: int
    downsample: int
    max_pixels: Optional[int] = None

    def select(self, names) -> "PairSignals":
        """These signals restricted to ``names``, in that order (a predictor fitted on fewer of
        them); the set as it is when a name is missing (a predictor's signal check then names it)."""
        names = tuple(names)
        if names == tuple(self.names) or any(n not in self.names for n in names):
            return self
        columns = [list(self.names).index(n) for n in names]
        return PairSignals(self.values[..., columns], names, self.version, self.downsample, self.max_pixels)


def write_pair_signals(path: str, signals: PairSignals) -> None:
    """Write ``signals`` to the ``.npz`` file ``path`` atomically (arrays ``values``, ``names``,
    ``version``, ``downsample``, ``max_pixels``: 0 for no limit)."""
    from schedulers.files import write_npz_atomic

    write_npz_atomic(path, values=signals.values, names=np.asarray(signals.names, dtype=str),
                     version=np.int64(signals.version), downsample=np.int64(signals.downsample),
                     max_pixels=np.int64(signals.max_pixels or 0))


def read_pair_signals(path: str, log: Optional[Callable] = None) -> Optional[PairSignals]:
    """The :class:`PairSignals` written to ``path``, or ``None`` when there is no such file or it is
    unreadable (``log`` told why)."""
    from schedulers.files import read_npz

    stored = read_npz(path, ("values", "names", "version", "downsample"), log, optional=("max_pixels",))
    if stored is None:
        return None
    # Files written before the grid's limit hold no max_pixels: their signals had none.
    max_pixels = int(stored.get("max_pixels", 0))
    return PairSignals(stored["values"], tuple(str(n) for n in stored["names"]), int(stored["version"]),
                       int(stored["downsample"]), max_pixels or None)


def check_schedule(keys: Sequence[int], frames: int, window: int) -> list:
    """Sorted keys; frame 0 a key, all in ``0..frames-1``, no gap longer than ``window + 1``."""
    keys = sorted(int(k) for k in keys)
    if not keys or keys[0] != 0 or keys[-1] >= frames or len(set(keys)) != len(keys):
        raise ValueError(f"a schedule holds distinct frames in 0..{frames - 1} starting with 0, got {keys}")
    gaps = np.diff(keys + [frames])
    if gaps.max() > window + 1:
        raise ValueError(f"schedule {keys}: a key carries to {gaps.max() - 1} frames, more than the window {window}")
    return keys


def miou(tp: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> float:
    """mIoU of the confusion with diagonal ``tp``, column sums ``predicted``, row sums ``truth``
    (:func:`adaptive_dff.metrics.mean_iou`: classes absent from both left out)."""
    union = truth + predicted - tp
    present = union > 0
    return float(np.mean(tp[present] / union[present])) if present.any() else float("nan")


def build_pair_table(
    frames: Sequence[np.ndarray], labels: Sequence[np.ndarray], *, num_classes: int,
    ignore_index: Optional[int], flow: Optional[Callable], window: int = DEFAULT_WINDOW,
    propagation: str = "warp", confusions: bool = False, signals=None,
) -> PairTable:
    """The :class:`PairTable` of one clip: ``T * window`` calls of ``flow(current, key)``
    (``[h, w, 2]``, current -> key) and the steps of :func:`carry_labels` (each key's
    class planes built once), or :func:`copy_labels` for ``propagation="copy"`` (no
    flow): labels exactly as :func:`~adaptive_dff.compare.scoring.oracle_cell` carries them (a test checks it).
    ``confusions``: keep every pair's whole confusion matrix and cost too (:attr:`PairTable.carried`).
    ``signals``: a :class:`schedulers.QualitySignals` (reset here) to compute every pair's signals
    along the same flow (:attr:`PairTable.signals`; ``propagation="warp"`` only; the key's labels
    are its ``labels``)."""
    from adaptive_dff.labels import carry_planes, class_planes, copy_labels, sampling_maps

    window = check_window(window)
    if propagation not in ("warp", "copy"):
        raise ValueError(f"propagation must be 'warp' or 'copy', got {propagation!r}")
    T, K = len(frames), num_classes
    tp = np.zeros((T, window + 1, K), np.int64)
    predicted = np.zeros_like(tp)
    truth = np.zeros((T, K), np.int64)
    whole = np.zeros((T, window + 1, K, K), np.int32) if confusions else None
    flow_ms, carry_ms = np.zeros((T, window + 1)), np.zeros((T, window + 1))
    if signals is not None and propagation != "warp":
        raise ValueError("pair signals are computed along the flow: propagation must be 'warp'")
    pair_signals = None if signals is None else np.full((T, window + 1, len(signals.names)), np.nan)
    kept_truth = []
    for t in range(T):
        label = np.asarray(labels[t]).astype(np.int64)
        keep = np.ones(label.shape, bool) if ignore_index is None else label != ignore_index
        kept_truth.append((label[keep], keep))
        truth[t] = np.bincount(label[keep], minlength=K)[:K]
        tp[t, 0] = truth[t]
        predicted[t, 0] = truth[t]
        if whole is not None:
            whole[t, 0] = np.diag(truth[t])
    h, w = np.asarray(labels[0]).shape
    for k in range(T - 1):
        key_label = np.asarray(labels[k])
        if propagation == "copy":
            carried_once = copy_labels(key_label, K)[0].astype(np.int64)
        else:  # carry_labels' steps, the key's class planes built once for all its frames
            planes = class_planes(key_label, K)
            if signals is not None:
                signals.reset()  # each key's signals from its own first frame on, as a pipeline sees them
        for t in range(k + 1, min(T, k + window + 1)):
            kept, keep = kept_truth[t]
            if propagation == "copy":
                guess = carried_once[keep]
            else:
                began = time.perf_counter()
                pair_flow = flow(frames[t], frames[k])
                flowed = time.perf_counter()
                carried, _ = carry_planes(planes, sampling_maps(pair_flow, h, w))
                flow_ms[k, t - k], carry_ms[k, t - k] = (flowed - began) * 1e3, (time.perf_counter() - flowed) * 1e3
                guess = carried[keep].astype(np.int64)
                if signals is not None:  # after the timing: the signals are not part of carrying
                    pair_signals[k, t - k] = signals.region(0, frames[t], frames[k], k, t, pair_flow,
                                                            key_label if signals.key_labels else None)
            confusion = np.bincount(kept * K + guess, minlength=K * K)[: K * K].reshape(K, K)
            tp[k, t - k] = np.diag(confusion)
            predicted[k, t - k] = confusion.sum(axis=0)
            if whole is not None:
                whole[k, t - k] = confusion
    return PairTable(tp=tp, predicted=predicted, truth=truth,
                     carried=None if whole is None else CarriedPairs(whole, flow_ms, carry_ms),
                     signals=None if signals is None else PairSignals(pair_signals, tuple(signals.names),
                                                                      signals.version, signals.downsample,
                                                                      signals.max_pixels))


# -- the additive proxy ---------------------------------------------------------


def linear_weights(tp: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(a [K], b [K])``: the gradient of mIoU in ``tp`` and ``predicted`` at these totals."""
    union = (truth + predicted - tp).astype(np.float64)
    present = union > 0
    n = max(int(present.sum()), 1)
    safe = np.where(present, union, 1.0)
    a = np.where(present, (truth + predicted) / safe**2, 0.0) / n
    b = np.where(present, tp / safe**2, 0.0) / n
    return a, b


def pair_values(table: PairTable, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 ``[T, window + 1]``: the proxy value of each pair (``-inf`` past the clip's end)."""
    values = table.tp @ a - table.predicted @ b
    T = table.frames
    past = np.arange(T)[:, None] + np.arange(table.window + 1)[None, :] >= T
    values[past] = -np.inf
    return values


def segment_values(values: np.ndarray) -> np.ndarray:
    """``[T, window + 2]``: ``seg[k, L]``, the value of key ``k`` carried over ``L`` frames
    (``L = 1..window + 1``; column 0 unused, ``-inf`` where the segment passes the end)."""
    T, width = values.shape
    seg = np.full((T, width + 1), -np.inf)
    seg[:, 1:] = np.cumsum(values, axis=1)
    return seg


# -- per clip: every number of keys (exact) or the hull (Lagrangian) ------------------


@dataclass
class ClipCurve:
    """The best schedule of one clip for each number of keys ``n`` the search reached.

    Attributes:
        value: ``{n: proxy value}``.
        tp, predicted: ``{n: [K]}`` counts of that schedule (the real metric's inputs).
        schedules: ``keys(n) -> [key frames]``.
    """

    value: dict
    tp: dict
    predicted: dict
    schedules: Callable

    def keys(self, n: int) -> list:
        return self.schedules(n)


def best_schedules(values: np.ndarray, table: Optional[PairTable] = None) -> ClipCurve:
    """Exact DP over key placements for every feasible number of keys ``n``.

    ``values`` ``[T, window + 1]`` are additive pair values. ``best[n][e]`` is the
    best value covering frames ``0..e-1`` with ``n`` keys, the last key at
    ``e - L`` covering ``L <= window + 1`` frames. ``O(T * window)`` array work
    per ``n``, ``O(T^2)`` memory (back pointers). With ``table`` the counts of
    each schedule are carried along.
    """
    T, width = values.shape
    seg = segment_values(values)
    n_min = math.ceil(T / width)
    K = 0 if table is None else table.tp.shape[2]
    dtype = np.int64 if table is None else np.result_type(table.tp.dtype, table.predicted.dtype)
    seg_counts = np.zeros((T, width + 1, 2 * K), dtype)
    if table is not None:
        seg_counts[:, 1:] = np.cumsum(np.concatenate([table.tp, table.predicted], axis=2), axis=1)
    e = np.arange(T + 1)
    best = np.full(T + 1, -np.inf)
    best[1: width + 1] = seg[0, 1: width + 1][: T]
    counts = np.zeros((T + 1, 2 * K), dtype)
    counts[1: width + 1] = seg_counts[0, 1: width + 1][: T]
    back = np.zeros((T + 1, T + 1), np.int16)  # back[n, e]: length of the last segment
    back[1, 1: width + 1] = np.arange(1, width + 1)[: T]
    curve = ClipCurve({}, {}, {}, None)

    def keep(n):
        if n >= n_min and np.isfinite(best[T]):
            curve.value[n] = float(best[T])
            curve.tp[n], curve.predicted[n] = counts[T, :K].copy(), counts[T, K:].copy()

    keep(1)
    for n in range(2, T + 1):
        candidates = np.full((width, T + 1), -np.inf)
        for L in range(1, width + 1):
            start = e[L:] - L  # key frame of the last segment
            candidates[L - 1, L:] = best[start] + seg[start, L]
        choice = np.argmax(candidates, axis=0)
        best = candidates[choice, e]
        start = np.maximum(e - choice - 1, 0)
        counts = counts[start] + seg_counts[start, choice + 1]
        back[n] = choice + 1
        keep(n)

    def schedules(n: int) -> list:
        keys, end = [], T
        for m in range(n, 0, -1):
            end -= int(back[m, end])
            keys.append(end)
        return keys[::-1]

    curve.schedules = schedules
    return curve


def lagrangian_schedule(values: np.ndarray, lam: float) -> tuple[float, list]:
    """``max over schedules of value - lam * keys``: ``(value without the penalty, keys)``,
    the fewest keys among ties. ``O(T * window)``."""
    T, width = values.shape
    seg = segment_values(values)
    score = np.full(T + 1, -np.inf)
    count = np.zeros(T + 1, np.int64)
    back = np.zeros(T + 1, np.int64)
    score[0] = 0.0
    lengths = np.arange(1, width + 1)
    for e in range(1, T + 1):
        L = lengths[lengths <= e]
        start = e - L
        options = score[start] + seg[start, L] - lam
        top = options.max()
        ties = np.flatnonzero(options >= top - 1e-12 * max(1.0, abs(top)))
        pick = ties[np.argmin(count[start[ties]])]
        score[e], count[e], back[e] = options[pick], count[start[pick]] + 1, L[pick]
    keys, end = [], T
    while end > 0:
        end -= int(back[end])
        keys.append(end)
    return float(score[T] + lam * len(keys)), keys[::-1]


def lagrangian_curve(values: np.ndarray, table: PairTable, targets: Sequence[int] = (),
                     points: int = LAGRANGE_POINTS) -> ClipCurve:
    """The hull points found on a grid of penalties per key, plus a bisection on the
    penalty for each number of keys in ``targets`` (reaching it, or the hull points
    on either side of it)."""
    finite = values[np.isfinite(values)]
    span = float(np.abs(finite).max()) * values.shape[1] + 1e-9
    found: dict = {}

    def run(lam):
        value, keys = lagrangian_schedule(values, lam)
        found.setdefault(len(keys), (value, keys))
        return len(keys)

    for lam in np.concatenate([[0.0], span * np.geomspace(1e-6, 1.0, points - 1)]):
        run(lam)
    for target in targets:
        lo, hi = -span, span  # n(lo) >= target >= n(hi); a negative penalty reaches past the peak
        for _ in range(40):
            if target in found or hi - lo < 1e-12 * span:
                break
            mid = 0.5 * (lo + hi)
            if run(mid) > target:
                lo = mid
            else:
                hi = mid
    curve = ClipCurve({}, {}, {}, lambda n: list(found[n][1]))
    for n, (value, keys) in found.items():
        curve.value[n] = value
        curve.tp[n], curve.predicted[n] = table.counts(keys)
    return curve


def clip_curve(table: PairTable, values: np.ndarray, targets: Sequence[int] = (),
               exact_limit: int = EXACT_LIMIT) -> ClipCurve:
    """Per clip: exact for clips up to ``exact_limit`` frames, else the Lagrangian hull."""
    if table.frames <= exact_limit:
        return best_schedules(values, table)
    return lagrangian_curve(values, table, targets)


# -- over clips ----------------------------------------------------------------------


def knapsack(curves: Sequence[dict]) -> dict:
    """Multiple-choice knapsack: ``{total keys N: [n_c per clip]}`` maximising the summed
    value ``sum_c curves[c][n_c]`` (``curves``: ``{n: value}`` per clip) for every reachable ``N``: a DP over clips,
    ``O(clips * N * choices)`` array work."""
    best = np.zeros(1)
    picks = []
    for curve in curves:
        top = max(curve)
        step = np.full(best.size + top, -np.inf)
        pick = np.zeros(best.size + top, np.int64)
        for n, value in sorted(curve.items()):
            candidate = np.full_like(step, -np.inf)
            candidate[n: n + best.size] = best + value
            better = candidate > step
            step[better], pick[better] = candidate[better], n
        best = step
        picks.append(pick)
    out = {}
    for total in np.flatnonzero(np.isfinite(best)):
        split, rest = [], int(total)
        for pick in reversed(picks):
            split.append(int(pick[rest]))
            rest -= split[-1]
        out[int(total)] = split[::-1]
    return out


def fixed_schedule(frames: int, interval: int, first: Optional[int] = None) -> list:
    """A fixed interval's keys: frame 0, then ``first, first + interval, ...``
    (``first = interval`` is the usual phase; ``1 <= first <= interval``)."""
    first = interval if first is None else first
    return [0] + list(range(first, frames, interval))
