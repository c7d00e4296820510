"""The scheduler interface: what a policy sees (Context) and returns (Decision).

A policy never touches a model. It declares what it needs (``needs_flow``,
``needs_flow_features``) so a pipeline computes flow before deciding only for
policies that use it, and reuses that same flow for the warp.

Conventions (scikit-learn's habits, one implementation in :class:`Estimator`
for policies, :class:`schedulers.DecisionModel` and :class:`schedulers.RegionGrid`):
``__init__`` stores its arguments under their own names and nothing else;
run-time and fitted state ends in ``_``; ``get_params()`` reads the
constructor's signature, ``set_params()`` changes parameters, ``clone()``
gives a new object with the same parameters and no state; a policy's
``reset()`` clears its run-time state.

Every policy here decides by one score per region and one threshold:
``update = score > threshold`` (for ``FixedInterval`` the score is the number
of frames since the region's key frame). That shared shape is what
:func:`schedulers.calibrate` relies on.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np


def is_number(value) -> bool:
    """Whether ``value`` is a real number (Python or numpy; a bool is not one), finite or not."""
    return not isinstance(value, bool) and isinstance(value, (int, float, np.number))


def check_int(value, name: str, minimum: int) -> int:
    """``value`` as an int, or ``ValueError`` naming ``name`` when it is not a whole number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Estimator:
    """scikit-learn's estimator conventions, introspected from the constructor.

    A subclass's ``__init__`` takes keyword arguments and stores each under
    its own name; anything computed later (fitted or run-time state) ends in
    ``_``.
    """

    @classmethod
    def _param_names(cls) -> list:
        parameters = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in parameters
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict:
        """The constructor's parameters and their current values."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set parameters by name (unknown names are refused before any is set); returns ``self``."""
        valid = self._param_names()
        for name in params:
            if name not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}; it has {sorted(valid)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def clone(self):
        """A new object of the same class and parameters, without fitted or run-time state.

        Parameter values are passed as they are, not copied: a fitted
        decision model given to a policy stays that fitted model (as
        scikit-learn's ``clone`` with prefit estimators would not), and a
        flow function is not duplicated."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


@dataclass
class Context:
    """What a policy sees for one frame, region by region.

    Attributes:
        frame_index: index of the current frame in its stream (0-based).
        regions: the current frame cut into regions, each ``[h, w, 3]`` uint8 RGB.
        key_regions: the key frame of each region, cropped alike.
        key_indices: frame index of each region's key frame.
        flow: per region, float32 flow from the current region to its key
            region (``dx, dy`` in pixels of the region, whatever the grid),
            ``[ceil(h / flow_stride), ceil(w / flow_stride), 2]``, or ``None``
            when the policy did not ask for it.
        flow_stride: region pixels per flow pixel: 1 (full resolution, as
            :class:`schedulers.Tracker` gives it) or a network's feature grid
            (16, as the video runner gives a flow network's output). A policy
            that must read flow at full resolution sets
            ``needs_full_resolution_flow``, and gets stride 1 from either.
        flow_features: per region, the flow network's features, or ``None``.
        key_labels: per region, the labels of its key region ``[h, w]`` int
            (a class per pixel, negative = unknown; the model's prediction,
            or the ground truth in oracle mode) or class scores ``[h, w, C]``,
            or ``None`` when the pipeline gives none (a policy whose signals
            need them says so).
    """

    frame_index: int
    regions: Sequence[np.ndarray]
    key_regions: Sequence[np.ndarray]
    key_indices: Sequence[int]
    flow: Optional[Sequence[np.ndarray]] = None
    flow_features: Optional[Sequence[np.ndarray]] = None
    flow_stride: int = 1
    key_labels: Optional[Sequence[np.ndarray]] = None

    @property
    def num_regions(self) -> int:
        return len(self.regions)


@dataclass
class Decision:
    """Per region: recompute (``update``) or propagate, and the score behind it.

    Attributes:
        update: ``[R]`` bool, True where the region is recomputed on this frame.
        scores: ``[R]`` float64, the score that drove the decision (frames
            since the key frame, difference, flow magnitude, ...).
        frame_index: the frame this decision is about.
    """

    update: np.ndarray
    scores: np.ndarray
    frame_index: int = 0
    extras: dict = field(default_factory=dict)

    @property
    def any_update(self) -> bool:
        """True when at least one region is recomputed."""
        return bool(np.any(self.update))


class Policy(Estimator):
    """Base class of key-frame policies: ``decide(context) -> Decision``.

    Subclasses implement :meth:`score` (one float per region, higher means
    "more change") and name their threshold hyperparameter in
    ``threshold_param``.
    """

    needs_flow: bool = False
    needs_flow_features: bool = False
    needs_full_resolution_flow: bool = False  # True: Context.flow at flow_stride 1, whoever runs the policy
    threshold_param: str = "threshold"
    update_when_below: bool = False  # True: update where score < threshold (see decide)
    integer_threshold: bool = False  # True: the threshold takes whole numbers (calibration)
    follows_one_stream: bool = False  # True: keeps state of its stream, so one Tracker at a time (Tracker)

    def reset(self) -> "Policy":
        """Forget run-time state (attributes ending in ``_``)."""
        for name in [n for n in vars(self) if n.endswith("_") and not n.startswith("_")]:
            delattr(self, name)
        return self

    def decision_threshold(self) -> float:
        """The value the score is compared with: update where ``score > decision_threshold()``."""
        value = getattr(self, self.threshold_param)
        if not is_number(value) or not np.isfinite(value):
            raise ValueError(f"{self.threshold_param} must be a finite number, got {value!r}")
        return float(value)

    def score(self, context: Context) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def region_scores(self, context: Context) -> np.ndarray:
        """:meth:`score` as ``[R]`` float64, checked to hold one score per region."""
        scores = np.asarray(self.score(context), dtype=np.float64).reshape(-1)
        if scores.shape != (context.num_regions,):
            raise ValueError(
                f"{type(self).__name__}.score returned {scores.shape[0]} scores for "
                f"{context.num_regions} regions"
            )
        return scores

    def decide(self, context: Context) -> Decision:
        """Update each region whose score exceeds the threshold (or falls below
        it, for policies with ``update_when_below``)."""
        scores = self.region_scores(context)
        threshold = self.decision_threshold()
        update = scores < threshold if self.update_when_below else scores > threshold
        return Decision(update=update, scores=scores, frame_index=context.frame_index)


def reads_key_labels(policy) -> bool:
    """Whether ``policy``, or a policy it wraps (``KeyBudget``'s ``policy``), reads the key frames'
    labels (``Context.key_labels``) when a pipeline gives them: calibrate and replay it with labels."""
    while policy is not None:
        if getattr(policy, "reads_key_labels", False):
            return True
        policy = getattr(policy, "policy", None)
    return False
