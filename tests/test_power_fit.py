"""The fitted, cross-validated cost model; kernel-set files; measured inference figures; the band in the MC."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.cli import main
from edge.power import fit
from edge.power.device import build_device
from edge.power.kernel_files import base_op, load_kernel_file
from edge.power.op_keys import OpInputs, op_features, op_key
from edge.power.profiles import load_device, profiles_dir
from edge.power.simulate import SimOptions, simulate
from edge.power.tflite_graph import GraphOp


def test_every_point_names_its_results_file() -> None:
    pts = fit.points()
    assert len(pts) == 68 and {p.kernel_set for p in pts} >= {"tflm-cmsis-nn", "tflm-2.3-cmsis-nn", "x-cube-ai-10.2",
                                                              "x-cube-ai-7.1", "tflm-cmsis-nn-mve"}
    for p in pts:
        assert p.latency_source.startswith("mlcommons/tiny_results_v") and p.latency_source.endswith("results.txt")
        assert p.runtime and p.round.startswith("v") and p.clock_hz > 0
    assert len({(p.kernel_set, p.board, p.benchmark) for p in pts}) == len(pts)  # one point per measurement
    vww = fit.benchmark_features()["vww"]
    assert vww.macs == 7_489_664 and vww.mac_outputs == 142_848 + 88_704 + 2


def test_reruns_are_repeats_not_points() -> None:
    """Krai and cTuning reran OctoML's microTVM build (v1.1): listed with their source, not fitted twice."""
    reps = fit.repeats()
    keys = {(p.kernel_set, p.board, p.benchmark): p for p in fit.points()}
    assert len(reps) == 14 and all(r.of in keys for r in reps)
    nrf = next(r for r in reps if r.of == ("microtvm-cmsis-nn", "nRF5340-DK", "ad"))
    assert nrf.submitter == "Krai" and nrf.latency_ms == pytest.approx(6.289, abs=1e-3)
    assert nrf.latency_ms / keys[nrf.of].latency_ms == pytest.approx(1.0036, abs=1e-3)


def test_cross_validation_figures() -> None:
    """The figures docs/power.md and the report quote (the LOBO thresholds of issue 11 are not all met)."""
    v = fit.validate(fit.cross_validate())
    assert v.lobo_latency_median == pytest.approx(0.130, abs=0.005)
    assert v.lobo_latency_worst == pytest.approx(0.586, abs=0.01)  # X-CUBE-AI 8.1 VWW: fails the 35 % bound
    assert v.lobo_energy_median == pytest.approx(0.130, abs=0.005)
    assert v.band_coverage >= 0.80
    assert v.band[0] < 1 < v.band[1]


def test_kernel_set_fit_recovers_a_known_model() -> None:
    feats = fit.benchmark_features()  # four benchmarks for five coefficients: add a depthwise-only model
    feats["dw"] = fit.Features(macs=1e6, fc_macs=0.0, input_conv_macs=0.0, mac_outputs=1.1e5, ops=20.0,
                               other_elements=1e3)
    truth = fit.Coefficients("t", 2.5, 0.4, 1.5, 40.0, 2500.0, 5.0, 1, ("b",), {"b": 1.0})
    pts = [fit.Point("t", "b", "cortex-m4", 100_000_000, "x", name, "v", "s", "rt",
                     truth.cycles(f) / 1e5, "src") for name, f in feats.items()]
    got = fit.fit("t", pts, feats)
    for f in feats.values():
        assert got.cycles(f) == pytest.approx(truth.cycles(f), rel=0.03)  # the ridge toward the prior: <= 2.7 %


def test_instruction_level_kernel_file_is_used_per_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "profiles"
    shutil.copytree(profiles_dir(), root)
    (root / "kernels").mkdir(exist_ok=True)
    (root / "kernels" / "tflm-cmsis-nn-cortex-m4.yaml").write_text(
        "kernel_set: tflm-cmsis-nn\ncore: cortex-m4\nmethod: {emulator: test}\n"
        "ops:\n  FULLY_CONNECTED: {dtype: int8, coefficients: {const: 1200, macs: 1.9, rows: 60}}\n"
        "  MUL_broadcast: {dtype: int8, coefficients: {const: 300, out_elements: 20}}\nmodels: []\n")
    monkeypatch.setenv("EDGE_POWER_PROFILES", str(root))
    kf = load_kernel_file("tflm-cmsis-nn", "cortex-m4")
    assert kf is not None
    fc = GraphOp(0, "FULLY_CONNECTED", "fully_connected", "int8", (17, 96), 17 * 96 * 32, 17 * 96, 0)
    mul = GraphOp(1, "MUL", "elementwise", "int8", (17, 96), 0, 17 * 96, 0)
    assert op_features(fc)["rows"] == 17
    assert kf.cycles(fc) == pytest.approx(1200 + 1.9 * 17 * 96 * 32 + 60 * 17)
    row_broadcast = OpInputs(((17, 96), (96,)))
    assert op_key(mul, row_broadcast) == "MUL_broadcast" and op_key(mul, OpInputs(((17, 96), (17, 96)))) == "MUL"
    assert op_key(mul, OpInputs(((1, 17, 96), (17, 96)))) == "MUL_broadcast_samesize"
    conv = GraphOp(2, "CONV_2D", "conv", "int8", (1, 16, 16, 32), 0, 0, 0)
    assert [op_key(conv, OpInputs(((1, 32, 32, d), (32, 3, 3, d)))) for d in (1, 3, 7, 8, 32)] == [
        "CONV_2D_depth1", "CONV_2D", "CONV_2D", "CONV_2D_deep", "CONV_2D_deep"]
    assert kf.covers(mul, row_broadcast) and kf.cycles(mul, row_broadcast) == pytest.approx(300 + 20 * 17 * 96)
    assert not kf.covers(mul, OpInputs(((17, 96), (17, 96)))) and not kf.covers(mul)  # plain MUL: not in the file
    assert load_kernel_file("tflm-cmsis-nn", "cortex-m0+") is None
    assert [base_op(k) for k in ("MUL_broadcast", "FULLY_CONNECTED_short", "ADD_N", "FULLY_CONNECTED")] == [
        "MUL", "FULLY_CONNECTED", "ADD_N", "FULLY_CONNECTED"]


def test_kernel_file_model_must_say_whether_it_was_in_the_fit(tmp_path: Path) -> None:
    from edge.errors import ConfigError

    path = tmp_path / "kernels" / "tflm-cmsis-nn-cortex-m4.yaml"
    path.parent.mkdir()
    path.write_text("kernel_set: tflm-cmsis-nn\ncore: cortex-m4\nops: {}\n"
                    "models:\n  - {model_sha256: abc, in_fit: true}\n  - {model_sha256: def, in_fit: maybe}\n")
    with pytest.raises(ConfigError) as err:
        load_kernel_file("tflm-cmsis-nn", "cortex-m4", tmp_path)
    assert str(err.value) == (f"{path}: field 'models[1].in_fit': must be true (its ops were in the fit) or false "
                              "(an out-of-sample check), got 'maybe'")
    path.write_text(path.read_text().replace("maybe", "false"))
    kf = load_kernel_file("tflm-cmsis-nn", "cortex-m4", tmp_path)
    assert kf is not None and [m["in_fit"] for m in kf.models] == [True, False]


def test_band_is_sampled_in_the_monte_carlo() -> None:
    device = load_device("camera-trap-nrf52840")
    model = build_device(device, 20_000_000.0, 100.0)  # a heavy inference (20 J) so that its uncertainty shows
    base = SimOptions(runs=200, max_years=3)
    plain = simulate(model, device, base)
    banded = simulate(model, device, SimOptions(runs=200, max_years=3, inference_band=(0.6, 2.2)))
    assert banded.percentile_days(5) < 0.9 * plain.percentile_days(5)


def test_measured_bench_json_replaces_the_estimate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"device": "dk", "latency_ms": 140.0, "timing_source": "io-manager timer",
                                 "energy": {"energy_per_inference_uJ": 1600.0, "method": "LPM01A"}}))
    code = main(["battery", "check", "--measured", str(bench), "--runs", "20", "--out", str(tmp_path / "o")])
    assert code == 0
    summary = (tmp_path / "o" / "summary.md").read_text()
    assert "| energy per inference | 1,600 uJ | measured | bench.json: LPM01A on 'dk'" in summary
    bench.write_text(json.dumps({"latency_ms": 140.0, "energy": {"energy_per_inference_uJ": float("nan")}}))
    assert main(["battery", "check", "--measured", str(bench), "--out", str(tmp_path / "o")]) == 2
    assert "field 'energy.energy_per_inference_uJ' must be a finite number" in capsys.readouterr().err
    bench.write_text(json.dumps({"latency_ms": 140.0}))
    assert main(["battery", "check", "--measured", str(bench), "--out", str(tmp_path / "o")]) == 2
    assert "the bench had no energy monitor" in capsys.readouterr().err


def _bench() -> Any:
    """bench/bench_cost_model.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_cost_model", Path(__file__).parents[1] / "bench" /
                                                  "bench_cost_model.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclass resolves annotations through sys.modules
    spec.loader.exec_module(bench)
    return bench


def _tiny_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Profiles with one kernel file whose whole-model figures are for the tiny int8 model; that model."""
    import hashlib

    from power_fixtures import reference_models

    model = reference_models()["tiny_int8"]
    root = tmp_path / "profiles"
    shutil.copytree(profiles_dir(), root)
    for old in (root / "kernels").glob("*.yaml"):
        old.unlink()
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    (root / "kernels" / "tflm-cmsis-nn-cortex-m4.yaml").write_text(
        "kernel_set: tflm-cmsis-nn\ncore: cortex-m4\nmethod: {emulator: test}\n"
        "ops:\n  CONV_2D: {dtype: int8, coefficients: {const: 1000, macs: 3.0}}\n"
        f"models:\n  - model_sha256: {sha}\n    description: tiny (test figures)\n    in_fit: true\n"
        "    cycles_by_op: {CONV_2D: 300000, DEPTHWISE_CONV_2D: 90000, FULLY_CONNECTED_short: 2000}\n"
        "    total_cycles: 400000\n")
    monkeypatch.setenv("EDGE_POWER_PROFILES", str(root))
    return model


def test_bench_compares_per_op_class_with_instruction_level_figures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    model = _tiny_figures(tmp_path, monkeypatch)
    [c] = _bench().print_instruction_level(model)
    out = capsys.readouterr().out
    assert "tflm-cmsis-nn-cortex-m4.yaml on nrf52840, tiny_int8.tflite (the model of 'tiny'): cost model " in out
    conv = next(line for line in out.splitlines() if line.strip().startswith("conv "))
    assert "measured        300,000" in conv and "x0.74" in conv  # 1000 + 3 x 73,728 = 222,184 cycles
    assert any(line.strip().startswith("fully_connected") for line in out.splitlines())
    # conv is 77 % of the 392,000 cycles and 26 % low: outside the 15 % of issue 16; the 0.5 % FC class does not count
    assert c.inside == 392_000 and "conv x0.74 (77% of the cycles)" in c.failures()
    assert not any(f.startswith("fully_connected") for f in c.failures())


def test_bench_compares_only_the_model_the_figures_were_measured_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Same op keys are not the same model: another file gets no ratio, only the name of the figures' model."""
    import hashlib

    tiny = hashlib.sha256(_tiny_figures(tmp_path, monkeypatch).read_bytes()).hexdigest()
    other = tmp_path / "other.tflite"
    other.write_bytes((tmp_path / "profiles" / "kernels" / "models" /
                       "vit_lite_s_default_pruned_int8.tflite").read_bytes())
    assert _bench().print_instruction_level(other) == []
    out = capsys.readouterr().out
    assert out == (f"instruction-level figures: none for {other} (sha256 b5d1b0f5f9a9); the committed whole-model "
                   f"figures are for 'tiny' (sha256 {tiny[:12]}): not compared\n")


def test_bench_default_model_within_15_percent_on_cortex_m4_cmsis_nn(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16: the cost model against the committed figures of the default model (the file committed beside
    them), in total and per op class above 5 % of the cycles."""
    bench = _bench()
    assert bench.default_model_check() == []
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("issue 16 check"))
    assert line == ("issue 16 check (tflm-cmsis-nn-cortex-m4.yaml, default model): total x0.99; classes above 5% of "
                    "the cycles: conv x0.99, fully_connected x0.99, elementwise x0.99, reduce x1.00: all within 15%")
    [m4] = [c for c in bench.compare(profiles_dir() / bench.DEFAULT_MODEL) if c.file == bench.MUST_SHOW]
    assert bench.DEFAULT_MODEL.name == "cct_lite_s_default_int8.tflite"  # the default model, out of sample
    assert m4.inside == pytest.approx(13_678_397) and m4.cycles == pytest.approx(13_574_562, rel=1e-6)
    assert abs(m4.cycles / m4.inside - 1) <= bench.MAX_ERROR


def test_profile_prints_estimate_band_and_whether_measured(capsys: pytest.CaptureFixture[str]) -> None:
    from power_fixtures import reference_models

    model = str(reference_models()["tiny_int8"])
    assert main(["profile", "--model", model, "--mcu", "stm32u575"]) == 0
    out = capsys.readouterr().out
    assert "- measured points of this MCU with this kernel set: none" in out
    assert "- power: measured 23.4 mW at 160 MHz, 1.8 V SMPS" in out
    assert "- kernel set tflm-cmsis-nn (TensorFlow Lite Micro with CMSIS-NN kernels" in out
    assert ": 4 cited MLPerf Tiny points (EK-RA6M4); none on stm32u575" in out
    if load_kernel_file("tflm-cmsis-nn", "cortex-m33") is not None:  # instruction counts: a lower bound
        assert "instruction-level tflm-cmsis-nn-cortex-m33.yaml" in out and "lower bounds" in out
        assert "per inference (lower bound; expected within the band x" in out
    else:
        assert "per inference (estimate, band x" in out
    assert main(["profile", "--model", model, "--mcu", "esp32s3"]) == 0
    out = capsys.readouterr().out
    assert "band x0.50-x3.00" in out and "no published measurement of tflm-cmsis-nn on xtensa-lx7" in out


@pytest.mark.skipif(load_kernel_file("tflm-cmsis-nn", "cortex-m4") is None, reason="no instruction-level file")
def test_instruction_level_figures_are_lower_bounds_of_the_published_runs() -> None:
    from edge.power.crosscheck import silicon_band, silicon_checks

    checks = silicon_checks("tflm-cmsis-nn", "cortex-m4")
    assert len(checks) == 4 and all(c.covered_share > 0.75 for c in checks)
    by = {c.point.benchmark: c.factor for c in checks}
    # all-file models (ad, ic): silicon (EK-RA6M4, flash at 200 MHz) above the zero-wait-state counts; kws and vww
    # take DEPTHWISE_CONV_2D (not in the file) from the fit on silicon, so they do not measure the factor
    assert 1.2 < by["ad"] < by["ic"] < 1.4 and 0.95 < by["kws"] < 1.1 and 0.95 < by["vww"] < 1.1
    assert silicon_band("tflm-cmsis-nn", "cortex-m4") == (by["ad"], by["ic"])  # only the all-file models
