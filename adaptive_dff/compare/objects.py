"""Region similarity ``J``, the object-video measure (DAVIS), beside compare's mIoU.

Object segmentation benchmarks (DAVIS; Perazzi et al., CVPR 2016; Pont-Tuset
et al., 2017) score each object on its own: per frame, the IoU of the
object's predicted and true masks (1 when both are empty), averaged over the
frames of its sequence; ``J`` is the mean of those per-object figures.
Compare scores it per test clip (:func:`adaptive_dff.compare.datasets` cuts
videos into clips):

* the objects of a clip are its classes other than :data:`BACKGROUND` that
  its true labels hold in at least one frame (void pixels are left out, as
  in every compare figure);
* ``J`` of a set of clips is the mean over every (clip, object) of the
  object's mean IoU over the clip's frames.

Unlike the mIoU of a summed confusion, ``J`` is a sum over frames, so:

* a :class:`~adaptive_dff.compare.scoring.CellResult` keeps the sum of the
  per-object means (``object_iou``) and the number of objects (``objects``)
  of its clips, which add up over clips (:class:`ObjectScore`);
* the optimal schedule of a set of clips under ``J`` is found exactly by the
  search of :mod:`adaptive_dff.compare.optimal`: :func:`j_tables` turns each
  clip's pair table into one whose per-pair "true positives" are the pair's
  share of ``J`` (no linearisation is needed), scored by
  :class:`RegionSimilarity`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from adaptive_dff.compare.optimal import PairTable

BACKGROUND = 0  # the class id that is no object (DAVIS: 0)
METRICS = ("miou", "j")


def check_metric(metric) -> str:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    return metric


def object_ious(tp: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """float64 ``[..., K]``: per class, ``tp / (truth + predicted - tp)``, 1 where that union is
    empty (the object neither there nor predicted: DAVIS's convention)."""
    tp = np.asarray(tp, np.float64)
    union = np.asarray(truth, np.float64) + np.asarray(predicted, np.float64) - tp
    return np.where(union > 0, tp / np.where(union > 0, union, 1.0), 1.0)


class ObjectScore:
    """Accumulates one clip's per-frame confusion matrices into its ``J`` sums.

    ``add(confusion)`` once per frame (``[K, K]``, rows truth, void left out);
    ``result()`` gives ``(object_iou, objects)``: the sum over the clip's
    objects of their mean IoU over the frames added, and how many objects.
    """

    def __init__(self, num_classes: int):
        self.iou_sum = np.zeros(num_classes, np.float64)
        self.truth = np.zeros(num_classes, np.int64)
        self.frames = 0

    def add(self, confusion: np.ndarray) -> None:
        confusion = np.asarray(confusion)
        truth = confusion.sum(axis=1)
        self.iou_sum += object_ious(np.diag(confusion), confusion.sum(axis=0), truth)
        self.truth += truth
        self.frames += 1

    def result(self) -> tuple[float, int]:
        objects = object_mask(self.truth)
        if not self.frames or not objects.any():
            return 0.0, 0
        return float(self.iou_sum[objects].sum() / self.frames), int(objects.sum())


def object_mask(truth: np.ndarray) -> np.ndarray:
    """bool ``[K]``: the objects of a clip from its true pixels per class ``[K]`` summed over its
    frames (the classes but the background it holds)."""
    objects = np.asarray(truth) > 0
    objects[BACKGROUND] = False
    return objects


def clip_objects(table: PairTable) -> np.ndarray:
    """bool ``[K]``: the objects of a clip (:func:`object_mask` of its truth)."""
    return object_mask(table.truth.sum(axis=0))


def j_table(table: PairTable) -> PairTable:
    """``table`` with ``tp[k, d, c]`` replaced by pair ``(k, k + d)``'s share of its clip's ``J``
    sum: the IoU of object ``c`` in frame ``k + d`` carrying key ``k``'s labels, divided by the
    clip's frame count (0 for classes that are no object of the clip and past the clip's end);
    ``predicted`` zero. The clip's ``J`` sum under a schedule is then ``counts(keys)[0].sum()``."""
    T, width = table.frames, table.window + 1
    frame = np.minimum(np.arange(T)[:, None] + np.arange(width)[None, :], T - 1)
    ious = object_ious(table.tp, table.predicted, table.truth[frame])
    past = (np.arange(T)[:, None] + np.arange(width)[None, :]) >= T
    ious[past] = 0.0
    shares = ious * clip_objects(table)[None, None, :] / T
    return PairTable(shares, np.zeros_like(shares), table.truth)


class RegionSimilarity:
    """``J`` of a set of clips from :func:`j_table` sums: ``score(tp, predicted) = tp.sum() /
    objects``; exactly ``linear``, so ``weights`` is ``1 / objects`` for every class and 0 (the
    optimal search needs one pass)."""

    linear = True

    def __init__(self, objects: int):
        self.objects = int(objects)

    def score(self, tp: np.ndarray, predicted: np.ndarray) -> float:
        return float(np.sum(tp) / self.objects) if self.objects else float("nan")

    def weights(self, tp: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale = 1.0 / self.objects if self.objects else 0.0
        return np.full(np.shape(tp), scale), np.zeros(np.shape(tp))


def j_tables(tables: Sequence[PairTable]) -> tuple[list, RegionSimilarity]:
    """``(tables as j_table, the metric scoring them)`` for a set of clips."""
    return [j_table(t) for t in tables], RegionSimilarity(sum(int(clip_objects(t).sum()) for t in tables))
