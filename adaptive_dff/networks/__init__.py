"""The parts of a DFF model: feature networks, flow networks and task heads."""

from adaptive_dff.networks.base import NetworkContract, OutputSpec
from adaptive_dff.networks.flownet import FlowNetInception, FlowNetS, flownet_half, flownet_quarter
from adaptive_dff.networks.head import SegmentationHead
from adaptive_dff.networks.resnet import (
    CompactFeatures,
    ResNetFeatures,
    resnet50_features,
    resnet101_features,
)

# Plain registries of names to builders, for command lines and configs.
FEATURE_NETS = {
    "compact": CompactFeatures,
    "resnet50": resnet50_features,
    "resnet101": resnet101_features,
}
FLOW_NETS = {
    "flownet_s": FlowNetS,
    "flownet_half": flownet_half,
    "flownet_quarter": flownet_quarter,
    "flownet_inception": FlowNetInception,
}

__all__ = [
    "FEATURE_NETS",
    "FLOW_NETS",
    "CompactFeatures",
    "FlowNetInception",
    "FlowNetS",
    "NetworkContract",
    "OutputSpec",
    "ResNetFeatures",
    "SegmentationHead",
    "flownet_half",
    "flownet_quarter",
    "resnet50_features",
    "resnet101_features",
]
