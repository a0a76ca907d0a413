"""Shared helpers for tests/test_bridge_*.py: real int8 .tflite models built in a child process.

TensorFlow must not load in the pytest process (torch does), so the models are made by
`python -m edge.firmware_bridge.sample_model` in a subprocess and cached for the session.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def build_model(factory: pytest.TempPathFactory, name: str, *args: str) -> Path:
    """Build (once per session) a sample model with the given CLI args; return its path."""
    folder = factory.getbasetemp() / "bridge_models"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.tflite"
    if not path.exists():
        proc = subprocess.run(
            [sys.executable, "-m", "edge.firmware_bridge.sample_model", str(path), *args],
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    return path
