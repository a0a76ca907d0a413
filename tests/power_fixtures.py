"""Shared helpers for the power tests: the reference .tflite models (tflite_models.py, built once per
process), and small profile builders."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from edge.power.schema import CellProfile

FAST_MODELS = ("tiny_int8", "tiny_float", "attn_int8", "vit_pruned_int8", "vit_float")


@functools.lru_cache(maxsize=1)
def reference_models() -> dict[str, Path]:
    """Build the fast reference models (about 30-60 s, once per test process)."""
    from tflite_models import build

    folder = Path(tempfile.mkdtemp(prefix="power-models-"))
    return build(folder, FAST_MODELS)


def flat_cell(capacity_mAh: float = 1000.0, self_discharge: float = 0.0, **extra: object) -> CellProfile:
    """A cell without load, pulse or temperature effects (for closed-form checks)."""
    data = {
        "name": "flat", "part": "test", "chemistry": "ideal", "nominal_V": 3.0, "cutoff_V": 2.0,
        "capacity_mAh": capacity_mAh, "rated_current_mA": 1.0,
        "capacity_vs_load": [[1.0, capacity_mAh]], "temperature_derating": [[20.0, 1.0]],
        "self_discharge_pct_per_year": self_discharge,
        "max_continuous_current_mA": 1000.0, "max_pulse_current_mA": 2000.0, "internal_resistance_ohm": 0.0,
        "voltage_curve": [[0.0, 3.0], [1.0, 3.0]], "sources": ["test"],
    }
    data.update(extra)
    return CellProfile.model_validate(data)
