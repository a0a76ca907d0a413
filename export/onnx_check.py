"""Check and run ONNX files without torch: onnx.checker, op list, onnxruntime logits.

`read_onnx` turns a truncated or corrupted file into an ExportError (what, where, what to do).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ExportError

_HINT = "re-export the model (`edge export`), or copy the file again: it is not a complete ONNX model"


def read_onnx(path: str | os.PathLike[str]) -> Any:
    """Load an ONNX model and run onnx.checker on it; raise ExportError if it is not a valid model."""
    import onnx
    from google.protobuf.message import DecodeError

    where = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read model file: {exc.strerror}", where=where) from exc
    if not data:
        raise ExportError("file is empty (0 bytes)", where=where, hint=_HINT)
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ExportError(f"corrupted or truncated ONNX protobuf ({len(data)} bytes): {exc}", where=where,
                          hint=_HINT) from exc
    if not model.graph.node:
        raise ExportError(f"not an ONNX model: no graph nodes in {len(data)} bytes", where=where, hint=_HINT)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ExportError(f"onnx.checker rejects the model: {first}", where=where, hint=_HINT) from exc
    return model


def describe_onnx(model: Any) -> dict[str, Any]:
    """Opset, op counts and I/O names of a loaded ONNX model."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return {
        "opset": int(opset),
        "op_counts": dict(sorted(counts.items())),
        "inputs": [i.name for i in model.graph.input],
        "outputs": [o.name for o in model.graph.output],
        "qdq_nodes": counts.get("QuantizeLinear", 0) + counts.get("DequantizeLinear", 0),
    }


def model_input(images_u8: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 NHWC images -> the float NCHW input of the torch/ONNX model."""
    x = (images_u8.astype(np.float32) / np.float32(255.0) - np.float32(mean)) / np.float32(std)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def run_onnx(path: str | os.PathLike[str], x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Logits of an ONNX model in onnxruntime (CPU), run in batches (batch 1 if the model is static)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ExportError(f"onnxruntime cannot load the model: {exc}", where=str(path), hint=_HINT) from exc
    meta = session.get_inputs()[0]
    step = batch if not isinstance(meta.shape[0], int) else meta.shape[0]
    outs = [session.run(None, {meta.name: x[i:i + step]})[0] for i in range(0, len(x), step)]
    return np.concatenate(outs).reshape(len(x), -1).astype(np.float32)
