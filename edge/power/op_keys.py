"""Op keys and features of the instruction-level figures (power_profiles/kernels/README.md), from the graph.

A key is the TFLite op name plus a variant suffix when the kernels take another code path or pay
a per-tap overhead the linear features cannot express: FULLY_CONNECTED_keepdims (output rank > 2
and input depth % 4 == 0), CONV_2D_depth1 (filter input depth 1), CONV_2D_deep (filter input
depth >= 8), ADD/SUB/MUL_broadcast_samesize (input shapes differ, same element count > 1) and
ADD/SUB/MUL_broadcast (any other shape difference). Input shapes come from the guarded reader
(edge.export.tflite_inspect), the rest from edge.power.tflite_graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from edge.errors import ConfigError
from edge.power.tflite_graph import GraphOp

Shape = tuple[int, ...]
DEEP_DEPTH = 8  # CONV_2D_deep from this filter input depth on (grid: depths 1, 3, 16, 32)


@dataclass(frozen=True)
class OpInputs:
    """The shapes of one op's inputs (constant ones included, in the op's order)."""

    shapes: tuple[Shape, ...]


def read_op_inputs(path: str | Path) -> dict[int, OpInputs]:
    """Input shapes per op index of a .tflite file (ConfigError if it cannot be read)."""
    from edge.export.tflite_inspect import read_model_bytes, read_tflite

    data = read_model_bytes(Path(path), ConfigError)
    model = read_tflite(Path(path), data, error=ConfigError)
    shapes = [tuple(t.shape) for t in model.tensors]
    return {op.index: OpInputs(tuple(shapes[t] for t in op.inputs if t >= 0)) for op in model.ops}


def op_key(op: GraphOp, inputs: OpInputs | None) -> str:
    """The key of `op` in a kernel file (the plain op name when the inputs are unknown)."""
    ins = inputs.shapes if inputs else ()
    if op.op == "FULLY_CONNECTED" and ins and len(op.output_shape) > 2 and ins[0] and ins[0][-1] % 4 == 0:
        return "FULLY_CONNECTED_keepdims"
    if op.op == "CONV_2D" and len(ins) >= 2 and ins[1] and ins[1][-1] == 1:
        return "CONV_2D_depth1"
    if op.op == "CONV_2D" and len(ins) >= 2 and ins[1] and ins[1][-1] >= DEEP_DEPTH:
        return "CONV_2D_deep"
    if op.op in ("ADD", "SUB", "MUL") and len(ins) >= 2 and ins[0] != ins[1]:
        same = math.prod(ins[0]) == math.prod(ins[1]) > 1
        return f"{op.op}_broadcast_samesize" if same else f"{op.op}_broadcast"
    return op.op


def op_features(op: GraphOp, inputs: OpInputs | None = None) -> dict[str, float]:
    """const, macs, out_elements, in_elements (first input; the output count when unknown), rows, channels."""
    channels = float(op.output_shape[-1]) if op.output_shape else 1.0
    out = float(math.prod(op.output_shape)) if op.output_shape else float(op.elements)
    first = inputs.shapes[0] if inputs and inputs.shapes else None
    return {"const": 1.0, "macs": float(op.macs), "out_elements": out,
            "in_elements": float(math.prod(first)) if first is not None else out,
            "rows": out / max(channels, 1.0), "channels": channels}
