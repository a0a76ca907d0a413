"""Per-inference latency and energy of a .tflite model on an MCU, op by op.

cycles(op) = MACs x cycles_per_mac[class]  (MAC-heavy classes)
           | elements x cycles_per_element[class]  (everything else)
           + op_overhead_cycles
latency = sum(cycles) / clock_hz; energy = latency x run_current x supply_V.
The per-class figures live in the MCU profile and are estimates (calibrated against MLPerf Tiny
where a result exists); the MACs and element counts come from the model's own graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from edge.power.schema import KernelCosts, McuProfile
from edge.power.tflite_graph import MAC_CLASSES, Graph, parse_tflite

KernelChoice = Literal["optimized", "reference"]


@dataclass(frozen=True)
class LayerCost:
    """One row of the per-layer table."""

    index: int
    op: str
    op_class: str
    dtype: str
    kernels: str
    output_shape: str
    macs: int
    elements: int
    cycles: float
    latency_ms: float
    energy_uJ: float


@dataclass(frozen=True)
class InferenceCost:
    """Latency/energy of one inference plus the per-layer table and memory figures."""

    model: str
    model_bytes: int
    mcu: str
    core: str
    clock_hz: int
    kernels: str
    macs: int
    cycles: float
    latency_ms: float
    energy_uJ: float
    run_power_uW: float
    flash_bytes: int
    ram_bytes: int
    fits_flash: bool
    activation_peak_bytes_est: int
    dtypes: dict[str, int]
    layers: tuple[LayerCost, ...]
    by_class: dict[str, dict[str, float]]

    def to_json(self) -> dict[str, Any]:
        """Plain-data form for profile.json."""
        data = asdict(self)
        data["estimate_note"] = (
            "latency/energy are estimates: MAC/element counts come from the graph, cycles per MAC/element per op "
            "class from the MCU profile (calibrated on MLPerf Tiny where available); energy = latency x run power"
        )
        return data


def _kernel_set(mcu: McuProfile, dtype: str, choice: KernelChoice) -> tuple[str, KernelCosts]:
    if dtype == "float32":
        return "float32", mcu.kernels.float32
    return choice, getattr(mcu.kernels, choice)


def op_cycles(costs: KernelCosts, op_class: str, macs: int, elements: int) -> float:
    """Cycles of one op from its class and counts."""
    if op_class in MAC_CLASSES:
        return macs * getattr(costs, f"{op_class}_cycles_per_mac") + costs.op_overhead_cycles
    return elements * getattr(costs, f"{op_class}_cycles_per_element") + costs.op_overhead_cycles


def estimate(graph: Graph, mcu: McuProfile, kernels: KernelChoice = "optimized") -> InferenceCost:
    """Cost of one inference of `graph` on `mcu`."""
    rows = []
    power = mcu.run_power_uW
    dtypes: dict[str, int] = {}
    by_class: dict[str, dict[str, float]] = {}
    for op in graph.ops:
        name, costs = _kernel_set(mcu, op.dtype, kernels)
        cycles = op_cycles(costs, op.op_class, op.macs, op.elements)
        latency_ms = cycles / mcu.clock_hz * 1e3
        energy = power * latency_ms * 1e-3
        rows.append(LayerCost(op.index, op.op, op.op_class, op.dtype, name, "x".join(map(str, op.output_shape)),
                              op.macs, op.elements, round(cycles, 1), latency_ms, energy))
        dtypes[op.dtype] = dtypes.get(op.dtype, 0) + 1
        agg = by_class.setdefault(op.op_class, {"ops": 0, "macs": 0, "cycles": 0.0, "latency_ms": 0.0})
        agg["ops"] += 1
        agg["macs"] += op.macs
        agg["cycles"] += cycles
        agg["latency_ms"] += latency_ms
    cycles = sum(r.cycles for r in rows)
    latency_ms = cycles / mcu.clock_hz * 1e3
    return InferenceCost(
        model=str(graph.path),
        model_bytes=graph.file_bytes,
        mcu=mcu.name,
        core=mcu.core,
        clock_hz=mcu.clock_hz,
        kernels=kernels if "float32" not in dtypes or len(dtypes) > 1 else "float32",
        macs=graph.macs,
        cycles=cycles,
        latency_ms=latency_ms,
        energy_uJ=power * latency_ms * 1e-3,
        run_power_uW=power,
        flash_bytes=mcu.flash_bytes,
        ram_bytes=mcu.ram_bytes,
        fits_flash=graph.file_bytes <= mcu.flash_bytes,
        activation_peak_bytes_est=max((op.activation_bytes for op in graph.ops), default=0),
        dtypes=dtypes,
        layers=tuple(rows),
        by_class=by_class,
    )


def estimate_file(path: str | Path, mcu: McuProfile, kernels: KernelChoice = "optimized") -> InferenceCost:
    """Parse a .tflite file and estimate its cost on `mcu`."""
    return estimate(parse_tflite(path), mcu, kernels)


def layer_table_markdown(cost: InferenceCost, top: int | None = None) -> str:
    """The per-layer table as Markdown (optionally only the `top` most expensive layers)."""
    rows = sorted(cost.layers, key=lambda r: -r.cycles)[:top] if top else list(cost.layers)
    total = cost.cycles or 1.0
    lines = [
        f"Model `{Path(cost.model).name}` ({cost.model_bytes:,} B) on **{cost.mcu}** ({cost.core}, "
        f"{cost.clock_hz / 1e6:.0f} MHz, {cost.kernels} kernels): {cost.macs:,} MACs, "
        f"{cost.latency_ms:.2f} ms, {cost.energy_uJ:.1f} uJ per inference (estimate)",
        "",
        "| # | op | class | dtype | output | MACs | cycles | ms | uJ | share |",
        "|---|----|-------|-------|--------|-----:|-------:|---:|---:|------:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.index} | {r.op} | {r.op_class} | {r.dtype} | {r.output_shape} | {r.macs:,} | {r.cycles:,.0f} | "
            f"{r.latency_ms:.3f} | {r.energy_uJ:.2f} | {100 * r.cycles / total:.1f} % |"
        )
    return "\n".join(lines) + "\n"


def layer_table_csv(cost: InferenceCost) -> str:
    """The per-layer table as CSV."""
    header = "index,op,op_class,dtype,kernels,output_shape,macs,elements,cycles,latency_ms,energy_uJ"
    lines = [header]
    for r in cost.layers:
        lines.append(f"{r.index},{r.op},{r.op_class},{r.dtype},{r.kernels},{r.output_shape},{r.macs},{r.elements},"
                     f"{r.cycles:.1f},{r.latency_ms:.6f},{r.energy_uJ:.4f}")
    return "\n".join(lines) + "\n"
