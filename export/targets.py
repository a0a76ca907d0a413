"""Resolve TARGET (a family like `cortex-m4`, or a board named by its MCU profile) and check the fit.

Families live in power_profiles/targets.yaml (schema: `target_table.py`); MCU budgets come from
power_profiles/mcus/ through `edge.power.profiles.load_mcu`. A model that does not fit raises
ExportError (exit 4) with the needed and available flash and RAM.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, ExportError
from edge.export.target_table import Runtime, RuntimeReserve, TargetTable, load_target_table


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


def _load_table(path: Path | None = None) -> TargetTable:
    return load_target_table(path or targets_file())


def known_targets(table: TargetTable | None = None) -> list[str]:
    """Every name TARGET accepts: families, aliases and MCU profile names."""
    from edge.power.profiles import list_profiles

    table = table or _load_table()
    return sorted({*table.families, *table.aliases, *list_profiles("mcus")})


def resolve_target(name: str, path: Path | None = None) -> Target:
    """The Target for `name`; unknown names get a 'did you mean'."""
    from edge.power.profiles import list_profiles

    table = _load_table(path)
    key = table.aliases.get(name, name)
    if key in table.families:
        return _family_target(name, key, table)
    if key in list_profiles("mcus"):
        return _board_target(name, key, table)
    known = known_targets(table)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else f"known targets: {', '.join(known)}"
    raise ConfigError(f"unknown target '{name}'", where="target", hint=hint)


def _family_target(name: str, family_name: str, table: TargetTable) -> Target:
    """A family of targets.yaml, its budgets from its MCU profile unless it gives its own."""
    from edge.power.profiles import load_mcu

    family = table.families[family_name]
    mcu = load_mcu(family.mcu) if family.mcu else None
    core = family.core or (mcu.core if mcu else "")
    defaults = table.cores.get(core)
    runtime: Runtime = family.runtime or (defaults.runtime if defaults else "tflm")
    reserve = _reserve(table, runtime)
    flash = family.flash_bytes or (mcu.flash_bytes if mcu else 0)  # the schema asks for one of the two
    ram = family.ram_bytes or (mcu.ram_bytes if mcu else 0)
    return Target(
        name=name, family=family_name, description=family.description, mcu=mcu.name if mcu else None, core=core,
        runtime=runtime, kernels=family.kernels or (defaults.kernels if defaults else "reference"),
        flash_bytes=flash, ram_bytes=ram, reserved_flash_bytes=reserve.reserved_flash_bytes,
        reserved_ram_bytes=reserve.reserved_ram_bytes,
        clock_hz=family.clock_hz or (mcu.clock_hz if mcu else None),
        source=family.source or (f"power_profiles/mcus/{mcu.name}.yaml" if mcu else ""), vela=dict(family.vela),
    )


def _board_target(name: str, mcu_name: str, table: TargetTable) -> Target:
    """A board named by its MCU profile: budgets from the profile, runtime and kernels from its core."""
    from edge.power.profiles import load_mcu

    mcu = load_mcu(mcu_name)
    defaults = table.cores.get(mcu.core)
    runtime: Runtime = defaults.runtime if defaults else "tflm"
    reserve = _reserve(table, runtime)
    return Target(
        name=name, family=mcu.core, description=f"board with MCU profile '{mcu_name}'", mcu=mcu.name, core=mcu.core,
        runtime=runtime, kernels=defaults.kernels if defaults else "reference", flash_bytes=mcu.flash_bytes,
        ram_bytes=mcu.ram_bytes, reserved_flash_bytes=reserve.reserved_flash_bytes,
        reserved_ram_bytes=reserve.reserved_ram_bytes, clock_hz=mcu.clock_hz,
        source=f"power_profiles/mcus/{mcu.name}.yaml",
    )


def _reserve(table: TargetTable, runtime: Runtime) -> RuntimeReserve:
    """The runtime's reserved flash and RAM (none for a runtime the table does not list)."""
    return table.runtimes.get(runtime) or RuntimeReserve()


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
