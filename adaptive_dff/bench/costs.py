"""``adaptive-dff macs``: GMACs of every part and DFF's feature/flow cost ratios.

DFF (Zhu et al., CVPR 2017, table 1) reports the cost ratio of the feature
network to the flow network at 1024x2048 (flow net on the half-resolution
pair): ResNet-50 9.20, 33.56, 68.97 and ResNet-101 12.71, 46.30, 95.24 for
FlowNet, FlowNet-Half and FlowNet-Inception.
"""

from __future__ import annotations

from adaptive_dff.macs import count_macs
from adaptive_dff.networks import FEATURE_NETS, FLOW_NETS, SegmentationHead

PUBLISHED_RATIOS = {
    ("resnet50", "flownet_s"): 9.20,
    ("resnet50", "flownet_half"): 33.56,
    ("resnet50", "flownet_inception"): 68.97,
    ("resnet101", "flownet_s"): 12.71,
    ("resnet101", "flownet_half"): 46.30,
    ("resnet101", "flownet_inception"): 95.24,
}


def cost_figures(height: int = 1024, width: int = 2048, num_classes: int = 19) -> dict:
    """GMACs per part at ``height x width`` and feature/flow cost ratios against DFF's published ones.

    Returns ``{"height", "width", "num_classes", "feature_gmacs": {name: GMACs}, "flow_gmacs": {...},
    "head_gmacs": {input channels: GMACs}, "ratios": [{"feature", "flow", "ours", "dff", "ours_over_dff"}]}``
    (``dff`` and ``ours_over_dff`` are ``None`` where DFF published no figure).
    """
    image = (1, height, width, 3)
    feature_gmacs, grids = {}, {}
    for name, build in FEATURE_NETS.items():
        net = build()
        feature_gmacs[name] = count_macs(net, image) / 1e9
        grids[name] = (net.output_channels, net.output_stride)
    flow_gmacs = {
        name: count_macs(build(), {"current": image, "key": image}) / 1e9
        for name, build in FLOW_NETS.items()
    }
    head_gmacs = {
        c: count_macs(SegmentationHead(num_classes=num_classes, input_channels=c), (1, height // s, width // s, c)) / 1e9
        for c, s in sorted(set(grids.values()))
    }
    ratios = []
    for f in feature_gmacs:
        for m in flow_gmacs:
            ours = feature_gmacs[f] / flow_gmacs[m]
            ref = PUBLISHED_RATIOS.get((f, m))
            ratios.append({"feature": f, "flow": m, "ours": ours, "dff": ref, "ours_over_dff": ours / ref if ref else None})
    return {"height": height, "width": width, "num_classes": num_classes, "feature_gmacs": feature_gmacs,
            "flow_gmacs": flow_gmacs, "head_gmacs": head_gmacs, "ratios": ratios}


def format_cost_table(figures: dict) -> str:
    """Markdown tables of :func:`cost_figures`: GMACs per part, and feature/flow ratios against DFF's."""
    num_classes = figures["num_classes"]
    lines = [f"GMACs at {figures['height']}x{figures['width']} (flow nets see the pair at half resolution):", "",
             "| part | GMACs |", "|---|---|"]
    lines += [f"| feature: {n} | {g:.2f} |" for n, g in figures["feature_gmacs"].items()]
    lines += [f"| flow: {n} | {g:.2f} |" for n, g in figures["flow_gmacs"].items()]
    lines += [f"| head: 1x1 conv, {c} -> {num_classes} | {g:.3f} |" for c, g in figures["head_gmacs"].items()]
    lines += ["", "Cost ratio feature net / flow net:", "",
              "| feature | flow | ours | DFF | ours / DFF |", "|---|---|---|---|---|"]
    for row in figures["ratios"]:
        ref_s = f"{row['dff']:.2f}" if row["dff"] else "-"
        rel = f"{row['ours_over_dff']:.3f}" if row["dff"] else "-"
        lines.append(f"| {row['feature']} | {row['flow']} | {row['ours']:.2f} | {ref_s} | {rel} |")
    return "\n".join(lines)


def cost_table(height: int = 1024, width: int = 2048, num_classes: int = 19) -> str:
    """Markdown tables: GMACs per part, and feature/flow ratios against DFF's."""
    return format_cost_table(cost_figures(height, width, num_classes))
