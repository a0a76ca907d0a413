"""LPM01A energy monitor: the host sends the MLPerf Tiny runner's exact commands, parses the stream
(fuzzed), and through the emulators (IO manager + DUT + LPM01A powered by it) measures the cost
model's energy per inference; wrong settings give the monitor's or the host's error message."""

from __future__ import annotations

import json
import math

import pytest
from bridge_helpers import build_model, emulator_ports
from edge_cli import run_edge
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import ConfigError, DeviceError
from edge.firmware_bridge import mlperf
from edge.firmware_bridge.bench import random_inputs, run_bench, with_costmodel
from edge.firmware_bridge.emulation.board import EmulatedDevice
from edge.firmware_bridge.emulation.flash import MODEL_FILE
from edge.firmware_bridge.emulation.io_manager import EmulatedIoManager
from edge.firmware_bridge.emulation.lpm01a import DutActivity, EmulatedLpm01a, encode_sample, parse_value
from edge.firmware_bridge.emulation.pty_device import PtyDevice
from edge.firmware_bridge.model_runner import costmodel_estimate
from edge.firmware_bridge.power_monitor import Lpm01a, StreamParser, find_reply, window_energy
from edge.firmware_bridge.transport import SerialLink

RUNS = 100  # 100 x 0.93 ms (cost model, nrf52840): a 93-sample window at 1 kHz


def _reference_session(voltage: float) -> bytes:
    """What mlcommons/tiny's runner writes to the LPM01A (power_manager.py PowerManager + main.py run_test and
    summarize_result; sessions/20250612_122741/log.txt): SerialDevice.write_line(command) = command + '\\r\\n'."""
    commands = ["htc", "powershield", "version", "status", 'lcd 1 "MLPerf Tiny"', 'lcd 2 "     monitor    "',
                "pwr off", "acqtime inf", "trigdelay 0", "trigsrc sw", "eventsrc d7 fal", "output energy",
                "format ascii_dec", "freq 1k", f"volt {int(1000 * voltage)}m", f'lcd 2 "{voltage : >14}V "',
                "pwr on nostatus", "start", "pwr off", "stop", "pwr off", "hrc"]
    return "".join(c + "\r\n" for c in commands).encode()


def _boards(model: bytes) -> tuple[EmulatedIoManager, EmulatedLpm01a]:
    board = EmulatedIoManager(EmulatedDevice())
    board.flash.write(MODEL_FILE, 0, model)
    return board, EmulatedLpm01a(DutActivity.attach(board.dut.mlperf))


def test_energy_per_inference_through_emulators_matches_cost_model(small_tflite):
    board, lpm = _boards(small_tflite)
    inputs = random_inputs(small_tflite, 2, seed=7)
    with PtyDevice(board) as io, PtyDevice(lpm) as mon, SerialLink(io.path) as link, \
            SerialLink(mon.path, 3686400) as mon_link, Lpm01a(mon_link, voltage_V=3.0, power_on_wait_s=0) as probe:
        report = run_bench(mlperf.MlperfDut(link, io_manager=True), inputs, runs=RUNS, warmups=1, model=small_tflite,
                           energy_probe=probe)
    assert lpm.received == _reference_session(3.0)  # byte for byte the reference runner's session
    assert report.local_match is True
    energy = with_costmodel(report.energy, small_tflite, "nrf52840")
    latency_ms, energy_uJ = costmodel_estimate(small_tflite, "nrf52840")
    assert energy["costmodel_energy_uJ"] == pytest.approx(energy_uJ)
    # the window is whole 1 ms samples between the two D7 events: within one sample of the modelled span
    assert energy["measured_over_model"] == pytest.approx(1.0, abs=0.02)
    assert energy["inferences"] == RUNS and energy["monitor"] == "LPM01A" and energy["voltage_V"] == 3.0
    assert abs(energy["samples"] - RUNS * latency_ms) <= 1.0 and energy["window_below_10s"] is True
    assert energy["method"] == f"LPM01A D7 events 1-2 ({RUNS} inferences)"
    # an energy-mode DUT prints no stamps: the latency is the D7 window / N, as the runner computes it
    assert report.latency_ms == pytest.approx(latency_ms, rel=0.02)
    assert report.timing_source == "energy monitor D7 events (1000 Hz samples)"
    assert "measured/model 0.9" in report.table() or "measured/model 1.0" in report.table()


def test_stream_parser_sorts_the_runner_formats():
    parser = StreamParser()
    stream = (b"PowerShield > ack start\r\n6409-07\r\n1221-05\r\nevent 1 ris\r\n0000+00\r\n"
              b"9999+011221-0\r\nTimeStamp: 001s 000ms, buff 00%\r\nevent 2 ris\r\n"
              b"PowerShield > error volt 9m\r\nPowerShield > Error detail: out of range\r\n\x00\xff\xfe\r\n")
    for i in range(0, len(stream), 7):  # arbitrary chunking
        parser.feed(stream[i:i + 7])
    values = parser.samples
    assert values[:3] == [pytest.approx(640.9e-6), pytest.approx(1221e-5), 0.0]
    assert values[3] == pytest.approx(9999e1) and math.isnan(values[4]) and len(values) == 5  # cut-off sample
    assert parser.events == [(1, 2), (2, 5)] and parser.stamps == [(1.0, 5)]
    assert parser.messages[:3] == ["ack start", "error volt 9m", "Error detail: out of range"]
    count, reply = find_reply(parser.messages, "volt 9m")
    assert count == 3 and not reply.ok and reply.detail == "out of range"
    assert find_reply(["ack powershield 0001-0002"], "powershield")[1].value == "0001-0002"
    assert find_reply(["error volt 9m"], "volt 9m") is None  # the detail has not arrived yet


def test_window_energy_rules():
    samples = [1e-6] * 10
    result = window_energy(samples, [(4, 2), (5, 7)], [], runs=5, rate_Hz=1000, voltage_V=3.0, source="x")
    assert result["energy_uJ"] == pytest.approx(5.0) and result["energy_per_inference_uJ"] == pytest.approx(1.0)
    assert result["samples"] == 5 and result["window_s"] == pytest.approx(0.005)
    with pytest.raises(DeviceError, match="not consecutive: 4 then 6"):
        window_energy(samples, [(4, 2), (6, 7)], [], runs=5, rate_Hz=1000, voltage_V=3.0, source="x")
    with pytest.raises(DeviceError, match="1 damaged sample"):
        window_energy([1e-6, math.nan, 1e-6], [(1, 0), (2, 3)], [], runs=1, rate_Hz=1000, voltage_V=3.0, source="x")
    with pytest.raises(DeviceError, match="no samples between"):
        window_energy(samples, [(1, 3), (2, 3)], [], runs=1, rate_Hz=1000, voltage_V=3.0, source="x")


_LINES = st.sampled_from([
    "6409-07", "6409-0", "640907", "event 3 ris", "event x ris", "event 99999999999999 ris", "TimeStamp: 001s",
    "TimeStamp: 001s 000ms, buff 00%", "PowerShield > ack volt 3000m", "error volt 3000m", "Error detail:",
    "PowerShield > ", "Acquisition completed", "\x00", "9999+99", "0000-99",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), _LINES.map(lambda s: s.encode() + b"\r\n")), max_size=40),
       st.integers(1, 17), st.integers(1, 50))
def test_stream_parser_never_crashes(chunks, step, runs):
    parser = StreamParser()
    data = b"".join(chunks)
    for i in range(0, len(data), step):
        parser.feed(data[i:i + step])
    assert all(isinstance(v, float) for v in parser.samples)
    find_reply(parser.messages, "volt 3000m")
    if len(parser.events) >= 2:
        try:
            result = window_energy(parser.samples, parser.events, parser.stamps, runs=runs, rate_Hz=1000,
                                   voltage_V=3.0, source="fuzz")
        except DeviceError:
            return
        assert math.isfinite(result["energy_per_inference_uJ"])


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1e-15, max_value=1e3))
def test_sample_encoding_round_trips(value):
    text = encode_sample(value)
    assert len(text) == 7
    parser = StreamParser()
    parser.feed(text.encode() + b"\r\n")
    assert parser.samples[0] == pytest.approx(value, rel=6e-4)


def test_emulated_monitor_answers_and_rejects():
    lpm = EmulatedLpm01a(DutActivity(lambda: 0, idle_current_A=1e-6, run_power_W=1e-2))
    assert lpm.feed(b"volt 3000m\r\n") == (b"PowerShield > error volt 3000m\r\n"
                                           b"PowerShield > Error detail: host control required: send 'htc' first\r\n")
    assert lpm.feed(b"htc\r\npowershield\r\n").startswith(b"PowerShield > ack htc\r\nPowerShield > ack powershield ")
    assert lpm.feed(b"volt 5000m\r\n").endswith(b"Error detail: voltage out of range [1800m; 3300m]\r\n")
    assert lpm.feed(b"freq 3k\r\n").endswith(b"Error detail: frequency not in list {100k, 50k, 20k, 10k, 5k, 2k, "
                                             b"1k, 500, 200, 100, 50, 20, 10, 5, 2, 1}\r\n")
    assert lpm.feed(b"volt 2-0\r\nvolt get\r\n") == (b"PowerShield > ack volt 2-0\r\n"
                                                      b"PowerShield > ack volt get 2000-03\r\n")
    assert parse_value("3300m") == pytest.approx(3.3) and parse_value("100u") == pytest.approx(1e-4)
    assert parse_value("2-3") == pytest.approx(2e-3) and parse_value("3.3V") is None


def test_emulated_stream_follows_the_dut_activity():
    now = [0]
    activity = DutActivity(lambda: now[0], idle_current_A=2e-6, run_power_W=1e-2)
    lpm = EmulatedLpm01a(activity)
    acks = lpm.feed(b"htc\r\noutput energy\r\nfreq 1k\r\nacqtime inf\r\nvolt 3000m\r\npwr on\r\nstart\r\n")
    assert acks.count(b"PowerShield > ack ") == 7
    activity.inference(1_200_500, 1_300_500, 5e-3)  # 100 ms at 5 mW, starting half-way into sample 1200
    now[0] = 2_500_000
    parser = StreamParser()
    parser.feed(lpm.poll())
    idle, busy = 2e-6 * 3.0 * 1e-3, 5e-3 * 1e-3  # joules per 1 ms sample
    assert len(parser.samples) == 2500 and parser.stamps == [(1.0, 1000), (2.0, 2000)]
    assert parser.events == [(1, 1200), (2, 1300)]  # after the samples completed before each edge
    assert parser.samples[0] == pytest.approx(idle, rel=1e-3) and parser.samples[1250] == pytest.approx(busy, rel=1e-3)
    assert parser.samples[1200] == pytest.approx(0.5 * idle + 0.5 * busy, rel=1e-3)
    assert sum(parser.samples[1200:1300]) == pytest.approx(99.5 * busy + 0.5 * idle, rel=1e-3)
    assert lpm.feed(b"stop\r\n") == b"PowerShield > Acquisition completed\r\n"
    assert lpm.feed(b"stop\r\n").endswith(b"Error detail: no acquisition in progress\r\n")


_COMMANDS = st.sampled_from(["htc", "start", "stop", "pwr on", "pwr off", "volt 3300m", "volt 9k", "freq 10k",
                             "acqtime 2", "acqtime inf", "output current", "format bin_hexa", 'lcd 1 "x"', "hrc"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=30), _COMMANDS.map(lambda c: c.encode() + b"\r\n")), max_size=30),
       st.integers(0, 3_000_000))
def test_emulated_monitor_never_crashes(chunks, advance_us):
    now = [0]
    lpm = EmulatedLpm01a(DutActivity(lambda: now[0], idle_current_A=1e-6, run_power_W=1e-2))
    for chunk in chunks:
        out = lpm.feed(chunk)
        now[0] += advance_us // max(1, len(chunks))
        out += lpm.poll()
        assert isinstance(out, bytes)


def test_host_refuses_a_frequency_the_monitor_lacks():
    with pytest.raises(ConfigError, match="sampling frequency '3k' is not one the LPM01A offers"):
        Lpm01a(SerialLink("loop://"), freq="3k")


def test_cli_bench_with_power_monitor_and_wrong_settings(tmp_path_factory, tmp_path):
    path = build_model(tmp_path_factory, "small")
    with emulator_ports("--io-manager", "--power-monitor", "--model", str(path), seconds=50,
                        ports=2) as (io_port, monitor_port):
        base = ["bench", "--port", io_port, "--io-manager", "--power-monitor", monitor_port, "--model", str(path),
                "--inputs", "1", "--quiet", "--power-on-wait", "0"]
        out = run_edge(*base, "--runs", str(RUNS), "--voltage", "3.0", "--json", str(tmp_path / "b.json"))
        assert out.returncode == 0, out.stderr[-2000:]
        report = json.loads((tmp_path / "b.json").read_text())
        assert report["energy"]["measured_over_model"] == pytest.approx(1.0, abs=0.02)
        assert "measured_uJ/inference" in out.stdout
        wrong_volt = run_edge(*base, "--voltage", "5.0", "--json", str(tmp_path / "v.json"))
        assert wrong_volt.returncode == 3
        assert (f"error: {monitor_port} (LPM01A): the power monitor rejected 'volt 5000m': "
                "voltage out of range [1800m; 3300m]") in wrong_volt.stderr
        assert "pass --voltage in that range" in wrong_volt.stderr
        wrong_freq = run_edge(*base, "--monitor-freq", "10k", "--json", str(tmp_path / "f.json"))
        assert wrong_freq.returncode == 3
        assert "the power monitor rejected 'start': freq 10k with ascii_dec needs acqtime <= 1 s" in wrong_freq.stderr
        bad_freq = run_edge(*base, "--monitor-freq", "3k", "--json", str(tmp_path / "g.json"))
        assert bad_freq.returncode == 2 and "sampling frequency '3k' is not one the LPM01A offers" in bad_freq.stderr
        no_io = run_edge("bench", "--port", io_port, "--power-monitor", monitor_port, "--model", str(path), "--quiet")
        assert no_io.returncode == 2 and "--power-monitor needs --io-manager" in no_io.stderr
