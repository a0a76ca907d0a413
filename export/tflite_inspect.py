"""Read a .tflite flatbuffer without TensorFlow: ops, tensors, quantisation, full-integer check.

Every reader of a model goes through `read_tflite` (the power side's `parse_tflite`, `edge flash`
and `edge bench` too), which turns a truncated, corrupted or oversized file into an error that says
what is wrong and at which byte, instead of a crash deep in flatbuffers. The file's size is checked
before it is read: a flatbuffer addresses at most 2 GiB, so a larger file is refused unread. The
caller picks the error class: ExportError (exit 4) when checking our own export, ConfigError
(exit 2) when the file is a user's input to another command.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edge.errors import EdgeError, ExportError

OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
FLOAT_TYPES = {"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"}
MAX_TFLITE_BYTES = (1 << 31) - 1  # flatbuffers use signed 32-bit offsets: nothing larger is one model
_HINT = "re-export the model (`edge export`), or copy the file again: it is not a complete .tflite"


@dataclass
class TensorInfo:
    """One tensor of the main subgraph."""

    index: int
    name: str
    dtype: str
    shape: list[int]
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)
    has_data: bool = False


@dataclass
class OpInfo:
    """One operator: its builtin (or custom) name and tensor indices."""

    index: int
    name: str
    inputs: list[int]
    outputs: list[int]


@dataclass
class TfliteModel:
    """The parts of a .tflite the exporter needs (main subgraph only)."""

    path: str
    size_bytes: int
    tensors: list[TensorInfo]
    ops: list[OpInfo]
    inputs: list[int]
    outputs: list[int]
    subgraphs: int

    @property
    def op_names(self) -> list[str]:
        """Distinct op names, sorted."""
        return sorted({op.name for op in self.ops})

    def op_counts(self) -> dict[str, int]:
        """Op name -> how many times it occurs."""
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.name] = counts.get(op.name, 0) + 1
        return dict(sorted(counts.items()))

    def float_tensors(self) -> list[TensorInfo]:
        """Tensors with a floating-point type (empty for a full-integer model)."""
        return [t for t in self.tensors if t.dtype in FLOAT_TYPES]

    def tensor_types(self) -> dict[str, int]:
        """Tensor type -> count."""
        counts: dict[str, int] = {}
        for tensor in self.tensors:
            counts[tensor.dtype] = counts.get(tensor.dtype, 0) + 1
        return dict(sorted(counts.items()))

    def io(self, which: str) -> TensorInfo:
        """The first input (`which='input'`) or output tensor."""
        return self.tensors[(self.inputs if which == "input" else self.outputs)[0]]


def read_model_bytes(path: str | os.PathLike[str], error: type[EdgeError] = ExportError,
                     limit: int = MAX_TFLITE_BYTES) -> bytes:
    """The bytes of a model file, refusing a missing, unreadable or larger-than-`limit` file before reading it."""
    where = str(path)
    try:
        size = os.stat(path).st_size
        if not Path(path).is_file():
            raise error("not a regular file", where=where, hint="pass the path of a .tflite file")
        if size > limit:
            raise error(f"file is {size:,} bytes, more than the {limit:,} a TFLite flatbuffer can address; "
                        "not read", where=where, hint=_HINT)
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise error("model file not found", where=where,
                    hint="build it with `make export TARGET=cortex-m` or pass the right path") from exc
    except OSError as exc:
        raise error(f"cannot read model file: {exc.strerror}", where=where) from exc


def read_tflite(path: str | os.PathLike[str], data: bytes | None = None,
                error: type[EdgeError] = ExportError) -> TfliteModel:
    """Parse and bounds-check a .tflite file; raise `error` (default ExportError) for anything malformed."""
    where = str(path)
    if data is None:
        data = read_model_bytes(path, error)
    try:
        return _read(where, data)
    except ExportError as exc:
        if error is ExportError:
            raise
        raise error(exc.message, where=exc.where, hint=exc.hint) from exc


def _read(where: str, data: bytes) -> TfliteModel:
    if len(data) > MAX_TFLITE_BYTES:
        raise ExportError(f"model is {len(data):,} bytes, more than a TFLite flatbuffer can address", where=where,
                          hint=_HINT)
    if len(data) < 8:
        raise ExportError(f"file is {len(data)} bytes, too short for a TFLite flatbuffer", where=where, hint=_HINT)
    if data[4:8] != b"TFL3":
        raise ExportError(
            f"not a TFLite flatbuffer: bytes 4-7 are {data[4:8]!r}, expected b'TFL3'", where=where,
            hint="pass a .tflite file (an .onnx model is checked with `edge verify` too, by its extension)")
    root = struct.unpack_from("<I", data, 0)[0]
    if root + 4 > len(data):
        raise ExportError(f"root table offset {root} points past the end of the file ({len(data)} bytes)",
                          where=where, hint=_HINT)
    try:
        return _parse(where, data)
    except ExportError:
        raise
    except Exception as exc:  # flatbuffers raises struct.error/IndexError/... on garbage
        raise ExportError(f"corrupted or truncated TFLite flatbuffer ({len(data)} bytes): {exc}", where=where,
                          hint=_HINT) from exc


def _check_vector(where: str, data: bytes, table, slot: int, what: str) -> None:
    offset = table._tab.Offset(slot)
    if not offset:
        return
    start = table._tab.Vector(offset)
    length = table._tab.VectorLen(offset)
    if start + length > len(data):
        raise ExportError(
            f"{what} ends at byte {start + length} but the file has only {len(data)} bytes (truncated)",
            where=where, hint=_HINT)


def _parse(where: str, data: bytes) -> TfliteModel:
    """The main subgraph of a flatbuffer whose header was checked, every index checked against its table."""
    model = schema.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() < 1:
        raise ExportError("model has no subgraph", where=where, hint=_HINT)
    _check_buffers(where, data, model)
    codes = _op_codes(model)
    graph = model.Subgraphs(0)
    tensors = _tensors(where, model, graph)
    ops = _ops(where, graph, codes, len(tensors))
    return TfliteModel(
        path=where,
        size_bytes=len(data),
        tensors=tensors,
        ops=ops,
        inputs=_io(where, "input", graph.InputsLength(), graph.InputsAsNumpy, len(tensors)),
        outputs=_io(where, "output", graph.OutputsLength(), graph.OutputsAsNumpy, len(tensors)),
        subgraphs=model.SubgraphsLength(),
    )


def _check_buffers(where: str, data: bytes, model: Any) -> None:
    """Every buffer's data vector, and any data stored past the flatbuffer (offset/size), lies inside the file."""
    for i in range(model.BuffersLength()):
        _check_vector(where, data, model.Buffers(i), 4, f"buffer {i}")
        buffer = model.Buffers(i)
        if buffer.Offset() > 1 and buffer.Offset() + buffer.Size() > len(data):
            raise ExportError(f"buffer {i} lies at bytes {buffer.Offset()}..{buffer.Offset() + buffer.Size()} "
                              f"past the end of the file ({len(data)} bytes, truncated)", where=where, hint=_HINT)


def _op_codes(model: Any) -> list[str]:
    """The operator names by opcode index (CUSTOM:<name> for custom ops, UNKNOWN_<n> for codes LiteRT lacks)."""
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append(f"CUSTOM:{(code.CustomCode() or b'?').decode(errors='replace')}")
        else:
            codes.append(OP_NAMES.get(builtin, f"UNKNOWN_{builtin}"))
    return codes


def _tensors(where: str, model: Any, graph: Any) -> list[TensorInfo]:
    """The subgraph's tensors with type, shape and quantisation; a buffer index out of range is an error."""
    tensors = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        q = t.Quantization()
        buffer_index = t.Buffer()
        if buffer_index >= model.BuffersLength():
            raise ExportError(f"tensor {i} refers to buffer {buffer_index} of {model.BuffersLength()}", where=where,
                              hint=_HINT)
        tensors.append(TensorInfo(
            index=i,
            name=(t.Name() or b"").decode(errors="replace"),
            dtype=TYPE_NAMES.get(t.Type(), f"UNKNOWN_{t.Type()}"),
            shape=[int(v) for v in t.ShapeAsNumpy()] if t.ShapeLength() else [],
            scale=[float(v) for v in q.ScaleAsNumpy()] if q is not None and q.ScaleLength() else [],
            zero_point=[int(v) for v in q.ZeroPointAsNumpy()] if q is not None and q.ZeroPointLength() else [],
            has_data=model.Buffers(buffer_index).DataLength() > 0 or model.Buffers(buffer_index).Size() > 0,
        ))
    return tensors


def _ops(where: str, graph: Any, codes: list[str], n_tensors: int) -> list[OpInfo]:
    """The subgraph's operators in order; an opcode or tensor index out of range is an error (-1: no tensor)."""
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if op.OpcodeIndex() >= len(codes):
            raise ExportError(f"operator {i} uses opcode {op.OpcodeIndex()} of {len(codes)}", where=where, hint=_HINT)
        ins = [int(v) for v in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(v) for v in op.OutputsAsNumpy()] if op.OutputsLength() else []
        for idx in ins + outs:
            if not -1 <= idx < n_tensors:
                raise ExportError(f"operator {i} uses tensor {idx} of {n_tensors}", where=where, hint=_HINT)
        ops.append(OpInfo(index=i, name=codes[op.OpcodeIndex()], inputs=ins, outputs=outs))
    return ops


def _io(where: str, which: str, length: int, values: Callable[[], np.ndarray], n_tensors: int) -> list[int]:
    """The subgraph's input or output tensor indices: at least one, each in range."""
    indices = [int(v) for v in values()] if length else []
    if not indices:
        raise ExportError(f"the main subgraph has no {which} tensor", where=where, hint=_HINT)
    for idx in indices:
        if not 0 <= idx < n_tensors:
            raise ExportError(f"subgraph {which} refers to tensor {idx} of {n_tensors}", where=where, hint=_HINT)
    return indices


def require_full_integer(model: TfliteModel) -> None:
    """Raise ExportError unless every tensor (input to output) is an integer type."""
    floats = model.float_tensors()
    if floats:
        names = ", ".join(f"{t.index} '{t.name}' {t.dtype}" for t in floats[:5])
        more = f" and {len(floats) - 5} more" if len(floats) > 5 else ""
        raise ExportError(
            f"model is not full-integer: {len(floats)} float tensor(s): {names}{more}",
            where=model.path,
            hint="every op must be quantised; check that no op fell back to float (converter log) "
                 "and that input/output types are int8",
        )


def quant_params(tensor: TensorInfo) -> tuple[float, int]:
    """(scale, zero point) of a per-tensor quantised tensor."""
    if not tensor.scale:
        raise ExportError(f"tensor '{tensor.name}' has no quantisation parameters")
    return tensor.scale[0], tensor.zero_point[0] if tensor.zero_point else 0


def quantize(x: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    """Float array -> the integer type of `tensor` with its scale and zero point."""
    scale, zero = quant_params(tensor)
    info = np.iinfo(np.int16 if tensor.dtype == "INT16" else np.int8)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(info.dtype)


def dequantize(q: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    """Integer array -> float with the scale and zero point of `tensor`."""
    scale, zero = quant_params(tensor)
    return (q.astype(np.float32) - zero) * np.float32(scale)
