"""The bridge against the reference MLPerf Tiny firmware (mlcommons/tiny benchmark/api): float32 results,
per-line infer timeout, non-protocol replies shown, the wire log, and the emulator byte for byte."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from export_fixtures import single_op_tflite

from edge.cli import main
from edge.errors import DeviceError
from edge.firmware_bridge.emulation.board import EmulatedDevice
from edge.firmware_bridge.emulation.flash import MODEL_FILE
from edge.firmware_bridge.emulation.mlperf_firmware import HELP, MAX_DB_INPUT_SIZE
from edge.firmware_bridge.emulation.pty_device import PtyDevice
from edge.firmware_bridge.mlperf import MlperfDut, ProtocolError, parse_load_expect
from edge.firmware_bridge.model_runner import dequantize_float32

# an output scale where float64 and float32 arithmetic print different %0.3f: q=53, zero point -9
SCALE, ZERO = 0.010217742063105106, -9


def relu_model(scale: float = SCALE, zero: int = ZERO) -> bytes:
    """A one-op int8 RELU whose input and output share (scale, zero): output q = max(q, zero)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT.InitFromPackedBuf(single_op_tflite("RELU"), 0)
    for tensor in model.subgraphs[0].tensors:
        tensor.quantization.scale, tensor.quantization.zeroPoint = [scale], [zero]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_the_scale_is_one_where_float32_and_float64_disagree():
    q = np.array([53])
    assert f"{(53 - ZERO) * SCALE:0.3f}" == "0.634"  # float64: what the bridge used to compare with
    assert f"{float(dequantize_float32(q, SCALE, ZERO)[0]):0.3f}" == "0.633"  # what the firmware prints


def test_bench_agrees_with_a_device_that_prints_float32(tmp_path: Path, capfd):
    model = tmp_path / "relu.tflite"
    model.write_bytes(relu_model())
    inputs = tmp_path / "in.npy"
    np.save(inputs, np.array([[53, -71, 60, 0, 12, 127, -128, 53]] * 2, dtype=np.int8))
    log = tmp_path / "wire.log"
    with PtyDevice() as board:
        board.device.flash.write(MODEL_FILE, 0, model.read_bytes())
        code = main(["bench", "--port", board.path, "--model", str(model), "--input", str(inputs), "--runs", "1",
                     "--warmup", "0", "--json", str(tmp_path / "b.json"), "--quiet", "--log", str(log)])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert "vs local TFLM   all equal" in out
    wire = log.read_text()  # the device printed the float32 rendering (0.633; float64 gives 0.634) and it matched
    assert " > name%" in wire and " < m-name-dut-[edge-emulator]\\r\\n" in wire and "0.633" in wire


class ScriptedLink:
    """A link whose device sends `script` lines, each `gap_s` after the previous one, once a command arrives."""

    url = "scripted"
    timeout_s = 0.2

    def __init__(self, script: list[bytes], gaps_s: list[float]) -> None:
        self.script, self.gaps = list(script), list(gaps_s)
        self.due: float | None = None

    def write(self, data: bytes) -> None:
        self.due = time.monotonic() + (self.gaps[0] if self.gaps else 0)

    def payload_timeout(self, nbytes: int, base_s: float | None = None) -> float:
        return self.timeout_s if base_s is None else base_s

    def read_some(self, wait_s: float) -> bytes:
        if self.due is None or not self.script:
            time.sleep(wait_s)
            return b""
        if self.due - time.monotonic() > wait_s:
            time.sleep(wait_s)
            return b""
        time.sleep(max(0.0, self.due - time.monotonic()))
        self.gaps.pop(0)
        self.due = time.monotonic() + (self.gaps[0] if self.gaps else 0)
        return self.script.pop(0)


INFER_REPLY = [b"m-warmup-start-2\r\n", b"m-warmup-done\r\n", b"m-infer-start-1\r\n", b"m-lap-us-10\r\n",
               b"m-lap-us-20\r\n", b"m-infer-done\r\n", b"m-results-[0.500]\r\n", b"m-ready\r\n"]


def test_infer_timeout_is_per_line_like_the_reference_runner():
    link = ScriptedLink(INFER_REPLY, [0.15] * len(INFER_REPLY))  # 1.2 s in all, 0.15 s between lines
    reply = MlperfDut(link).infer(1, 2, timeout_s=0.4)
    assert reply.results == (0.5,) and reply.laps_us == (10, 20)


def test_a_line_later_than_the_timeout_fails_and_shows_what_came():
    link = ScriptedLink(INFER_REPLY, [0.05, 0.05, 0.8])
    with pytest.raises(DeviceError, match=r"within 0.4 s of the previous line after 'infer 1 2'; the device said: "
                       r"'m-warmup-start-2', 'm-warmup-done'"):
        MlperfDut(link).infer(1, 2, timeout_s=0.4)


def test_a_silent_device_is_not_blamed_on_the_baud_rate():
    with pytest.raises(DeviceError) as err:
        MlperfDut(ScriptedLink([], [])).name()
    assert "the device said: nothing" in err.value.message
    assert "sent nothing" in err.value.hint and "--timeout" in err.value.hint and "--baud" not in err.value.hint


def test_non_protocol_replies_are_shown():
    with pytest.raises(ProtocolError, match=r"the device said: 'Initialized', 'hello'"):
        parse_load_expect(["Initialized\r", "hello", "m-ready"][:2])
    lines = ["Supplied buffer size 4096 exceeds maximum of 3072\n"]
    with pytest.raises(ProtocolError, match=r"the device holds at most 3072 bytes per input .* refused 4096"):
        parse_load_expect(lines)


# --- the emulator answers as the reference firmware does --------------------------------------------
def feed(device: EmulatedDevice, command: bytes) -> bytes:
    return device.feed(command)


def test_emulator_help_is_the_reference_text():
    assert feed(EmulatedDevice(), b"help%") == HELP.encode() + b"m-ready\r\n"


def test_emulator_db_load_too_large_is_the_reference_line():
    device = EmulatedDevice()
    expected = f"Supplied buffer size {MAX_DB_INPUT_SIZE + 1} exceeds maximum of {MAX_DB_INPUT_SIZE}\n"
    assert feed(device, f"db load {MAX_DB_INPUT_SIZE + 1}%".encode()) == expected.encode() + b"m-ready\r\n"
    negative = f"Supplied buffer size -5 exceeds maximum of {MAX_DB_INPUT_SIZE}\n"
    assert feed(device, b"db load -5%") == negative.encode() + b"m-ready\r\n"
    assert feed(device, b"db load 0%") == b"e-[Command 'db load' must be >0 bytes]\r\nm-ready\r\n"


def test_emulator_db_print_is_the_reference_dump():
    device = EmulatedDevice()
    assert feed(device, b"db load 10%") == b"m-[Expecting 10 bytes]\r\nm-ready\r\n"
    assert feed(device, b"db 00010203040506070809%") == b"m-load-done\r\nm-ready\r\n"
    assert feed(device, b"db print 4 2%") == (b"m-buffer-00-01-02-03-04-05-06-07\r\nm-buffer-08-09\r\n\r\n"
                                               b"m-ready\r\n")


def test_emulator_keeps_the_first_80_characters_of_a_long_command():
    reply = feed(EmulatedDevice(), b"x" * 79 + b"AB%")
    assert reply == b"e-[Unknown command: " + b"x" * 79 + b"A]\r\nm-ready\r\n"


def test_emulator_results_before_infer_print_the_idle_output():
    device = EmulatedDevice()
    device.flash.write(MODEL_FILE, 0, relu_model())
    zero = f"{float(dequantize_float32(np.array([0]), SCALE, ZERO)[0]):0.3f}"
    assert feed(device, b"results%") == ("m-results-[" + ",".join([zero] * 8) + "]\r\nm-ready\r\n").encode()


def test_emulator_infer_with_a_short_buffer_complains_like_th_load_tensor():
    device = EmulatedDevice()
    device.flash.write(MODEL_FILE, 0, relu_model())
    feed(device, b"db load 4%")
    feed(device, b"db 35353535%")
    reply = feed(device, b"infer 1 0%").decode()
    assert reply.startswith("Input db has 4 elemented, expected 8\nm-warmup-start-0\r\n")
    assert "m-infer-done\r\nm-results-[" in reply and reply.endswith("m-ready\r\n")
