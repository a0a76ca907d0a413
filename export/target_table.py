"""The schema of power_profiles/targets.yaml: export target families, aliases, runtimes and core defaults.

Strict like the power profiles (`edge.power.schema.Strict`): unknown keys, a wrong type, a
negative budget, a family with neither an MCU profile nor its own budget (with a source), an
alias to nothing are errors that name file:line and the field (`load_target_table`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from edge.power.schema import CORES, Strict

Runtime = Literal["tflm", "vela", "litert"]
RUNTIMES: tuple[Runtime, ...] = ("tflm", "vela", "litert")
SCHEMA_HINT = "see docs/export.md ('Targets') for power_profiles/targets.yaml"


class RuntimeReserve(Strict):
    """What a runtime takes beside the model: code in flash, stack and objects in RAM."""

    reserved_flash_bytes: int = Field(0, ge=0)
    reserved_ram_bytes: int = Field(0, ge=0)


class CoreDefaults(Strict):
    """Runtime and kernels of a board named by its MCU profile, by the profile's core."""

    runtime: Runtime
    kernels: str = Field(min_length=1)


class Family(Strict):
    """One TARGET family: an MCU profile (its budgets) or a budget of its own with a source."""

    description: str = Field(min_length=1)
    mcu: str | None = Field(None, min_length=1, description="a profile in power_profiles/mcus/")
    core: str | None = None
    runtime: Runtime | None = None
    kernels: str | None = None
    flash_bytes: PositiveInt | None = None
    ram_bytes: PositiveInt | None = None
    clock_hz: PositiveInt | None = None
    source: str | None = None
    vela: dict[str, str] = Field(default_factory=dict, description="ethos-u-vela options (runtime vela)")

    @model_validator(mode="after")
    def _budget_known(self) -> Family:
        if self.mcu is None:
            missing = [k for k in ("core", "flash_bytes", "ram_bytes", "source") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"without 'mcu' a family gives its own {', '.join(missing)}")
        if self.vela and self.runtime != "vela":
            raise ValueError("vela options need runtime: vela")
        return self


class TargetTable(Strict):
    """The whole power_profiles/targets.yaml."""

    runtimes: dict[Runtime, RuntimeReserve]
    families: dict[str, Family] = Field(min_length=1)
    aliases: dict[str, str] = Field(default_factory=dict)
    cores: dict[str, CoreDefaults] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_resolve(self) -> TargetTable:
        for alias, family in self.aliases.items():
            if family not in self.families:
                raise ValueError(f"'{alias}' in aliases points to '{family}', which is not a family")
        for core in self.cores:
            if core not in CORES:
                raise ValueError(f"'{core}' in cores is not a core of the MCU profiles ({', '.join(CORES)})")
        used = {f"families: '{name}'": f.runtime for name, f in self.families.items()}
        used |= {f"cores: '{name}'": c.runtime for name, c in self.cores.items()}
        for where, runtime in used.items():
            if runtime is not None and runtime not in self.runtimes:
                raise ValueError(f"{where} uses runtime '{runtime}', which 'runtimes' lacks")
        return self


def load_target_table(path: Path) -> TargetTable:
    """Read and validate `path`; a ConfigError names file:line and the field that is wrong."""
    from edge.power.profiles import validate_marked
    from edge.power.yamlmarks import load_marked

    return validate_marked(load_marked(path), TargetTable, hint=SCHEMA_HINT)
