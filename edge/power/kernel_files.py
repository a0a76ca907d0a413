"""Instruction-level per-op cost figures: power_profiles/kernels/<kernel_set>-<core>.yaml.

Written by the instruction-level measurements (TFLM + CMSIS-NN compiled for the core and counted
on an emulator, see docs/power.md); read here. Shape of a file:

    kernel_set: tflm-cmsis-nn
    core: cortex-m4
    method: {tflm_commit: ..., cmsis_nn_commit: ..., compiler: ..., flags: ..., emulator: ..., timing: ...}
    ops:
      FULLY_CONNECTED: {dtype: int8, coefficients: {const: 1200, macs: 1.9, rows: 60}, fit: {...}}
    models: [{model_sha256: ..., in_fit: true, cycles_by_op: {...}, total_cycles: ...}]

cycles(op) = sum(coefficients[f] x feature[f]) over the features const (1), macs, out_elements,
in_elements, rows (out_elements / last output dim) and channels (last output dim), with the op's
key chosen by the README's variant rules (edge.power.op_keys); an op whose variant the file lacks
uses the plain op's figures when there are some. A whole-model measurement says whether its op
shapes were in the fit (`in_fit: true`: the grid was built around them) or it is an out-of-sample
check of the coefficients (`in_fit: false`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge.errors import ConfigError
from edge.power.inputs import Range, check
from edge.power.op_keys import OpInputs, op_features, op_key
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


@dataclass(frozen=True)
class KernelFile:
    """One file's per-op coefficients."""

    name: str  # file name, e.g. tflm-cmsis-nn-cortex-m4.yaml
    kernel_set: str
    core: str
    method: dict[str, Any]
    coefficients: dict[str, dict[str, float]]  # op name (maybe with variant) -> feature -> coefficient
    models: list[dict[str, Any]]

    def key(self, op: GraphOp, inputs: OpInputs | None = None) -> str | None:
        """The file's key for `op`: its variant when the file has it, else the plain op, else None."""
        variant = op_key(op, inputs)
        if variant in self.coefficients:
            return variant
        return op.op if op.op in self.coefficients else None

    def covers(self, op: GraphOp, inputs: OpInputs | None = None) -> bool:
        """Whether this file has figures for `op`."""
        return self.key(op, inputs) is not None

    def cycles(self, op: GraphOp, inputs: OpInputs | None = None) -> float:
        """Cycles of `op` from its coefficients."""
        return self.cycles_for(self.key(op, inputs) or "", op_features(op, inputs)) or 0.0

    def cycles_for(self, key: str, feats: dict[str, float]) -> float | None:
        """Cycles of an op given its key (a variant falls back to the plain op) and features; None if absent."""
        coef = self.coefficients.get(key) or self.coefficients.get(base_op(key))
        return None if coef is None else float(sum(value * feats[name] for name, value in coef.items()))


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
    models = list(data.get("models") or [])
    for i, model in enumerate(models):
        if not isinstance((model or {}).get("in_fit"), bool):
            raise ConfigError(f"field 'models[{i}].in_fit': must be true (its ops were in the fit) or false "
                              f"(an out-of-sample check), got {(model or {}).get('in_fit')!r}", where=path)
    return KernelFile(Path(path).name, str(data.get("kernel_set", "")), str(data.get("core", "")),
                      dict(data.get("method") or {}), coefficients, models)
