"""Shared helpers for tests/test_bridge_*.py: the sample int8 models (tflite_models.py, built together
in one child process and cached for the session), `edge emulator` in a child, a Ctrl-C on progress."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import serial

from edge.firmware_bridge.transport import SerialLink

BRIDGE_TEST_MODELS = ("small", "small_seed1", "tiny")


def build_model(factory: pytest.TempPathFactory, name: str) -> Path:
    """Path of the sample model `name` (tflite_models.BRIDGE_MODELS); all are built together on first use."""
    from tflite_models import build

    folder = factory.getbasetemp() / "bridge_models"
    path = folder / f"{name}.tflite"
    if not path.exists():
        build(folder, BRIDGE_TEST_MODELS)
    return path


@contextmanager
def emulator_ports(*args: str, seconds: int = 120, ports: int = 1) -> Iterator[list[str]]:
    """`edge emulator ARGS --seconds SECONDS` in a child process: yields the first `ports` device paths it prints
    (board, then power monitor) and stops it afterwards; a missing port fails with the emulator's stderr."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "edge", "emulator", *args, "--seconds", str(seconds)],
                                stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert proc.stdout is not None
            found = [proc.stdout.readline().strip() for _ in range(ports)]
            if not all(port.startswith("/dev/") for port in found):
                proc.kill()
                proc.wait(timeout=10)
                err.seek(0)
                raise AssertionError(f"edge emulator printed {found}, not {ports} port(s): {err.read()[-2000:]}")
            yield found
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@contextmanager
def loop_link(received: bytes) -> Iterator[SerialLink]:
    """A SerialLink on pyserial's loop:// port (non-blocking reads) that holds `received` to read; closed afterwards."""
    port = serial.serial_for_url("loop://", timeout=0)
    link = SerialLink("loop://")
    link.port = port
    port.write(received)
    try:
        yield link
    finally:
        port.close()


def interrupt_after(limit: int) -> Callable[[int], None]:
    """A progress callback that raises KeyboardInterrupt (Ctrl-C) once more than `limit` bytes are acknowledged."""
    sent = [0]

    def progress(nbytes: int) -> None:
        sent[0] += nbytes
        if sent[0] > limit:
            raise KeyboardInterrupt

    return progress
