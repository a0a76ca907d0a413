"""`quant_ranges.json` (docs/artifacts.md): the schema, and NNCF quantizers -> documented point names.

NNCF hooks a quantizer either after an op (post-hook: it quantises that op's output) or before an
op on one input port (pre-hook: weights on port 1 of linear/conv, or an activation). A quantizer is
named here by the tensor it quantises: the producing op of that tensor, found in NNCF's graph by
walking back through ops that only move values (reshape, transpose, dropout, slice). That op is then
named by the contract's rules (`point_of_node`). One rescaling is needed: the model computes
`(q * D^-0.5) @ k^T`, and NNCF quantises the product `q * D^-0.5`; the contract's `attn.q` is q
before the scale, so that range is divided by D^-0.5 (the exporter folds the scale back in).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.atomic import atomic_write_json
from edge.errors import ConfigError
from edge.vit_spec import VitSpec

FORMAT = "edge-quant-ranges/1"

#: Every activation point name the contract documents (docs/artifacts.md, "quant_ranges.json").
POINT_RE = re.compile(
    r"^(input|patch_embed|tokens|norm|head|"
    r"blocks\.\d+\.(norm1|norm2|add1|add2|attn\.(q|k|v|scores|softmax|context|proj)|mlp\.(fc1|act|fc2)))$"
)

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


class ActivationRange(BaseModel):
    """The learned range of one activation tensor."""

    model_config = ConfigDict(extra="forbid")
    min: float
    max: float

    @model_validator(mode="after")
    def _check(self) -> ActivationRange:
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError(f"range must be finite, got [{self.min}, {self.max}]")
        if not self.min < self.max:
            raise ValueError(f"min {self.min} is not below max {self.max}")
        return self


class WeightRange(BaseModel):
    """Per-output-channel ranges of one weight (`axis` 0 of the torch weight); one entry = per tensor."""

    model_config = ConfigDict(extra="forbid")
    axis: int = Field(0, ge=0)
    min: list[float] = Field(min_length=1)
    max: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> WeightRange:
        if len(self.min) != len(self.max):
            raise ValueError(f"{len(self.min)} mins but {len(self.max)} maxs")
        for channel, (lo, hi) in enumerate(zip(self.min, self.max, strict=True)):
            if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
                raise ValueError(f"channel {channel}: range [{lo}, {hi}] must be finite with min < max")
        return self


class QuantRangesFile(BaseModel):
    """The whole `quant_ranges.json` (format `edge-quant-ranges/1`)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["edge-quant-ranges/1"] = FORMAT
    activation_bits: Literal[8, 16] = 8
    weight_bits: Literal[8] = 8
    activations: dict[str, ActivationRange] = Field(default_factory=dict)
    weights: dict[str, WeightRange] = Field(default_factory=dict)

    @field_validator("activations")
    @classmethod
    def _documented(cls, value: dict[str, ActivationRange]) -> dict[str, ActivationRange]:
        unknown = sorted(name for name in value if not POINT_RE.match(name))
        if unknown:
            raise ValueError(f"undocumented activation point(s) {unknown} (docs/artifacts.md lists the names)")
        return value

    def check_shapes(self, shapes: dict[str, tuple[int, ...]], where: str = "quant_ranges.json") -> None:
        """Raise ConfigError unless every weight range names a weight and has one entry per channel."""
        for name, item in self.weights.items():
            if name not in shapes:
                raise ConfigError(f"field 'weights.{name}' names no weight of the model", where=where,
                                  hint="ranges and weights come from different runs; rerun the qat stage")
            shape = shapes[name]
            if item.axis >= len(shape) or len(item.min) not in (1, shape[item.axis]):
                raise ConfigError(f"field 'weights.{name}' has {len(item.min)} channels, the weight {list(shape)} "
                                  f"has {shape[item.axis] if item.axis < len(shape) else 'no'} on axis {item.axis}",
                                  where=where)


def write_ranges(path: str | os.PathLike[str], ranges: QuantRangesFile) -> Path:
    """Write the ranges JSON atomically."""
    return atomic_write_json(path, ranges.model_dump(mode="json"))


def read_ranges(path: str | os.PathLike[str]) -> QuantRangesFile:
    """Read and validate a ranges JSON; errors name the file and the field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read quantisation ranges: {exc}", where=str(path)) from exc
    try:
        return QuantRangesFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"invalid quantisation ranges, field '{field}': {err['msg']}", where=str(path),
                          hint="the qat stage writes this file; rerun it") from exc


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
