"""Instruction-level figures (power_profiles/kernels/) against the published measurements of the same
kernel set: how far real silicon sits above the emulator's zero-wait-state lower bound.

For every MLPerf Tiny point of a kernel set, the reference model's ops (op_table in
power_profiles/measurements/mlperf_tiny.yaml) are costed with the kernel file's coefficients; ops
the file lacks (e.g. DEPTHWISE_CONV_2D) use the set's fitted costs. measured / predicted is the
silicon factor (wait states, caches, core): its range is the band of instruction-level estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.power import fit
from edge.power.kernel_files import KernelFile, load_kernel_file
from edge.power.tflite_graph import MAC_CLASSES

MIN_COVERED = 0.95  # share of a point's predicted cycles that must come from the kernel file for the band


@dataclass(frozen=True)
class SiliconCheck:
    """One published point against the instruction-level prediction."""

    point: fit.Point
    predicted_cycles: float
    covered_share: float  # share of the predicted cycles that come from the kernel file

    @property
    def factor(self) -> float:
        """measured / predicted (>= 1 when the figures are lower bounds)."""
        return self.point.cycles / self.predicted_cycles


def _op_cycles(kf: KernelFile, coef: fit.Coefficients, row: dict, input_conv: bool) -> tuple[float, bool]:
    feats = {"const": 1.0, **{k: float(row[k]) for k in ("macs", "out_elements", "in_elements", "rows", "channels")}}
    cycles = kf.cycles_for(row["key"], feats)
    if cycles is not None:
        return cycles, True
    if row["op_class"] in MAC_CLASSES:
        return coef.mac_op_cycles(row["op_class"], feats["macs"], feats["out_elements"], input_conv), False
    elements = feats["in_elements"] if row["op_class"] in ("reduce", "pooling") else feats["out_elements"]
    return elements * coef.c_el + coef.c_op, False


def silicon_checks(kernel_set: str, core: str) -> list[SiliconCheck]:
    """Every published point of `kernel_set` against the instruction-level file for `core` ([] without one)."""
    kf = load_kernel_file(kernel_set, core)
    pts = [p for p in fit.points() if p.kernel_set == kernel_set]
    if kf is None or not pts:
        return []
    coef = fit.coefficients(kernel_set)
    models = fit.model_tables()
    out = []
    for p in pts:
        rows = models[p.benchmark]
        first = next((i for i, r in enumerate(rows) if r["op_class"] in MAC_CLASSES), -1)
        total = covered = 0.0
        for i, row in enumerate(rows):
            cycles, from_file = _op_cycles(kf, coef, row, i == first and row["op_class"] == "conv")
            total += cycles
            covered += cycles if from_file else 0.0
        out.append(SiliconCheck(p, total, covered / total if total else 0.0))
    return out


def silicon_band(kernel_set: str, core: str) -> tuple[float, float] | None:
    """(lowest, highest) measured / instruction-level factor over the set's points whose predicted cycles come
    from the file (at least MIN_COVERED of them), or None. A point that takes ops from the fit (e.g. the
    depthwise layers of KWS and VWW) compares silicon with silicon for those ops, so it does not measure the
    factor."""
    factors = [c.factor for c in silicon_checks(kernel_set, core) if c.covered_share >= MIN_COVERED]
    return (min(factors), max(factors)) if factors else None
