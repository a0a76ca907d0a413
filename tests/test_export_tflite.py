"""TF forward vs torch, full-integer int8 TFLite, QAT ranges kept, TFLM run, ONNX, C array.

TensorFlow and torch run only in child processes (the export's own child entry points); this
process compares the arrays they saved.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from export_fixtures import tiny_images, write_weights

from edge.export import c_array
from edge.export.child import run_module
from edge.export.parity import run_litert
from edge.export.tflite_inspect import read_tflite, require_full_integer
from edge.export.tflm_check import TFLM_OPS, check_tflm, resolver_calls
from edge.quant_ranges import integer_points
from edge.vit_spec import BlockSpec, VitSpec

# Pruned-looking: different head counts and MLP widths per block, hardswish activation.
SPEC = VitSpec(name="vit_lite_pruned", img_size=32, in_chans=1, patch_size=8, embed_dim=24, num_classes=3,
               blocks=[BlockSpec(num_heads=2, head_dim=8, mlp_hidden=40), BlockSpec(num_heads=1, head_dim=8,
                                                                                   mlp_hidden=24)],
               act="gelu_tanh", labels=["a", "b", "c"])
RANGES = {
    "format": "edge-quant-ranges/1", "activation_bits": 8, "weight_bits": 8,
    "activations": {"input": {"min": -1.0, "max": 1.0}, "blocks.0.mlp.fc1": {"min": -3.0, "max": 5.0},
                    "head": {"min": -2.0, "max": 2.0}, "blocks.0.attn.softmax": {"min": 0.0, "max": 1.0}},
    "weights": {"head.weight": {"axis": 0, "min": [-0.05] * 3, "max": [0.05] * 3}},
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Convert SPEC (random weights, RANGES) to TFLite in a TF child and to ONNX in a torch child."""
    out = tmp_path_factory.mktemp("export")
    write_weights(SPEC, out / "w.safetensors", seed=3)
    SPEC.save(out / "spec.json")
    (out / "ranges.json").write_text(json.dumps(RANGES))
    np.save(out / "calib.npy", tiny_images(16, seed=1)[0])
    np.save(out / "probe.npy", tiny_images(12, seed=2)[0])
    job = {"spec": str(out / "spec.json"), "weights": str(out / "w.safetensors"), "ranges": str(out / "ranges.json"),
           "calib": str(out / "calib.npy"), "out_dir": str(out), "int16": False, "probe": str(out / "probe.npy"),
           "probe_out": str(out / "tf_float.npy")}
    (out / "job.json").write_text(json.dumps(job))
    with ThreadPoolExecutor(max_workers=2) as pool:  # the TF and torch children run side by side
        jobs = [pool.submit(run_module, "edge.export.tflite_convert", [str(out / "job.json")], what="conversion"),
                pool.submit(run_module, "edge.export.onnx_export", [str(out / "spec.json"), str(out / "w.safetensors"),
                                                                    str(out / "probe.npy"), str(out)], what="onnx")]
        for job in jobs:
            job.result()
    return out


def test_tf_forward_equals_torch_forward_in_float(exported: Path) -> None:
    tf_logits = np.load(exported / "tf_float.npy")
    torch_logits = np.load(exported / "torch_float.npz")["logits"]
    assert tf_logits.shape == torch_logits.shape == (12, 3)
    np.testing.assert_allclose(tf_logits, torch_logits, atol=2e-5, rtol=0)
    litert = run_litert(exported / "model_float.tflite", np.load(exported / "probe.npy"))
    np.testing.assert_allclose(litert, torch_logits, atol=2e-5, rtol=0)


def test_int8_model_is_full_integer_with_pixel_minus_128_input(exported: Path) -> None:
    model = read_tflite(exported / "model_int8.tflite")
    require_full_integer(model)
    assert {t.dtype for t in model.tensors} <= {"INT8", "INT32"}
    assert "DEQUANTIZE" not in model.op_names and "QUANTIZE" not in model.op_names
    inp, out = model.io("input"), model.io("output")
    assert (inp.dtype, inp.shape, inp.zero_point) == ("INT8", [1, 32, 32, 1], [0])
    assert inp.scale[0] == pytest.approx(1 / 127.5, rel=1e-6)
    assert out.dtype == "INT8"
    float_model = read_tflite(exported / "model_float.tflite")
    assert len(float_model.float_tensors()) > 50


def test_qat_ranges_are_used_not_recalibrated(exported: Path) -> None:
    info = json.loads((exported / "convert.json").read_text())
    assert info["qat_points"] == ["blocks.0.mlp.fc1", "head"]
    assert "blocks.0.attn.softmax" in info["fixed_points"]  # the int8 SOFTMAX kernel fixes its range
    assert "blocks.0.mlp.fc1" not in info["calibrated_points"] and "norm" in info["calibrated_points"]
    # every tensor of the int8 graph (LayerNorm internals included) less 2 QAT, 2 softmax, the input
    assert info["calibrated_points"] == [p for p in integer_points(SPEC) if p not in (
        "input", "blocks.0.mlp.fc1", "head", "blocks.0.attn.softmax", "blocks.1.attn.softmax")]
    assert info["ranges_format"] == "edge-quant-ranges/1"
    assert info["clipped_weights"] == ["head.weight"]
    model = read_tflite(exported / "model_int8.tflite")
    out = model.io("output")
    assert out.scale[0] == pytest.approx(4 / 255, rel=1e-6) and out.zero_point == [0]  # head range [-2, 2]
    fc1 = [t for t in model.tensors if t.scale and abs(t.scale[0] - 8 / 255) < 1e-7]  # fc1 range [-3, 5]
    assert fc1 and fc1[0].zero_point == [-32]


def test_tflm_runs_the_int8_model_with_the_smallest_arena(exported: Path, tmp_path: Path) -> None:
    info, logits = check_tflm(exported / "model_int8.tflite", exported / "probe.npy", tmp_path)
    assert 4096 < info["arena_bytes"] < 200_000 and info["arena_bytes"] % 16 == 0
    assert info["ops"] == read_tflite(exported / "model_int8.tflite").op_names
    assert info["resolver"] == sorted(f"Add{TFLM_OPS[op]}" for op in info["ops"])
    litert = run_litert(exported / "model_int8.tflite", np.load(exported / "probe.npy"))
    step = read_tflite(exported / "model_int8.tflite").io("output").scale[0]
    assert logits.shape == (12, 3)
    assert np.abs(logits - litert).max() <= 40 * step  # same int8 model, reference vs optimised kernels
    torch_logits = np.load(exported / "torch_float.npz")["logits"]
    assert np.abs(logits - torch_logits).mean() < 0.1


def test_onnx_passes_checker_and_matches_torch(exported: Path) -> None:
    from edge.export.onnx_check import describe_onnx, model_input, read_onnx, run_onnx

    info = describe_onnx(read_onnx(exported / "model.onnx"))
    assert info["opset"] >= 17 and info["inputs"] == ["image"] and info["outputs"] == ["logits"]
    x = model_input(np.load(exported / "probe.npy"), SPEC.input_mean, SPEC.input_std)
    np.testing.assert_allclose(run_onnx(exported / "model.onnx", x), np.load(exported / "torch_float.npz")["logits"],
                               atol=2e-5, rtol=0)


STUB = """#pragma once
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
namespace tflite {
template <unsigned int N> class MicroMutableOpResolver {
 public:
%s
};
}  // namespace tflite
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_c_array_compiles_and_round_trips(exported: Path, tmp_path: Path) -> None:
    data = (exported / "model_int8.tflite").read_bytes()
    model = read_tflite(exported / "model_int8.tflite")
    info = c_array.FirmwareInfo(resolver_calls=resolver_calls(model), arena_bytes=12352, input_shape=[1, 32, 32, 1],
                                input_type="int8", input_scale=1 / 127.5, input_zero_point=0, output_scale=4 / 255,
                                output_zero_point=0, labels=["a", 'quote"d', "c"])
    source = c_array.render_source(data, info)
    header = c_array.render_header(info, len(data))
    assert c_array.parse_model_array(source) == data
    assert "alignas(16) const unsigned char g_model[]" in source
    assert "MicroMutableOpResolver<kNumModelOps>" in header and f"kNumModelOps = {len(model.op_names)};" in header
    assert "constexpr int kTensorArenaSize = 12352;" in header and "pixel[i] ^ 0x80" in header
    stub_dir = tmp_path / "tensorflow" / "lite" / "micro"
    stub_dir.mkdir(parents=True)
    names = sorted(set(TFLM_OPS.values()))
    methods = "\n".join(f"  TfLiteStatus Add{name}() {{ return kTfLiteOk; }}" for name in names)
    (stub_dir / "micro_mutable_op_resolver.h").write_text(STUB % methods)
    (tmp_path / "model_data.h").write_text(header)
    (tmp_path / "model_data.cc").write_text(source)
    (tmp_path / "main.cc").write_text('#include "model_data.h"\nint main() { ModelOpResolver r; '
                                      "return RegisterModelOps(r) == kTfLiteOk && g_model_len > 0 ? 0 : 1; }\n")
    cmd = ["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(tmp_path), "-o", str(tmp_path / "a"),
           str(tmp_path / "main.cc"), str(tmp_path / "model_data.cc")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert subprocess.run([str(tmp_path / "a")]).returncode == 0


def test_converter_child_reports_a_bad_ranges_file(exported: Path, tmp_path: Path) -> None:
    job = json.loads((exported / "job.json").read_text())
    (tmp_path / "ranges.json").write_text(json.dumps({"format": "other/9"}))
    job.update(ranges=str(tmp_path / "ranges.json"), out_dir=str(tmp_path), probe=None)
    (tmp_path / "job.json").write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-m", "edge.export.tflite_convert", str(tmp_path / "job.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    expected = (f"error: {tmp_path / 'ranges.json'}: invalid quantisation ranges, field 'format' is 'other/9', "
                "expected 'edge-quant-ranges/1'")
    assert expected in proc.stderr


def test_stripping_names_keeps_the_model_and_its_alignment(exported: Path, tmp_path: Path) -> None:
    from edge.export.tflite_strip import misaligned_buffers, strip_for_mcu

    assert {t.name for t in read_tflite(exported / "model_int8.tflite").tensors} == {""}  # the export strips
    assert misaligned_buffers((exported / "model_int8.tflite").read_bytes()) == []
    original = (exported / "model_float.tflite").read_bytes()
    stripped = strip_for_mcu(original)
    assert misaligned_buffers(stripped) == [] and len(stripped) < len(original)
    (tmp_path / "s.tflite").write_bytes(stripped)
    before, after = read_tflite(exported / "model_float.tflite"), read_tflite(tmp_path / "s.tflite")
    assert [op.name for op in after.ops] == [op.name for op in before.ops]
    images = np.load(exported / "probe.npy")
    np.testing.assert_array_equal(run_litert(tmp_path / "s.tflite", images),
                                  run_litert(exported / "model_float.tflite", images))


@pytest.mark.slow
def test_int16x8_model_runs_in_tflm_with_lower_error(exported: Path, tmp_path: Path) -> None:
    job = json.loads((exported / "job.json").read_text())
    job.update(out_dir=str(tmp_path), int16=True, probe=None)
    (tmp_path / "job.json").write_text(json.dumps(job))
    run_module("edge.export.tflite_convert", [str(tmp_path / "job.json")], what="int16 conversion")
    model = read_tflite(tmp_path / "model_int8.tflite")
    require_full_integer(model)
    assert model.io("input").dtype == model.io("output").dtype == "INT16"
    assert json.loads((tmp_path / "convert.json").read_text())["qat_points"] == []  # 8-bit ranges not used
    _, logits16 = check_tflm(tmp_path / "model_int8.tflite", exported / "probe.npy", tmp_path / "w16")
    torch_logits = np.load(exported / "torch_float.npz")["logits"]
    error = np.abs(logits16 - torch_logits)
    print(f"int16x8 TFLM vs torch: max {error.max():.2e}, mean {error.mean():.2e}")
    assert error.mean() < 0.01 * np.abs(torch_logits).mean() + 1e-3
