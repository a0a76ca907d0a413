"""NNCF quantizers -> the point names of `quant_ranges.json` (schema: `edge/quant_ranges.py`).

NNCF hooks a quantizer either after an op (post-hook: it quantises that op's output) or before an
op on one input port (pre-hook: weights on port 1 of linear/conv, or an activation). A quantizer is
named here by the tensor it quantises: the producing op of that tensor, found in NNCF's graph by
walking back through ops that only move values (reshape, transpose, dropout, slice). That op is then
named by the contract's rules (`point_of_node`). One rescaling is needed: the model computes
`(q * D^-0.5) @ k^T`, and NNCF quantises the product `q * D^-0.5`; the contract's `attn.q` is q
before the scale, so that range is divided by D^-0.5 (the exporter folds the scale back in).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from edge.quant_ranges import ActivationRange
from edge.vit_spec import VitSpec

# Ops that only move or select values: a quantizer on their output quantises their input's tensor.
_TRANSPARENT = {"reshape", "view", "flatten", "transpose", "permute", "dropout", "contiguous", "__getitem__",
                "squeeze", "unsqueeze", "identity"}

_NODE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^patch_embed/proj/conv2d/0$"), "patch_embed"),
    (re.compile(r"^/add/0$"), "tokens"),
    (re.compile(r"^blocks/(\d+)/(norm1|norm2)/layer_norm/0$"), "blocks.{0}.{1}"),
    (re.compile(r"^blocks/(\d+)/attn/(q|k|v|proj)/linear/0$"), "blocks.{0}.attn.{1}"),
    (re.compile(r"^blocks/(\d+)/attn/mul/0$"), "blocks.{0}.attn.q"),  # q * D^-0.5, rescaled below
    (re.compile(r"^blocks/(\d+)/attn/matmul/0$"), "blocks.{0}.attn.scores"),
    (re.compile(r"^blocks/(\d+)/attn/softmax/0$"), "blocks.{0}.attn.softmax"),
    (re.compile(r"^blocks/(\d+)/attn/matmul/1$"), "blocks.{0}.attn.context"),
    (re.compile(r"^blocks/(\d+)/add/0$"), "blocks.{0}.add1"),
    (re.compile(r"^blocks/(\d+)/add/1$"), "blocks.{0}.add2"),
    (re.compile(r"^blocks/(\d+)/mlp/(fc1|fc2)/linear/0$"), "blocks.{0}.mlp.{1}"),
    (re.compile(r"^norm/layer_norm/0$"), "norm"),
    (re.compile(r"^head/linear/0$"), "head"),
)
_ACT_SCOPE = re.compile(r"^blocks/(\d+)/mlp/act/")
_Q_SCALED = re.compile(r"^blocks/(\d+)/attn/mul/0$")


@dataclass(frozen=True)
class Located:
    """Where one quantizer sits, in contract terms."""

    kind: Literal["activation", "weight", "unmapped"]
    name: str  # point name, weight name, or the NNCF node name when unmapped
    factor: float = 1.0  # multiply NNCF's range by this to get the contract point's range
    priority: int = 0  # when two quantizers name one point, the higher priority wins


def point_of_node(node_name: str, node_type: str, successors: list[str], spec: VitSpec) -> Located:
    """Contract name of the tensor produced by NNCF graph node `node_name` (after walking back)."""
    if node_type == "nncf_model_input":
        return Located("activation", "input")
    if node_type == "nncf_model_const":
        return Located("weight", node_name)
    act = _ACT_SCOPE.match(node_name)
    if act:  # the activation module's last op (its output leaves the module) is `mlp.act`
        if successors and all(not s.startswith(act.group(0)) for s in successors):
            return Located("activation", f"blocks.{act.group(1)}.mlp.act")
        return Located("unmapped", node_name)
    for pattern, template in _NODE_RULES:
        match = pattern.match(node_name)
        if match:
            if _Q_SCALED.match(node_name):  # the tensor TFLite has (scale folded into q) wins over q
                factor = spec.blocks[int(match.group(1))].head_dim ** 0.5
                return Located("activation", template.format(*match.groups()), factor, priority=1)
            return Located("activation", template.format(*match.groups()))
    return Located("unmapped", node_name)


def locate(graph: Any, op_name: str, port: int | None, spec: VitSpec) -> Located:
    """Name the tensor a quantizer hooked at (`op_name`, input `port`; None = output) quantises."""
    node = graph.get_node_by_name(op_name)
    if port is not None:
        edges = [e for e in graph.get_input_edges(node) if e.input_port_id == port]
        if not edges:
            return Located("unmapped", f"{op_name}:{port}")
        node = edges[0].from_node
    while node.node_type in _TRANSPARENT:
        inputs = graph.get_input_edges(node)
        if len(inputs) != 1:
            break
        node = inputs[0].from_node
    successors = [n.node_name for n in graph.get_next_nodes(node)]
    return point_of_node(node.node_name, node.node_type, successors, spec)


def merge_activation(ranges: dict[str, tuple[int, ActivationRange]], where: Located, lo: float, hi: float) -> None:
    """Add a range to `ranges` (point -> (priority, range)). A point named by two quantizers keeps the
    higher-priority one; equal priorities (one tensor, two consumers) keep the union of both ranges."""
    lo, hi = lo * where.factor, hi * where.factor
    if where.name in ranges:
        priority, old = ranges[where.name]
        if priority > where.priority:
            return
        if priority == where.priority:
            lo, hi = min(lo, old.min), max(hi, old.max)
    ranges[where.name] = (where.priority, ActivationRange(min=lo, max=hi))
