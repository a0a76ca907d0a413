"""Rewrite NNCF's `org.openvinotoolkit:FakeQuantize` ONNX nodes as standard QuantizeLinear/DequantizeLinear.

NNCF exports QDQ pairs itself only for 8-bit quantizers; its 16-bit quantizers come out as
FakeQuantize(x, in_low, in_high, out_low, out_high, levels), which onnxruntime rejects. For the
ranges NNCF produces (out_* == in_*) a FakeQuantize is exactly a QDQ pair with
scale = (high - low) / (levels - 1) and zero point = qmin + round(-low / scale), where qmin is the
smallest code of the integer type: int16/int8 for signed ranges, uint16/uint8 for ranges starting
at 0, and -(2^(b-1) - 1) for NNCF's narrow-range weights (levels = 2^b - 1). int16 QuantizeLinear
needs opset 21, so the default-domain opset is raised to 21.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.errors import ExportError

if TYPE_CHECKING:
    import onnx

QDQ_OPSET = 21
_FQ_DOMAIN = "org.openvinotoolkit"


def _constant(nodes: dict[str, onnx.NodeProto], name: str) -> np.ndarray:
    from onnx import numpy_helper

    node = nodes.get(name)
    if node is None or node.op_type != "Constant":
        raise ExportError(f"FakeQuantize range '{name}' is not a Constant", where="qat/model_int8.onnx")
    return numpy_helper.to_array(node.attribute[0].t).astype(np.float64)


def _qdq_params(low: np.ndarray, high: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(scale, zero point, axis) of one FakeQuantize; axis None = per tensor."""
    bits = math.ceil(math.log2(levels))
    narrow = levels == 2**bits - 1
    signed = bool((low < 0).any())
    if signed:
        qmin, dtype = (-(2 ** (bits - 1)) + (1 if narrow else 0)), (np.int8 if bits <= 8 else np.int16)
    else:
        qmin, dtype = 0, (np.uint8 if bits <= 8 else np.uint16)
    scale = ((high - low) / (levels - 1)).astype(np.float32)
    zero = (qmin + np.round(-low / scale)).astype(dtype)
    if low.size == 1:
        return scale.reshape(()), zero.reshape(()), None
    return scale.reshape(-1), zero.reshape(-1), 0


def fakequantize_to_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every FakeQuantize node of `model` (an onnx.ModelProto, changed in place) by a QDQ pair."""
    from onnx import helper, numpy_helper

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    rebuilt = []
    for node in graph.node:
        if not (node.domain == _FQ_DOMAIN and node.op_type == "FakeQuantize"):
            rebuilt.append(node)
            continue
        levels = next(a.i for a in node.attribute if a.name == "levels")
        low, high = _constant(producers, node.input[1]), _constant(producers, node.input[2])
        scale, zero, axis = _qdq_params(low, high, levels)
        base = node.output[0]
        graph.initializer.extend([numpy_helper.from_array(scale, f"{base}/scale"),
                                  numpy_helper.from_array(zero, f"{base}/zero_point")])
        extra: dict[str, Any] = {} if axis is None else {"axis": axis}
        args = [f"{base}/scale", f"{base}/zero_point"]
        rebuilt.append(helper.make_node("QuantizeLinear", [node.input[0], *args], [f"{base}/q"], **extra))
        rebuilt.append(helper.make_node("DequantizeLinear", [f"{base}/q", *args], [base], **extra))
    used = {name for node in rebuilt for name in node.input} | {out.name for out in graph.output}
    del graph.node[:]
    graph.node.extend(n for n in rebuilt if n.op_type != "Constant" or any(o in used for o in n.output))
    opsets = [op for op in model.opset_import if op.domain not in (_FQ_DOMAIN, "", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("", QDQ_OPSET), *opsets])
    model.ir_version = max(model.ir_version, 10)  # opset 21 needs IR version 10
    return model
