"""What a comparison runs: the arms, the budgets, the region grids, the model files.

An *arm* of a comparison is a scheduling policy of :data:`schedulers.POLICIES`
together with a way of propagating the key frame's result to the other frames
(``"warp"`` along the flow, or ``"copy"`` unchanged, Clockwork-style).
:data:`ARMS` names them. :class:`CompareConfig` holds everything that decides a
comparison's results; :func:`resolve_defaults` fills in what the library
chooses when the user leaves it open (the shipped model on data whose classes
it knows, and the decision network's model), so ``run_compare`` from Python
and ``adaptive-dff compare`` behave alike.

The ``decision_network`` arm runs DVSNet's rule (update a region when its
predicted quality falls below the calibrated target) on the best learned
model that ships: the quality predictor that reads the key frames' labels
(``schedulers/weights/quality_labels_default.json``; compare gives the labels
in both modes), chosen over the shipped flow-feature
:class:`schedulers.DecisionModel`. On held-out data (whole sources held out)
its error is 0.25 of predicting the mean's (0.044 against 0.178, mean over
sources; 0.36 for the quality predictor without key labels, whose figures
follow), the decision model's 1.13
on its own held-out data (0.103 against 0.091; ``docs/model_card.md``). On
one common set neither was fitted on (``cup.mp4`` frames 72..191, DVSNet's
confidence target, 864 region rows, ``python -m
adaptive_dff.bench.decision_evidence ../shared/data/videos/cup.mp4 --start
72``) both rank the rows poorly (Spearman 0.055 against 0.022) and neither
beats a constant in absolute error (0.113 and 0.104 against 0.097).
``--decision-model PATH`` runs it on a user's own model instead.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional

logger = logging.getLogger(__name__)

# name -> (scheduling policy name in schedulers.POLICIES, propagation)
ARMS = {
    "fixed_interval": ("fixed_interval", "warp"),
    "copy": ("fixed_interval", "copy"),  # Clockwork-style: key features reused without warping
    "frame_difference": ("frame_difference", "warp"),
    "flow_magnitude": ("flow_magnitude", "warp"),
    "decision_network": ("decision_network", "warp"),  # DVSNet's rule on the best learned model that ships
    "propagation_quality": ("propagation_quality", "warp"),  # the shipped quality predictor, renewal rule
    "propagation_quality_hindsight": ("propagation_quality", "warp"),  # the same predictor, hindsight rule
}
# The arms of schedulers.PropagationQuality and the rule each runs (all read --quality-model).
QUALITY_ARMS = {"propagation_quality": "renewal", "propagation_quality_hindsight": "hindsight"}
# Budget arms: "<arm>@budget" wraps the arm's policy in a schedulers.KeyBudget
# per clip (the budget is its target); "<arm>@shared" runs the data set's test
# clips side by side under one schedulers.SharedBudget. Only a policy whose
# scores are costs (the price rule) is calibrated: its threshold is the price to
# start from (Workspace.calibration_cell).
BUDGET_MODES = ("budget", "shared")
SHARED_CLIP = "all-test-clips"  # the clip name of a shared arm's one cell

# Arms that are no scheduling policy: the best placement of whole-frame keys, found
# offline from every clip's pair table (compare.optimal); oracle mode only.
CEILING_ARMS = ("optimal",)
# The defaults compare at equal spend: the change signals and the recommended policy each under a
# per-stream KeyBudget (bare thresholds calibrated on other clips may spend far more on the test clips).
DEFAULT_POLICIES = ("fixed_interval", "copy", "frame_difference@budget", "flow_magnitude@budget",
                    "propagation_quality@budget")
DEFAULT_BUDGETS = (0.10, 0.20, 0.33)
DEFAULT_SWEEP = (0.05, 0.15, 0.25, 0.5)
DEFAULT_REGIONS = ("1x1", "2x2")
MODES = ("oracle", "model")
FLOWS = ("dis", "model", "exact")
PER_FRAME = "per_frame"
PAIR_TABLE = "pair_table"  # the cells that carry every (key, frame) pair of a test clip (oracle mode)
DEFAULT_WINDOW = 30
# Cost of a propagated frame over a key frame of the shipped CamVid model (DIS propagation
# flow and the fused head) on a 2-core CPU, as `adaptive-dff bench dff` measures it (0.075 to
# 0.086): oracle mode's second plot panel draws the speedup 1 / (f + (1 - f) r) such a model
# gets at key fraction f.
DEFAULT_COST_RATIO = 0.08

# Data set kinds (``Dataset.spec["kind"]``) whose classes the shipped CamVid model knows.
SHIPPED_MODEL_KINDS = ("camvid-val", "camvid-1fps", "video", "video-pseudo")


@dataclass
class CompareConfig:
    """Everything that decides a comparison's results (the output folder checks it).

    Attributes:
        mode: ``"oracle"`` (true labels on key frames, carried by flow) or
            ``"model"`` (the DFF model runs).
        policies: names from :data:`ARMS`; ``None``: :data:`DEFAULT_POLICIES`,
            plus ``decision_network`` when a decision model is given or
            chosen by :func:`resolve_defaults`.
        budgets: the fair key-frame budgets, each in (0, 1].
        sweep: further budgets that trace each policy's curve.
        regions: region grids as ``"RxC"`` (DVSNet: ``"2x2"``).
        overlap: pixels shared by neighbouring regions.
        flow: oracle mode's flow: ``"dis"`` (OpenCV DIS), ``"model"`` (the
            model's flow network) or ``"exact"`` (the generator's own flow, for
            data sets whose clips carry one). Model mode always uses the model's.
        model: a ``.keras`` DFF model file, or ``None``: in model mode the
            shipped CamVid model on CamVid and videos, otherwise an untrained
            compact model (timings only; accuracy then means nothing).
        decision_model: the model of the ``decision_network`` arm: a
            ``.keras`` :class:`schedulers.DecisionModel` or a quality
            predictor's JSON (:func:`schedulers.load_decision_model`);
            ``None`` (and what :func:`resolve_defaults` fills in): the
            shipped quality predictor that reads the key labels.
        quality_model: the predictor of the ``propagation_quality`` arms (and
            ``propagation_quality_hindsight``'s): a
            quality predictor's JSON (``adaptive-dff train quality``), or
            ``None``: the shipped one. Policies given with it must hold a
            ``propagation_quality`` or ``propagation_quality_hindsight`` arm
            (the defaults do).
        seed: seed of the untrained model.
        window: the farthest a key frame carries (frames after it) for the
            optimal arm's search and the phase-fair fixed interval's curve.
        cost_ratio: ``r`` of the speedup panel in oracle mode (see
            :data:`DEFAULT_COST_RATIO`).
        metric: what ``accuracy`` is: ``"miou"`` (the mIoU of the confusion
            summed over a data set's test clips) or ``"j"`` (region
            similarity, object video's measure: the mean over every test
            clip's objects, class 0 the background, of their mean IoU over
            the frames, :mod:`adaptive_dff.compare.objects`). The optimal
            schedule and the headroom are found under it.
    """

    mode: str = "oracle"
    policies: Optional[tuple] = None
    budgets: tuple = DEFAULT_BUDGETS
    sweep: tuple = DEFAULT_SWEEP
    regions: tuple = DEFAULT_REGIONS
    overlap: int = 16
    flow: str = "dis"
    model: Optional[str] = None
    decision_model: Optional[str] = None
    quality_model: Optional[str] = None
    seed: int = 0
    window: int = DEFAULT_WINDOW
    cost_ratio: float = DEFAULT_COST_RATIO
    metric: str = "miou"

    def chosen_policies(self) -> tuple:
        """``policies``, or the default ones when none were given."""
        if self.policies is not None:
            return tuple(self.policies)
        return (DEFAULT_POLICIES + (("decision_network",) if self.decision_model else ())
                + (CEILING_ARMS if self.mode == "oracle" else ()))

    def runs_arm(self, arm: str) -> bool:
        """Whether a chosen policy runs ``arm`` (of :data:`ARMS`), bare or under a budget."""
        return any(parse_arm(p)[0] == arm for p in self.chosen_policies() if p not in CEILING_ARMS)

    def runs_quality_arm(self) -> bool:
        """Whether a chosen policy runs one of :data:`QUALITY_ARMS` (``PropagationQuality``)."""
        return any(self.runs_arm(arm) for arm in QUALITY_ARMS)

    def needs_pair_tables(self) -> bool:
        """Oracle mode with an arm read from the pair tables (optimal; fixed interval and copy phase-fair)."""
        return self.mode == "oracle" and bool({"optimal", "fixed_interval", "copy"} & set(self.chosen_policies()))

    def check(self) -> "CompareConfig":
        """Name the first problem of the configuration; returns ``self``."""
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        if self.flow not in FLOWS:
            raise ValueError(f"unknown flow {self.flow!r}; choose one of {FLOWS}")
        policies = self.chosen_policies()
        if not policies:
            raise ValueError("give at least one policy")
        for name in policies:
            if name not in CEILING_ARMS:
                parse_arm(name)
        if self.quality_model and not self.runs_quality_arm():
            raise ValueError("--quality-model is for the propagation_quality arms; add propagation_quality, "
                             "propagation_quality@budget or propagation_quality@shared (or the same of "
                             "propagation_quality_hindsight) to --policies")
        if self.mode != "oracle" and set(CEILING_ARMS) & set(policies):
            raise ValueError("the optimal arm runs in oracle mode only (in model mode its pair table would "
                             "cost a model run per (key, frame) pair); drop it or use --mode oracle")
        if self.flow == "exact" and self.mode != "oracle":
            raise ValueError("--flow exact is oracle mode's; model mode always uses the model's flow")
        from adaptive_dff.compare.optimal import check_window

        check_window(self.window)
        if isinstance(self.cost_ratio, bool) or not isinstance(self.cost_ratio, (int, float)) \
                or not 0 <= self.cost_ratio <= 1:
            raise ValueError(f"cost_ratio must be a number in [0, 1], got {self.cost_ratio!r}")
        from adaptive_dff.compare.objects import check_metric

        check_metric(self.metric)
        if len(set(policies)) != len(policies):
            raise ValueError(f"policies repeat: {list(policies)}")
        if not self.budgets:
            raise ValueError("give at least one budget")
        for budget in tuple(self.budgets) + tuple(self.sweep):
            if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= 1:
                raise ValueError(f"a budget must be a key-frame fraction in (0, 1], got {budget!r}")
        rounded = [round(float(b), 4) for b in self.budgets]
        if len(set(rounded)) != len(rounded):
            raise ValueError(f"budgets repeat (to 4 decimals): {list(self.budgets)}")
        for grid in self.regions:
            parse_grid(grid, self.overlap)
        for option, path in (("--model", self.model), ("--decision-model", self.decision_model),
                             ("--quality-model", self.quality_model)):
            if path and os.path.isdir(path):
                raise IsADirectoryError(f"{option}: {path!r} is a folder, not a file")
            if path and not os.path.isfile(path):
                raise FileNotFoundError(f"{option}: file {path!r} does not exist")
        return self

    def all_budgets(self) -> list:
        """``[(budget, kind)]``: the fair budgets, then the sweep's other points."""
        fair = [round(float(b), 4) for b in self.budgets]
        sweep = [round(float(b), 4) for b in self.sweep if round(float(b), 4) not in fair]
        return [(b, "budget") for b in fair] + [(b, "sweep") for b in sorted(set(sweep))]


def resolve_defaults(config: CompareConfig, kinds: Iterable[Optional[str]], log: Callable = logger.info) -> CompareConfig:
    """``config`` with what the user left open chosen, for data sets of ``kinds``
    (``Dataset.spec["kind"]``: ``"synthetic"``, ``"camvid-val"``, ``"camvid-1fps"``, ``"video"``, or ``None``).

    In model mode without a model, data whose classes the shipped CamVid model
    knows (:data:`SHIPPED_MODEL_KINDS`) get the shipped model and, unless one
    is given, the shipped decision network's model; generated sets keep the
    untrained compact model. A ``decision_network`` arm asked for without a
    decision model gets the shipped one too. The shipped decision network's
    model is the best learned model that ships: the quality predictor that reads the
    key frames' labels, which compare gives in both modes (see the module notes). Policies left open become :data:`DEFAULT_POLICIES`, plus
    ``decision_network`` when there is a decision model. Returns a new
    configuration with ``policies`` set; resolving it again changes nothing.
    """
    from schedulers.quality_predictor import DEFAULT_LABELS_FILE as SHIPPED_DECISION_MODEL

    kinds = set(kinds)
    model, decision_model = config.model, config.decision_model
    if config.mode == "model" and model is None:
        if kinds and kinds <= set(SHIPPED_MODEL_KINDS):
            from adaptive_dff.pretrained import default_model_path

            model = default_model_path()
            if decision_model is None:
                decision_model = SHIPPED_DECISION_MODEL
            log(f"model mode: the shipped CamVid model ({model})")
    asked = [parse_arm(p)[0] for p in (config.policies or ()) if p not in CEILING_ARMS]
    if decision_model is None and "decision_network" in asked:
        decision_model = SHIPPED_DECISION_MODEL
    resolved = replace(config, model=model, decision_model=decision_model)
    return replace(resolved, policies=resolved.chosen_policies())


def parse_arm(name: str) -> tuple:
    """``(arm, budget mode)`` of an arm name: ``"flow_magnitude"`` -> ``("flow_magnitude", None)``,
    ``"flow_magnitude@budget"`` -> ``("flow_magnitude", "budget")``, likewise ``@shared``."""
    arm, _, mode = str(name).partition("@")
    if arm not in ARMS:
        raise ValueError(f"unknown arm {name!r}; choose from {sorted(ARMS)}, each optionally "
                         f"followed by {' or '.join('@' + m for m in BUDGET_MODES)}, or {', '.join(CEILING_ARMS)}")
    if "@" in str(name) and mode not in BUDGET_MODES:
        raise ValueError(f"unknown budget mode in policy {name!r}; write <policy>@budget or <policy>@shared")
    return arm, (mode or None)


def parse_grid(text: str, overlap: int = 0):
    """The :class:`schedulers.RegionGrid` written ``"RxC"``; one region has no overlap."""
    from schedulers import RegionGrid

    try:
        rows, cols = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"a region grid is written RxC (e.g. 2x2), got {text!r}") from None
    return RegionGrid(rows, cols, overlap if rows * cols > 1 else 0)
