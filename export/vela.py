"""Compile the int8 TFLite for an Arm Ethos-U NPU with `ethos-u-vela` and read its estimates."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

from edge.errors import ExportError
from edge.export.child import run_module

_OPS = re.compile(r"(CPU|NPU) operators = (\d+)")


def compile_vela(model: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                 settings: dict[str, str]) -> dict[str, Any]:
    """Run vela on `model`; returns SRAM/flash use, cycles, inference time and CPU/NPU op counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    args = [str(model), "--output-dir", str(out), "--config", "Arm/vela.ini",
            "--accelerator-config", settings.get("accelerator_config", "ethos-u55-128"),
            "--system-config", settings.get("system_config", "Ethos_U55_High_End_Embedded"),
            "--memory-mode", settings.get("memory_mode", "Shared_Sram")]
    log = run_module("ethosu.vela", args, what="the ethos-u-vela compiler", timeout_s=300)
    summaries = sorted(out.glob(f"{Path(model).stem}_summary_*.csv"))
    if not summaries:
        raise ExportError("vela wrote no summary CSV", where=str(out))
    with open(summaries[0], newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    ops = {kind.lower(): int(n) for kind, n in _OPS.findall(log)}
    return {
        "accelerator_config": row["accelerator_configuration"],
        "system_config": row["system_config"],
        "memory_mode": row["memory_mode"],
        "npu_clock_hz": float(row["core_clock"]),
        "sram_bytes": round(float(row["sram_memory_used"]) * 1024),
        "off_chip_flash_bytes": round(float(row["off_chip_flash_memory_used"]) * 1024),
        "cycles": int(float(row["cycles_total"])),
        "inference_ms": round(float(row["inference_time"]) * 1000, 4),
        "macs": int(float(row["nn_macs"])),
        "npu_ops": ops.get("npu", 0),
        "cpu_ops": ops.get("cpu", 0),
        "vela_model": str(out / f"{Path(model).stem}_vela.tflite"),
    }
