"""The one way tests and bench scripts build real .tflite models: TensorFlow in a child process.

TensorFlow never loads in the pytest process (torch does, and the two crash together), so
`build` runs `tflite_recipes.py` as a child, one TensorFlow import for all the names asked.
POWER_MODELS are reference graphs for the cost model (random weights); BRIDGE_MODELS are small
full-integer CNNs that go to the emulated board. `tests/conftest.py` caches them per session.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RECIPES = Path(__file__).with_name("tflite_recipes.py")
POWER_MODELS = ("tiny_int8", "tiny_float", "attn_int8", "mobilenet_v1_025_int8", "vit_pruned_int8", "vit_float")
# name -> tflite_recipes.int8_cnn(kb, seed, tiny)
BRIDGE_MODELS: dict[str, tuple[int, int, bool]] = {
    "small": (8, 0, False), "small_seed1": (8, 1, False), "tiny": (1, 0, True), "upload_100k": (100, 0, False),
}


def build(out_dir: Path, names: tuple[str, ...], timeout_s: float = 600) -> dict[str, Path]:
    """Build the named models into `out_dir` in one child process; returns name -> path."""
    unknown = sorted(set(names) - set(POWER_MODELS) - set(BRIDGE_MODELS))
    if unknown:
        raise ValueError(f"unknown test models {unknown}")
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, str(RECIPES), str(out_dir), *names], capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"building test models failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {name: out_dir / f"{name}.tflite" for name in names}
