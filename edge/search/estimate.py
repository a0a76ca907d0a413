"""Cheap before dear: what a trial's settings can give, from arithmetic on the model spec, before training.

The prune stage makes the exported model somewhere between the trained model (when accuracy-aware
pruning undoes its first step) and the largest plan within the prune budget (`solve_plan`). A trial is
rejected before training only when even that smallest model cannot meet a limit:

- flash: `int8_bytes_estimate` of the plan (within 0.5 % of real files) + the runtime's reserve;
- RAM: `ram_bytes_estimate` of the plan (activation scratch only: TFLM's own structures come on top, so
  it is a lower bound) + one input frame + the runtime's reserve;
- energy: MAC-only cycles (the MCU profile's fully-connected cycles per MAC) on the battery's MCU at its
  inference power, times the cost model's low band end (x0.5), against the largest energy per inference
  that still meets the lifetime target (`lifetime_budget_uJ`, from the battery simulator's headroom);
- validity: the widths combine into a model and the prune budget can be met at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.config import BatteryConfig, RunConfig
from edge.errors import ConfigError
from edge.search.constraints import ratio

#: The cost model's estimate band starts at x0.5 (edge.power.cost.ESTIMATE_BAND): reject only below it.
ENERGY_MARGIN = 0.5
#: A reference inference for the lifetime budget (scaled by the simulator's headroom).
REFERENCE_UJ, REFERENCE_MS = 1000.0, 100.0


@dataclass(frozen=True)
class DataShape:
    """What the estimates need of the data set: channels and class count."""

    channels: int
    num_classes: int


@dataclass
class Estimate:
    """A trial's figures before training; `reason` says why it is rejected (None: train it)."""

    reason: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    constraints: dict[str, float] = field(default_factory=dict)

    @property
    def energy_uJ(self) -> float:
        """The MAC-only energy estimate of the smallest model the trial can give (0 when unknown)."""
        return float(self.figures.get("energy_uJ_mac_only", 0.0))


def lifetime_budget_uJ(battery: BatteryConfig, out_dir: Path) -> float:
    """The largest energy per inference that still meets battery.min_lifetime at battery.confidence
    (the simulator's headroom; inf when the inference does not matter, 0 when nothing meets it).
    Writes the simulation's reports to `out_dir`."""
    from edge.power.assess import evaluate_battery
    from edge.power.provenance import InferenceSource

    out_dir.mkdir(parents=True, exist_ok=True)
    source = InferenceSource("given", "edge search: a reference inference, scaled by the lifetime headroom")
    outcome = evaluate_battery(battery, REFERENCE_UJ, REFERENCE_MS, "edge search reference", out_dir, source)
    if not outcome.gate.passed and outcome.gate.headroom is None:
        return 0.0
    top = (outcome.gate.headroom or {}).get("max_inference_uJ")
    return math.inf if top is None else float(top)


def mac_energy_uJ(macs: int, battery: BatteryConfig) -> float:
    """MAC-only energy of one int8 inference on the battery's MCU (profile cycles per MAC, inference power)."""
    from edge.power.profiles import load_device, load_mcu

    mcu = load_mcu(battery.mcu or load_device(battery.device).mcu)
    costs = getattr(mcu.kernels, battery.kernels)
    power_uW, _ = mcu.inference_power()
    return macs * costs.fully_connected_cycles_per_mac / mcu.clock_hz * power_uW


def estimate(config: RunConfig, shape: DataShape, energy_budget_uJ: float) -> Estimate:
    """Check a trial's resolved config before training (see the module docstring)."""
    from edge.export.targets import resolve_target
    from edge.training.prune_plan import (
        Budget,
        Dims,
        int8_bytes_estimate,
        ram_bytes_estimate,
        solve_plan,
        spec_macs,
        spec_params,
    )

    image = config.data.image_size or 64
    try:
        spec = config.model.spec(image, shape.channels, shape.num_classes)
    except ConfigError as exc:
        return Estimate(f"invalid settings: {exc.message}", constraints={"valid": 1.0})
    figures: dict[str, Any] = {"model": spec.name, "params": spec_params(spec), "macs": spec_macs(spec)}
    plan = spec
    if config.prune.enabled:
        p = config.prune
        budget = Budget(params_ratio=p.params_ratio, int8_ratio=p.int8_ratio, max_macs=p.max_macs,
                        flash_bytes=p.flash_bytes, ram_bytes=p.ram_bytes)
        try:
            plan = solve_plan(spec, budget.limits(spec), Dims(p.heads, p.mlp, p.embed, p.min_embed_dim))
        except ConfigError as exc:
            return Estimate(f"prune: {exc.message}", figures, {"valid": 1.0})
    target = resolve_target(config.target)
    act_bytes = 2 if config.qat.activation_bits == 16 else 1
    flash = int8_bytes_estimate(plan) + target.reserved_flash_bytes
    ram = act_bytes * ram_bytes_estimate(plan) + image * image * shape.channels + target.reserved_ram_bytes
    energy = mac_energy_uJ(spec_macs(plan), config.battery)
    figures.update({"pruned_params": spec_params(plan), "pruned_macs": spec_macs(plan), "flash_needed_bytes": flash,
                    "ram_needed_bytes": ram, "energy_uJ_mac_only": round(energy, 2),
                    "energy_budget_uJ": None if math.isinf(energy_budget_uJ) else round(energy_budget_uJ, 2)})
    constraints = {"flash": ratio(flash, target.flash_bytes), "ram": ratio(ram, target.ram_bytes),
                   "lifetime": 0.0 if math.isinf(energy_budget_uJ) else
                   (1.0 if energy_budget_uJ <= 0 else ratio(ENERGY_MARGIN * energy, energy_budget_uJ))}
    problems = []
    if constraints["flash"] > 0:
        problems.append(f"flash: needs at least {flash:,} B, target '{target.name}' has {target.flash_bytes:,} B")
    if constraints["ram"] > 0:
        problems.append(f"RAM: needs at least {ram:,} B, target '{target.name}' has {target.ram_bytes:,} B")
    if constraints["lifetime"] > 0:
        problems.append(f"energy: at least {ENERGY_MARGIN * energy:,.0f} uJ per inference (estimated), the "
                        f"lifetime target allows {energy_budget_uJ:,.0f} uJ")
    return Estimate("; ".join(problems) or None, figures, constraints)
