"""``SharedBudget``: one key-frame budget that many streams draw from.

A server running many cameras on one accelerator can afford a number of key
computations per step across all of them, not a fraction per camera. Each
step the keys go to the regions, of any stream, whose scores rank worst
among the recent scores of all streams, or, for scores that are costs (the
price rule, ``rule="auto"`` as in :class:`schedulers.KeyBudget`), whose
scores pass one price for all streams (the same control laws as
:class:`schedulers.KeyBudget`, over the pooled region-frames; the total
spend stays within ``D / n`` of the target (hard cuts may overdraw further, as in
:class:`schedulers.KeyBudget`), ``D = clip(0.004 n, 0.5, 2 R)``
keys for ``n`` region-frames so far and ``R`` regions in a step; under the
price rule ``D`` is at least ``0.018 H`` before ``H = 10 R / target``
region-frames, so the streams' frame-0 keys, charged together, do not hold
back every stream's next key for as long as that debt lasts)::

    from schedulers import PropagationQuality, SharedBudget

    shared = SharedBudget(PropagationQuality(), target=0.1)  # 10% of all region-frames
    for frames in camera_frames:                            # {"door": frame, "hall": frame, ...}
        decisions = shared.step(frames)                     # {"door": Decision, ...}
        for name, decision in decisions.items():
            if decision.any_update:
                run_the_expensive_model(frames[name])
    shared.key_fraction                                     # ~0.10 over all streams

:meth:`SharedBudget.step` decides all the streams of a step together (a
stream missing from a step simply idles; a name seen for the first time
starts a new stream, whose frame 0 is a key of every region and is charged
to the budget; :meth:`close` ends one). ``SharedBudget(policy,
keys_per_step=K)`` spends about ``K`` keys per step instead of a fraction.

Pipelines that step each stream themselves (``adaptive_dff.VideoRunner``)
draw from the budget through a per-stream policy instead::

    runners = {name: VideoRunner(model, shared.stream(name), regions=shared.regions) for name in names}

Each stream then decides on its own when its pipeline steps it, against the
same pooled ranks and credit (streams that decide first in a step are served
first when credit runs short). That path needs a fractional ``target``.

Every stream uses the budget's region grid; a stream given another grid is
refused. The policy is given as an instance (copied per stream with its
parameters; a fitted model inside is shared, not copied) or as a function
(or class) that makes one.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np

from schedulers.base import Context, Decision, Policy, check_int
from schedulers.budget import (
    RULES, BudgetController, BudgetPolicy, check_intervals, check_target, history_size, interval_masks, promised_horizon,
    check_price, previous_scores, resolve_rule, scoring_function, warn_kept_non_finite,
)

SHARED_EARLY = {"rank": 0.0, "price": 0.018}  # D / horizon before the horizon, per rule
from schedulers.regions import RegionGrid
from schedulers.tracker import Tracker, first_frame_decision


class RegionGridMismatch(ValueError):
    """A stream with another region grid than its shared budget's."""


class BudgetStream(BudgetPolicy):
    """The policy of one stream of a :class:`SharedBudget` (made by :meth:`SharedBudget.stream`).

    Give it to a :class:`Tracker` or a ``VideoRunner``; its decisions draw
    from the shared budget. ``Decision.scores`` are the wrapped policy's
    scores, ``Decision.extras["budget"]`` the shared controller's state.
    """

    threshold_param = "name"

    def __init__(self, shared: "SharedBudget", name: str, policy: Policy):
        self.shared = shared
        self.name = name
        self.policy = policy

    def decide(self, context: Context) -> Decision:
        if self.shared.streams.get(self.name) is not self:
            raise ValueError(f"stream {self.name!r} was closed; ask the shared budget for a new stream")
        if self.shared.keys_per_step is not None:
            raise ValueError("a keys_per_step budget decides all streams of a step together: use SharedBudget.step")
        return self.shared.decide_together([(self, context)])[0]


class SharedBudget:
    """One key-frame budget for several streams.

    Args:
        policy: a score-based policy instance (copied per stream), or a
            function or class that returns a new one.
        target: key fraction of all region-frames, in (0, 1].
        keys_per_step: instead of ``target``: keys per :meth:`step`, at least 1.
        rule: ``"auto"``, ``"rank"`` or ``"price"``, as in :class:`schedulers.KeyBudget`
            (resolved from the first stream's policy).
        price: the price rule's starting price, as in :class:`schedulers.KeyBudget`
            (one price for all streams): the policy's threshold calibrated to
            ``target``, or with ``keys_per_step`` to the fraction those keys make
            of the streams' region-frames.
        regions: the region grid of every stream (default: whole frame).
        min_interval, max_interval: per region, as in :class:`KeyBudget`.
        flow, features: passed to the :class:`Tracker` of each stream in :meth:`step`.

    Attributes (after steps): ``key_fraction``, ``keys``, ``region_frames``,
    ``trackers`` (name -> :class:`Tracker` of :meth:`step`'s streams),
    ``streams`` (name -> :class:`BudgetStream`).

    Every new stream's frame 0 is a key of every region, charged to the
    shared budget like any key (the model really runs there), and
    :meth:`close` refunds nothing. Streams that reconnect often (each
    reconnection a new stream) therefore spend keys the other streams then
    wait for: twenty streams of two frames at 10% leave about sixteen keys to
    repay, and until the balance is back within its depth the live streams
    get no key but those ``max_interval`` forces, not even for a hard cut.
    Where reconnections are frequent, give them a budget of their own.
    """

    def __init__(
        self,
        policy: Union[Policy, Callable[[], Policy]],
        target: Optional[float] = None,
        *,
        keys_per_step: Optional[int] = None,
        regions: Optional[RegionGrid] = None,
        min_interval: int = 1,
        max_interval: Optional[int] = None,
        flow=None,
        features=None,
        rule: str = "auto",
        price: Optional[float] = None,
    ):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        check_price(price, None, "price" if rule == "auto" else rule, auto=False)  # "auto": again at the first step
        if (target is None) == (keys_per_step is None):
            raise ValueError("give exactly one of target (a key fraction) and keys_per_step")
        if keys_per_step is not None:
            if isinstance(keys_per_step, bool) or not isinstance(keys_per_step, (int, np.integer)) or keys_per_step < 1:
                raise ValueError(f"keys_per_step must be an integer >= 1, got {keys_per_step!r}")
            share = 0.1  # a placeholder: every step passes its own K / regions
        else:
            share = check_target(target)
        if regions is not None and not isinstance(regions, RegionGrid):
            raise TypeError(f"regions must be a RegionGrid, got {regions!r}")
        low = check_int(min_interval, "min_interval", 1)
        # With keys_per_step the fraction depends on how many streams run: only min <= max is checked.
        self.min_interval, self.max_interval = check_intervals(
            share if target is not None else 1.0 / low, low, max_interval
        )
        self.target = None if target is None else share
        self.keys_per_step = None if keys_per_step is None else int(keys_per_step)
        self.regions = regions if regions is not None else RegionGrid(1, 1)
        self.flow = flow
        self.features = features
        self._make_policy = self._policy_factory(policy)
        self.rule = rule
        self.price = price
        self.controller = BudgetController(share, slope=0.004, history=history_size(len(self.regions), share),
                                           rule="")  # set from the first stream's policy (resolve_rule)
        self.streams: dict = {}
        self.trackers: dict = {}
        self._stream_state: dict = {}  # name -> (last frame index, keys, region-frames)
        self._last_scores: dict = {}  # name -> (key indices, scores) of the stream's last decision

    @staticmethod
    def _policy_factory(policy) -> Callable[[], Policy]:
        if isinstance(policy, Policy) or (hasattr(policy, "score") and not isinstance(policy, type)):
            scoring_function(policy)  # raises for a policy without a score

            def copy():
                return type(policy)(**policy.get_params())

            return copy
        if callable(policy):
            def make():
                made = policy()
                scoring_function(made)
                return made

            return make
        raise TypeError(f"policy must be a policy instance or a function that makes one, got {policy!r}")

    # -- per-stream policies ---------------------------------------------------------------

    def stream(self, name: Optional[str] = None, regions: Optional[RegionGrid] = None) -> BudgetStream:
        """A new stream's policy, for a :class:`Tracker` or a ``VideoRunner`` using ``regions``
        (checked against the budget's grid; default name ``stream<N>``)."""
        if regions is not None:
            self.check_regions(regions, name)
        name = f"stream{len(self.streams)}" if name is None else name
        if name in self.streams:
            raise ValueError(f"a stream named {name!r} already draws from this budget")
        self.streams[name] = BudgetStream(self, name, self._make_policy())
        return self.streams[name]

    def check_regions(self, regions, name=None) -> None:
        grid = regions if isinstance(regions, RegionGrid) else RegionGrid(1, 1) if regions is None else regions
        if not isinstance(grid, RegionGrid) or grid.get_params() != self.regions.get_params():
            raise RegionGridMismatch(
                f"stream {name!r} uses regions {grid!r} but the shared budget's grid is {self.regions!r}"
            )

    def close(self, name: str) -> None:
        """End stream ``name``: it stops drawing from the budget (a later frame under the
        same name starts a new stream)."""
        if name not in self.streams:
            raise KeyError(f"no stream named {name!r}; streams: {sorted(self.streams)}")
        del self.streams[name]
        self.trackers.pop(name, None)
        self._stream_state.pop(name, None)
        self._last_scores.pop(name, None)

    @property
    def keys(self) -> int:
        return self.controller.keys

    @property
    def region_frames(self) -> int:
        return self.controller.region_frames

    @property
    def key_fraction(self) -> float:
        """Keys over region-frames of all streams so far (frames 0 included)."""
        return self.controller.key_fraction

    def stream_key_fraction(self, name: str) -> float:
        _, keys, region_frames = self._stream_state[name]
        return keys / region_frames if region_frames else float("nan")

    # -- deciding -------------------------------------------------------------------------

    def _register(self, stream: BudgetStream, context: Context) -> None:
        """Charge a stream's frames before ``context`` (frame 0: a key of every region)."""
        regions = context.num_regions
        if regions != len(self.regions):
            raise RegionGridMismatch(
                f"stream {stream.name!r} has {regions} regions per frame but the shared budget's grid "
                f"{self.regions!r} has {len(self.regions)}"
            )
        state = self._stream_state.get(stream.name)
        if getattr(stream, "started_", False) and state is not None:
            last = state[0]
            if context.frame_index <= last:
                raise ValueError(
                    f"stream {stream.name!r}: frame {context.frame_index} comes after frame {last}; "
                    "reset() its policy (or its tracker) to start a new stream"
                )
            return
        keys = regions + int(np.count_nonzero(np.asarray(context.key_indices) > 0))
        share = self.target if self.target is not None else self.keys_per_step / (regions * max(len(self.streams), 1))
        self.controller.grow_history(history_size(regions * max(len(self.streams), 1), min(1.0, share)))
        self.controller.charge(regions * context.frame_index, keys, credit=self.keys_per_step is None)
        self._stream_state[stream.name] = (context.frame_index - 1, keys, regions * context.frame_index)
        self._last_scores.pop(stream.name, None)  # a new stream: no frame before for the cut test
        stream.started_ = True

    def decide_together(self, pairs: list) -> list:
        """Decide ``[(BudgetStream, Context)]`` of one step together; returns their decisions."""
        if not pairs:
            return []
        if not self.controller.rule:
            rule = resolve_rule(pairs[0][0].policy, self.rule)
            price = check_price(self.price, pairs[0][0].policy, rule, auto=self.rule == "auto")
            self.controller.rule, self.controller.early = rule, SHARED_EARLY[rule]
            if price is not None:
                self.controller.start_price(price)
        scored = []
        for stream, context in pairs:
            self._register(stream, context)
            raw, worse = scoring_function(stream.policy)(context)
            eligible, forced = interval_masks(context, self.min_interval, self.max_interval)
            last = self._stream_state[stream.name][0]
            elapsed = context.frame_index - last
            scored.append((stream, context, raw, worse, eligible, forced, elapsed))
        region_frames = sum(c.num_regions * e for _, c, _, _, _, _, e in scored)
        total = sum(c.num_regions for _, c, *_ in scored)
        self.controller.charge(region_frames, 0, credit=self.keys_per_step is None)
        share = None if self.keys_per_step is None else min(1.0, self.keys_per_step / total)
        # Streams deciding one at a time (BudgetStream) share one band: up to half a key of room per
        # open stream, as soon as the run is long enough for that room to stay within 0.009 of the target.
        open_streams = max(len(self.streams), len(scored))
        room = max(0.5, min(0.5 * open_streams, 0.009 * self.controller.region_frames))
        # Before ten key intervals of every open stream have passed, the band is already what it will be
        # then (as KeyBudget's horizon): the streams' frame-0 keys, charged together, do not hold back
        # every stream's next key for as long as the debt lasts.
        self.controller.horizon = promised_horizon(open_streams * len(self.regions), share or self.target)
        update, state = self.controller.allocate(
            np.concatenate([s[3] for s in scored]), np.concatenate([s[4] for s in scored]),
            np.concatenate([s[5] for s in scored]), regions=max(total, open_streams * len(self.regions)),
            target=share, floor=room,
            ages=np.concatenate([c.frame_index - np.asarray(c.key_indices, np.int64) for _, c, *_ in scored]),
            previous=np.concatenate([previous_scores(self._last_scores.get(st.name), c) for st, c, *_ in scored]),
        )
        for stream, context, _, worse, *_ in scored:
            self._last_scores[stream.name] = (np.asarray(context.key_indices, np.int64).copy(), worse)
        decisions, start = [], 0
        for stream, context, raw, _, _, _, elapsed in scored:
            stop = start + context.num_regions
            mine = update[start:stop]
            stream.kept_non_finite_ = warn_kept_non_finite(  # run-time state: reset() forgets it
                raw, mine, context.frame_index, getattr(stream, "kept_non_finite_", 0), f"stream {stream.name!r}")
            extras = {"budget": {k: (v[start:stop] if isinstance(v, np.ndarray) else v) for k, v in state.items()}}
            extras["budget"]["kept_non_finite"] = stream.kept_non_finite_
            decisions.append(Decision(update=mine, scores=raw, frame_index=context.frame_index, extras=extras))
            _, keys, frames = self._stream_state[stream.name]
            self._stream_state[stream.name] = (
                context.frame_index, keys + int(np.count_nonzero(mine)), frames + context.num_regions * elapsed,
            )
            start = stop
        return decisions

    def tracker(self, name: str) -> Tracker:
        """The :class:`Tracker` of stream ``name`` in :meth:`step` (made on first use)."""
        if name not in self.trackers:
            self.trackers[name] = Tracker(self.stream(name), regions=self.regions, flow=self.flow,
                                          features=self.features)
        return self.trackers[name]

    def step(self, frames: dict) -> dict:
        """Decide one step of several streams together: ``{name: frame}`` -> ``{name: Decision}``.

        Frames are ``[H, W, 3]`` uint8 RGB; each stream may have its own size.
        Updated regions become their stream's key regions (flows, when
        computed, are in ``decision.extras["flow"]``).
        """
        if not isinstance(frames, dict) or not frames:
            raise TypeError(f"step takes a non-empty dict {{stream name: frame}}, got {type(frames).__name__}")
        if self.keys_per_step is not None:
            self.controller.credit += self.keys_per_step
        contexts, decisions = {}, {}
        for name, frame in frames.items():
            tracker = self.tracker(name)
            contexts[name] = tracker.observe(frame)
        firsts = [name for name, context in contexts.items() if context is None]
        for name in firsts:  # frame 0: a key of every region, charged at once
            regions = len(self.regions)
            self.controller.charge(regions, regions, credit=self.keys_per_step is None)
            self._stream_state[name] = (0, regions, regions)
            self._last_scores.pop(name, None)
            self.streams[name].started_ = True
            decisions[name] = first_frame_decision(regions)
        rest = [name for name in frames if contexts[name] is not None]
        for name, decision in zip(rest, self.decide_together([(self.streams[n], contexts[n]) for n in rest])):
            decisions[name] = decision
        return {name: self.trackers[name].commit(decisions[name]) for name in frames}
