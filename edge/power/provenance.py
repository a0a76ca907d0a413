"""Where each input figure of a battery evaluation comes from: measured, cited, estimated or given.

A profile figure's status is read from the comment on its line in the YAML (the profiles'
convention): a comment saying 'measured' -> measured; 'est.' / 'estimate' -> estimated; any
other comment (a datasheet with table or page) -> cited; no comment -> estimated (nothing backs it).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from edge.power.profiles import profile_path
from edge.power.schema import DeviceProfile
from edge.power.yamlmarks import load_marked

Status = Literal["measured", "cited", "estimated", "given"]
_EST = re.compile(r"\best\b|\bestimate", re.I)


@dataclass(frozen=True)
class InputFigure:
    """One input of the evaluation, with its status and source."""

    name: str
    value: float
    unit: str
    status: Status
    source: str

    def to_json(self) -> dict[str, Any]:
        """Plain data for lifetime.json."""
        return asdict(self)


@dataclass(frozen=True)
class InferenceSource:
    """Where the energy and latency per inference come from (and the band of an estimate)."""

    status: Status
    source: str
    band: tuple[float, float] | None = None  # relative (low, high) factors around the estimate

    def describe(self) -> str:
        """e.g. 'cost model ..., band x0.70-x1.40'."""
        band = f", band x{self.band[0]:.2f}-x{self.band[1]:.2f}" if self.band else ""
        return f"{self.source}{band}"


def field_status(kind: str, name: str, loc: tuple[str | int, ...]) -> tuple[Status, str]:
    """Status and source text of one profile field, from the comment on its line."""
    path = profile_path(kind, name)
    doc = load_marked(path)
    line = doc.lines.get(loc)
    if line is None:
        return "estimated", f"{kind}/{name}.yaml: default value, no source"
    text = path.read_text(encoding="utf-8").splitlines()[line - 1]
    comment = text.split("#", 1)[1].strip() if "#" in text else ""
    where = f"{kind}/{name}.yaml:{line}"
    if not comment:
        return "estimated", f"{where}: no source on the line"
    if "measured" in comment.lower():
        return "measured", f"{where}: {comment}"
    if _EST.search(comment):
        return "estimated", f"{where}: {comment}"
    return "cited", f"{where}: {comment}"


def _figure(label: str, value: float, unit: str, kind: str, name: str, loc: tuple[str | int, ...]) -> InputFigure:
    status, source = field_status(kind, name, loc)
    return InputFigure(label, float(value), unit, status, source)


def device_inputs(device: DeviceProfile, inference_uJ: float, inference_ms: float, inference: InferenceSource,
                  rate_override: float | None = None) -> list[InputFigure]:
    """The figures that decide the lifetime of `device`, each with its status."""
    from edge.power.profiles import load_camera, load_cell, load_mcu, load_motion, load_radio

    mcu, cam, pir, cell = (load_mcu(device.mcu), load_camera(device.camera), load_motion(device.motion),
                           load_cell(device.cell))
    mode = device.camera_mode or cam.default_mode
    out = [
        InputFigure("energy per inference", inference_uJ, "uJ", inference.status, inference.describe()),
        InputFigure("latency per inference", inference_ms, "ms", inference.status, inference.describe()),
        _figure("MCU sleep current", mcu.sleep_current_uA, "uA", "mcus", mcu.name, ("sleep_current_uA",)),
        _figure("MCU run current", mcu.run_current_uA, "uA", "mcus", mcu.name, ("run_current_uA",)),
        _figure("camera active current", cam.modes[mode].active_current_uA, "uA", "cameras", cam.name,
                ("modes", mode, "active_current_uA")),
        _figure("camera power-up time", cam.power_up_time_ms, "ms", "cameras", cam.name, ("power_up_time_ms",)),
        _figure("PIR quiescent current", pir.quiescent_current_uA, "uA", "motion", pir.name,
                ("quiescent_current_uA",)),
        _figure("PIR pulses per motion", pir.pulses_per_motion, "", "motion", pir.name, ("pulses_per_motion",)),
    ]
    if device.radio:
        radio = load_radio(device.radio)
        out.append(_figure("radio TX current", radio.tx_current_uA, "uA", "radios", radio.name, ("tx_current_uA",)))
    out += [
        _figure("cell capacity", cell.capacity_mAh, "mAh", "cells", cell.name, ("capacity_mAh",)),
        _figure("cell internal resistance", cell.internal_resistance_ohm, "ohm", "cells", cell.name,
                ("internal_resistance_ohm",)),
        _figure("cell self-discharge", cell.self_discharge_pct_per_year, "%/year", "cells", cell.name,
                ("self_discharge_pct_per_year",)),
        _figure("regulator efficiency", device.regulator_efficiency, "", "devices", device.name,
                ("regulator_efficiency",)),
        _figure("other sleep current", device.other_sleep_current_uA, "uA", "devices", device.name,
                ("other_sleep_current_uA",)),
    ]
    if rate_override is not None:
        out.append(InputFigure("event rate", rate_override, "/day", "given", "--rate-per-day / battery config"))
    else:
        out.append(_figure("event rate", device.events.rate_per_day, "/day", "devices", device.name,
                           ("events", "rate_per_day")))
    return out


def shelf_life_source(kind: str, name: str) -> str:
    """The comment that backs a cell's shelf_life_years (the horizon when it caps the simulation)."""
    return field_status(kind, name, ("shelf_life_years",))[1]
