"""The per-op kernel cost figures in power_profiles/kernels/ (issue 16, item 1) hold together.

Pure data checks, no pydantic and no TensorFlow: every file has the schema the cost model codes
against, every coefficient is a finite non-negative number, every fit records its error, and each
whole-model measurement is reproduced by the coefficients: for every op class, the sum over the
model's ops of coef . features (the summed features are stored with the measurement) is within the
fit's stated max_rel_error of the measured cycles when the model's ops were in the fit (in_fit:
true), and within the out-of-sample bounds below (per op class and in total) when it is a check
on a model the grid was not built around (in_fit: false; docs/power.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

KERNELS = Path(__file__).resolve().parent.parent / "power_profiles" / "kernels"
FILES = sorted(KERNELS.glob("*.yaml"))
FEATURES = {"const", "macs", "out_elements", "in_elements", "rows", "channels"}
METHOD_KEYS = {"tflm_commit", "cmsis_nn_commit", "compiler", "flags", "emulator", "timing"}
VARIANTS = ("_broadcast_samesize", "_broadcast", "_keepdims", "_depth1", "_deep")  # README.md: op keys, variants
# Out-of-sample bounds, from the numbers: the default cct_lite_s model (in_fit: false) is reproduced to at worst
# 8.7 % per op class (CONV_2D_deep, reference kernels on the M55) and 3.5 % in total (same file): rounded up.
OUT_OF_SAMPLE_PER_OP = 0.09
OUT_OF_SAMPLE_TOTAL = 0.04


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    return data


def _finite_nonneg(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def test_there_are_figures() -> None:
    names = {p.name for p in FILES}
    assert {"tflm-cmsis-nn-cortex-m4.yaml", "tflm-reference-cortex-m4.yaml"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_schema(path: Path) -> None:
    data = _load(path)
    assert {"kernel_set", "core", "method", "ops", "models"} <= set(data), path.name
    assert path.stem == f"{data['kernel_set']}-{data['core']}", "file name is <kernel_set>-<core>.yaml"
    assert set(data["method"]) >= METHOD_KEYS, sorted(METHOD_KEYS - set(data["method"]))
    assert all(isinstance(data["method"][k], str) and data["method"][k] for k in METHOD_KEYS)
    assert data["ops"], "no ops"
    for key, op in data["ops"].items():
        base = next((key[: -len(v)] for v in VARIANTS if key.endswith(v)), key)
        assert base.isupper() and base.replace("_", "").isalnum(), f"{key}: not a TFLite builtin name + variant"
        assert op["dtype"] == "int8", key
        coef = op["coefficients"]
        assert coef and set(coef) <= FEATURES, (key, sorted(set(coef) - FEATURES))
        assert all(_finite_nonneg(v) for v in coef.values()), (key, coef)
        fit = op["fit"]
        assert isinstance(fit["points"], int) and fit["points"] >= len(coef), (key, fit)
        assert _finite_nonneg(fit["max_rel_error"]) and fit["max_rel_error"] < 1, (key, fit)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_models_reproduced_by_coefficients(path: Path) -> None:
    data = _load(path)
    assert data["models"], "no whole-model measurement"
    assert any(not m["in_fit"] for m in data["models"]), "no out-of-sample check"
    for model in data["models"]:
        assert len(model["model_sha256"]) == 64
        assert isinstance(model["in_fit"], bool), model["model_sha256"]
        measured, feats = model["cycles_by_op"], model["features_by_op"]
        assert set(measured) <= set(data["ops"]), sorted(set(measured) - set(data["ops"]))
        assert _finite_nonneg(model["total_cycles"]) and _finite_nonneg(model["instructions"])
        assert sum(measured.values()) <= model["total_cycles"]  # the rest is the interpreter between ops
        predicted_total = 0.0
        for key, cycles in measured.items():
            op = data["ops"][key]
            predicted = sum(c * feats[key][f] for f, c in op["coefficients"].items())
            predicted_total += predicted
            rel = abs(predicted - cycles) / cycles
            bound = op["fit"]["max_rel_error"] if model["in_fit"] else OUT_OF_SAMPLE_PER_OP
            assert rel <= bound + 1e-9, (
                f"{path.stem} {key}: coefficients give {predicted:.0f} cycles, measured {cycles} "
                f"({rel:.1%} off, bound {bound:.1%}, in_fit {model['in_fit']})")
        if not model["in_fit"]:
            inside = sum(measured.values())
            assert abs(predicted_total - inside) / inside <= OUT_OF_SAMPLE_TOTAL, (
                f"{path.stem}: coefficients give {predicted_total:.0f} cycles in total, measured {inside}")
