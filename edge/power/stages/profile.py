"""The `profile` stage: export.tflite_int8 -> profile/profile.json (+ per-layer CSV and Markdown), the model's
cost on the export target's MCU (and on the battery device's MCU when it differs)."""

from __future__ import annotations

import json

from edge.atomic import atomic_write_json
from edge.config import RunConfig
from edge.manifest import StageRun
from edge.power.assess import record_profiles, write_profile
from edge.power.cost import estimate_file
from edge.power.profiles import load_device, load_mcu


def _target_mcu(run: StageRun) -> str | None:
    """The MCU profile of the export target, from the export stage's report.json (None if unknown)."""
    export = run.manifest.stages.get("export")
    if export is None or "report" not in export.outputs:
        return None
    report = json.loads(run.input("export", "report").read_text(encoding="utf-8"))
    return (report.get("target") or {}).get("mcu")


def run_stage(run: StageRun, config: RunConfig) -> None:
    """Stage `profile`: cost of the exported int8 model on the export target's MCU (else the device's),
    plus, when it differs, on the MCU the battery stage simulates (`battery_mcu` in profile.json)."""
    model = run.input("export", "tflite_int8")
    record_profiles(run, config.battery)
    battery_mcu = config.battery.mcu or load_device(config.battery.device).mcu
    main_mcu = _target_mcu(run) or battery_mcu
    cost = estimate_file(model, load_mcu(main_mcu), config.battery.kernels)
    paths = write_profile(cost, run.dir)
    if main_mcu != battery_mcu:
        other = estimate_file(model, load_mcu(battery_mcu), config.battery.kernels)
        data = json.loads(paths["profile"].read_text(encoding="utf-8"))
        data["battery_mcu"] = {"mcu": other.mcu, "latency_ms": other.latency_ms, "energy_uJ": other.energy_uJ,
                               "cycles": other.cycles, "band": list(other.band), "kernel_set": other.kernel_set}
        atomic_write_json(paths["profile"], data)
        run.notes.append(f"costed on the target MCU {main_mcu}; the battery stage uses {battery_mcu} "
                         f"({other.latency_ms:.1f} ms, {other.energy_uJ:.0f} uJ)")
    for key, path in paths.items():
        run.output(key, path)
    run.metrics.update({
        "mcu": cost.mcu, "macs": cost.macs, "latency_ms": round(cost.latency_ms, 3),
        "energy_uJ": round(cost.energy_uJ, 2), "model_bytes": cost.model_bytes, "fits_flash": cost.fits_flash,
        "kernel_set": cost.kernel_set or "profile estimates", "band": [round(b, 3) for b in cost.band],
        "measured_points": len(cost.measured_points),
    })
    run.notes.append(f"latency/energy are cost-model estimates (band x{cost.band[0]:.2f}-x{cost.band[1]:.2f}; "
                     f"{cost.basis}), not measurements; see docs/power.md")
