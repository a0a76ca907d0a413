"""Instruction-level per-op cost figures: power_profiles/kernels/<kernel_set>-<core>.yaml.

Written by the instruction-level measurements (TFLM + CMSIS-NN compiled for the core and counted
on an emulator, see docs/power.md); read here. Shape of a file:

    kernel_set: tflm-cmsis-nn
    core: cortex-m4
    method: {tflm_commit: ..., cmsis_nn_commit: ..., compiler: ..., flags: ..., emulator: ..., timing: ...}
    ops:
      FULLY_CONNECTED: {dtype: int8, coefficients: {const: 1200, macs: 1.9, rows: 60}, fit: {...}}
    models: [{model_sha256: ..., cycles_by_op: {...}, total_cycles: ...}]

cycles(op) = sum(coefficients[f] x feature[f]) over the features const (1), macs, out_elements,
in_elements, rows (out_elements / last output dim) and channels (last output dim). A variant key
such as MUL_broadcast is not chosen by shape here (the graph reader does not say whether an input
broadcasts): the plain op name is used when present, else the first variant.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge.errors import ConfigError
from edge.power.inputs import Range, check
from edge.power.profiles import profiles_dir
from edge.power.tflite_graph import CLASS_OF, GraphOp

FEATURES = ("const", "macs", "out_elements", "in_elements", "rows", "channels")


def base_op(key: str) -> str:
    """The TFLite op of a key with an optional variant suffix: 'MUL_broadcast' -> 'MUL', 'ADD_N' -> 'ADD_N'."""
    if key in CLASS_OF:
        return key
    parts = key.split("_")
    for cut in range(len(parts) - 1, 0, -1):
        if "_".join(parts[:cut]) in CLASS_OF:
            return "_".join(parts[:cut])
    return key


def op_features(op: GraphOp) -> dict[str, float]:
    """The features of one op (in_elements: the op's input count for reductions/pooling, else its output
    count; the graph reader gives no input shapes for other ops)."""
    channels = float(op.output_shape[-1]) if op.output_shape else 1.0
    out = float(op.elements)
    return {"const": 1.0, "macs": float(op.macs), "out_elements": out, "in_elements": out,
            "rows": out / max(channels, 1.0), "channels": channels}


@dataclass(frozen=True)
class KernelFile:
    """One file's per-op coefficients."""

    name: str  # file name, e.g. tflm-cmsis-nn-cortex-m4.yaml
    kernel_set: str
    core: str
    method: dict[str, Any]
    coefficients: dict[str, dict[str, float]]  # op name (maybe with variant) -> feature -> coefficient
    models: list[dict[str, Any]]

    def _key(self, op: GraphOp) -> str | None:
        if op.op in self.coefficients:
            return op.op
        return next((k for k in self.coefficients if base_op(k) == op.op), None)

    def covers(self, op: GraphOp) -> bool:
        """Whether this file has figures for `op`."""
        return self._key(op) is not None

    def cycles(self, op: GraphOp) -> float:
        """Cycles of `op` from its coefficients."""
        coef = self.coefficients[self._key(op) or ""]
        feats = op_features(op)
        return float(sum(value * feats[name] for name, value in coef.items()))


def kernel_file_path(kernel_set: str, core: str, root: Path | None = None) -> Path:
    """Where the file for this kernel set and core lives."""
    return (root or profiles_dir()) / "kernels" / f"{kernel_set}-{core}.yaml"


def load_kernel_file(kernel_set: str, core: str, root: Path | None = None) -> KernelFile | None:
    """The file for this kernel set and core, or None when there is none."""
    path = kernel_file_path(kernel_set, core, root)
    return _load(str(path), path.stat().st_mtime_ns) if path.is_file() else None


@functools.lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int) -> KernelFile:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    coefficients: dict[str, dict[str, float]] = {}
    for op, entry in (data.get("ops") or {}).items():
        coef = (entry or {}).get("coefficients") or {}
        for feat, value in coef.items():
            if feat not in FEATURES:
                raise ConfigError(f"field 'ops.{op}.coefficients.{feat}': unknown feature "
                                  f"(known: {', '.join(FEATURES)})", where=path)
            check(value, f"ops.{op}.coefficients.{feat}", path, Range(0.0, low_ok=True))
        coefficients[op] = {k: float(v) for k, v in coef.items()}
    return KernelFile(Path(path).name, str(data.get("kernel_set", "")), str(data.get("core", "")),
                      dict(data.get("method") or {}), coefficients, list(data.get("models") or []))
