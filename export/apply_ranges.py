"""Turn `quant_ranges.json` (read by `edge/quant_ranges.py`) into what the TensorFlow graph uses (numpy only).

Activation ranges become FakeQuant ops in the TensorFlow graph (tf_vit.py), keyed by the int8
graph's tensors (`graph_ranges`); weight ranges are applied by clipping each output channel of the
float weights to its learned range, after which the converter's symmetric per-channel int8
quantisation sees exactly the QAT range.
"""

from __future__ import annotations

import re

import numpy as np

from edge.quant_ranges import FORMAT_V1, QuantRangesFile
from edge.vit_spec import VitSpec

# Format 1 names a LayerNorm's output after its gain and shift; that tensor does not exist in the int8
# graph (the converter folds gain and shift into the next FULLY_CONNECTED), so those ranges are unused.
_V1_NORM = re.compile(r"(^|\.)norm\d?$")
_Q = re.compile(r"^blocks\.(\d+)\.attn\.q$")


def graph_ranges(ranges: QuantRangesFile, spec: VitSpec) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """(point -> (min, max) of the int8 graph's tensor, format-1 points that have no such tensor).

    Format 2 names the graph's tensors already. Format 1 (NNCF): `attn.q` is q before D^-0.5 (the
    graph folds the scale into q, so the range is scaled) and LayerNorm outputs are left out.
    The input is never taken from the file: its range is fixed (pixel - 128).
    """
    pairs = ranges.activation_pairs()
    pairs.pop("input", None)
    if ranges.format != FORMAT_V1:
        return pairs, []
    folded = [p for p in pairs if _V1_NORM.search(p)]
    out = {}
    for point, (lo, hi) in pairs.items():
        if point in folded:
            continue
        match = _Q.match(point)
        factor = spec.blocks[int(match.group(1))].head_dim ** -0.5 if match else 1.0
        out[point] = (lo * factor, hi * factor)
    return out, folded


def clip_weights(weights: dict[str, np.ndarray], ranges: QuantRangesFile,
                 where: str = "quant_ranges.json") -> list[str]:
    """Clip every weight with a learned range to it, per channel along its axis; returns the names."""
    ranges.check_shapes({name: value.shape for name, value in weights.items()}, where=where)
    clipped = []
    for name, item in ranges.weights.items():
        lo = np.asarray(item.min, dtype=np.float32)
        hi = np.asarray(item.max, dtype=np.float32)
        value = weights[name]
        shape = [1] * value.ndim
        shape[item.axis] = lo.size
        weights[name] = np.clip(value, lo.reshape(shape), hi.reshape(shape)).astype(np.float32)
        clipped.append(name)
    return clipped
