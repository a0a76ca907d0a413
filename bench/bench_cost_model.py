"""Cost model vs published MLPerf Tiny Visual Wake Words results (MobileNetV1-0.25, 96x96x3).

Builds the VWW architecture as int8 .tflite in a child process (TensorFlow), then prints the
estimated latency/energy per MCU profile that carries an MLPerf point, with ratios to the
published figures. The per-class cycle figures were calibrated on these points (see
docs/power.md), so this guards the calibration and the graph parser rather than validating
the model independently. Run: .venv/bin/python bench/bench_cost_model.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from edge.power.cost import estimate_file
from edge.power.profiles import list_profiles, load_mcu
from edge.power.tfmodels import build


def main() -> None:
    """Print estimated vs published figures."""
    with tempfile.TemporaryDirectory() as tmp:
        model = build(Path(tmp), ("mobilenet_v1_025_int8",))["mobilenet_v1_025_int8"]
        for name in list_profiles("mcus"):
            mcu = load_mcu(name)
            cost = estimate_file(model, mcu)
            line = f"{name:12s} {cost.macs:,} MACs  est. {cost.latency_ms:7.1f} ms {cost.energy_uJ:8.0f} uJ"
            for point in mcu.mlperf_tiny:
                line += (f" | MLPerf {point.latency_ms:.1f} ms {point.energy_uJ or float('nan'):.0f} uJ -> latency "
                         f"x{cost.latency_ms / point.latency_ms:.2f}")
                if point.energy_uJ:
                    line += f", energy x{cost.energy_uJ / point.energy_uJ:.2f}"
            print(line)


if __name__ == "__main__":
    main()
