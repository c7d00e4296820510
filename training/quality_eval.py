"""Oracle evaluation of key-frame policies against the phase-fair fixed interval and the optimum.

``python -m training.quality_eval [--camvid] [--budgets 0.1 0.2 0.33]``

Oracle mode, whole-frame (1x1) keys: a key frame takes its true labels,
other frames carry the key's labels along OpenCV DIS flow from the current
frame to the key (:func:`adaptive_dff.compare.scoring.carry_labels`, as
``compare`` does). Every (key ``k``, frame ``t``) pair that a schedule uses is
scored once into a confusion matrix and cached, so any schedule's mIoU over a
data set's test clips is a sum of cached matrices:

* **fixed interval, phase-fair**: for every interval ``l = 1 .. window``
  and phase ``p = 0 .. l - 1`` (keys at frame 0 and at ``p, p + l, ...``),
  the mIoU and key fraction averaged over the phases: a dense curve;
* **optimal, per stream**: per clip, a dynamic program places ``m`` keys
  (frame 0 one of them, every frame within ``window`` of its key) to
  maximise the class-balanced sum of correct pixels (mIoU is not additive;
  each class's pixels weigh ``1 / its pixel count`` in the clip set); every
  clip gets the same key fraction; re-scored with the real mIoU. A dense
  curve over the key fraction;
* **policies**: each calibrated on the data set's calibration clips to each
  budget (:func:`schedulers.calibrate`), run on the test clips; scored at the
  key fraction really spent, with headroom captured
  ``(policy - fixed) / (optimal - fixed)``, both curves interpolated there.

Nothing is fitted or tuned on the test clips (on CamVid: frames 34..100).
"""

from __future__ import annotations

import logging

import argparse
import warnings
from typing import Sequence

import numpy as np

from adaptive_dff.compare.scoring import carry_labels
from adaptive_dff.metrics import confusion_matrix, mean_iou
from schedulers import DISFlow, Tracker, calibrate


class PairTable:
    """Confusion matrices of carried labels for (key, frame) pairs of one clip, computed on demand."""

    def __init__(self, frames, labels, num_classes: int, ignore_index, flow=None):
        self.frames, self.labels = list(frames), [np.asarray(x) for x in labels]
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.flow = flow or DISFlow()
        self._cache: dict = {}

    def __len__(self) -> int:
        return len(self.frames)

    def confusion(self, key: int, t: int) -> np.ndarray:
        if (key, t) not in self._cache:
            truth = self.labels[t]
            if key == t:
                predicted = truth
            else:
                predicted, _ = carry_labels(self.labels[key], self.flow(self.frames[t], self.frames[key]),
                                            self.num_classes)
            self._cache[key, t] = confusion_matrix(truth, predicted, self.num_classes, self.ignore_index)
        return self._cache[key, t]

    def schedule(self, keys: Sequence[int]) -> np.ndarray:
        """Summed confusion of the schedule with key frames ``keys`` (frame 0 is always one)."""
        keys = sorted(set(keys) | {0})
        total = np.zeros((self.num_classes, self.num_classes), np.int64)
        current = 0
        keyset = set(keys)
        for t in range(len(self)):
            if t in keyset:
                current = t
            total += self.confusion(current, t)
        return total


logger = logging.getLogger(__name__)

def fixed_curve(tables: Sequence[PairTable], window: int) -> np.ndarray:
    """``[[key fraction, mIoU], ...]`` of the phase-fair fixed interval, intervals 1..window."""
    points = []
    frames = sum(len(t) for t in tables)
    for interval in range(1, window + 1):
        fractions, scores = [], []
        for phase in range(interval):
            confusion, keys = 0, 0
            for table in tables:
                schedule = [0] + list(range(phase, len(table), interval))
                confusion = confusion + table.schedule(schedule)
                keys += len(set(schedule))
            fractions.append(keys / frames)
            scores.append(mean_iou(confusion))
        points.append((np.mean(fractions), np.mean(scores)))
    return np.array(sorted(points))


def optimal_keys(table: PairTable, keys: int, window: int, weights: np.ndarray) -> list:
    """The ``keys`` key frames (frame 0 included) maximising the weighted correct pixels of one clip."""
    n = len(table)
    keys = max(1, min(keys, n))
    gain = np.full((n, n), -np.inf)  # gain[p, e]: frames p..e carried from key p
    for p in range(n):
        total = 0.0
        for e in range(p, min(n, p + window + 1)):
            total += float(np.diag(table.confusion(p, e)) @ weights)
            gain[p, e] = total
    best = np.full((keys + 1, n), -np.inf)  # best[j, e]: frames 0..e with j keys, a segment ending at e
    choice = np.zeros((keys + 1, n), int)
    best[1] = gain[0]
    for j in range(2, keys + 1):
        for e in range(j - 1, n):
            starts = np.arange(max(1, e - window), e + 1)
            values = best[j - 1, starts - 1] + gain[starts, e]
            i = int(np.argmax(values))
            best[j, e], choice[j, e] = values[i], starts[i]
    j = int(np.argmax(best[:, n - 1]))  # fewer keys may be enough (never more than asked)
    schedule, e = [], n - 1
    while j > 1:
        p = choice[j, e]
        schedule.append(p)
        e, j = p - 1, j - 1
    return [0] + sorted(schedule)


def optimal_curve(tables: Sequence[PairTable], window: int, fractions=np.linspace(0.03, 0.6, 40)) -> np.ndarray:
    """``[[key fraction, mIoU], ...]``: the per-stream optimum (each clip the same key fraction)."""
    counts = sum(np.diag(t.confusion(k, k)) for t in tables for k in range(len(t))).astype(np.float64)
    weights = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), 0.0)
    frames = sum(len(t) for t in tables)
    points = []
    for fraction in fractions:
        confusion, keys = 0, 0
        for table in tables:
            schedule = optimal_keys(table, int(round(fraction * len(table))), window, weights)
            confusion = confusion + table.schedule(schedule)
            keys += len(schedule)
        points.append((keys / frames, mean_iou(confusion)))
    points = np.array(sorted(points))
    points[:, 1] = np.maximum.accumulate(points[:, 1])  # more keys never hurt the optimum
    return points


def run_policy(policy, table: PairTable) -> list:
    """The key frames ``policy`` chooses on ``table``'s clip (1x1)."""
    tracker = Tracker(policy, flow=table.flow)
    return [t for t, frame in enumerate(table.frames) if tracker.step(frame).update[0]]


def _calibrated(policy, clips, budget: float, flow):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return calibrate(policy, clips=clips, target_key_fraction=budget, flow=flow)


def evaluate(dataset, policies: dict, budgets=(0.10, 0.20, 0.33), window: int = 30, match: bool = False,
             log=logger.info) -> list:
    """Rows ``{dataset, policy, budget, key_fraction, miou, fixed, optimal, headroom_captured}``.

    ``policies``: name -> ``make(budget) -> policy`` (already calibrated or a
    budget controller), or name -> a policy to :func:`schedulers.calibrate`
    on the calibration clips. With ``match`` each policy is also run with
    its threshold calibrated on each test clip itself to spend the budget
    there: no labels are used, but the threshold knows the clip's scores in
    hindsight, so this is a diagnostic (what a perfect per-stream budget
    controller could reach with this score), not a deployable result.
    """
    tables = [PairTable(c.frames, c.labels, dataset.num_classes, dataset.ignore_index) for c in dataset.test]
    fixed = fixed_curve(tables, window)
    optimum = optimal_curve(tables, window)
    frames = sum(len(t) for t in tables)
    rows = []
    for name, policy in policies.items():
        for budget in budgets:
            for matched in (False, True) if match else (False,):
                confusion, keys, spent_calibration = 0, 0, None
                for table, clip in zip(tables, dataset.test):
                    if callable(policy) and not hasattr(policy, "decide"):
                        chosen = policy(budget)
                    elif matched:  # label-free, but with hindsight of this clip's scores: a diagnostic
                        chosen = _calibrated(policy, [clip.frames], budget, table.flow).policy
                    else:
                        if spent_calibration is None:
                            found = _calibrated(policy, [c.frames for c in dataset.calibration], budget, table.flow)
                            spent_calibration = found.key_fraction
                        chosen = found.policy
                    schedule = run_policy(chosen, table)
                    confusion = confusion + table.schedule(schedule)
                    keys += len(schedule)
                spent, score = keys / frames, mean_iou(confusion)
                f = float(np.interp(spent, fixed[:, 0], fixed[:, 1]))
                o = float(np.interp(spent, optimum[:, 0], optimum[:, 1]))
                captured = (score - f) / (o - f) if o - f > 1e-9 else float("nan")
                label = name + (" (matched per clip)" if matched else "")
                rows.append(dict(dataset=dataset.name, policy=label, budget=budget, key_fraction=spent,
                                 calibration_key_fraction=spent_calibration, miou=score, fixed=f, optimal=o,
                                 headroom_captured=captured))
                log(f"{dataset.name:>18} {label:>38} budget {budget:.2f}: spent {spent:.3f}"
                    + (f" (calibration {spent_calibration:.3f})" if spent_calibration is not None else "")
                    + f"  mIoU {score:.4f}  fixed {f:.4f}  optimal {o:.4f}  vs fixed {score - f:+.4f}"
                    f"  captured {captured:+.0%}")
    for budget in budgets:
        f = float(np.interp(budget, fixed[:, 0], fixed[:, 1]))
        o = float(np.interp(budget, optimum[:, 0], optimum[:, 1]))
        log(f"{dataset.name:>18} at exactly {budget:.2f}: fixed (phase-fair) {f:.4f}, optimal per stream {o:.4f}, "
            f"headroom {o - f:+.4f}")
    return rows


def default_policies() -> dict:
    from schedulers import FlowMagnitude, FrameDifference
    from schedulers.quality import PropagationQuality

    return {
        "quality_renewal": PropagationQuality(rule="renewal"),
        "quality_greedy": PropagationQuality(rule="greedy", threshold=0.3),
        "frame_difference": FrameDifference(),
        "flow_magnitude": FlowMagnitude(),
    }


def main(argv=None) -> int:
    from adaptive_dff.compare import datasets

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--camvid", default=None, metavar="DATA_ROOT", help="also the CamVid val clip (frames 34..100 scored)")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the generated sets")
    parser.add_argument("--frames", type=int, default=48, help="generated clip length (compare's default 48)")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.10, 0.20, 0.33])
    parser.add_argument("--policies", nargs="+", default=None)
    parser.add_argument("--window", type=int, default=30)
    parser.add_argument("--key-budget", action="store_true",
                        help="run each policy under schedulers.KeyBudget (its budget the target) instead of calibrating it")
    parser.add_argument("--match", action="store_true",
                        help="also a diagnostic row per policy: its threshold matched to the budget on each test clip")
    args = parser.parse_args(argv)
    policies = default_policies()
    if args.policies:
        policies = {k: v for k, v in policies.items() if k in args.policies}
    if args.key_budget:
        import copy

        from schedulers import KeyBudget

        policies = {name + "@budget": (lambda b, p=p: KeyBudget(copy.deepcopy(p), target=b))
                    for name, p in policies.items()}
    sets = [] if args.no_synthetic else datasets.synthetic_datasets(frames=args.frames)
    if args.camvid:
        sets.append(datasets.camvid_val_dataset(args.camvid))
    for dataset in sets:
        evaluate(dataset, policies, args.budgets, args.window, match=args.match)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
