"""Read `quant_ranges.json` (format `edge-quant-ranges/1`, docs/artifacts.md) and apply weight ranges.

Activation ranges become FakeQuant ops in the TensorFlow graph (tf_vit.py); weight ranges are
applied by clipping each output channel of the float weights to its learned range, after which
the converter's symmetric per-channel int8 quantisation sees exactly the QAT range (numpy only).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.errors import ConfigError
from edge.vit_spec import VitSpec

FORMAT = "edge-quant-ranges/1"


@dataclass
class QuantRanges:
    """Learned ranges: activation point -> (min, max); weight name -> (axis, mins, maxs)."""

    activations: dict[str, tuple[float, float]] = field(default_factory=dict)
    weights: dict[str, tuple[int, np.ndarray, np.ndarray]] = field(default_factory=dict)
    activation_bits: int = 8
    weight_bits: int = 8


def load_ranges(path: str | os.PathLike[str]) -> QuantRanges:
    """Parse and validate a quant_ranges.json; errors name the file and the field."""
    where = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read quantisation ranges: {exc}", where=where) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"field 'format' is {got!r}, expected {FORMAT!r}", where=where,
                          hint="the qat stage writes this file; rerun it with this version of edge")
    ranges = QuantRanges(activation_bits=int(data.get("activation_bits", 8)),
                         weight_bits=int(data.get("weight_bits", 8)))
    for point, item in (data.get("activations") or {}).items():
        try:
            lo, hi = float(item["min"]), float(item["max"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"field 'activations.{point}' needs numeric 'min' and 'max'", where=where) from exc
        if not lo <= hi:
            raise ConfigError(f"field 'activations.{point}': min {lo} > max {hi}", where=where)
        ranges.activations[point] = (lo, hi)
    for name, item in (data.get("weights") or {}).items():
        try:
            axis = int(item.get("axis", 0))
            lo = np.asarray(item["min"], dtype=np.float32).reshape(-1)
            hi = np.asarray(item["max"], dtype=np.float32).reshape(-1)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"field 'weights.{name}' needs 'axis', 'min' and 'max'", where=where) from exc
        if lo.shape != hi.shape:
            raise ConfigError(f"field 'weights.{name}': {lo.size} mins but {hi.size} maxs", where=where)
        ranges.weights[name] = (axis, lo, hi)
    return ranges


def clip_weights(weights: dict[str, np.ndarray], ranges: QuantRanges, where: str = "quant_ranges.json") -> list[str]:
    """Clip every weight with a learned range to it, per channel along its axis; returns the names."""
    clipped = []
    for name, (axis, lo, hi) in ranges.weights.items():
        if name not in weights:
            raise ConfigError(f"field 'weights.{name}' names no weight of the model", where=where,
                              hint="the ranges and the weights come from different runs; rerun the qat stage")
        value = weights[name]
        if value.shape[axis] != lo.size and lo.size != 1:
            raise ConfigError(
                f"field 'weights.{name}' has {lo.size} channels, the weight has {value.shape[axis]} on axis {axis}",
                where=where)
        shape = [1] * value.ndim
        shape[axis] = -1 if lo.size != 1 else 1
        weights[name] = np.clip(value, lo.reshape(shape), hi.reshape(shape)).astype(np.float32)
        clipped.append(name)
    return clipped


def activation_points(spec: VitSpec) -> list[str]:
    """Every activation quantisation point of `spec`, in graph order (docs/artifacts.md)."""
    points = ["input", "patch_embed", "tokens"]
    for i in range(len(spec.blocks)):
        b = f"blocks.{i}"
        points += [f"{b}.norm1", f"{b}.attn.q", f"{b}.attn.k", f"{b}.attn.v", f"{b}.attn.scores",
                   f"{b}.attn.softmax", f"{b}.attn.context", f"{b}.attn.proj", f"{b}.add1", f"{b}.norm2",
                   f"{b}.mlp.fc1", f"{b}.mlp.act", f"{b}.mlp.fc2", f"{b}.add2"]
    return [*points, "norm", "head"]
