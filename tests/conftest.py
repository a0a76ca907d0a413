"""Fixtures that several test files share. Models come from tflite_models.py (TensorFlow in a child)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bridge_helpers import build_model
from power_fixtures import reference_models


@pytest.fixture(scope="session")
def small_tflite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~8 KB full-integer CNN (16x16x1 in, 3 classes out) that TFLM runs: the bridge's board model."""
    return build_model(tmp_path_factory, "small")


@pytest.fixture(scope="session")
def small_tflite(small_tflite_path: Path) -> bytes:
    """The bytes of `small_tflite_path`."""
    return small_tflite_path.read_bytes()


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A ~1.2 KB full-integer model (one dense layer on 4 inputs), for tests that upload it many times."""
    return build_model(tmp_path_factory, "tiny").read_bytes()


@pytest.fixture(scope="session")
def power_models() -> dict[str, Path]:
    """The power tests' reference models (power_fixtures.FAST_MODELS): name -> .tflite path."""
    return reference_models()
