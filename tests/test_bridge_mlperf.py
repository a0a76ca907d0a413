"""MLPerf Tiny DUT protocol: host-side parsers, command limits, and fuzzing of the reply reader."""

from __future__ import annotations

import contextlib
import time

import pytest
from bridge_helpers import loop_link
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import DeviceError
from edge.firmware_bridge import mlperf
from edge.firmware_bridge.emulation.board import EmulatedDevice
from edge.firmware_bridge.transport import SerialLink

# The shape of a real exchange as logged by the mlcommons runner in energy mode (IO manager prefix).
INFER_REPLY = [
    "[dut]: m-warmup-start-10", "[dut]: m-warmup-done", "[dut]: m-infer-start-1",
    "[dut]: m-lap-us-67410227", "[dut]: m-lap-us-67565820", "[dut]: m-infer-done",
    "[dut]: m-results-[0.000,0.000,0.007,0.992]", "[dut]: m-ready",
]


def test_parse_infer_reference_transcript():
    reply = mlperf.parse_infer(INFER_REPLY, runs=1, warmups=10)
    assert reply.laps_us == (67410227, 67565820)
    assert reply.latency_ms == pytest.approx(155.593)
    assert reply.results == (0.0, 0.0, 0.007, 0.992)


def test_parse_name_profile_load():
    assert mlperf.parse_name(["m-name-dut-[unspecified]\r", "m-ready"]) == "unspecified"
    profile = mlperf.parse_profile(["m-profile-[ULPMark for tinyML Firmware V0.0.1]", "m-model-[vww01]", "m-ready"])
    assert profile == {"profile": "ULPMark for tinyML Firmware V0.0.1", "model": "vww01"}
    assert mlperf.parse_load_expect(["m-[Expecting 27648 bytes]", "m-ready"]) == 27648


def test_errors_and_wrong_sequences_raise_protocol_errors():
    with pytest.raises(mlperf.ProtocolError, match="device rejected 'infer': Inference iterations must be >0"):
        mlperf.raise_on_error(["e-[Inference iterations must be >0]", "m-ready"], "infer")
    with pytest.raises(mlperf.ProtocolError, match="expected m-warmup-start-2 and m-infer-start-5"):
        mlperf.parse_infer(INFER_REPLY, runs=5, warmups=2)
    with pytest.raises(mlperf.ProtocolError, match="not a number"):
        mlperf.parse_results(["m-results-[0.1,abc]"])
    assert issubclass(mlperf.ProtocolError, DeviceError) and mlperf.ProtocolError("x").exit_code == 3


def test_hex_commands_respect_the_80_character_limit():
    data = bytes(range(100))
    commands = mlperf.hex_commands(data)
    assert all(len(c) + 1 <= mlperf.MAX_COMMAND for c in commands)
    assert [len(c) for c in commands[:3]] == [3 + 62] * 3  # 31 bytes per command, as the reference runner
    assert bytes.fromhex("".join(c[3:] for c in commands)) == data
    with pytest.raises(ValueError):
        mlperf.hex_commands(data, per_command=39)


def test_emulated_firmware_matches_the_reference_replies():
    device = EmulatedDevice()
    assert device.feed(b"name%") == b"m-name-dut-[edge-emulator]\r\nm-ready\r\n"
    assert device.feed(b"bogus 1 2%") == b"e-[Unknown command: bogus]\r\nm-ready\r\n"
    assert device.feed(b"db load 3%") == b"m-[Expecting 3 bytes]\r\nm-ready\r\n"
    assert device.feed(b"db 0a0b%") == b"m-ready\r\n"
    assert device.feed(b"db 0c0d%") == b"m-load-done\r\nm-ready\r\n"  # the rest of the digits is ignored
    assert device.feed(b"db 0g%") == b"e-[Invalid hex digit '0g']\r\nm-ready\r\n"
    assert device.feed(b"infer 0 1%") == b"e-[Inference iterations must be >0]\r\nm-ready\r\n"
    assert device.feed(b"infer 1 0%").startswith(b"e-[No model at /lfs/model.tflite")


def test_reply_reader_over_loop_url():
    with SerialLink("loop://", 115200, timeout_s=0.2) as link:
        dut = mlperf.MlperfDut(link)
        link.write(b"m-lap-us-5\r\nm-ready\r\n")
        assert dut.read_reply("timestamp", 1.0) == ["m-lap-us-5\r", "m-ready\r"]
        with pytest.raises(DeviceError, match=r"no 'm-ready' within 0\.2 s after 'name'"):
            dut.read_reply("name", 0.2)


def _parse_passthrough_infer(lines: list[str]) -> mlperf.InferReply:
    dut, own = mlperf.split_passthrough(lines)
    return mlperf.parse_infer(dut, 1, 0, timer_lines=own, laps_required=False)


_PARSERS = [
    mlperf.parse_name, mlperf.parse_profile, mlperf.parse_lap, mlperf.parse_results, mlperf.parse_load_expect,
    lambda lines: mlperf.parse_infer(lines, 1, 0), lambda lines: mlperf.raise_on_error(lines, "x"),
    # through an IO manager: the acknowledgement, the unwrapping, and stamps from the IO manager's timer
    lambda lines: mlperf.check_passthrough_ack(lines, "infer 1 0"),
    _parse_passthrough_infer,
]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_parsers_return_or_raise_protocol_error(data):
    lines = data.decode("utf-8", errors="replace").split("\n")
    for parser in _PARSERS:
        with contextlib.suppress(mlperf.ProtocolError):
            parser(lines)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["m-lap-us-", "m-results-[", "e-[", "]", ",", "1", "-", ".", "nan", "inf",
                                 "m-infer-start-", "m-warmup-start-", "m-infer-done", "\r", "[dut]: ",
                                 "m-dut-passthrough(", "m-ready", "m-name-dut-["]), max_size=40))
def test_fuzz_parsers_on_near_miss_replies(parts):
    lines = [*"".join(parts).split("\n"), "".join(reversed(parts))]
    for parser in _PARSERS:
        with contextlib.suppress(mlperf.ProtocolError):
            parser(lines)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=3000))
def test_fuzz_reply_reader_terminates(data):
    with loop_link(data) as link:
        dut = mlperf.MlperfDut(link)
        start = time.monotonic()
        with contextlib.suppress(DeviceError):
            dut.read_reply("fuzz", 0.05)
        assert time.monotonic() - start < 1.0


def test_link_closes_on_ctrl_c():
    link = SerialLink("loop://")
    with pytest.raises(KeyboardInterrupt), link:
        link.write(b"name%")
        raise KeyboardInterrupt
    assert link.port is None
    with pytest.raises(DeviceError, match="serial port is not open"):
        link.write(b"x")
