"""Shared helpers for tests/test_bridge_*.py: real int8 .tflite models built in a child process.

TensorFlow must not load in the pytest process (torch does), so the models are made by
`edge.firmware_bridge.sample_model` in one subprocess (one TensorFlow import for all of them)
and cached for the session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# name -> build_int8_tflite(kb, seed, tiny)
MODELS = {"small": (8, 0, False), "small_seed1": (8, 1, False), "tiny": (1, 0, True)}

_SCRIPT = """
import sys
from pathlib import Path
from edge.firmware_bridge.sample_model import build_int8_tflite
folder = Path(sys.argv[1])
for spec in sys.argv[2:]:
    name, kb, seed, tiny = spec.split(":")
    (folder / f"{name}.tflite").write_bytes(build_int8_tflite(int(kb), int(seed), tiny == "1"))
"""


def build_model(factory: pytest.TempPathFactory, name: str) -> Path:
    """Path of the sample model `name` (see MODELS); all are built together on first use."""
    folder = factory.getbasetemp() / "bridge_models"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.tflite"
    if not path.exists():
        specs = [f"{n}:{kb}:{seed}:{int(tiny)}" for n, (kb, seed, tiny) in MODELS.items()]
        proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(folder), *specs],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return path


def run_edge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m edge ARGS` in a child process, unbuffered, output captured as text."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def interrupt_after(limit: int) -> Callable[[int], None]:
    """A progress callback that raises KeyboardInterrupt (Ctrl-C) once more than `limit` bytes are acknowledged."""
    sent = [0]

    def progress(nbytes: int) -> None:
        sent[0] += nbytes
        if sent[0] > limit:
            raise KeyboardInterrupt

    return progress
