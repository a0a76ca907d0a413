"""Acceptance on real data no one here made: scikit-learn's digits as a user's ImageFolder tree.

Slow (about 6-10 minutes on 2 cores): `edge run` with the defaults and no overrides on 1,797 real
images of 10 classes, written as `train/ val/ test/` folders (the user's own split, kept).
"""

from __future__ import annotations

import json

import pytest
from edge_cli import run_edge


@pytest.mark.slow
def test_digits_with_the_defaults_meet_the_real_data_targets(tmp_path):
    from edge.training.digits import write_digits_imagefolder

    tree = write_digits_imagefolder(tmp_path / "digits", size=32)
    result = run_edge("run", "--run", "digits", "--data", f"imagefolder:{tree}", cwd=tmp_path, timeout=3600)
    assert result.returncode == 0, result.stderr[-4000:]
    manifest = json.loads((tmp_path / "runs/digits/manifest.json").read_text())
    stages = {name: rec["metrics"] for name, rec in manifest["stages"].items()}
    data, train, prune, export = stages["data"], stages["train"], stages["prune"], stages["export"]
    assert (data["n_train"], data["n_val"], data["n_test"], data["image_size_px"]) == (1259, 269, 269, 32)
    assert train["val_top1"] >= 0.95
    assert train["baseline_val_top1"] > 0.9 and {"baseline", "beats_baseline"} <= set(train)
    kept = json.loads((tmp_path / "runs/digits/prune/steps.json").read_text())[prune["kept_step"]]
    if kept["step"]:  # within prune.max_drop, allowing for the val split's noise (training/stages/prune.py NOISE_Z)
        assert kept["drop"] <= 0.01 + 1.28 * kept["drop_se"] + 1e-9
    assert export["tflm_vs_qat_top1"] >= 0.99
    assert train["test_top1"] - export["test_top1_tflm_int8"] <= 0.02
    report = json.loads((tmp_path / "build/cortex-m/report.json").read_text())
    agreement = report["agreement"]
    assert agreement["images"] == 269 and agreement["agreement_ci95"][0] < agreement["tflm_vs_qat_top1"]
    # issue 10: QAT's int8 codes against LiteRT's reference kernels, tensor by tensor, on every test image
    from edge.training.quant_compare import compare_run_dir, format_table

    diffs = compare_run_dir(tmp_path / "runs/digits", tmp_path / "build/cortex-m/model_int8.tflite")
    print(format_table(diffs))
    assert {name: d.within_one for name, d in diffs.items() if d.within_one < 0.999} == {}
