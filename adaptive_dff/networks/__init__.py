"""The parts of a DFF model: feature networks, flow networks and task heads."""

from adaptive_dff.networks.base import NetworkContract
from adaptive_dff.networks.flownet import FlowNetInception, FlowNetS, flownet_half
from adaptive_dff.networks.head import SegmentationHead
from adaptive_dff.networks.resnet import (
    CompactFeatures,
    ResNetFeatures,
    resnet50_features,
    resnet101_features,
)

__all__ = [
    "CompactFeatures",
    "FlowNetInception",
    "FlowNetS",
    "NetworkContract",
    "ResNetFeatures",
    "SegmentationHead",
    "flownet_half",
    "resnet50_features",
    "resnet101_features",
]
