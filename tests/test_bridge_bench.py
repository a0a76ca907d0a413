"""`edge bench` against the emulated board equals the model run locally in TFLM; CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bridge_helpers import build_model, emulator_ports
from edge_cli import run_edge

from edge.firmware_bridge.bench import local_results, random_inputs, run_bench
from edge.firmware_bridge.emulation.flash import MODEL_FILE
from edge.firmware_bridge.emulation.pty_device import PtyDevice
from edge.firmware_bridge.mlperf import MlperfDut
from edge.firmware_bridge.model_runner import ModelRunner, costmodel_estimate
from edge.firmware_bridge.transport import SerialLink


def test_bench_predictions_equal_local_tflm(small_tflite_path):
    model = small_tflite_path.read_bytes()
    inputs = random_inputs(model, 6, seed=1)
    with PtyDevice() as board, SerialLink(board.path, 115200) as link:
        board.device.flash.write(MODEL_FILE, 0, model)
        report = run_bench(MlperfDut(link), inputs, runs=4, warmups=1, model=model)
    runner = ModelRunner(model)
    expected = [int(np.argmax(runner.run(x)[0])) for x in inputs]
    assert report.predictions == expected == report.local_predictions
    assert report.local_match is True and report.mismatches == []
    assert [f"m-results-[{','.join(f'{v:0.3f}' for v in r)}]" for r in report.results] == local_results(model, inputs)
    # the emulated clock advances by the cost model's latency on the default MCU profile
    modelled_ms, _ = costmodel_estimate(model, "nrf52840")
    assert report.timing_source == "cost-model nrf52840"
    assert report.latency_ms == pytest.approx(modelled_ms, abs=0.001)
    assert report.laps_us[1] - report.laps_us[0] == round(4 * modelled_ms * 1000)
    assert report.profile["model"] == "edge-" + runner.sha256[:12]


def test_bench_detects_a_different_model_on_the_device(small_tflite_path, tmp_path_factory):
    model = small_tflite_path.read_bytes()
    other = build_model(tmp_path_factory, "small_seed1").read_bytes()
    inputs = random_inputs(model, 4, seed=2)
    with PtyDevice() as board, SerialLink(board.path, 115200) as link:
        board.device.flash.write(MODEL_FILE, 0, other)
        report = run_bench(MlperfDut(link), inputs, runs=1, warmups=0, model=model)
    assert report.local_match is False and report.mismatches


def test_cli_emulator_flash_bench_end_to_end(small_tflite_path, tmp_path):
    with emulator_ports() as (port,):
        flash = run_edge("flash", "--port", port, "--model", str(small_tflite_path), "--quiet")
        assert flash.returncode == 0, flash.stderr
        assert "= local file sha256" in flash.stdout
        out = tmp_path / "bench.json"
        trace = tmp_path / "ppk2.csv"  # 4 inferences of 10 ms at 4 mA (D0 high), 50 uA between
        rows = [f"{k:.1f},{4000.0 if (k // 10) % 2 else 50.0},{'10000000' if (k // 10) % 2 else '00000000'}"
                for k in range(80)]
        trace.write_text("Timestamp(ms),Current(uA),D0-D7\n" + "\n".join(rows) + "\n")
        bench = run_edge("bench", "--port", port, "--model", str(small_tflite_path), "--runs", "3", "--warmup", "1",
                      "--inputs", "3", "--json", str(out), "--quiet", "--trace", str(trace), "--voltage", "3.0",
                      "--marker", "0")
        assert bench.returncode == 0, bench.stderr
        assert "vs local TFLM          all equal" in bench.stdout
        report = json.loads(out.read_text())
        assert report["runs"] == 3 and report["local_match"] is True and len(report["predictions"]) == 3
        energy = report["energy"]
        assert energy["inferences"] == 4
        assert energy["energy_per_inference_uJ"] == pytest.approx(9 * 1e-3 * 4e-3 * 3.0 * 1e6)  # 9 ms x 12 mW
        assert energy["costmodel_energy_uJ"] == pytest.approx(costmodel_estimate(small_tflite_path.read_bytes(),
                                                                                  "nrf52840")[1])


def test_cli_serial_errors_exit_3(small_tflite_path):
    result = run_edge("flash", "--port", "/dev/does-not-exist", "--model", str(small_tflite_path), "--quiet")
    assert result.returncode == 3
    assert "cannot open serial port" in result.stderr and "edge devices" in result.stderr
    missing = run_edge("flash", "--port", "loop://", "--model", "no/such/model.tflite")
    assert missing.returncode == 2 and "model file not found" in missing.stderr
