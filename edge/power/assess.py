"""Profile a model on an MCU and assess a device's battery life with it: what the `profile` and `battery`
stages (edge/power/stages/), `edge profile` and `edge battery check` share.

`profile_model`/`write_profile`: a model's cost on the MCU and profile/profile.json with the per-layer tables.
`evaluate_battery`: the lifetime distribution, the gate's verdict and the battery reports (lifetime.json,
plots, JUnit XML, Markdown summary).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.atomic import atomic_write_json, atomic_write_text
from edge.config import BatteryConfig
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


def record_profiles(run: StageRun, battery: BatteryConfig) -> None:
    """Record the device profile and its parts as a stage's inputs, so editing a profile reruns the stage."""
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


def cost_source(cost: InferenceCost) -> InferenceSource:
    """The inference figures of a cost-model estimate, with its band."""
    return InferenceSource("estimated", f"cost model on {cost.mcu}, kernel set {cost.kernel_set or 'profile estimates'}"
                           f"{'' if cost.measured_points else ', no measured point of this MCU'}", cost.band)
