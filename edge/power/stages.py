"""Pipeline stages `profile` and `battery` (entries in edge.pipeline.STAGES).

profile: export.tflite_int8 -> profile/profile.json (+ per-layer CSV/Markdown) on the device's MCU.
battery: profile.profile -> battery/lifetime.json, plots, JUnit XML and a Markdown summary. The
stage records the gate's verdict but never fails the pipeline; `edge battery check` is the gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.atomic import atomic_write_json, atomic_write_text
from edge.config import BatteryConfig, RunConfig
from edge.manifest import StageRun
from edge.power.cost import InferenceCost, estimate_file, layer_table_csv, layer_table_markdown
from edge.power.device import DeviceModel, build_device
from edge.power.durations import parse_duration_days
from edge.power.fit import data_file as fitted_data_file
from edge.power.gate import GateResult, evaluate, write_reports
from edge.power.headroom import headroom
from edge.power.inputs import Range, check
from edge.power.plots import plot_breakdown, plot_soc
from edge.power.profiles import load_device, load_mcu, profile_path
from edge.power.provenance import InferenceSource, device_inputs, shelf_life_source
from edge.power.simulate import SimOptions, SimResult, simulate


def profile_model(model: Path, battery: BatteryConfig) -> InferenceCost:
    """Cost of `model` on the configured MCU (default: the MCU of the configured device)."""
    mcu_name = battery.mcu or load_device(battery.device).mcu
    return estimate_file(model, load_mcu(mcu_name), battery.kernels)


def write_profile(cost: InferenceCost, folder: Path) -> dict[str, Path]:
    """profile.json, layers.csv and layers.md in `folder`."""
    paths = {"profile": folder / "profile.json", "layers_csv": folder / "layers.csv", "layers_md": folder / "layers.md"}
    atomic_write_json(paths["profile"], cost.to_json())
    atomic_write_text(paths["layers_csv"], layer_table_csv(cost))
    atomic_write_text(paths["layers_md"], layer_table_markdown(cost))
    return paths


@dataclass
class BatteryOutcome:
    """Everything one battery evaluation produced."""

    sim: SimResult
    gate: GateResult
    files: dict[str, Path]


def sim_options(battery: BatteryConfig, target_days: float, inference_band: tuple[float, float] | None = None
                ) -> SimOptions:
    """Simulation options from the config; the horizon always covers 1.2x the target; the inference energy
    is sampled from its band (an estimate's cross-validated spread)."""
    return SimOptions(
        runs=battery.runs, seed=battery.seed, max_years=max(battery.max_years, 1.2 * target_days / 365.25),
        event_rate_per_day=battery.event_rate_per_day, process=battery.process, inference_band=inference_band,
    )


def evaluate_battery(battery: BatteryConfig, inference_uJ: float, inference_ms: float, model_name: str,
                     out_dir: Path, inference: InferenceSource | None = None) -> BatteryOutcome:
    """Simulate the configured device with this inference cost, judge the target and write the reports.

    `inference` says where the inference figures come from (default: given, unverified)."""
    inference = inference or InferenceSource("given", "inference figures given to evaluate_battery")
    target_days = parse_duration_days(battery.min_lifetime, where="battery.min_lifetime")
    check(inference_uJ, "inference energy_uJ", model_name)
    check(inference_ms, "inference latency_ms", model_name)
    if battery.event_rate_per_day is not None:
        check(battery.event_rate_per_day, "battery.event_rate_per_day", "battery config", Range(0.0, True, 1e6))
    device = load_device(battery.device)
    if battery.frames_per_event is not None:
        behaviour = device.behaviour.model_copy(update={"frames_per_event": battery.frames_per_event})
        device = device.model_copy(update={"behaviour": behaviour})
    model = build_device(device, inference_uJ, inference_ms)
    opts = sim_options(battery, target_days, inference.band)
    sim = simulate(model, device, opts, base_dir=profile_path("devices", device.name).parent)
    horizon = float(sim.soc_days[-1]) if sim.censored.any() else opts.max_years * 365.25
    assert sim.loads is not None
    room = headroom(sim.loads, target_days, battery.confidence, inference_uJ,
                    battery.event_rate_per_day if battery.event_rate_per_day is not None
                    else device.events.rate_per_day, device.behaviour.refractory_s)
    inputs = device_inputs(device, inference_uJ, inference_ms, inference, battery.event_rate_per_day)
    gate = evaluate(sim, target_days, battery.confidence, device.name, model_name, horizon, headroom=room,
                    inputs=inputs, horizon_note=_horizon_note(model, opts))
    files = {
        "soc_plot": plot_soc(sim, out_dir / "soc.png", f"{device.name}: state of charge", target_days),
        "breakdown_plot": plot_breakdown(sim, out_dir / "breakdown.png", f"{device.name}: where the charge goes"),
    }
    files["junit"], files["summary"] = out_dir / "junit.xml", out_dir / "summary.md"
    write_reports(gate, files["junit"], files["summary"], {"state of charge": "soc.png", "breakdown": "breakdown.png"})
    files["lifetime"] = out_dir / "lifetime.json"
    data = lifetime_json(gate, sim, model, battery, inference_uJ, inference_ms, inference)
    atomic_write_json(files["lifetime"], data)
    return BatteryOutcome(sim, gate, files)


def _horizon_note(model: DeviceModel, opts: SimOptions) -> str:
    """Why the simulation stops where it does: the cell's rated shelf life (with its source) or max_years."""
    shelf = model.cell.shelf_life_years
    if shelf is not None and shelf <= opts.max_years:
        return f"capped at the cell's rated shelf life of {shelf:g} y ({shelf_life_source('cells', model.cell.name)})"
    text = f"simulated horizon battery.max_years = {opts.max_years:g} y (--max-years)"
    if shelf is not None:
        text += f"; the cell's rated shelf life is {shelf:g} y ({shelf_life_source('cells', model.cell.name)})"
    return text


def lifetime_json(gate: GateResult, sim: SimResult, model: DeviceModel, battery: BatteryConfig, inference_uJ: float,
                  inference_ms: float, inference: InferenceSource | None = None) -> dict[str, Any]:
    """The lifetime artifact: gate verdict, distribution summary, per-state energies, settings."""
    return {
        "gate": gate.to_json(),
        "runs": int(sim.lifetimes_days.size),
        "events_simulated": sim.events,
        "captures_simulated": sim.captures,
        "usable_capacity_mAh": sim.capacity_mAh,
        "device_model": {
            "sleep_current_uA": model.sleep_current_uA,
            "event_charge_uC": model.event_charge_uC(),
            "capture_energy_uJ": model.capture_energy_uJ,
            "inference_energy_uJ": model.inference_energy_uJ,
            "uplink_energy_uJ": model.uplink_energy_uJ,
            "wake_energy_uJ": model.wake_energy_uJ,
            "beacon_power_uW": model.beacon_power_uW,
            "peaks": [{"state": p.state, "battery_current_mA": p.battery_current_mA, "duration_ms": p.duration_ms}
                      for p in model.peaks],
        },
        "inference": {"energy_uJ": inference_uJ, "latency_ms": inference_ms,
                      "status": inference.status if inference else "given",
                      "source": inference.source if inference else "",
                      "band": list(inference.band) if inference and inference.band else None},
        "config": battery.model_dump(mode="json"),
    }


def _record_profiles(run: StageRun, battery: BatteryConfig) -> None:
    """Record the device profile and its parts as inputs, so editing a profile reruns the stage."""
    device = load_device(battery.device)
    parts = {"devices": device.name, "mcus": battery.mcu or device.mcu, "cameras": device.camera,
             "motion": device.motion, "cells": device.cell}
    if device.radio:
        parts["radios"] = device.radio
    for kind, name in parts.items():
        run.external_input(f"power_profiles.{kind}.{name}", profile_path(kind, name))
    run.external_input("power_profiles.measurements.mlperf_tiny", fitted_data_file())
    for path in sorted((fitted_data_file().parents[1] / "kernels").glob("*.yaml")):
        run.external_input(f"power_profiles.kernels.{path.stem}", path)


def _target_mcu(run: StageRun) -> str | None:
    """The MCU profile of the export target, from the export stage's report.json (None if unknown)."""
    export = run.manifest.stages.get("export")
    if export is None or "report" not in export.outputs:
        return None
    report = json.loads(run.input("export", "report").read_text(encoding="utf-8"))
    return (report.get("target") or {}).get("mcu")


def run_profile(run: StageRun, config: RunConfig) -> None:
    """Stage `profile`: cost of the exported int8 model on the export target's MCU (else the device's),
    plus, when it differs, on the MCU the battery stage simulates (`battery_mcu` in profile.json)."""
    model = run.input("export", "tflite_int8")
    _record_profiles(run, config.battery)
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


def _profile_source(profile: dict[str, Any], cost: dict[str, Any]) -> InferenceSource:
    """The inference figures of profile.json: a cost-model estimate with its band."""
    band = cost.get("band", profile.get("band"))
    return InferenceSource("estimated", f"cost model on {cost.get('mcu', profile.get('mcu'))}, "
                           f"kernel set {profile.get('kernel_set') or 'profile estimates'}",
                           (float(band[0]), float(band[1])) if band else None)


def cost_source(cost: InferenceCost) -> InferenceSource:
    """The inference figures of a cost-model estimate, with its band."""
    return InferenceSource("estimated", f"cost model on {cost.mcu}, kernel set {cost.kernel_set or 'profile estimates'}"
                           f"{'' if cost.measured_points else ', no measured point of this MCU'}", cost.band)


def run_battery(run: StageRun, config: RunConfig) -> None:
    """Stage `battery`: lifetime distribution and gate verdict (recorded, never fails the pipeline)."""
    profile = json.loads(run.input("profile", "profile").read_text(encoding="utf-8"))
    _record_profiles(run, config.battery)
    cost = profile.get("battery_mcu", profile)  # the device's MCU when the export target differs
    outcome = evaluate_battery(config.battery, float(cost["energy_uJ"]), float(cost["latency_ms"]),
                               profile["model"], run.dir, _profile_source(profile, cost))
    for key, path in outcome.files.items():
        run.output(key, path)
    g = outcome.gate
    run.metrics.update({
        "device": g.device,
        "lifetime_p5_days": round(g.lifetime_p5_days, 1),
        "lifetime_p50_days": round(g.lifetime_p50_days, 1),
        "lifetime_p95_days": round(g.lifetime_p95_days, 1),
        "target_days": round(g.target_days, 1),
        "avg_current_uA": round(g.avg_current_uA, 3),
        "gate_passed": g.passed,
    })
    run.notes.append(g.message.splitlines()[0])
    run.notes.extend(g.warnings)
