"""Shared helpers for tests/test_bridge_*.py: the sample int8 models (tflite_models.py, built together
in one child process and cached for the session), the edge CLI in a child, a Ctrl-C on progress."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

BRIDGE_TEST_MODELS = ("small", "small_seed1", "tiny")


def build_model(factory: pytest.TempPathFactory, name: str) -> Path:
    """Path of the sample model `name` (tflite_models.BRIDGE_MODELS); all are built together on first use."""
    from tflite_models import build

    folder = factory.getbasetemp() / "bridge_models"
    path = folder / f"{name}.tflite"
    if not path.exists():
        build(folder, BRIDGE_TEST_MODELS)
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
