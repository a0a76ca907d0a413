"""QAT that is the integer graph: QuantVit's int8 codes equal TFLite Micro's, tensor by tensor.

A tiny ReLU ViT-lite is trained briefly, QAT fine-tuned with `QuantVit`, exported with its ranges
(TensorFlow runs in the export's child process) and run in TFLite Micro's Python interpreter (every
intermediate tensor preserved); torch and TFLite Micro share this process, TensorFlow never does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from export_fixtures import tiny_images

from edge.export.child import run_module
from edge.export.tflite_inspect import read_tflite
from edge.export.tflm_check import check_tflm
from edge.quant_ranges import FORMAT, integer_points, read_ranges, write_ranges
from edge.training.loop import FitConfig, evaluate, fit, to_input
from edge.training.models import build_model, save_model
from edge.training.quant_compare import compare_run, format_table
from edge.training.quant_vit import QuantVit, calibrate, export_qdq_onnx
from edge.vit_spec import BlockSpec, VitSpec

SPEC = VitSpec(name="vit_lite_tiny", img_size=32, in_chans=1, patch_size=8, embed_dim=32, num_classes=2, act="relu",
               blocks=[BlockSpec(num_heads=2, head_dim=16, mlp_hidden=64)] * 2, labels=["empty", "person"])
# the convolutional tokenizer (a 3x3 stride-2 stem conv with SAME padding) and sequence pooling
CONV_SPEC = SPEC.model_copy(update={"stem_channels": [8], "patch_size": 4, "pool": "seq"})
PROBE = 8  # images compared tensor by tensor


def _xy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = tiny_images(n, seed=seed)
    return to_input(x, SPEC.input_mean, SPEC.input_std), torch.as_tensor(y)


@pytest.fixture(scope="module", params=[SPEC, CONV_SPEC], ids=["patch-token", "conv-seq"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Train, calibrate, QAT one epoch, write the qat artifacts, convert to int8 TFLite in a TF child."""
    spec: VitSpec = request.param
    out = tmp_path_factory.mktemp("integer")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train, val = _xy(128, 1), _xy(64, 2)
    model = build_model(spec)
    fit(model, train, val, FitConfig(epochs=4, batch_size=32, lr=3e-3, warmup_epochs=0, augment=False,
                                     weight_decay=0.0, label_smoothing=0.0), desc="float")
    model.eval()
    qvit = QuantVit(build_model(spec), spec)
    qvit.model.load_state_dict(model.state_dict())
    calibrate(qvit, _xy(16, 3)[0])
    before = qvit.ranges_file()
    result = fit(qvit, train, val, FitConfig(epochs=1, batch_size=32, lr=2e-3, warmup_epochs=0, augment=True,
                                             weight_decay=0.0), teacher=model, desc="qat")
    qvit.load_state_dict(result.best_state)
    save_model(qvit.model, spec, out / "model.safetensors", out / "model_spec.json")
    write_ranges(out / "quant_ranges.json", qvit.ranges_file())
    calib, _ = tiny_images(16, seed=3)
    probe, labels = tiny_images(PROBE, seed=4)
    np.save(out / "calib.npy", calib)
    np.save(out / "probe.npy", probe)
    job = {"spec": str(out / "model_spec.json"), "weights": str(out / "model.safetensors"),
           "ranges": str(out / "quant_ranges.json"), "calib": str(out / "calib.npy"), "out_dir": str(out),
           "int16": False}
    (out / "job.json").write_text(json.dumps(job))
    run_module("edge.export.tflite_convert", [str(out / "job.json")], what="conversion")
    return {"out": out, "qvit": qvit.eval(), "before": before, "probe": probe, "labels": labels, "val": val,
            "teacher": model, "spec": spec}


def test_every_tensor_tflite_quantises_has_a_qat_range(exported: dict) -> None:
    spec: VitSpec = exported["spec"]
    ranges = read_ranges(exported["out"] / "quant_ranges.json")
    assert ranges.format == FORMAT and ranges.weights == {}
    fixed = {"input", *(p for p in integer_points(spec) if p.endswith(".softmax"))}
    assert {"blocks.0.attn.softmax", "blocks.1.attn.softmax"} <= fixed
    assert ("pool.softmax" in fixed) == (spec.pool == "seq")
    learned = [p for p in integer_points(spec) if p not in fixed]
    assert sorted(ranges.activations) == sorted(learned)
    assert ranges.activations != exported["before"].activations  # QAT learned the ranges
    info = json.loads((exported["out"] / "convert.json").read_text())
    assert info["calibrated_points"] == [] and info["unknown_points"] == []  # nothing left to the converter
    assert info["qat_points"] == learned  # graph order
    assert set(info["fixed_points"]) == fixed
    model = read_tflite(exported["out"] / "model_int8.tflite")
    weights = [model.tensors[op.inputs[1]] for op in model.ops if op.name in ("CONV_2D", "FULLY_CONNECTED")]
    layers = len(spec.stem_channels) + 1 + 2 * 6 + int(spec.pool == "seq") + 1
    assert len(weights) == layers and all(len(w.scale) == w.shape[0] for w in weights)  # per channel
    assert all(set(w.zero_point) == {0} for w in weights)


def test_qat_integers_equal_tflm_tensor_by_tensor(exported: dict) -> None:
    diffs = compare_run(exported["qvit"], exported["out"] / "model_int8.tflite", exported["probe"])
    print("\n" + format_table(diffs))
    assert set(diffs) == set(exported["qvit"].points)  # every quantised tensor found, input and softmax included
    worst = {name: d.within_one for name, d in diffs.items() if d.within_one < 0.999}
    assert not worst, f"tensors more than 1 int8 step apart on > 0.1 % of elements: {worst}"
    # QuantVit reproduces the reference kernels' integer arithmetic (the converter's float32 scales, the
    # fixed-point SOFTMAX): every code of every tensor is the same, not just close
    inexact = {name: d.exact for name, d in diffs.items() if d.max_steps}
    assert not inexact, f"tensors whose codes differ from TFLite Micro's: {inexact}"


def test_tflm_output_equals_qat_output(exported: dict) -> None:
    out, qvit = exported["out"], exported["qvit"]
    _, logits = check_tflm(out / "model_int8.tflite", out / "probe.npy", out / "tflm")
    record: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        ours = qvit(to_input(exported["probe"], SPEC.input_mean, SPEC.input_std), record=record).numpy()
    head = read_tflite(out / "model_int8.tflite").io("output")
    tflm_codes = np.round(logits / head.scale[0]).astype(np.int64) + head.zero_point[0]
    steps = np.abs(tflm_codes - record["head"].numpy())
    print(f"\nTFLM vs QAT logits: max {steps.max()} int8 steps")
    assert steps.max() <= 1 and (logits.argmax(1) == ours.argmax(1)).mean() == 1.0


def test_qdq_onnx_runs_and_equals_the_fake_quant_model(exported: dict, tmp_path: Path) -> None:
    from edge.training.qat import onnx_logits

    path = export_qdq_onnx(exported["qvit"], tmp_path / "model_int8.onnx")
    x = exported["val"][0]
    ours = onnx_logits(path, x.numpy())
    ref = evaluate(exported["qvit"], x, exported["val"][1])[2].numpy()
    assert (ours.argmax(1) == ref.argmax(1)).mean() >= 0.98 and np.abs(ours - ref).max() < 0.05


def test_fake_quant_accuracy_stays_close_to_float(exported: dict) -> None:
    float_top1 = evaluate(exported["teacher"], *exported["val"])[0]
    assert float_top1 >= 0.9, "the task was not learned"
    assert evaluate(exported["qvit"], *exported["val"])[0] >= float_top1 - 0.05
