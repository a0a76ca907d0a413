"""The battery gate end to end: `edge battery check` exit codes and messages, reports, the stages."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from edge_cli import run_edge

from edge.config import RunConfig
from edge.errors import ConfigError
from edge.manifest import Manifest
from edge.pipeline import config_fingerprint, run_stage_here, stage_spec
from edge.power.durations import parse_duration_days


def test_durations() -> None:
    assert parse_duration_days("1y") == 365.25
    assert parse_duration_days("18mo") == pytest.approx(547.875)
    assert parse_duration_days("400d") == 400.0
    with pytest.raises(ConfigError, match=r"cannot read duration '1 year'"):
        parse_duration_days("1 year")


def test_default_device_with_the_pruned_int8_model_passes(power_models: dict[str, Path], tmp_path: Path) -> None:
    proc = run_edge("battery", "check", "--device", "camera-trap-nrf52840",
                    "--model", str(power_models["vit_pruned_int8"]), "--min-lifetime", "1y", "--confidence", "0.95",
                    "--runs", "100", "--max-years", "3", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("PASS: P5 lifetime >1096 d (3.00 y) meets the target 365 d (1.00 y)")
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("failures") == "0" and suite.get("tests") == "2"
    assert (tmp_path / "summary.md").read_text().startswith("## Battery gate: PASS")
    assert (tmp_path / "soc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_float_model_at_a_high_rate_fails_and_says_by_how_much(power_models: dict[str, Path], tmp_path: Path) -> None:
    busy = ("--min-lifetime", "1y", "--runs", "50", "--rate-per-day", "200", "--frames-per-event", "10",
            "--max-years", "1.5")
    proc = run_edge("battery", "check", "--device", "camera-trap-nrf52840", "--model", str(power_models["vit_float"]),
                *busy, "--out", str(tmp_path / "float"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    first, second = proc.stdout.splitlines()[:2]
    assert first.startswith("FAIL: lifetime budget broken on device 'camera-trap-nrf52840': P5 lifetime ")
    assert "short of the target 365 d (1.00 y)" in first
    assert second.startswith("average-current budget broken: ") and "largest consumers: inference" in second
    failure = ET.parse(tmp_path / "float" / "junit.xml").getroot().find(".//failure")
    assert failure is not None and failure.get("message") == first
    # the pruned int8 model passes at a tenth of that rate (its measured-kernel cost is ~16 mJ per inference)
    calmer = tuple("20" if arg == "200" else arg for arg in busy)
    ok = run_edge("battery", "check", "--device", "camera-trap-nrf52840", "--model",
                  str(power_models["vit_pruned_int8"]), *calmer, "--out", str(tmp_path / "int8"))
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_coin_cell_under_heavy_pulses_fails_with_a_peak_warning(power_models: dict[str, Path], tmp_path: Path) -> None:
    proc = run_edge("battery", "check", "--device", "doorbell-cr2032-ov2640",
                "--model", str(power_models["vit_pruned_int8"]), "--min-lifetime", "1y", "--runs", "100",
                "--out", str(tmp_path))
    assert proc.returncode == 1
    assert ("warning: peak current 36.3 mA per cell in state 'capture' exceeds the max pulse current 15 mA of cell "
            "'cr2032' (2.4x)") in proc.stdout
    assert "peak-current budget broken: peak current 36.3 mA" in proc.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("--min-lifetime", "1yr"), "error: --min-lifetime: cannot read duration '1yr'"),
    (("--device", "camera-trap"), "no device profile named 'camera-trap'"),
    (("--confidence", "1.5"), "argument --confidence: must be at most 0.9999 (got 1.5)"),
])
def test_bad_input_exits_2(power_models: dict[str, Path], tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    proc = run_edge("battery", "check", "--model", str(power_models["tiny_int8"]), "--runs", "5",
                    "--out", str(tmp_path), *args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_profile_command(power_models: dict[str, Path]) -> None:
    proc = run_edge("profile", "--model", str(power_models["tiny_int8"]), "--mcu", "stm32l4r5")
    assert proc.returncode == 0, proc.stderr
    assert "92,192 MACs" in proc.stdout and "| 0 | CONV_2D | conv | int8 | 1x32x32x8 | 73,728 |" in proc.stdout
    bad = run_edge("profile", "--model", str(power_models["tiny_int8"]), "--mcu", "stm32l4")
    assert bad.returncode == 2 and "did you mean 'stm32l4r5'?" in bad.stderr


def _run_with_export(root: Path, model: Path, target_mcu: str | None = None) -> tuple[Path, RunConfig]:
    """runs/t/ whose export record holds `model` (and, if given, a report naming the target's MCU)."""
    run_dir = root / "runs" / "t"
    config = RunConfig.model_validate({"battery": {"runs": 50, "max_years": 2}})
    manifest = Manifest(run_dir)
    manifest.config = config.model_dump(mode="json")
    run = manifest.begin("export", config_fingerprint(config, stage_spec("export")))
    target = run_dir / "export" / "model_int8.tflite"
    target.parent.mkdir(parents=True)
    shutil.copy(model, target)
    run.output("tflite_int8", target)
    if target_mcu is not None:
        report = run_dir / "export" / "report.json"
        report.write_text(json.dumps({"target": {"name": "cortex-m4", "mcu": target_mcu}}))
        run.output("report", report)
    manifest.commit(run.finish())
    return run_dir, config


def test_profile_and_battery_stages_and_run_gate(power_models: dict[str, Path], tmp_path: Path) -> None:
    run_dir, _ = _run_with_export(tmp_path, power_models["vit_pruned_int8"])
    run_stage_here(run_dir, "profile")
    run_stage_here(run_dir, "battery")
    manifest = Manifest(run_dir)
    profile, battery = manifest.stages["profile"], manifest.stages["battery"]
    assert set(profile.outputs) == {"profile", "layers_csv", "layers_md"}
    assert profile.metrics["mcu"] == "nrf52840" and 5e6 < profile.metrics["macs"] < 15e6
    assert {"lifetime", "soc_plot", "breakdown_plot", "junit", "summary"} <= set(battery.outputs)
    assert battery.metrics["gate_passed"] is True and battery.metrics["lifetime_p5_days"] > 365
    assert "power_profiles.devices.camera-trap-nrf52840" in battery.inputs
    proc = run_edge("battery", "check", "--run", "t", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (run_dir / "battery-check" / "junit.xml").is_file()


def test_battery_stage_records_a_failed_gate_without_failing(power_models: dict[str, Path], tmp_path: Path) -> None:
    run_dir, _ = _run_with_export(tmp_path, power_models["vit_pruned_int8"])
    manifest = Manifest(run_dir)
    manifest.config["battery"] = {**manifest.config["battery"], "device": "doorbell-cr2032-ov2640"}
    manifest.save()
    run_stage_here(run_dir, "profile")
    run_stage_here(run_dir, "battery")  # no exception: the verdict is recorded
    record = Manifest(run_dir).stages["battery"]
    assert record.metrics["gate_passed"] is False and record.metrics["lifetime_p5_days"] < 365
    assert record.notes[0].startswith("FAIL: lifetime budget broken on device 'doorbell-cr2032-ov2640'")


def test_profile_on_the_target_mcu_battery_on_the_device_mcu(power_models: dict[str, Path], tmp_path: Path) -> None:
    run_dir, _ = _run_with_export(tmp_path, power_models["vit_pruned_int8"], target_mcu="stm32l4r5")
    run_stage_here(run_dir, "profile")
    run_stage_here(run_dir, "battery")
    profile = json.loads((run_dir / "profile" / "profile.json").read_text())
    assert profile["mcu"] == "stm32l4r5" and profile["battery_mcu"]["mcu"] == "nrf52840"
    assert profile["battery_mcu"]["latency_ms"] > profile["latency_ms"]  # 64 MHz vs 120 MHz
    lifetime = json.loads((run_dir / "battery" / "lifetime.json").read_text())
    assert lifetime["inference"]["energy_uJ"] == pytest.approx(profile["battery_mcu"]["energy_uJ"])
