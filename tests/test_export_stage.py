"""The export stage on a tiny run: build/<target>/ files, report.json, manifest record, gates.

The fast test exports the train model (the documented fallback when qat has not run); the slow
ones run qat first, and the whole `edge run --target ...` on a tiny config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edge_cli import run_edge
from export_fixtures import make_run

from edge.config import RunConfig
from edge.errors import ConfigError, ExportError
from edge.export.c_array import parse_model_array
from edge.export.tflite_inspect import read_tflite, require_full_integer
from edge.manifest import Manifest
from edge.pipeline import run_stage_here

os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
FILES = {"tflite_int8": "model_int8.tflite", "tflite_float": "model_float.tflite", "onnx": "model.onnx",
         "c_source": "model_data.cc", "c_header": "model_data.h", "report": "report.json", "report_md": "report.md",
         "parity_plot": "parity.png"}


def test_export_stage_falls_back_to_the_train_model(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path)
    run_stage_here(run_dir, "export")
    out = tmp_path / "build" / "cortex-m"
    record = Manifest(run_dir).stages["export"]
    assert set(record.outputs) == set(FILES)
    assert {k: Path(v.path).name for k, v in record.outputs.items()} == FILES
    assert set(record.inputs) == {"train.weights", "train.spec", "data.dataset"}
    assert any("no qat stage in this run: exported the train model" in n for n in record.notes)

    report = json.loads((out / "report.json").read_text())
    assert report["tflm"]["arena_bytes"] > 0 and "FULLY_CONNECTED" in report["tflm"]["ops"]
    assert report["size"]["tflite_bytes"] == (out / "model_int8.tflite").stat().st_size
    assert report["agreement"]["reference"] == "PyTorch float"
    assert 0 <= report["agreement"]["tflm_vs_qat_top1"] <= 1
    # every tensor of the int8 graph (LayerNorm internals included: integer_points) less the input and 2 softmax
    assert report["quantization"]["qat_points"] == [] and len(report["quantization"]["calibrated_points"]) == 60
    assert report["full_integer"] is True and report["input"]["zero_point"] == 0
    assert report["model"]["params"] == 19_874 and report["model"]["macs"] > 0
    runtimes = [row["runtime"] for row in report["agreement"]["table"]]
    assert runtimes == ["PyTorch float", "onnxruntime float", "LiteRT float", "LiteRT int8", "TFLM int8"]
    float_rows = [row for row in report["agreement"]["table"] if "float" in row["runtime"]]
    assert all(row["top1_agreement"] == 1.0 and row["max_logit_error"] < 1e-4 for row in float_rows)
    assert record.metrics["tflm_arena_bytes"] == report["tflm"]["arena_bytes"]
    assert record.metrics["tflite_int8_bytes"] == report["size"]["tflite_bytes"]

    require_full_integer(read_tflite(out / "model_int8.tflite"))
    assert parse_model_array((out / "model_data.cc").read_text()) == (out / "model_int8.tflite").read_bytes()
    header = (out / "model_data.h").read_text()
    assert f"constexpr int kTensorArenaSize = {report['tflm']['arena_constant_bytes']};" in header
    assert report["tflm"]["arena_constant_bytes"] >= report["tflm"]["arena_bytes"] * 1.05
    assert header.count("Add") == 0 and (out / "model_data.cc").read_text().count("resolver.Add") == len(
        report["tflm"]["ops"])
    assert "## Agreement (test split)" in (out / "report.md").read_text()
    assert report["run"] == {"name": run_dir.name, "manifest": str(run_dir / "manifest.json")}
    assert f"Run: `{run_dir.name}`" in (out / "report.md").read_text()


@pytest.mark.slow
def test_export_after_qat_uses_its_ranges_and_reference(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path, n_test=24)
    manifest = Manifest(run_dir)
    tree = RunConfig.model_validate(manifest.config).model_dump(mode="json")
    tree["prune"]["enabled"] = False
    tree["qat"].update({"epochs": 1, "batch_size": 8})
    tree["train"]["threads"] = 1
    manifest.config = RunConfig.model_validate(tree).model_dump(mode="json")
    manifest.save()
    for stage in ("qat", "export"):
        proc = run_edge("stage", stage, "--run-dir", str(run_dir))
        assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "build" / "cortex-m" / "report.json").read_text())
    assert report["model"]["source_stage"] == "qat"
    assert report["agreement"]["reference"] == "PyTorch fake-quant (QAT)"
    assert len(report["quantization"]["qat_points"]) >= 20
    assert "onnxruntime QDQ" in [row["runtime"] for row in report["agreement"]["table"]]
    assert (tmp_path / "build" / "cortex-m" / "model_int8.onnx").is_file()
    assert report["agreement"]["tflm_vs_qat_top1"] >= 0.9


def _ties(n: int, disagree: int) -> dict:
    """tie_analysis of n two-class images, the first `disagree` of them flipped with a clear margin."""
    from edge.export.parity import tie_analysis

    reference = np.tile([[2.0, 0.0]], (n, 1))
    logits = reference.copy()
    logits[:disagree] = [0.0, 2.0]
    return tie_analysis(logits, reference, threshold=0.1)


def test_agreement_gate_states_its_statistics_and_fails_with_exit_4(tmp_path: Path) -> None:
    from edge.export.stage import _gates

    cfg = RunConfig.model_validate({"export": {"agreement_basis": "all"}}).export
    with pytest.raises(ExportError) as err:
        _gates(cfg, {"top1_agreement": 0.95}, {}, pruned=False, reference="PyTorch fake-quant (QAT)",
               ties=_ties(200, 10))
    assert err.value.exit_code == 4
    assert err.value.message == (
        "TFLite Micro int8 agrees with PyTorch fake-quant (QAT) on 0.9500 of the test images (190/200, "
        "95 % interval 0.910-0.973; 0 near-tie image(s), agreement on the decisive rest 0.95); "
        "export.min_tflm_agreement is 0.99")
    assert err.value.where == "export.min_tflm_agreement (report.json agreement)"
    assert err.value.hint.startswith("the calibrated points in report.md")
    with pytest.raises(ExportError) as small:  # one image of 60 is more than the 1 % the gate allows
        _gates(cfg, {"top1_agreement": 59 / 60}, {}, pruned=False, reference="x", ties=_ties(60, 1))
    assert small.value.hint.startswith("with 60 test images one image is 1.7%: add test images")
    sizes = {"tflite_bytes": 150_000, "unpruned_float32_bytes": 1_000_000, "fraction_of_unpruned_float32": 0.15}
    _gates(cfg, {"top1_agreement": 1.0}, sizes, pruned=False, reference="x", ties=_ties(10, 0))  # reported only
    with pytest.raises(ExportError, match=r"int8 model is 150,000 B = 15\.0% of the unpruned float32 model"):
        _gates(cfg, {"top1_agreement": 1.0}, sizes, pruned=True, reference="x", ties=_ties(10, 0))


def test_wilson_interval() -> None:
    from edge.export.parity import wilson_interval

    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(792, 800)
    assert (round(lo, 4), round(hi, 4)) == (0.9804, 0.9949)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 10)[0] == 0.0


TINY_CONFIG = """
data: {image_size: 32, n_train: 96, n_val: 32, n_test: 48, n_calib: 16}
model: {name: vit_lite_xs}
train: {epochs: 2, batch_size: 32, threads: 1}
prune: {enabled: false}  # prune's budgets are its own tests' business; a 32 px xs model cannot meet the defaults
qat: {epochs: 1, batch_size: 32}
export: {min_tflm_agreement: 0.0, max_size_fraction: null}
"""


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cortex-m", "ethos-u55"])
def test_edge_run_exports_a_tiny_pipeline(tmp_path: Path, target: str) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY_CONFIG)
    cmd = [sys.executable, "-m", "edge", "run", "--runs-dir", str(tmp_path / "runs"), "--run", "t",
           "--config", str(tmp_path / "tiny.yaml"), "--target", target, "--until", "export"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "build" / target
    report = json.loads((out / "report.json").read_text())
    for key in ("arena_bytes", "ops"):
        assert report["tflm"][key]
    assert report["size"]["tflite_bytes"] > 0 and report["model"]["source_stage"] == "qat"
    assert 0 <= report["agreement"]["tflm_vs_qat_top1"] <= 1
    assert report["size"]["fraction_of_unpruned_float32"] < 1
    if target == "ethos-u55":
        assert report["vela"]["npu_ops"] > 0 and report["vela"]["cycles"] > 0
        assert (out / "model_int8_vela.tflite").is_file()
    assert np.isfinite(report["agreement"]["tflm_vs_qat_max_logit_error"])


def test_int16_export_follows_the_qat_ranges_and_refuses_a_contradiction(tmp_path):
    from edge.export.stage import _int16_activations

    ranges = tmp_path / "quant_ranges.json"
    for bits in (8, 16):
        ranges.write_text(json.dumps({"format": "edge-quant-ranges/1", "activation_bits": bits, "weight_bits": 8,
                                       "activations": {}, "weights": {}}))
        assert _int16_activations(False, {"ranges": ranges}) is (bits == 16)
    assert _int16_activations(True, {}) is True  # no QAT: the export setting decides
    ranges.write_text(ranges.read_text().replace('"activation_bits": 16', '"activation_bits": 8'))
    with pytest.raises(ConfigError, match=r"export\.int16_activations is true but the qat stage learned 8-bit"):
        _int16_activations(True, {"ranges": ranges})


def test_replacing_another_runs_export_is_noted_and_flash_finds_the_run(tmp_path, capsys):
    from edge.export.stage import _note_previous_run
    from edge.firmware_bridge.cli import run_of_export

    out = tmp_path / "build" / "cortex-m"
    out.mkdir(parents=True)
    assert run_of_export(out / "model_int8.tflite") == "default"  # no report yet
    (out / "report.json").write_text(json.dumps({"run": {"name": "night"}}))
    assert run_of_export(out / "model_int8.tflite") == "night"
    run = Manifest(tmp_path / "runs" / "day").begin("export", "cfg")
    _note_previous_run(run, out)
    expected = f"{out} held the export of run 'night'; it now holds run 'day' (set export.build_dir to keep both)"
    assert run.notes == [expected]
    assert f"note: {expected}" in capsys.readouterr().err
    (out / "report.json").write_text(json.dumps({"run": {"name": "day"}}))
    run.notes.clear()
    _note_previous_run(run, out)
    assert run.notes == []  # the same run again: nothing to say


def _near_ties(n: int, near: int, flipped_near: int, flipped_decisive: int) -> dict:
    """tie_analysis of n images: `near` have a reference margin of 0.05 (below the 0.1 threshold); the first
    `flipped_near` of those and `flipped_decisive` clear-margin images disagree."""
    from edge.export.parity import tie_analysis

    reference = np.tile([[2.0, 0.0]], (n, 1))
    reference[:near] = [1.0, 0.95]
    logits = reference.copy()
    logits[:flipped_near] = [0.0, 1.0]
    logits[near:near + flipped_decisive] = [0.0, 2.0]
    return tie_analysis(logits, reference, threshold=0.1)


@pytest.mark.parametrize(("near", "flipped_near", "flipped_decisive", "passes"), [
    (10, 3, 0, True),     # 0.985 overall, but every disagreement is a near-tie: decisive agreement 1.0
    (10, 0, 3, False),    # three clear disagreements: decisive 0.984 < 0.99
    (25, 1, 0, False),    # 12.5 % near-ties: too many to judge on the decisive rest
    (0, 0, 1, True),      # 199/200 decisive agreement 0.995
])
def test_decisive_agreement_gate(near: int, flipped_near: int, flipped_decisive: int, passes: bool) -> None:
    """The default gate (export.agreement_basis=decisive) forgives near-ties only, and only a few of them."""
    from edge.export.stage import _gates

    cfg = RunConfig().export
    ties = _near_ties(200, near, flipped_near, flipped_decisive)
    agreement = ties["agreeing_images"] / ties["images"]
    if passes:
        _gates(cfg, {"top1_agreement": agreement}, {}, pruned=False, reference="x", ties=ties)
    else:
        with pytest.raises(ExportError, match=r"on the decisive images \(export\.agreement_basis=decisive\), "
                                              r"with at most 10% near-ties"):
            _gates(cfg, {"top1_agreement": agreement}, {}, pruned=False, reference="x", ties=ties)
