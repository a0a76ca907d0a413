"""Read any .tflite flatbuffer (no TensorFlow) into a list of ops with MACs and element counts.

The file goes through the one guarded reader, `edge.export.tflite_inspect.read_tflite` (size
limit before reading, magic, flatbuffer bounds, tensor and opcode indices), so a corrupt model is
a ConfigError (exit 2) naming the file and the byte or index at fault. MACs are counted from tensor shapes:
CONV_2D N*Ho*Wo*Co*Kh*Kw*Ci, DEPTHWISE_CONV_2D N*Ho*Wo*Co*Kh*Kw, FULLY_CONNECTED out*in,
BATCH_MATMUL out*K, TRANSPOSE_CONV in*Kh*Kw*Co. Every other op is costed per element
(output elements; reductions and pooling use input elements).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from edge.errors import ConfigError

OP_CLASSES: dict[str, tuple[str, ...]] = {
    "conv": ("CONV_2D", "TRANSPOSE_CONV", "CONV_3D"),
    "depthwise": ("DEPTHWISE_CONV_2D",),
    "fully_connected": ("FULLY_CONNECTED",),
    "matmul": ("BATCH_MATMUL",),
    "softmax": ("SOFTMAX", "LOG_SOFTMAX"),
    "activation": ("TANH", "LOGISTIC", "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LEAKY_RELU",
                   "PRELU", "ELU", "GELU", "EXP", "RSQRT", "SQRT", "LOG", "SIN", "COS"),
    "elementwise": ("ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "ABS", "NEG", "ADD_N",
                    "POW", "SQUARE", "QUANTIZE", "DEQUANTIZE", "FLOOR", "CEIL", "ROUND", "SELECT", "SELECT_V2",
                    "LESS", "GREATER", "EQUAL", "NOT_EQUAL", "LESS_EQUAL", "GREATER_EQUAL", "FLOOR_DIV", "FLOOR_MOD"),
    "reduce": ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "ARG_MAX", "ARG_MIN"),
    "pooling": ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"),
    "data_movement": ("RESHAPE", "TRANSPOSE", "CONCATENATION", "STRIDED_SLICE", "SLICE", "PACK", "UNPACK", "SPLIT",
                      "SPLIT_V", "GATHER", "GATHER_ND", "PAD", "PADV2", "MIRROR_PAD", "SQUEEZE", "EXPAND_DIMS", "SHAPE",
                      "TILE", "BROADCAST_TO", "CAST", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "BATCH_TO_SPACE_ND",
                      "SPACE_TO_BATCH_ND", "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "ZEROS_LIKE", "FILL"),
}
MAC_CLASSES = ("conv", "depthwise", "fully_connected", "matmul")
CLASS_OF = {op: cls for cls, ops in OP_CLASSES.items() for op in ops}
DTYPE_KIND = {"INT8": "int8", "UINT8": "int8", "INT16": "int16", "FLOAT32": "float32", "FLOAT16": "float32"}


@dataclass(frozen=True)
class GraphOp:
    """One operator of the graph with what the cost model needs."""

    index: int
    op: str
    op_class: str
    dtype: str  # "int8", "int16", "float32" or the raw tensor type name
    output_shape: tuple[int, ...]
    macs: int
    elements: int
    activation_bytes: int  # bytes of this op's non-constant inputs + outputs


@dataclass(frozen=True)
class Graph:
    """A parsed .tflite model (main subgraph)."""

    path: Path
    file_bytes: int
    ops: tuple[GraphOp, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    input_dtypes: tuple[str, ...]

    @property
    def macs(self) -> int:
        """Total multiply-accumulates."""
        return sum(op.macs for op in self.ops)


def _prod(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape)) if shape else 1


def parse_tflite(path: str | Path) -> Graph:
    """Parse a .tflite file; a ConfigError naming the file and the fault if it is not a sound one."""
    from edge.export.tflite_inspect import read_model_bytes, read_tflite

    path = Path(path)
    data = read_model_bytes(path, ConfigError)
    model = read_tflite(path, data, error=ConfigError)
    shapes = [tuple(t.shape) for t in model.tensors]
    dtypes = [t.dtype for t in model.tensors]
    constant = [t.has_data for t in model.tensors]
    ops = []
    for info in model.ops:
        name = info.name
        ins = [t for t in info.inputs if t >= 0]
        outs = [t for t in info.outputs if t >= 0]
        out_shape = shapes[outs[0]] if outs else ()
        op_class = CLASS_OF.get(name, "other")
        try:
            macs = _macs(name, _adj_x(data, info.index) if name == "BATCH_MATMUL" else False, ins, shapes, out_shape)
        except (ValueError, IndexError) as exc:
            raise ConfigError(f"op {info.index} {name}: tensor shapes {[shapes[t] for t in ins]} do not fit the op "
                              f"({exc})", where=str(path), hint="re-export the model: it is not a valid graph") from exc
        elements = _prod(out_shape)
        if op_class in ("reduce", "pooling") and ins:
            elements = _prod(shapes[ins[0]])
        dtype = DTYPE_KIND.get(dtypes[ins[0]] if ins else "?", dtypes[ins[0]] if ins else "?")
        if name == "QUANTIZE" and outs:
            dtype = DTYPE_KIND.get(dtypes[outs[0]], dtype)
        act_bytes = sum(_prod(shapes[t]) * _itemsize(dtypes[t]) for t in ins + outs if not constant[t])
        ops.append(GraphOp(info.index, name, op_class, dtype, out_shape, macs, elements, act_bytes))
    return Graph(
        path=path,
        file_bytes=len(data),
        ops=tuple(ops),
        input_shapes=tuple(shapes[t] for t in model.inputs),
        input_dtypes=tuple(dtypes[t] for t in model.inputs),
    )


def _itemsize(dtype: str) -> int:
    return {"INT8": 1, "UINT8": 1, "BOOL": 1, "INT16": 2, "FLOAT16": 2, "INT64": 8, "FLOAT64": 8}.get(dtype, 4)


def _adj_x(data: bytes, op_index: int) -> bool:
    """BatchMatMulOptions.adj_x of operator `op_index` (the reader has bounds-checked the graph)."""
    from ai_edge_litert import schema_py_generated as s

    try:
        table = s.Model.GetRootAs(data, 0).Subgraphs(0).Operators(op_index).BuiltinOptions()
        if table is None:
            return False
        opts = s.BatchMatMulOptions()
        opts.Init(table.Bytes, table.Pos)
        return bool(opts.AdjX())
    except Exception as exc:  # flatbuffers raises struct.error/IndexError on a damaged options table
        raise ValueError(f"unreadable BATCH_MATMUL options: {exc}") from exc


def _macs(name: str, adj_x: bool, ins: list[int], shapes: list[tuple[int, ...]], out: tuple[int, ...]) -> int:
    out_n = _prod(out)
    if name == "CONV_2D" and len(ins) >= 2:
        _, kh, kw, ci = shapes[ins[1]]
        return out_n * kh * kw * ci
    if name == "DEPTHWISE_CONV_2D" and len(ins) >= 2:
        _, kh, kw, _ = shapes[ins[1]]
        return out_n * kh * kw
    if name == "FULLY_CONNECTED" and len(ins) >= 2:
        return out_n * shapes[ins[1]][-1]
    if name == "TRANSPOSE_CONV" and len(ins) >= 3:
        co, kh, kw, _ = shapes[ins[1]]
        return _prod(shapes[ins[2]]) * kh * kw * co
    if name == "CONV_3D" and len(ins) >= 2:
        kd, kh, kw, ci, _ = shapes[ins[1]]
        return out_n * kd * kh * kw * ci
    if name == "BATCH_MATMUL" and len(ins) >= 2:
        a = shapes[ins[0]]
        return out_n * (a[-2] if adj_x else a[-1])
    return 0
