"""The qat stage end to end on a tiny run: artifacts, manifest record, metrics (no TensorFlow here)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from export_fixtures import TINY, make_run

from edge.config import RunConfig
from edge.errors import ConfigError
from edge.manifest import Manifest
from edge.pipeline import run_stage_here
from edge.quant_ranges import read_ranges
from edge.training.models import load_model

os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")


def _configure(run_dir, **qat: object) -> None:
    manifest = Manifest(run_dir)
    config = RunConfig.model_validate(manifest.config)
    config = config.model_copy(update={"prune": config.prune.model_copy(update={"enabled": False})})
    tree = config.model_dump(mode="json")
    tree["qat"].update({"epochs": 1, "batch_size": 8, **qat})
    tree["train"]["threads"] = 1
    manifest.config = RunConfig.model_validate(tree).model_dump(mode="json")
    manifest.stages["train"].metrics.update({"params": 25_000, "val_top1": 0.75})  # what the train stage records
    manifest.save()


def test_qat_stage_writes_the_contract_artifacts(tmp_path) -> None:
    torch.set_num_threads(1)
    run_dir, _ = make_run(tmp_path)
    _configure(run_dir)
    run_stage_here(run_dir, "qat")

    record = Manifest(run_dir).stages["qat"]
    assert {"weights", "spec", "quant_ranges", "onnx_qdq", "reference"} <= set(record.outputs)
    assert set(record.inputs) == {"train.weights", "train.spec", "data.dataset"}
    metrics = record.metrics
    for key in ("val_top1", "val_top1_float", "test_top1", "params", "macs", "int8_bytes_estimate",
                "onnx_qdq_vs_torch_top1", "quantizers", "points_with_ranges", "wall_s"):
        assert key in metrics, key
    assert metrics["onnx_qdq_vs_torch_top1"] >= 0.95
    assert metrics["params_ratio_vs_trained"] == round(metrics["params"] / 25_000, 4)
    assert metrics["val_top1_drop_vs_trained"] == round(0.75 - metrics["val_top1"], 4)
    assert metrics["points_with_ranges"] >= 20 and metrics["quantizers"] > metrics["points_with_ranges"]
    assert 0 < metrics["int8_bytes_estimate"] < metrics["float32_bytes"]

    folder = run_dir / "qat"
    model, spec = load_model(folder / "model.safetensors", folder / "model_spec.json")  # strict, plain names
    assert metrics["params"] == sum(p.numel() for p in model.parameters())
    ranges = read_ranges(folder / "quant_ranges.json")
    ranges.check_shapes({k: tuple(v.shape) for k, v in model.state_dict().items()})
    with np.load(folder / "reference_logits.npz") as ref:
        assert ref["test_float"].shape == ref["test_qat"].shape == (24, spec.num_classes)
        assert ref["test_float"].dtype == ref["test_qat"].dtype == np.float32
        assert not np.array_equal(ref["test_float"], ref["test_qat"])


def test_qat_stage_runs_the_integer_graph_for_a_relu_model(tmp_path) -> None:
    torch.set_num_threads(1)
    run_dir, _ = make_run(tmp_path, spec=TINY.model_copy(update={"act": "relu"}))
    _configure(run_dir)
    run_stage_here(run_dir, "qat")
    record = Manifest(run_dir).stages["qat"]
    metrics = record.metrics
    assert metrics["scheme"] == "tflite" and metrics["weights_with_ranges"] == 0
    assert metrics["points_with_ranges"] == 3 + 2 * 25 + 8 - 3  # every tensor of the int8 graph but the 3 fixed
    assert metrics["onnx_qdq_vs_torch_top1"] >= 0.95 and metrics["quantizers"] > metrics["points_with_ranges"]
    ranges = read_ranges(run_dir / "qat" / "quant_ranges.json")
    assert ranges.format == "edge-quant-ranges/2" and "blocks.1.norm2.rstd" in ranges.activations
    model, _ = load_model(run_dir / "qat" / "model.safetensors", run_dir / "qat" / "model_spec.json")
    assert metrics["params"] == sum(p.numel() for p in model.parameters())


def test_qat_stage_tflite_scheme_names_what_it_cannot_do(tmp_path) -> None:
    run_dir, _ = make_run(tmp_path)  # TINY has the tanh-GELU MLP
    _configure(run_dir, scheme="tflite")
    with pytest.raises(ConfigError, match=r"qat.scheme=tflite .* does not support the MLP activation 'gelu_tanh'"):
        run_stage_here(run_dir, "qat")


def test_qat_stage_with_zero_epochs_is_post_training_quantisation(tmp_path) -> None:
    torch.set_num_threads(1)
    run_dir, _ = make_run(tmp_path)
    _configure(run_dir, epochs=0)
    run_stage_here(run_dir, "qat")
    record = Manifest(run_dir).stages["qat"]
    assert "history" not in record.outputs and "quant_ranges" in record.outputs
    assert record.metrics["val_top1"] == record.metrics["val_top1_ptq"]


def test_qat_stage_disabled_records_a_skip(tmp_path) -> None:
    run_dir, _ = make_run(tmp_path)
    _configure(run_dir, enabled=False)
    run_stage_here(run_dir, "qat")
    record = Manifest(run_dir).stages["qat"]
    assert record.outputs == {} and record.metrics["skipped"] is True


def test_qat_stage_needs_the_pruned_model_when_pruning_is_on(tmp_path) -> None:
    run_dir, _ = make_run(tmp_path)
    with pytest.raises(ConfigError, match="stage 'prune' has no output 'weights'"):
        run_stage_here(run_dir, "qat")


@pytest.mark.slow
def test_qat_stage_int16_activations(tmp_path) -> None:
    torch.set_num_threads(1)
    run_dir, _ = make_run(tmp_path)
    _configure(run_dir, activation_bits=16)
    run_stage_here(run_dir, "qat")
    record = Manifest(run_dir).stages["qat"]
    assert record.metrics["activation_bits"] == 16 and record.metrics["onnx_qdq_vs_torch_top1"] >= 0.95
    assert read_ranges(run_dir / "qat" / "quant_ranges.json").activation_bits == 16
