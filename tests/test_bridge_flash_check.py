"""`edge flash` checks the model before it touches the board: the emulated board keeps its model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from export_fixtures import single_op_tflite

from edge.cli import main
from edge.firmware_bridge.emulation.flash import MODEL_FILE
from edge.firmware_bridge.emulation.pty_device import PtyDevice

GOOD = single_op_tflite("RELU")


@pytest.fixture()
def board():
    with PtyDevice() as device:
        device.device.flash.write(MODEL_FILE, 0, GOOD)
        yield device


@pytest.mark.parametrize(("name", "data", "says"), [
    ("empty.tflite", b"", "file is 0 bytes"),
    ("random.tflite", os.urandom(3000), "not a TFLite flatbuffer: bytes 4-7 are"),
    ("model.onnx", b"\x08\x07\x12\x07pytorch" + bytes(500), "not a TFLite flatbuffer"),
    ("topk.tflite", single_op_tflite("TOPK_V2"), "TFLite Micro cannot run this model: op 0 TOPK_V2"),
])
def test_flash_refuses_a_non_tflm_model_and_the_board_keeps_its_own(board, tmp_path: Path, capfd, name, data, says):
    path = tmp_path / name
    path.write_bytes(data)
    assert main(["flash", "--port", board.path, "--model", str(path), "--quiet"]) == 2
    err = capfd.readouterr().err
    assert str(path) in err and says in err and "nothing was sent to the board" in err
    assert bytes(board.device.flash.files[MODEL_FILE]) == GOOD


def test_force_sends_it_anyway(board, tmp_path: Path, capfd):
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(3000))
    assert main(["flash", "--port", board.path, "--model", str(path), "--quiet", "--force"]) == 0
    assert "--force" in capfd.readouterr().err
    assert bytes(board.device.flash.files[MODEL_FILE]) == path.read_bytes()


def test_a_sound_model_is_flashed(board, tmp_path: Path, capfd):
    path = tmp_path / "tanh.tflite"
    path.write_bytes(single_op_tflite("TANH"))
    assert main(["flash", "--port", board.path, "--model", str(path), "--quiet"]) == 0, capfd.readouterr().err
    assert bytes(board.device.flash.files[MODEL_FILE]) == path.read_bytes()
