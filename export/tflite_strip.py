"""Shrink a .tflite for a microcontroller: drop tensor names and conversion metadata (numpy only).

TFLite Micro never reads tensor names; on a pruned vit_lite_s they are ~2.3 KB of a ~125 KB file.
The flatbuffer is re-packed with every buffer 16-byte aligned, as the converter writes it (TFLM
reads weights and int32 biases in place). The op graph, weights and quantisation are unchanged:
tests check that LiteRT and TFLM give identical outputs.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

ALIGN = 16
_DROP_METADATA = {b"CONVERSION_METADATA"}


def _pack_buffer_aligned(self: schema.BufferT, builder: flatbuffers.Builder) -> int:
    """BufferT.Pack with the data vector aligned to ALIGN bytes."""
    data = None
    if self.data is not None and len(self.data):
        raw = np.asarray(self.data, dtype=np.uint8).tobytes()
        builder.StartVector(1, len(raw), ALIGN)
        builder.head = builder.head - len(raw)
        builder.Bytes[builder.head:builder.head + len(raw)] = raw
        data = builder.EndVector()
    schema.BufferStart(builder)
    if data is not None:
        schema.BufferAddData(builder, data)
    schema.BufferAddOffset(builder, self.offset)
    schema.BufferAddSize(builder, self.size)
    return schema.BufferEnd(builder)


def strip_for_mcu(data: bytes) -> bytes:
    """The same model without tensor names and conversion metadata, buffers 16-byte aligned."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    for graph in model.subgraphs or []:
        for tensor in graph.tensors or []:
            tensor.name = b""
    model.metadata = [m for m in (model.metadata or []) if m.name not in _DROP_METADATA] or None
    original = schema.BufferT.Pack
    schema.BufferT.Pack = _pack_buffer_aligned
    try:
        builder = flatbuffers.Builder(len(data))
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    finally:
        schema.BufferT.Pack = original
    return bytes(builder.Output())


def misaligned_buffers(data: bytes) -> list[int]:
    """Indices of buffers whose data does not start on an ALIGN-byte boundary (empty = fine)."""
    model = schema.Model.GetRootAs(data, 0)
    return [i for i in range(model.BuffersLength())
            if model.Buffers(i).DataLength() and model.Buffers(i)._tab.Vector(4) % ALIGN]
