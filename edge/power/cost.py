"""Per-inference latency and energy of a .tflite model on an MCU, op by op, with a stated band.

int8/int16 ops on a Cortex-M4/M33 (DSP extension) use a kernel set fitted to published
measurements (edge/power/fit.py; `optimized` = tflm-cmsis-nn, `reference` = tflm-reference):

    MAC ops:    c_mac x MACs + c_out x output elements (+ c_fc x MACs for FULLY_CONNECTED/BATCH_MATMUL,
                + c_in x MACs for the input convolution) + c_op
    other ops:  elements x cycles_per_element[class] (MCU profile, estimate) + c_op

When power_profiles/kernels/<kernel_set>-<core>.yaml (instruction-level figures per op and shape)
exists for the MCU's core, the ops it lists use those instead. Other cores and float32 ops use the
MCU profile's per-class estimates. latency = cycles / clock_hz; energy = latency x the MCU's
inference power (a measured run when the profile has one, else datasheet run current x supply).
The band: the cross-validated spread of the fit (widened by the cross-board spread when the MCU
has no measured point of its own) on the fitted cycles, a wide estimate band on the rest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge.power import fit as fitted
from edge.power.crosscheck import silicon_band
from edge.power.kernel_files import KernelFile, load_kernel_file
from edge.power.op_keys import OpInputs, read_op_inputs
from edge.power.schema import KernelCosts, McuProfile
from edge.power.tflite_graph import MAC_CLASSES, Graph, GraphOp, parse_tflite

KernelChoice = Literal["optimized", "reference"]
KERNEL_SETS: dict[str, str] = {"optimized": "tflm-cmsis-nn", "reference": "tflm-reference"}  # what we export for
# an export target's (runtime, kernels) -> the choice above; other runtimes (vela, litert) have no kernel set here
TARGET_KERNELS: dict[tuple[str, str], KernelChoice] = {("tflm", "cmsis-nn"): "optimized",
                                                       ("tflm", "reference"): "reference"}
FITTED_CORES = ("cortex-m4", "cortex-m33")  # the cores of the published TFLM / CMSIS-NN points (DSP extension)
ESTIMATE_BAND = (0.5, 3.0)  # estimate: per-class figures with no measurement behind them
LOWER_BOUND_BAND = (1.0, 2.0)  # estimate: instruction-level lower bounds with no published point to scale them
# element-wise ops beside a fitted set: no published point covers them; on the default ViT the profile's
# per-element figures are 0.02-0.11 of the instruction-level counts (bench/bench_cost_model.py)
ELEMENT_BAND = (0.5, 50.0)


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
    basis: str = "estimate"  # 'fitted <set>', 'instruction-level <file>' or 'estimate'


@dataclass(frozen=True)
class KernelBacking:
    """The kernel set an estimate uses and the measurements behind it."""

    kernel_set: str  # e.g. 'tflm-cmsis-nn'
    description: str  # runtime and kernel library, as cited ('' when no published point names the set)
    cited_points: int  # published MLPerf Tiny points of the set (power_profiles/measurements/mlperf_tiny.yaml)
    boards: tuple[str, ...]  # the boards of those points
    own_points: int  # of them, on this MCU's boards (its profile's mlperf_boards)
    mcu: str
    core: str
    kernel_file: str | None  # instruction-level figures for this core (power_profiles/kernels/), if any

    def line(self) -> str:
        """One sentence for reports."""
        points = (f"{self.cited_points} cited MLPerf Tiny points ({', '.join(self.boards)})" if self.cited_points
                  else f"no published measurement that applies to a {self.core}")
        own = f"{self.own_points} of them on {self.mcu}" if self.own_points else f"none on {self.mcu}"
        files = f"; instruction-level figures {self.kernel_file}" if self.kernel_file else ""
        what = f" ({self.description})" if self.description else ""
        return f"kernel set {self.kernel_set}{what}: {points}; {own}{files}"


def kernel_backing(mcu: McuProfile, choice: KernelChoice) -> KernelBacking:
    """Which kernel set `choice` means on `mcu` and which measurements back it (the set's published points count
    only on the cores they were measured on, FITTED_CORES)."""
    name = KERNEL_SETS[choice]
    pts = [p for p in fitted.points() if p.kernel_set == name] if mcu.core in FITTED_CORES else []
    kf = load_kernel_file(name, mcu.core)
    return KernelBacking(name, fitted.kernel_set_descriptions().get(name, ""), len(pts),
                         tuple(sorted({p.board for p in pts})), sum(p.board in mcu.mlperf_boards for p in pts),
                         mcu.name, mcu.core, kf.name if kf else None)


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
    kernel_set: str = ""  # e.g. 'tflm-cmsis-nn'; '' when only profile estimates apply
    band: tuple[float, float] = ESTIMATE_BAND  # measured / estimate lies within (low, high) (cross-validated)
    measured_points: tuple[str, ...] = ()  # this MCU's own published points in the kernel set
    basis: str = ""  # one line: what backs the figures
    power_source: str = ""  # where the inference power comes from
    cycle_shares: dict[str, float] = field(default_factory=dict)  # share of cycles per basis
    backing: KernelBacking | None = None  # the kernel set named and what backs it

    def to_json(self) -> dict[str, Any]:
        """Plain-data form for profile.json."""
        data = asdict(self)
        data["estimate_note"] = f"latency/energy are estimates with a band: {self.basis}; power: {self.power_source}"
        return data

    @property
    def energy_band_uJ(self) -> tuple[float, float]:
        """The energy band in uJ."""
        return self.energy_uJ * self.band[0], self.energy_uJ * self.band[1]


def _kernel_set(mcu: McuProfile, dtype: str, choice: KernelChoice) -> tuple[str, KernelCosts]:
    if dtype == "float32":
        return "float32", mcu.kernels.float32
    return choice, getattr(mcu.kernels, choice)


def op_cycles(costs: KernelCosts, op_class: str, macs: int, elements: int) -> float:
    """Cycles of one op from its class and counts."""
    if op_class in MAC_CLASSES:
        return macs * getattr(costs, f"{op_class}_cycles_per_mac") + costs.op_overhead_cycles
    return elements * getattr(costs, f"{op_class}_cycles_per_element") + costs.op_overhead_cycles


@dataclass(frozen=True)
class _Plan:
    """How one graph is costed on one MCU."""

    mcu: McuProfile
    choice: KernelChoice
    coef: fitted.Coefficients | None
    kernel_file: KernelFile | None
    first_mac: int  # index of the first MAC op (the input convolution when it is a conv)
    inputs: dict[int, OpInputs]  # input shapes per op (for the kernel file's variants); {} without a file

    def op_cycles(self, op: GraphOp) -> tuple[float, str, str]:
        """Cycles, kernel label and basis of one op."""
        if op.dtype == "float32":
            return op_cycles(self.mcu.kernels.float32, op.op_class, op.macs, op.elements), "float32", "estimate"
        inputs = self.inputs.get(op.index)
        if self.kernel_file is not None and self.kernel_file.covers(op, inputs):
            kf = self.kernel_file
            return kf.cycles(op, inputs), kf.kernel_set, f"instruction-level {kf.name}"
        costs = getattr(self.mcu.kernels, self.choice)
        if self.coef is None:
            return op_cycles(costs, op.op_class, op.macs, op.elements), self.choice, "estimate"
        c = self.coef
        if op.op_class in MAC_CLASSES:
            cycles = c.mac_op_cycles(op.op_class, op.macs, op.elements,
                                     op.index == self.first_mac and op.op_class == "conv")
            return cycles, c.kernel_set, f"fitted {c.kernel_set}"
        per = getattr(costs, f"{op.op_class}_cycles_per_element")
        return op.elements * per + c.c_op, c.kernel_set, "estimate"


def _plan(graph: Graph, mcu: McuProfile, kernels: KernelChoice, kernel_files: bool) -> _Plan:
    name = KERNEL_SETS[kernels]
    coef = fitted.coefficients(name) if mcu.core in FITTED_CORES and fitted.has_points(name) else None
    first = next((op.index for op in graph.ops if op.op_class in MAC_CLASSES), -1)
    kf = load_kernel_file(name, mcu.core) if kernel_files else None
    return _Plan(mcu, kernels, coef, kf, first, _inputs(graph) if kf else {})


def _inputs(graph: Graph) -> dict[int, OpInputs]:
    """Input shapes per op from the graph's file ({}: variants fall back to the plain op)."""
    from edge.errors import ConfigError

    try:
        return read_op_inputs(graph.path)
    except (ConfigError, OSError):
        return {}


def _band(shares: dict[str, float], own_points: bool, silicon: tuple[float, float] | None) -> tuple[float, float]:
    """Combine per-basis bands, weighted by their share of the cycles: the fit's cross-validated band,
    the silicon factor of instruction-level figures (or a lower-bound estimate), estimate bands."""
    v = fitted.validation()
    fit_band = v.band if own_points else (v.band[0] * v.board_band[0], v.band[1] * v.board_band[1])
    lo = hi = 0.0
    for basis, share in shares.items():
        if basis.startswith("instruction-level"):
            b = silicon or LOWER_BOUND_BAND
        elif basis.startswith("fitted"):
            b = fit_band
        else:
            b = ELEMENT_BAND if shares.keys() - {"estimate"} else ESTIMATE_BAND
        lo, hi = lo + share * b[0], hi + share * b[1]
    return (lo, hi) if shares else ESTIMATE_BAND


def estimate(graph: Graph, mcu: McuProfile, kernels: KernelChoice = "optimized",
             kernel_files: bool = True) -> InferenceCost:
    """Cost of one inference of `graph` on `mcu`, with its band and what backs it (`kernel_files=False`:
    ignore instruction-level figures, e.g. to compare the MLPerf fit with them)."""
    plan = _plan(graph, mcu, kernels, kernel_files)
    power, power_source = mcu.inference_power()
    if not mcu.measured_run:
        power_source += f" [{_run_current_status(mcu.name)}]"
    rows = []
    dtypes: dict[str, int] = {}
    by_class: dict[str, dict[str, float]] = {}
    by_basis: dict[str, float] = {}
    for op in graph.ops:
        cycles, label, basis = plan.op_cycles(op)
        latency_ms = cycles / mcu.clock_hz * 1e3
        rows.append(LayerCost(op.index, op.op, op.op_class, op.dtype, label, "x".join(map(str, op.output_shape)),
                              op.macs, op.elements, round(cycles, 1), latency_ms, power * latency_ms * 1e-3, basis))
        dtypes[op.dtype] = dtypes.get(op.dtype, 0) + 1
        by_basis[basis] = by_basis.get(basis, 0.0) + cycles
        agg = by_class.setdefault(op.op_class, {"ops": 0, "macs": 0, "cycles": 0.0, "latency_ms": 0.0})
        agg["ops"] += 1
        agg["macs"] += op.macs
        agg["cycles"] += cycles
        agg["latency_ms"] += latency_ms
    cycles = sum(r.cycles for r in rows)
    latency_ms = cycles / mcu.clock_hz * 1e3
    shares = {k: v / cycles for k, v in by_basis.items()} if cycles else {}
    own = tuple(p.latency_source for p in fitted.points() if plan.coef is not None
                and p.kernel_set == plan.coef.kernel_set and p.board in mcu.mlperf_boards)
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
        kernel_set=plan.coef.kernel_set if plan.coef else "",
        band=_band(shares, bool(own), silicon_band(KERNEL_SETS[kernels], mcu.core) if plan.kernel_file else None),
        measured_points=own,
        basis=_basis_line(plan, shares, own),
        power_source=power_source,
        cycle_shares=shares,
        backing=kernel_backing(mcu, kernels),
    )


def _run_current_status(name: str) -> str:
    """'cited: ...' or 'estimated: ...' for the MCU profile's run current (from the comment on its line)."""
    from edge.errors import ConfigError
    from edge.power.provenance import field_status

    try:
        status, source = field_status("mcus", name, ("run_current_uA",))
    except ConfigError:
        return "source unknown"
    return f"{status}: {source}"


def _basis_line(plan: _Plan, shares: dict[str, float], own: tuple[str, ...]) -> str:
    parts = ", ".join(f"{100 * v:.0f} % {k}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]))
    name = KERNEL_SETS[plan.choice]
    if plan.kernel_file is not None:
        silicon = silicon_band(name, plan.mcu.core)
        parts += "; instruction-level figures are zero-wait-state lower bounds"
        parts += (f", published {name} runs are x{silicon[0]:.2f}-x{silicon[1]:.2f} above them" if silicon
                  else f" (no published {name} run to scale them)")
    if plan.coef is None:
        return f"{parts}; no published measurement of {name} on {plan.mcu.core}"
    if not any(k.startswith("fitted") for k in shares):
        return parts
    c = plan.coef
    where = (f"{len(own)} published points of this MCU" if own else
             f"no published point of {plan.mcu.name}: fitted on {', '.join(c.boards)} ({c.points} points), "
             "band widened by the cross-board spread")
    return f"{parts}; kernel set {c.kernel_set} ({where})"


def estimate_file(path: str | Path, mcu: McuProfile, kernels: KernelChoice = "optimized",
                  kernel_files: bool = True) -> InferenceCost:
    """Parse a .tflite file and estimate its cost on `mcu`."""
    return estimate(parse_tflite(path), mcu, kernels, kernel_files)


def layer_table_markdown(cost: InferenceCost, top: int | None = None) -> str:
    """The per-layer table as Markdown (optionally only the `top` most expensive layers)."""
    rows = sorted(cost.layers, key=lambda r: -r.cycles)[:top] if top else list(cost.layers)
    total = cost.cycles or 1.0
    lo, hi = cost.band
    e_lo, e_hi = cost.energy_band_uJ
    lines = [
        f"Model `{Path(cost.model).name}` ({cost.model_bytes:,} B) on **{cost.mcu}** ({cost.core}, "
        f"{cost.clock_hz / 1e6:.0f} MHz, {cost.kernels} kernels): {cost.macs:,} MACs, "
        f"{cost.latency_ms:.2f} ms ({cost.latency_ms * lo:.2f}-{cost.latency_ms * hi:.2f}), "
        f"{cost.energy_uJ:.1f} uJ ({e_lo:.1f}-{e_hi:.1f}) per inference ("
        + (f"lower bound; expected within the band x{lo:.2f}-x{hi:.2f} above it)" if lo > 1
           else f"estimate, band x{lo:.2f}-x{hi:.2f})"),
        "",
        f"- backed by: {cost.basis}",
        *([f"- {cost.backing.line()}"] if cost.backing else []),
        f"- measured points of this MCU with this kernel set: "
        f"{'; '.join(cost.measured_points) if cost.measured_points else 'none'}",
        f"- power: {cost.power_source}",
        "",
        "| # | op | class | dtype | output | MACs | cycles | ms | uJ | share | basis |",
        "|---|----|-------|-------|--------|-----:|-------:|---:|---:|------:|-------|",
    ]
    for r in rows:
        lines.append(
            f"| {r.index} | {r.op} | {r.op_class} | {r.dtype} | {r.output_shape} | {r.macs:,} | {r.cycles:,.0f} | "
            f"{r.latency_ms:.3f} | {r.energy_uJ:.2f} | {100 * r.cycles / total:.1f} % | {r.basis} |"
        )
    return "\n".join(lines) + "\n"


def layer_table_csv(cost: InferenceCost) -> str:
    """The per-layer table as CSV."""
    header = "index,op,op_class,dtype,kernels,output_shape,macs,elements,cycles,latency_ms,energy_uJ,basis"
    lines = [header]
    for r in cost.layers:
        lines.append(f"{r.index},{r.op},{r.op_class},{r.dtype},{r.kernels},{r.output_shape},{r.macs},{r.elements},"
                     f"{r.cycles:.1f},{r.latency_ms:.6f},{r.energy_uJ:.4f},{r.basis}")
    return "\n".join(lines) + "\n"
