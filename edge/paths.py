"""Where artifacts go, and the default names, said once.

A run lives in `runs/<run>/`; the export stage writes `build/<target>/` next to the runs folder
(or under `export.build_dir`), and the model a board gets is `build/<target>/model_int8.tflite`.
The CLI, the export stage, `edge flash`/`edge bench` and the bench scripts derive those paths
here. The Makefile cannot import Python: its `RUN`, `TARGET` and `build/$(TARGET)/...` defaults
are checked against this module by `tests/test_paths.py`, and so are the config defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_RUN = "default"
DEFAULT_TARGET = "cortex-m"  # a family in power_profiles/targets.yaml (nRF52840)
DEFAULT_MCU = "nrf52840"  # the MCU profile of DEFAULT_TARGET: bench's cost model, the emulated board
DEFAULT_DEVICE = "camera-trap-nrf52840"  # power_profiles/devices/<name>.yaml, the battery stage's device

RUNS_DIR = Path("runs")  # relative to the working folder, like `make`'s
BUILD_DIR_NAME = "build"
MODEL_INT8 = "model_int8.tflite"


def build_dir(
    target: str = DEFAULT_TARGET,
    runs_dir: str | os.PathLike[str] = RUNS_DIR,
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """`build/<target>/`: under `root` (`export.build_dir`) when given, else `build/` next to `runs_dir`."""
    base = Path(root) if root else Path(runs_dir).parent / BUILD_DIR_NAME
    return base / target


def exported_model(
    target: str = DEFAULT_TARGET,
    runs_dir: str | os.PathLike[str] = RUNS_DIR,
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """`build/<target>/model_int8.tflite`: the full-integer model the export stage writes for `target`."""
    return build_dir(target, runs_dir, root) / MODEL_INT8
