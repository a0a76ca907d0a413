"""Resolve TARGET (a family like `cortex-m4`, or a board named by its MCU profile) and check the fit.

Families live in power_profiles/targets.yaml; MCU budgets come from power_profiles/mcus/ through
`edge.power.profiles.load_mcu`. A model that does not fit raises ExportError (exit 4) with the
needed and available flash and RAM.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge.errors import ConfigError, ExportError

RUNTIMES = ("tflm", "vela", "litert")


@dataclass
class Target:
    """A resolved export target: budgets, runtime and kernels."""

    name: str
    family: str
    description: str
    mcu: str | None
    core: str
    runtime: str
    kernels: str
    flash_bytes: int
    ram_bytes: int
    reserved_flash_bytes: int
    reserved_ram_bytes: int
    clock_hz: int | None = None
    source: str = ""
    vela: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for report.json."""
        return asdict(self)


def targets_file() -> Path:
    """power_profiles/targets.yaml (next to the MCU profiles)."""
    from edge.power.profiles import profiles_dir

    return profiles_dir() / "targets.yaml"


def _load_table(path: Path | None = None) -> dict[str, Any]:
    path = path or targets_file()
    try:
        table = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the target table: {exc}", where=str(path)) from exc
    if not isinstance(table, dict) or "families" not in table:
        raise ConfigError("the target table needs a 'families' mapping", where=str(path))
    return table


def known_targets(table: dict[str, Any] | None = None) -> list[str]:
    """Every name TARGET accepts: families, aliases and MCU profile names."""
    from edge.power.profiles import list_profiles

    table = table or _load_table()
    return sorted({*table["families"], *(table.get("aliases") or {}), *list_profiles("mcus")})


def resolve_target(name: str, path: Path | None = None) -> Target:
    """The Target for `name`; unknown names get a 'did you mean'."""
    from edge.power.profiles import list_profiles, load_mcu

    table = _load_table(path)
    where = str(path or targets_file())
    key = (table.get("aliases") or {}).get(name, name)
    if key in table["families"]:
        entry = dict(table["families"][key])
        family = key
    elif key in list_profiles("mcus"):
        entry = {"mcu": key, "description": f"board with MCU profile '{key}'"}
        family = None
    else:
        known = known_targets(table)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else f"known targets: {', '.join(known)}"
        raise ConfigError(f"unknown target '{name}'", where="target", hint=hint)
    mcu = None
    if entry.get("mcu"):
        mcu = load_mcu(entry["mcu"])
        entry.setdefault("core", mcu.core)
        entry.setdefault("flash_bytes", mcu.flash_bytes)
        entry.setdefault("ram_bytes", mcu.ram_bytes)
        entry.setdefault("clock_hz", mcu.clock_hz)
        entry.setdefault("source", f"power_profiles/mcus/{mcu.name}.yaml")
    core_defaults = (table.get("cores") or {}).get(entry.get("core", ""), {})
    runtime = entry.get("runtime", core_defaults.get("runtime", "tflm"))
    if runtime not in RUNTIMES:
        raise ConfigError(f"target '{name}': unknown runtime '{runtime}'", where=where, hint=f"one of {RUNTIMES}")
    reserve = (table.get("runtimes") or {}).get(runtime, {})
    try:
        return Target(
            name=name,
            family=family or entry.get("core", "unknown"),
            description=str(entry.get("description", "")),
            mcu=mcu.name if mcu else None,
            core=str(entry["core"]),
            runtime=runtime,
            kernels=str(entry.get("kernels", core_defaults.get("kernels", "reference"))),
            flash_bytes=int(entry["flash_bytes"]),
            ram_bytes=int(entry["ram_bytes"]),
            reserved_flash_bytes=int(reserve.get("reserved_flash_bytes", 0)),
            reserved_ram_bytes=int(reserve.get("reserved_ram_bytes", 0)),
            clock_hz=entry.get("clock_hz"),
            source=str(entry.get("source", "")),
            vela=dict(entry.get("vela") or {}),
        )
    except KeyError as exc:
        raise ConfigError(f"target '{key}' lacks field {exc}", where=where) from exc


def check_fit(target: Target, model_bytes: int, arena_bytes: int, frame_bytes: int) -> dict[str, Any]:
    """Flash and RAM needed vs available; raise ExportError with the numbers when it does not fit."""
    flash_needed = model_bytes + target.reserved_flash_bytes
    ram_needed = arena_bytes + frame_bytes + target.reserved_ram_bytes
    fit = {
        "flash_needed_bytes": flash_needed, "flash_available_bytes": target.flash_bytes,
        "ram_needed_bytes": ram_needed, "ram_available_bytes": target.ram_bytes,
        "model_bytes": model_bytes, "arena_bytes": arena_bytes, "frame_bytes": frame_bytes,
        "reserved_flash_bytes": target.reserved_flash_bytes, "reserved_ram_bytes": target.reserved_ram_bytes,
        "flash_used_fraction": round(flash_needed / target.flash_bytes, 4),
        "ram_used_fraction": round(ram_needed / target.ram_bytes, 4),
    }
    problems = []
    if flash_needed > target.flash_bytes:
        problems.append(f"flash: needs {flash_needed:,} B (model {model_bytes:,} + runtime "
                        f"{target.reserved_flash_bytes:,}) but {target.flash_bytes:,} B are available")
    if ram_needed > target.ram_bytes:
        problems.append(f"RAM: needs {ram_needed:,} B (arena {arena_bytes:,} + frame {frame_bytes:,} + other "
                        f"{target.reserved_ram_bytes:,}) but {target.ram_bytes:,} B are available")
    if problems:
        raise ExportError(
            f"the model does not fit target '{target.name}' ({target.description}): " + "; ".join(problems),
            where="target",
            hint="prune harder (prune.*), pick a smaller model (model.name), or a bigger target",
        )
    return fit
