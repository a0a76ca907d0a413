"""Malformed model files, TFLM op/type checks, arena bisection, quant ranges (no TensorFlow needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edge_cli import run_edge
from export_fixtures import single_op_tflite

from edge.errors import ConfigError, ExportError
from edge.export.apply_ranges import clip_weights
from edge.export.onnx_check import read_onnx
from edge.export.tflite_inspect import read_tflite, require_full_integer
from edge.export.tflm_check import _works, require_tflm_ops, smallest_arena
from edge.quant_ranges import QuantRangesFile, WeightRange, read_ranges

HINT_TFLITE = "re-export the model (`edge export`), or copy the file again: it is not a complete .tflite"


def _onnx_relu() -> bytes:
    """A small valid ONNX model (Relu on [1, 64]) built with onnx.helper."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_a_valid_one_op_model_parses_and_is_full_integer(tmp_path: Path) -> None:
    path = tmp_path / "relu.tflite"
    path.write_bytes(single_op_tflite("RELU"))
    model = read_tflite(path)
    assert model.op_names == ["RELU"] and model.tensor_types() == {"INT8": 2}
    require_full_integer(model)
    require_tflm_ops(model)


def test_truncated_tflite_gets_a_clear_error(tmp_path: Path) -> None:
    data = single_op_tflite("RELU")
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[:200])
    with pytest.raises(ExportError) as err:
        read_tflite(path)
    assert err.value.exit_code == 4
    assert err.value.where == str(path)
    assert err.value.message.startswith("corrupted or truncated TFLite flatbuffer (200 bytes): ")
    assert err.value.hint == HINT_TFLITE


def test_garbage_and_tiny_files_get_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "a.tflite").write_bytes(b"\x00\x01\x02")
    (tmp_path / "b.tflite").write_bytes(b"PK\x03\x04this is a zip")
    with pytest.raises(ExportError, match=r"file is 3 bytes, too short for a TFLite flatbuffer"):
        read_tflite(tmp_path / "a.tflite")
    with pytest.raises(ExportError) as err:
        read_tflite(tmp_path / "b.tflite")
    assert err.value.message == "not a TFLite flatbuffer: bytes 4-7 are b'this', expected b'TFL3'"


def test_edge_verify_reports_corrupt_files_with_exit_4(tmp_path: Path) -> None:
    (tmp_path / "cut.tflite").write_bytes(single_op_tflite("RELU")[:200])
    cut = _onnx_relu()[:-7]
    (tmp_path / "cut.onnx").write_bytes(cut)
    (tmp_path / "empty.onnx").write_bytes(b"")
    proc = run_edge("verify", str(tmp_path / "cut.tflite"))
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    where = tmp_path / "cut.tflite"
    assert proc.stderr.startswith(f"error: {where}: corrupted or truncated TFLite flatbuffer (200 bytes)")
    proc = run_edge("verify", str(tmp_path / "cut.onnx"))
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    where = tmp_path / "cut.onnx"
    assert proc.stderr.startswith(f"error: {where}: corrupted or truncated ONNX protobuf ({len(cut)} bytes)")
    proc = run_edge("verify", str(tmp_path / "empty.onnx"))
    assert proc.returncode == 4
    assert proc.stderr.startswith(f"error: {tmp_path / 'empty.onnx'}: file is empty (0 bytes)")
    proc = run_edge("verify", str(tmp_path / "missing.tflite"))
    where = tmp_path / "missing.tflite"
    assert (proc.returncode, proc.stderr.splitlines()[0]) == (4, f"error: {where}: model file not found")


def test_edge_verify_runs_a_good_model_in_tflm(tmp_path: Path) -> None:
    (tmp_path / "relu.tflite").write_bytes(single_op_tflite("RELU"))
    proc = run_edge("verify", "--json", "--full-integer", str(tmp_path / "relu.tflite"))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["tflm_resolver"] == ["AddRelu"] and info["full_integer"] is True
    assert 0 < info["tflm_arena_bytes"] < 16384


def test_onnx_files_valid_truncated_and_corrupted(tmp_path: Path) -> None:
    data = _onnx_relu()
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    assert [n.op_type for n in read_onnx(path).graph.node] == ["Relu"]
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError) as err:
        read_onnx(path)
    assert err.value.message == (f"corrupted or truncated ONNX protobuf ({len(data) // 2} bytes): "
                                 "Error parsing message with type 'onnx.ModelProto': Wire format was corrupt")
    path.write_bytes(data.replace(b"Relu", b"Relx"))
    with pytest.raises(ExportError, match=r"onnx.checker rejects the model: No Op registered for Relx"):
        read_onnx(path)


def test_op_without_tflm_kernel_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gelu.tflite"
    path.write_bytes(single_op_tflite("GELU"))
    with pytest.raises(ExportError) as err:
        require_tflm_ops(read_tflite(path))
    assert err.value.message == "TFLite Micro cannot run this model: op 0 GELU: TFLite Micro has no kernel for GELU"
    proc = run_edge("verify", str(path))
    assert proc.returncode == 4 and "op 0 GELU: TFLite Micro has no kernel for GELU" in proc.stderr


def test_type_without_tflm_kernel_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gather16.tflite"
    path.write_bytes(single_op_tflite("GATHER", "INT16"))
    with pytest.raises(ExportError) as err:
        require_tflm_ops(read_tflite(path))
    assert err.value.message == ("TFLite Micro cannot run this model: op 0 GATHER: no INT16 kernel "
                                 "(take the class token with a slice x[:, 0:1] instead of GATHER)")


def test_float_tensors_fail_the_full_integer_check(tmp_path: Path) -> None:
    path = tmp_path / "f.tflite"
    path.write_bytes(single_op_tflite("RELU", "FLOAT32"))
    with pytest.raises(ExportError) as err:
        require_full_integer(read_tflite(path))
    assert err.value.message == "model is not full-integer: 2 float tensor(s): 0 'x' FLOAT32, 1 'y' FLOAT32"


def test_arena_bisection_finds_the_smallest_arena() -> None:
    data = single_op_tflite("RELU", shape=(1, 64))
    sample = np.zeros((1, 64), dtype=np.int8)
    arena = smallest_arena(data, sample)
    assert arena % 16 == 0
    assert _works(data, arena, sample)
    assert not _works(data, arena - 16, sample)


def test_quant_ranges_parse_and_clip(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"format": "edge-quant-ranges/1", "activations": {"head": {"min": -1, "max": 2}},
                                "weights": {"w": {"axis": 0, "min": [-1, -2], "max": [1, 2]}}}))
    ranges = read_ranges(path)
    assert ranges.activation_pairs() == {"head": (-1.0, 2.0)}
    weights = {"w": np.array([[5.0, -5.0], [5.0, -5.0]], dtype=np.float32)}
    assert clip_weights(weights, ranges) == ["w"]
    np.testing.assert_array_equal(weights["w"], [[1, -1], [2, -2]])
    with pytest.raises(ConfigError, match=r"field 'weights\.nope' names no weight of the model"):
        clip_weights({}, QuantRangesFile(weights={"nope": WeightRange(min=[0.0], max=[1.0])}))
    with pytest.raises(ConfigError, match=r"field 'weights\.w' has 2 channels, the weight \[3, 2\] has 3 on axis 0"):
        clip_weights({"w": np.zeros((3, 2), dtype=np.float32)}, ranges, where="r.json")
