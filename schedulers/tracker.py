"""``Tracker``: embed a policy in any video pipeline, with numpy frames.

::

    tracker = Tracker(FrameDifference(threshold=12))
    for frame in frames:                      # [H, W, 3] uint8 RGB
        if tracker.step(frame).any_update:
            run_the_expensive_model(frame)

The tracker keeps each region's key frame (a copy of the region's crop, the
only per-stream state), computes the flow from the current region to its key
region only when the policy asks for it (OpenCV DIS by default, no
TensorFlow), and returns that flow in ``decision.extras["flow"]`` so the
pipeline can reuse it for warping. Nothing per frame is kept.
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable, Optional

import numpy as np

from schedulers.base import Context, Decision, Policy
from schedulers.regions import RegionGrid

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def first_frame_decision(num_regions: int) -> Decision:
    """Frame 0 of a stream: every region is a key frame (no score yet)."""
    return Decision(update=np.ones(num_regions, bool), scores=np.full(num_regions, np.nan), frame_index=0)


def check_frame(frame, index: int, name: str = "frame") -> np.ndarray:
    """Return ``frame`` as ``[H, W, 3]`` uint8 RGB; grayscale ``[H, W]`` or ``[H, W, 1]`` is repeated.

    Raises ``ValueError``/``TypeError`` naming the frame index, shape or dtype.
    """
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise TypeError(f"{name} {index} must be uint8 RGB, got dtype {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{name} {index} must be [H, W, 3] RGB (or [H, W] or [H, W, 1] gray), got shape "
                         f"{frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{name} {index} is empty: shape {frame.shape}")
    return frame


def check_policy_and_regions(policy, regions) -> RegionGrid:
    """Type checks shared by :class:`Tracker` and the video runner."""
    if isinstance(policy, type) or not hasattr(policy, "decide"):
        raise TypeError(
            f"policy must be a policy instance with a decide(context) method, got {policy!r}"
        )
    if regions is None:
        return RegionGrid(1, 1)
    if not isinstance(regions, RegionGrid):
        raise TypeError(f"regions must be a RegionGrid, got {regions!r}")
    return regions


class StreamCheck:
    """Frame checks for one stream: layout, and the same size throughout.

    The first frame also checks that the region grid fits it.
    """

    def __init__(self, regions: RegionGrid):
        self.regions = regions
        self.shape = None

    def __call__(self, frame, index: int) -> np.ndarray:
        frame = check_frame(frame, index)
        if self.shape is None:
            self.regions.boxes(frame.shape[0], frame.shape[1])  # raises when the grid does not fit
            self.shape = frame.shape
        elif frame.shape != self.shape:
            raise ValueError(
                f"frame {index} has shape {frame.shape} but the stream started with {self.shape}; "
                "call reset() to start a new stream"
            )
        return frame


def output_stride(grid: tuple, shape: tuple) -> Optional[int]:
    """The integer stride ``s`` at which a grid ``(h, w)`` covers a frame of ``shape`` ``(H, W)``: 1 when
    they are equal, else an ``s >= 2`` with ``h`` and ``w`` each ``ceil`` or ``floor`` of ``H / s`` and
    ``W / s`` (as a network's output grid is); ``None`` when none does. A small grid fits several: the
    stride that one rounding explains on both sides (both ``ceil`` or both ``floor``) comes first, then a
    power of two (networks' strides are: 360x480 at 32 gives 12x15, which 31 fits too), then the
    nearest to ``sqrt(H / h * W / w)``, then the larger."""
    (h, w), (height, width) = grid, shape
    if (h, w) == (height, width):
        return 1
    if not 0 < h <= height or not 0 < w <= width:
        return None
    # floor(H / s) == h or ceil(H / s) == h  <=>  H / (h + 1) < s < H / (h - 1) (for h = 1 no upper end:
    # strides up to 2 * max(H, W) are tried)
    low = max(2, height // (h + 1) + 1, width // (w + 1) + 1)
    high = min((height - 1) // (h - 1) if h > 1 else 2 * max(height, width) + 1,
               (width - 1) // (w - 1) if w > 1 else 2 * max(height, width) + 1)
    if low > high:
        return None
    scale = float(np.sqrt(height / h * width / w))

    def preference(s: int) -> tuple:
        same = (h == -(-height // s) and w == -(-width // s)) or (h == height // s and w == width // s)
        return (not same, s & (s - 1) != 0, abs(s - scale), -s)

    return min(range(low, min(high, low + 4096) + 1), key=preference)


_STREAMS: dict = {}  # id(policy) -> (weak reference to the policy, to the Tracker that follows its stream)
_STREAMS_LOCK = threading.Lock()  # trackers are made and stepped from several threads (one per camera, say)


def _stream_parts(policy: Policy) -> list:
    """``policy`` and the policies it wraps (a budget's ``policy``), those that keep state of their
    stream (``follows_one_stream``)."""
    parts, seen = [], set()
    while policy is not None and id(policy) not in seen:
        seen.add(id(policy))
        if getattr(policy, "follows_one_stream", False):
            parts.append(policy)
        policy = getattr(policy, "policy", None)
    return parts


def claim_stream(policy: Policy, tracker: "Tracker") -> None:
    """Record that ``tracker`` now drives ``policy`` and what it wraps (a new stream: :meth:`Tracker.reset`)."""
    parts = _stream_parts(policy)
    if not parts:
        return
    with _STREAMS_LOCK:
        for ident in [i for i, (p, _) in _STREAMS.items() if p() is None]:
            del _STREAMS[ident]
        for part in parts:
            _STREAMS[id(part)] = (weakref.ref(part), weakref.ref(tracker))


def check_stream(policy: Policy, tracker: "Tracker") -> None:
    """Refuse a step of ``tracker`` when a policy that keeps state of its stream
    (``follows_one_stream``: ``PropagationQuality``'s losses since each key, a budget's credit, the
    decision network's signals), or one it wraps, was claimed by another Tracker since: that
    Tracker's reset wiped this stream's state, and the two streams' frames would mix in it."""
    for part in _stream_parts(policy):
        with _STREAMS_LOCK:
            held = _STREAMS.get(id(part))
        # Claimed by another Tracker, even one gone since: its reset wiped this stream's state.
        if held is not None and held[0]() is part and held[1]() is not tracker:
            raise ValueError(
                f"this {type(part).__name__} keeps the state of one stream and now follows another Tracker's "
                f"(made or reset after this one's stream began); give each stream its own policy "
                f"(Tracker(policy.clone())), or reset() this Tracker to start a new stream with it")


class Tracker:
    """Keeps key frames per region and asks ``policy`` about each new frame.

    Args:
        policy: a :class:`schedulers.Policy`.
        regions: a :class:`RegionGrid` (default: the whole frame).
        flow: ``flow(current, key) -> [h, w, 2]`` float32, called per region
            only when ``policy.needs_flow``; default :class:`DISFlow`.
        features: ``features(current, key, flow) -> [h', w', C]``, the flow
            network's features of a region pair, called only when
            ``policy.needs_flow_features``. Without it a policy that wants
            them uses its own fallback (the decision network: OpenCV pair
            features).

    The first frame, and every region the policy updates, become key frames.
    A policy whose signals read the key frames' labels (``PropagationQuality``,
    which by default takes the shipped predictor that reads them when labels
    are given, or one with a predictor fitted on ``key_label_disagreement``)
    gets them from :meth:`label_keys`: after each :meth:`step` that updated a
    region, give the labels the model produced for that frame (giving them
    after every step is simplest and costs nothing more), or pass them to
    ``step(frame, labels)``.

    One Tracker follows one stream. A policy that keeps state of its stream
    (``PropagationQuality``, ``KeyBudget``, ``DecisionNetworkScheduler``; a
    budget's wrapped policy too) serves one Tracker at a time: a
    Tracker made (or reset) with it later takes it over, and the earlier
    Tracker's next step is refused. Give each stream its own
    (``policy.clone()``); stateless ones (``FixedInterval``,
    ``FrameDifference``, ``FlowMagnitude``) may be shared.
    """

    def __init__(
        self,
        policy: Policy,
        regions: Optional[RegionGrid] = None,
        flow: Optional[FlowFn] = None,
        features: Optional[Callable] = None,
    ):
        self.regions = check_policy_and_regions(policy, regions)
        self.policy = policy
        if flow is None and getattr(policy, "needs_flow", False):
            from schedulers.flow import default_flow

            flow = default_flow()
        self.flow = flow
        self.features = features
        self.reset()

    def reset(self) -> "Tracker":
        """Forget the stream: the next frame is frame 0 and a key frame."""
        self.frame_index_ = -1
        self._stream = StreamCheck(self.regions)
        self.key_regions_: list[np.ndarray] = []
        self.key_indices_: list[int] = []
        self.key_labels_: Optional[list] = None
        self._updated = None  # (frame index, regions updated) of the last commit
        self._pending = None
        if hasattr(self.policy, "reset"):
            self.policy.reset()
        claim_stream(self.policy, self)
        return self

    def step(self, frame, labels=None) -> Decision:
        """Decide for the next frame of the stream; updated regions become key regions. ``labels``:
        the frame's labels when they are known before the decision (ground truth, or a model's
        predictions computed beforehand), as :meth:`label_keys` takes them after it."""
        if labels is not None:  # checked before anything is committed
            frame = check_frame(frame, self.frame_index_ + 1)
            labels = self._checked_labels(labels, self.frame_index_ + 1, frame.shape[:2])
        context = self.observe(frame)
        if context is None:
            decision = first_frame_decision(len(self.regions))
        else:
            decision = self.policy.decide(context)
        decision = self.commit(decision)
        if labels is not None:
            self.label_keys(labels)
        return decision

    def observe(self, frame) -> Optional[Context]:
        """First half of :meth:`step`: check and crop the next frame, compute the
        flow the policy asks for, and return the :class:`Context` the policy
        would see (``None`` on frame 0, a key frame of every region).

        Follow it with :meth:`commit` of a decision for this frame, from the
        policy or from anything that decides several streams together (e.g.
        :meth:`schedulers.SharedBudget.step`).
        """
        check_stream(self.policy, self)
        index = self.frame_index_ + 1
        frame = self._stream(frame, index)
        crops = self.regions.split(frame)
        if index == 0:
            self._pending = (index, crops, None)
            return None
        flows = self._flows(crops, index) if getattr(self.policy, "needs_flow", False) else None
        if flows is not None:
            for r, (flow, crop) in enumerate(zip(flows, crops)):
                shape = getattr(flow, "shape", None)
                if shape is None or tuple(shape) != crop.shape[:2] + (2,):
                    raise ValueError(
                        f"the flow function returned {'shape ' + str(tuple(shape)) if shape is not None else repr(flow)} "
                        f"for region {r} of frame {index}; expected {crop.shape[:2] + (2,)}"
                    )
        pair_features = None
        if self.features is not None and getattr(self.policy, "needs_flow_features", False):
            pair_features = [
                self.features(c, k, None if flows is None else f)
                for c, k, f in zip(crops, self.key_regions_, flows or [None] * len(crops))
            ]
        self._pending = (index, crops, flows)
        return Context(
            frame_index=index, regions=crops, key_regions=self.key_regions_,
            key_indices=self.key_indices_, flow=flows, flow_features=pair_features,
            key_labels=self.key_labels_,
        )

    def commit(self, decision: Decision) -> Decision:
        """Second half of :meth:`step`: apply ``decision`` to the frame given to
        :meth:`observe` (updated regions become key regions) and return it, with
        the flow in ``decision.extras["flow"]`` when flow was computed."""
        pending = getattr(self, "_pending", None)
        if pending is None:
            raise RuntimeError("commit() needs a frame: call observe(frame) first")
        index, crops, flows = pending
        update = np.asarray(decision.update, dtype=bool).reshape(-1)
        if update.shape != (len(crops),):
            raise ValueError(f"the decision for frame {index} has {update.size} regions, the frame has {len(crops)}")
        if index == 0 and not update.all():
            raise ValueError("frame 0 of a stream is a key frame of every region; the decision skips some")
        if flows is not None:
            decision.extras["flow"] = flows
        self._remember(crops, update, index)
        if self.key_labels_ is not None:  # a new key's labels come from label_keys, never an older key's
            for r in np.flatnonzero(update):
                self.key_labels_[r] = None
        self.frame_index_ = index
        self._updated = (index, update)
        self._pending = None
        return decision

    def label_keys(self, labels) -> None:
        """The labels of the frame last decided (by :meth:`step` or :meth:`commit`): ``[H, W]`` int
        (a class per pixel, negative = unknown) or class scores ``[H, W, C]``, frame-sized or on a
        grid an integer stride coarser (a network's output, brought to the frame's size; see
        :func:`output_stride`). The
        regions that frame updated keep their crop as their key's labels (``Context.key_labels``);
        the others ignore it. A key region left without labels is a ``ValueError`` when a policy
        needs them."""
        if self._updated is None:
            raise RuntimeError("label_keys() labels the frame last decided: call step(frame) first")
        index, update = self._updated
        labels = self._checked_labels(labels, index, self._stream.shape[:2])
        crops = self.regions.split(labels)
        if self.key_labels_ is None:
            self.key_labels_ = [None] * len(crops)
        for r in np.flatnonzero(update):
            self.key_labels_[r] = crops[r].copy()

    @staticmethod
    def _checked_labels(labels, index: int, shape: tuple) -> np.ndarray:
        """``labels`` of frame ``index`` as an array: ``[H, W]`` integer classes or ``[H, W, C]`` scores
        (``C > 1``; ``[H, W, 1]`` is read as classes) of a frame of ``shape`` (H, W), else ``ValueError``.
        Labels on a grid ``s`` times coarser (a network's output stride: ``ceil`` or ``floor`` of ``H / s``
        by ``W / s``, one integer ``s >= 2``) are brought to the frame's size: scores by their argmax,
        then pixel ``(y, x)`` takes the class of cell ``(y // s, x // s)``."""
        labels = np.asarray(labels)
        if labels.ndim == 3 and labels.shape[2] == 1:
            labels = labels[..., 0]
        height, width = shape
        if labels.ndim == 3 and labels.shape[2] == 0:
            raise ValueError(f"labels of frame {index} have shape {labels.shape}: class scores need at least one class")
        stride = None if labels.ndim not in (2, 3) else output_stride(labels.shape[:2], shape)
        if stride is None:
            raise ValueError(f"labels of frame {index} have shape {labels.shape}; the frames are {height}x{width} "
                             "(give [H, W] classes or [H, W, C] class scores, at the frame's size or on a grid "
                             "an integer stride coarser)")
        if labels.ndim == 2 and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels of frame {index} are {labels.dtype}; give integer classes [H, W] or class "
                             "scores [H, W, C]")
        if labels.ndim == 2 and labels.size and int(labels.max()) > np.iinfo(np.int32).max:
            raise ValueError(f"labels of frame {index} hold class {int(labels.max())}; class ids must fit int32")
        if stride > 1:
            if labels.ndim == 3:
                labels = labels.argmax(-1)
            rows = np.minimum(np.arange(height) // stride, labels.shape[0] - 1)
            cols = np.minimum(np.arange(width) // stride, labels.shape[1] - 1)
            labels = labels[rows[:, None], cols[None, :]]
        return labels

    def _flows(self, crops, index: int) -> list[np.ndarray]:
        """Flow from each current region to its key region."""
        return [self.flow(c, k) for c, k in zip(crops, self.key_regions_)]

    def _remember(self, crops, update, index) -> None:
        if not self.key_regions_:
            self.key_regions_ = [c.copy() for c in crops]
            self.key_indices_ = [index] * len(crops)
            return
        for r in np.flatnonzero(update):
            self.key_regions_[r] = crops[r].copy()
            self.key_indices_[r] = index
