"""Key-frame scheduling policies for video recognition.

A policy sees a :class:`Context` (frame index, the current frame and the key
frame of each region, and, only when it asks, the flow) and returns a
:class:`Decision`: per region, update (recompute) or propagate, with the score
that drove it. :class:`Tracker` embeds a policy in any pipeline with numpy
frames; :func:`calibrate` tunes a threshold to a key-frame budget or an
accuracy target; :class:`KeyBudget` holds a stream's key fraction on a
target online (no threshold) and :class:`SharedBudget` spreads one budget
over many streams. This package imports without TensorFlow.
"""

import logging

from schedulers.base import Context, Decision, Policy
from schedulers.budget import KeyBudget
from schedulers.calibration import CalibrationResult, calibrate, key_fraction, replay
from schedulers.decision import DecisionModel, DecisionNetworkScheduler, load_decision_model
from schedulers.pair_features import OpenCVPairFeatures
from schedulers.flow import DISFlow
from schedulers.policies import FixedInterval, FlowMagnitude, FrameDifference
from schedulers.quality import PropagationQuality
from schedulers.quality_signals import QualitySignals
from schedulers.quality_predictor import QualityPredictor, load_default_quality, load_quality_predictor
from schedulers.regions import RegionGrid
from schedulers.shared_budget import BudgetStream, RegionGridMismatch, SharedBudget
from schedulers.tracker import Tracker

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Plain registry of policy names to classes (for command lines and configs).
POLICIES = {
    "fixed_interval": FixedInterval,
    "frame_difference": FrameDifference,
    "flow_magnitude": FlowMagnitude,
    "decision_network": DecisionNetworkScheduler,
    "propagation_quality": PropagationQuality,
}

__all__ = [
    "POLICIES",
    "BudgetStream",
    "CalibrationResult",
    "Context",
    "DISFlow",
    "Decision",
    "DecisionModel",
    "DecisionNetworkScheduler",
    "FixedInterval",
    "FlowMagnitude",
    "FrameDifference",
    "KeyBudget",
    "OpenCVPairFeatures",
    "Policy",
    "PropagationQuality",
    "QualityPredictor",
    "QualitySignals",
    "RegionGrid",
    "RegionGridMismatch",
    "SharedBudget",
    "Tracker",
    "calibrate",
    "key_fraction",
    "load_decision_model",
    "load_default_quality",
    "load_quality_predictor",
    "replay",
]
