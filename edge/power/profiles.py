"""Find, load and validate the YAML power profiles in power_profiles/<kind>/<name>.yaml.

Public API (used by other stages too, e.g. export reads flash/RAM budgets):
`load_mcu(name)`, `load_camera`, `load_motion`, `load_radio`, `load_cell`, `load_device`,
`load_profile(kind, name)`, `list_profiles(kind)` and `profiles_dir()`.
Errors name the file, the line and the field, and suggest a fix.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from edge.errors import ConfigError
from edge.power.schema import (
    CameraProfile,
    CellProfile,
    DeviceProfile,
    McuProfile,
    MotionProfile,
    RadioProfile,
)
from edge.power.yamlmarks import MarkedYaml, load_marked

KINDS: dict[str, type[BaseModel]] = {
    "mcus": McuProfile,
    "cameras": CameraProfile,
    "motion": MotionProfile,
    "radios": RadioProfile,
    "cells": CellProfile,
    "devices": DeviceProfile,
}
UNITS = ("uA", "mA", "A", "uW", "mW", "W", "uJ", "mJ", "J", "us", "ms", "s", "V", "Hz", "bytes", "mAh", "ohm",
         "C", "dBm", "px", "bps", "pct_per_year", "per_day", "per_mac", "per_element", "cycles")
M = TypeVar("M", bound=BaseModel)


def profiles_dir() -> Path:
    """The profiles folder: $EDGE_POWER_PROFILES, else power_profiles/ at the repository root."""
    env = os.environ.get("EDGE_POWER_PROFILES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "power_profiles"


def _kind(kind: str) -> type[BaseModel]:
    if kind not in KINDS:
        raise ConfigError(f"unknown profile kind '{kind}'", hint=f"kinds are: {', '.join(KINDS)}")
    return KINDS[kind]


def list_profiles(kind: str, root: Path | None = None) -> list[str]:
    """Names of the profiles of one kind ('mcus', 'cameras', 'motion', 'radios', 'cells', 'devices')."""
    _kind(kind)
    folder = (root or profiles_dir()) / kind
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def profile_path(kind: str, name: str, root: Path | None = None) -> Path:
    """Path of a named profile, with a 'did you mean' hint when it does not exist."""
    path = (root or profiles_dir()) / kind / f"{name}.yaml"
    if not path.is_file():
        known = list_profiles(kind, root)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known {kind}: {', '.join(known) or 'none'}"
        raise ConfigError(f"no {kind[:-1] if kind.endswith('s') else kind} profile named '{name}'", where=str(path),
                          hint=hint)
    return path


def _field_message(err: ErrorDetails, model: type[BaseModel], loc: tuple[str | int, ...]) -> tuple[str, str | None]:
    """Human message for one pydantic error and an optional hint (unit mistakes get their own)."""
    field = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        key = str(loc[-1])
        known = _known_fields(model, loc[:-1])
        stem = key.rsplit("_", 1)[0] if key.rsplit("_", 1)[-1] in UNITS else key
        with_unit = [k for k in known if k.startswith(stem + "_") and k.rsplit("_", 1)[-1] in UNITS]
        if key not in known and stem == key and with_unit:
            return f"field '{field}': missing unit: the key must name its unit, e.g. '{with_unit[0]}'", None
        if stem != key and with_unit:
            return f"field '{field}': wrong unit: this quantity is given as '{with_unit[0]}'", "convert the value"
        close = difflib.get_close_matches(key, known, n=1)
        return f"field '{field}': unknown key", (f"did you mean '{close[0]}'?" if close else None)
    if err["type"] == "missing":
        return f"field '{field}': required key is missing", None
    got = err.get("input")
    got_text = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
    msg = err["msg"].removeprefix("Value error, ")
    return f"field '{field}': {msg}{got_text}", None


def _known_fields(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the (sub)model at `loc` (best effort; [] when it cannot be followed)."""
    current: Any = model
    keyed = False  # the last field was a mapping: the next part is one of its keys, not a field
    for part in loc:
        if isinstance(part, int) or keyed or not (isinstance(current, type) and issubclass(current, BaseModel)):
            keyed = False
            continue
        info = current.model_fields.get(part)
        if info is None:
            return []
        annotation = info.annotation
        keyed = getattr(annotation, "__origin__", None) is dict
        args = [a for a in getattr(annotation, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        current = args[-1] if args else annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _refine_loc(doc: MarkedYaml, loc: tuple[str | int, ...], msg: str) -> tuple[str | int, ...]:
    """A whole-model check has no field in its loc: use the first key of that mapping its message names."""
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", msg):
        if (*loc, word) in doc.lines:
            return (*loc, word)
    return loc


def validate_marked(doc: MarkedYaml, model: type[M], hint: str = "see docs/power.md for the profile schema") -> M:
    """Validate parsed YAML against `model`; the error names file:line, the field and what is wrong, and
    `hint` (where the schema is documented) when there is no better one."""
    if not isinstance(doc.data, dict):
        raise ConfigError("a profile must be a YAML mapping of keys to values", where=doc.where(()))
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        order = {"extra_forbidden": 0, "missing": 2}
        errors = sorted(exc.errors(), key=lambda e: order.get(e["type"], 1))
        first = errors[0]
        loc = _refine_loc(doc, tuple(first["loc"]), first["msg"])
        message, better = _field_message(first, model, loc)
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        raise ConfigError(message, where=doc.where(loc), hint=better or hint) from exc


def load_file(kind: str, path: str | os.PathLike[str]) -> BaseModel:
    """Load and validate one profile file of `kind`."""
    model = _kind(kind)
    doc = load_marked(path)
    profile = validate_marked(doc, model)
    name = getattr(profile, "name", None)
    if name is not None and name != Path(path).stem:
        raise ConfigError(
            f"field 'name': '{name}' does not match the file name '{Path(path).stem}'",
            where=doc.where(("name",)),
            hint="a profile's name must equal its file name without .yaml",
        )
    return profile


@functools.lru_cache(maxsize=256)
def _load_cached(kind: str, path: str, mtime_ns: int) -> BaseModel:
    return load_file(kind, path)


def load_profile(kind: str, name: str, root: Path | None = None) -> BaseModel:
    """Load a named profile of `kind` (cached while the file does not change)."""
    path = profile_path(kind, name, root)
    return _load_cached(kind, str(path), path.stat().st_mtime_ns)


def load_mcu(name: str, root: Path | None = None) -> McuProfile:
    """The MCU profile `name` (e.g. 'stm32l4r5'): flash_bytes, ram_bytes, core, clock_hz, currents, kernels."""
    return load_profile("mcus", name, root)  # type: ignore[return-value]


def load_camera(name: str, root: Path | None = None) -> CameraProfile:
    """The camera profile `name` (e.g. 'hm01b0')."""
    return load_profile("cameras", name, root)  # type: ignore[return-value]


def load_motion(name: str, root: Path | None = None) -> MotionProfile:
    """The motion-sensor profile `name` (e.g. 'ekmb1101111')."""
    return load_profile("motion", name, root)  # type: ignore[return-value]


def load_radio(name: str, root: Path | None = None) -> RadioProfile:
    """The radio profile `name` (e.g. 'nrf52840-ble', 'sx1262')."""
    return load_profile("radios", name, root)  # type: ignore[return-value]


def load_cell(name: str, root: Path | None = None) -> CellProfile:
    """The cell profile `name` (e.g. 'cr2032')."""
    return load_profile("cells", name, root)  # type: ignore[return-value]


def load_device(name: str, root: Path | None = None) -> DeviceProfile:
    """The device profile `name`; every part it names must exist."""
    device: DeviceProfile = load_profile("devices", name, root)  # type: ignore[assignment]
    parts = {"mcus": device.mcu, "cameras": device.camera, "motion": device.motion, "cells": device.cell}
    if device.radio:
        parts["radios"] = device.radio
    for kind, part in parts.items():
        try:
            load_profile(kind, part, root)
        except ConfigError as exc:  # keep the part's file:line; say which device needed it
            raise ConfigError(f"{exc.message} (part '{part}' of device '{name}')", where=exc.where,
                              hint=exc.hint) from exc
    camera = load_camera(device.camera, root)
    if device.camera_mode is not None and device.camera_mode not in camera.modes:
        path = profile_path("devices", name, root)
        raise ConfigError(
            f"field 'camera_mode': '{device.camera_mode}' is not a mode of camera '{camera.name}'",
            where=str(path), hint=f"modes: {', '.join(camera.modes)}",
        )
    return device
