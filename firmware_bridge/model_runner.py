"""What the host and the emulated board both need: the model in TFLite Micro and its cost-model timing.

`edge bench` runs the model locally to check a board's results (`bench.py`); the emulated board
runs it as its firmware would (`emulation/mlperf_firmware.py`). Both print results as the MLPerf
Tiny reference firmware does, and both ask the cost model `edge.power.cost` what one inference
takes on an MCU profile. This module imports neither side.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np

ARENA_BYTES = 512 * 1024


class ModelRunner:
    """One .tflite in the TFLM interpreter: int8/uint8 input bytes in, dequantised floats out."""

    def __init__(self, model: bytes, arena_bytes: int = ARENA_BYTES) -> None:
        from tflite_micro.python.tflite_micro import runtime

        self.sha256 = hashlib.sha256(model).hexdigest()
        self.interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_bytes)
        self.input = self.interpreter.get_input_details(0)
        self.output = self.interpreter.get_output_details(0)
        self.input_bytes = int(np.prod(self.input["shape"])) * np.dtype(self.input["dtype"]).itemsize

    def run(self, data: bytes, times: int = 1) -> tuple[np.ndarray, float]:
        """Invoke `times` times on `data`; return (dequantised output, host seconds for all runs)."""
        tensor = np.frombuffer(data, dtype=self.input["dtype"]).reshape(self.input["shape"])
        self.interpreter.set_input(tensor, 0)
        start = time.perf_counter()
        for _ in range(times):
            self.interpreter.invoke()
        elapsed = time.perf_counter() - start
        return self._dequantize(self.interpreter.get_output(0).reshape(-1)), elapsed

    def _dequantize(self, raw: np.ndarray) -> np.ndarray:
        q = self.output["quantization_parameters"]
        if np.issubdtype(raw.dtype, np.integer) and len(q["scales"]):
            return dequantize_float32(raw, float(q["scales"][0]), int(q["zero_points"][0]))
        return raw.astype(np.float32)

    def idle_output(self) -> np.ndarray:
        """The output before any inference: a zeroed tensor, dequantised (what th_results prints then)."""
        return self._dequantize(np.zeros(int(np.prod(self.output["shape"])), dtype=self.output["dtype"]))


def dequantize_float32(raw: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer outputs as the reference firmware dequantises them: `((float)q - zero_point) * scale` in
    float32 (mlcommons/tiny DequantizeInt8ToFloat). Float64 arithmetic rounds differently for some
    scales and then prints another `%0.3f` (-0.307 instead of -0.308)."""
    return (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def format_results(values: np.ndarray) -> str:
    """`m-results-[...]` exactly as the reference th_results prints it: each float32 value with %0.3f."""
    return "m-results-[" + ",".join(f"{float(np.float32(v)):0.3f}" for v in values) + "]"


@functools.lru_cache(maxsize=8)
def costmodel_estimate(model: bytes, mcu: str) -> tuple[float, float] | None:
    """(latency_ms, energy_uJ) of one inference from the cost model `edge.power.cost` on the
    MCU profile `mcu` (power_profiles/mcus/), or None if the cost model or profile is missing."""
    try:
        from edge.power.cost import estimate
        from edge.power.profiles import load_mcu
        from edge.power.tflite_graph import parse_tflite
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        try:
            cost = estimate(parse_tflite(path), load_mcu(mcu))
        except Exception:  # an unknown MCU or an op the cost model cannot size: fall back to host time
            return None
    return (cost.latency_ms, cost.energy_uJ) if cost.latency_ms > 0 else None
