"""`edge bench` through an emulated IO manager (MLPerf Tiny energy setup): same predictions as local
TFLM, the DUT receives exactly the reference runner's commands, and the reply unwrapping is fuzzed."""

from __future__ import annotations

import contextlib
import json
import re
import time

import pytest
from bridge_helpers import emulator_ports, loop_link
from edge_cli import run_edge
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import DeviceError
from edge.firmware_bridge import mlperf
from edge.firmware_bridge.bench import local_results, random_inputs, run_bench
from edge.firmware_bridge.emulation.board import EmulatedDevice
from edge.firmware_bridge.emulation.flash import MODEL_FILE
from edge.firmware_bridge.emulation.io_manager import NAME, EmulatedIoManager
from edge.firmware_bridge.emulation.pty_device import PtyDevice
from edge.firmware_bridge.model_runner import costmodel_estimate
from edge.firmware_bridge.transport import SerialLink


def _bench(board, model: bytes, inputs: list[bytes], *, runs: int = 4, warmups: int = 1, **dut_kwargs):
    board.flash.write(MODEL_FILE, 0, model)
    with PtyDevice(board) as pty, SerialLink(pty.path, 115200) as link:
        return run_bench(mlperf.MlperfDut(link, **dut_kwargs), inputs, runs=runs, warmups=warmups, model=model)


def test_bench_through_io_manager_equals_direct_and_local_tflm(small_tflite):
    inputs = random_inputs(small_tflite, 5, seed=3)
    direct = _bench(EmulatedDevice(), small_tflite, inputs)
    board = EmulatedIoManager(record=True)
    report = _bench(board, small_tflite, inputs, io_manager=True, io_timer=True)
    assert report.io_manager == NAME and report.device == "edge-emulator"
    assert report.local_match is True and report.mismatches == []
    assert report.predictions == direct.predictions == report.local_predictions
    assert report.results == direct.results
    printed = [f"m-results-[{','.join(f'{v:0.3f}' for v in r)}]" for r in report.results]
    assert printed == local_results(small_tflite, inputs)
    # the energy-mode DUT printed no stamps; the IO manager's timer stamped its GPIO edges instead
    assert report.timing_source.startswith("io-manager timer")
    modelled_ms, _ = costmodel_estimate(small_tflite, "nrf52840")
    assert report.latency_ms == pytest.approx(modelled_ms, abs=0.001) == direct.latency_ms
    assert report.laps_us[1] - report.laps_us[0] == round(4 * modelled_ms * 1000)
    assert len(board.edges_us) == 2 * (1 + len(inputs))  # two th_timestamp() per infer


def test_energy_mode_dut_without_timer_has_no_latency(small_tflite):
    inputs = random_inputs(small_tflite, 2, seed=4)
    report = _bench(EmulatedIoManager(), small_tflite, inputs, runs=2, warmups=0, io_manager=True)
    assert report.latency_ms is None and report.laps_us is None
    assert report.timing_source.startswith("none: energy-mode DUT")
    assert report.local_match is True and re.search(r"^latency_ms +n/a$", report.table(), re.M)
    # a performance-mode DUT behind the IO manager prints its own stamps, which are used
    report = _bench(EmulatedIoManager(energy_mode=False), small_tflite, inputs, runs=2, warmups=0, io_manager=True)
    assert report.timing_source == "cost-model nrf52840" and report.latency_ms > 0


def _reference_load(data: bytes, per_command: int = 26) -> bytes:
    """DUT.load in mlcommons/tiny benchmark/runner/device_under_test.py: `db load N`, then `db <hex>`
    of at most 26 bytes (a power manager is present) or 31, each sent with the `%` delimiter."""
    out = f"db load {len(data)}%"
    for i in range(0, len(data), per_command):
        out += "db " + "".join(f"{d:02x}" for d in data[i:i + per_command]) + "%"
    return out.encode()


def test_dut_and_io_manager_receive_the_reference_runner_bytes(small_tflite):
    inputs = random_inputs(small_tflite, 2, seed=5)
    board = EmulatedIoManager(record=True)
    _bench(board, small_tflite, inputs, runs=3, warmups=2, io_manager=True, io_timer=True)
    expected_dut = b"name%profile%" + _reference_load(inputs[0]) + b"infer 3 2%"
    for data in inputs:
        expected_dut += _reference_load(data) + b"infer 1 0%"  # runner: f"infer {number} {warmups}"
    assert bytes(board.dut_received) == expected_dut
    # to the IO manager: its own `name` and `enable-timer`, then IOManager.send_command's `dut {command}`
    commands = bytes(board.dut_received).decode().split("%")[:-1]
    assert bytes(board.host_received) == b"name%enable-timer%" + b"".join(f"dut {c}%".encode() for c in commands)
    assert max(len(c) for c in commands) == len("db ") + 2 * 26


def test_io_manager_wire_format():
    board = EmulatedIoManager(energy_mode=True)
    assert board.feed(b"name%") == f"{NAME}\r\nm-ready\r\n".encode()
    assert board.feed(b"dut name%") == (b"m-dut-passthrough(name)\r\nm-ready\r\n"
                                        b"[dut]: m-name-dut-[edge-emulator]\r\n[dut]: m-ready\r\n")
    assert board.feed(b"dut db load 3%") == (b"m-dut-passthrough(db load 3)\r\nm-ready\r\n"
                                             b"[dut]: m-[Expecting 3 bytes]\r\n[dut]: m-ready\r\n")
    # an energy-mode DUT's `timestamp` is a GPIO edge: nothing on the line unless the timer is on
    assert board.feed(b"dut timestamp%") == b"m-dut-passthrough(timestamp)\r\nm-ready\r\n[dut]: m-ready\r\n"
    assert board.feed(b"enable-timer%") == b"m-ready\r\n"
    reply = board.feed(b"dut timestamp%")
    assert reply == f"m-dut-passthrough(timestamp)\r\nm-ready\r\nm-lap-us-{board.edges_us[-1]}\r\n[dut]: m-ready\r\n"\
        .encode()
    assert len(board.edges_us) == 2
    # Menu::HandleCommand: prefix match; `dut` + non-space gets no answer; unknown or empty -> m-ready
    assert board.feed(b"dutx%") == b"" and board.feed(b"dut %") == b""
    assert board.feed(b"bogus%") == b"m-ready\r\n" and board.feed(b"%") == b"m-ready\r\n"
    assert board.feed(b"checkbaud%") == b"checkbaud(9600)\r\nm-ready\r\n"
    assert board.feed(b"setbaud 115200%") == b"setbaud(115200)\r\nm-ready\r\n"
    assert board.feed(b"checkbaud%") == b"checkbaud(115200)\r\nm-ready\r\n" and not board.timer_enabled
    assert board.feed(b"setbaud x%") == b""


def test_dut_uart_is_paced_at_its_baud_rate():
    board = EmulatedIoManager(dut_baud=9600, pace_dut=True)
    start = time.monotonic()
    board.feed(b"dut name%")
    wire = len(b"name%") + len(b"m-name-dut-[edge-emulator]\r\nm-ready\r\n")
    assert time.monotonic() - start >= wire * 10 / 9600


def test_wrong_wiring_and_stale_queue_are_clear_errors(small_tflite):
    inputs = random_inputs(small_tflite, 1)
    with pytest.raises(mlperf.ProtocolError, match="answered 'name' like an MLPerf Tiny DUT, not an IO manager"):
        _bench(EmulatedDevice(), small_tflite, inputs, io_manager=True)
    with pytest.raises(mlperf.ProtocolError, match=r"no 'm-name-\.\.\.-\[\.\.\.\]' line"):
        _bench(EmulatedIoManager(), small_tflite, inputs)  # an IO manager without --io-manager
    with pytest.raises(mlperf.StaleReplyError, match="handed over the DUT's boot banner") as info:
        _bench(EmulatedIoManager(boot_banner_queued=True), small_tflite, inputs, io_manager=True)
    assert "reset the IO manager" in info.value.hint and info.value.exit_code == 3


def test_passthrough_ack_rules():
    mlperf.check_passthrough_ack(["m-dut-passthrough(name)\r", "m-ready\r"], "name")
    with pytest.raises(mlperf.ProtocolError, match="a DUT, not an IO manager"):
        mlperf.check_passthrough_ack(["e-[Unknown command: dut]", "m-ready"], "name")
    with pytest.raises(mlperf.ProtocolError, match=r"expected the IO manager's 'm-dut-passthrough\(name\)'"):
        mlperf.check_passthrough_ack(["m-ready"], "name")
    with pytest.raises(mlperf.StaleReplyError):
        mlperf.check_passthrough_ack(["m-dut-passthrough(name)", "[dut]: m-ready", "m-ready"], "name")
    assert mlperf.split_passthrough(["[dut]: m-lap-us-5\r", "m-lap-us-7", "", "[dut]: m-ready"]) == (
        ["m-lap-us-5", "m-ready"], ["m-lap-us-7"])


def test_read_passthrough_ends_only_at_the_duts_ready():
    with SerialLink("loop://", 115200, timeout_s=0.3) as link:
        dut = mlperf.MlperfDut(link, io_manager=True)
        link.write(b"m-dut-passthrough(name)\r\nm-ready\r\nm-lap-us-9\r\nm-ready\r\n"
                   b"[dut]: m-name-dut-[x]\r\n[dut]: m-ready\r\n[dut]: m-next")
        assert dut.read_passthrough("name", 1.0) == ["m-name-dut-[x]", "m-ready"]
        assert dut.io_lines == ["m-lap-us-9", "m-ready"]  # the IO manager's own lines, not the DUT's
        with pytest.raises(DeviceError, match=r"no 'm-ready' within 0\.2 s after 'dut timestamp'"):
            dut.read_passthrough("timestamp", 0.2)  # `[dut]: m-next` and no acknowledgement


_TOKENS = ["[dut]: ", "m-ready", "m-dut-passthrough(", ")", "\r\n", "\n", "m-lap-us-", "1", "e-[", "]",
           "m-results-[", "0.5,", "m-infer-start-1", "m-warmup-start-0", "m-infer-done", "m-name-dut-[", "%"]


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=2000), st.lists(st.sampled_from(_TOKENS), max_size=60).map(
    lambda parts: "".join(parts).encode())))
def test_fuzz_passthrough_reader_terminates(data):
    with loop_link(data) as link:
        dut = mlperf.MlperfDut(link, io_manager=True)
        start = time.monotonic()
        with contextlib.suppress(DeviceError):
            lines = dut.read_passthrough("infer 1 0", 0.05)
            with contextlib.suppress(mlperf.ProtocolError):
                mlperf.parse_infer(lines, 1, 0, timer_lines=dut.io_lines, laps_required=False)
        assert time.monotonic() - start < 1.0


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_emulated_io_manager_never_crashes(data):
    board = EmulatedIoManager()
    out = board.feed(data)
    assert isinstance(out, bytes) and len(board._command) <= 1024


def test_cli_bench_through_emulated_io_manager(small_tflite, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(small_tflite)
    with emulator_ports("--io-manager", "--model", str(path)) as (port,):
        out = tmp_path / "bench.json"
        bench = run_edge("bench", "--port", port, "--io-manager", "--io-timer", "--model", str(path), "--runs", "3",
                      "--warmup", "1", "--inputs", "3", "--json", str(out), "--quiet")
        assert bench.returncode == 0, bench.stderr
        assert re.search(r"^vs local TFLM +all equal$", bench.stdout, re.M)
        assert re.search(rf"^io manager +{NAME}$", bench.stdout, re.M)
        report = json.loads(out.read_text())
        assert report["io_manager"] == NAME and report["local_match"] is True and len(report["predictions"]) == 3
        assert report["latency_ms"] == pytest.approx(costmodel_estimate(small_tflite, "nrf52840")[0], abs=0.001)
