"""The cost model fitted to published measurements, per kernel set, and cross-validated.

Points: power_profiles/measurements/mlperf_tiny.yaml (MLPerf Tiny results with their source
files; the features of the reference models). Per kernel set (runtime + kernel library, e.g.
tflm-cmsis-nn, x-cube-ai-10.2) the cycles of one inference are

    cycles = c_mac x MACs + c_fc x MACs of FULLY_CONNECTED/BATCH_MATMUL + c_in x MACs of the input
             convolution + c_out x output elements of the MAC ops + c_op x ops + c_el x other elements

(`c_in`: the first convolution sees 1-3 input channels, where SIMD kernels fall back to slow
paths; `c_out`: every output of a MAC op is requantized and stored, which the instruction-level
figures measure at 52-79 cycles per output with CMSIS-NN on the Cortex-M4 (power_profiles/kernels/);
a depthwise 3x3 output has only 9 MACs, so this term is most of its cost; `c_el` is fixed per set,
the MLPerf models have too few element-wise ops to fit it). c_mac, c_fc, c_in, c_out, c_op are
fitted by least squares on the relative error, with a weak ridge toward a prior (a MAC ~2 cycles,
an output ~60, an op ~3,000 cycles) so that a held-out benchmark never meets an unconstrained
coefficient. Cross-validation: leave one benchmark out (all boards), leave one board
out; the spread of the held-out estimate/measured ratios is the model's band.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge.power.inputs import check
from edge.power.profiles import profiles_dir
from edge.power.tflite_graph import MAC_CLASSES

PARAMS = ("c_mac", "c_fc", "c_in", "c_out", "c_op")
# estimate: a DSP-extension core ~2 cycles/MAC; a weight read once (FULLY_CONNECTED, BATCH_MATMUL) ~0.5 more;
# the input convolution ~2 more; interpreter dispatch ~3,000 cycles/op. Cited: ~60 cycles per output of a MAC
# op (power_profiles/kernels/tflm-cmsis-nn-cortex-m4.yaml, out_elements: CONV_2D 59.3, FULLY_CONNECTED 74.8,
# BATCH_MATMUL 79.1; the MAC coefficient there, 1.9-2.4 cycles, agrees with the 2.0 above)
PRIOR = np.array([2.0, 0.5, 2.0, 60.0, 3000.0])
RIDGE = 0.05
ELEMENT_CYCLES: dict[str, float] = {}  # estimate per element by set; none known better than the default
DEFAULT_ELEMENT_CYCLES = 5.0
BAND_QUANTILES = (0.05, 0.95)


@dataclass(frozen=True)
class Point:
    """One published measurement."""

    kernel_set: str
    board: str
    core: str
    clock_hz: int
    supply: str
    benchmark: str
    round: str
    submitter: str
    runtime: str  # runtime and version as the system description states them
    latency_ms: float
    latency_source: str
    energy_uJ: float | None = None
    energy_source: str | None = None

    @property
    def cycles(self) -> float:
        """Measured cycles of one inference."""
        return self.latency_ms * 1e-3 * self.clock_hz


@dataclass(frozen=True)
class Repeat:
    """A published rerun of a point's software on the same board (another round or submitter)."""

    of: tuple[str, str, str]  # (kernel_set, board, benchmark) of the point it repeats
    round: str
    submitter: str
    latency_ms: float
    latency_source: str


@dataclass(frozen=True)
class Features:
    """What the fitted model needs from a graph."""

    macs: float
    fc_macs: float  # FULLY_CONNECTED + BATCH_MATMUL: every weight read once
    input_conv_macs: float
    mac_outputs: float  # output elements of the MAC ops (conv, depthwise, fully_connected, matmul)
    ops: float
    other_elements: float

    def row(self) -> np.ndarray:
        """The fitted features, in PARAMS order."""
        return np.array([self.macs, self.fc_macs, self.input_conv_macs, self.mac_outputs, self.ops])


@dataclass(frozen=True)
class Coefficients:
    """A kernel set's fitted costs."""

    kernel_set: str
    c_mac: float
    c_fc: float
    c_in: float
    c_out: float
    c_op: float
    c_el: float
    points: int
    boards: tuple[str, ...]
    board_scale: dict[str, float]  # per board (memory wait states, core): measured / model, geometric mean 1

    def mac_op_cycles(self, op_class: str, macs: float, outputs: float, input_conv: bool) -> float:
        """Cycles of one MAC op (conv, depthwise, fully_connected, matmul) with `outputs` output elements,
        on the set's mean board."""
        cycles = macs * self.c_mac + outputs * self.c_out + self.c_op
        cycles += macs * self.c_fc if op_class in ("fully_connected", "matmul") else 0.0
        return cycles + (macs * self.c_in if input_conv else 0.0)

    def cycles(self, f: Features, board: str | None = None) -> float:
        """Cycles of one inference with these features (on `board` if it has points, else the set's mean)."""
        theta = np.array([self.c_mac, self.c_fc, self.c_in, self.c_out, self.c_op])
        base = float(theta @ f.row() + self.c_el * f.other_elements)
        return base * self.board_scale.get(board or "", 1.0)


def data_file(root: Path | None = None) -> Path:
    """The measurements file."""
    return (root or profiles_dir()) / "measurements" / "mlperf_tiny.yaml"


@functools.lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def points(root: Path | None = None) -> list[Point]:
    """Every published point; a non-finite or non-positive figure is a ConfigError naming it."""
    path = str(data_file(root))
    out = []
    for i, p in enumerate(_load(path)["points"]):
        for key in ("latency_ms", "clock_hz", "energy_uJ"):
            if p.get(key) is not None:
                check(p[key], f"points.{i}.{key}", path)
        out.append(Point(**p))
    return out


def repeats(root: Path | None = None) -> list[Repeat]:
    """Reruns listed beside the points (not fitted: they would count one measurement twice)."""
    path = str(data_file(root))
    out = []
    for i, r in enumerate(_load(path).get("repeats", [])):
        check(r["latency_ms"], f"repeats.{i}.latency_ms", path)
        of = r["of"]
        out.append(Repeat((of["kernel_set"], of["board"], of["benchmark"]), r["round"], r["submitter"],
                          r["latency_ms"], r["latency_source"]))
    return out


def benchmark_features(root: Path | None = None) -> dict[str, Features]:
    """Features of the MLPerf Tiny reference models, from the measurements file."""
    out = {}
    for name, m in _load(str(data_file(root)))["models"].items():
        by = m["by_class"]
        other = sum(v["elements"] for k, v in by.items() if k not in MAC_CLASSES)
        fc = sum(by.get(k, {}).get("macs", 0) for k in ("fully_connected", "matmul"))
        outputs = sum(v["elements"] for k, v in by.items() if k in MAC_CLASSES)
        out[name] = Features(m["macs"], fc, m["input_conv_macs"], outputs, m["ops"], other)
    return out


def model_tables(root: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Per benchmark, one dict per op: key, op_class, macs, out_elements, in_elements, rows, channels."""
    out = {}
    for name, m in _load(str(data_file(root)))["models"].items():
        cols = m["op_table_columns"]
        out[name] = [dict(zip(cols, row, strict=True)) for row in m["op_table"]]
    return out


def kernel_set_descriptions(root: Path | None = None) -> dict[str, str]:
    """What each kernel set is (runtime, library), as cited."""
    return dict(_load(str(data_file(root)))["kernel_sets"])


def _solve(kernel_set: str, pts: list[Point], feats: dict[str, Features], scale: dict[str, float]) -> np.ndarray:
    c_el = ELEMENT_CYCLES.get(kernel_set, DEFAULT_ELEMENT_CYCLES)
    rows = np.array([feats[p.benchmark].row() / (p.cycles / scale[p.board] - c_el * feats[p.benchmark].other_elements)
                     for p in pts])
    a = np.vstack([rows, np.sqrt(RIDGE) * np.diag(1.0 / PRIOR)])
    y = np.concatenate([np.ones(len(pts)), np.sqrt(RIDGE) * np.ones(len(PRIOR))])
    return np.maximum(np.linalg.lstsq(a, y, rcond=None)[0], 0.0)


def fit(kernel_set: str, pts: list[Point], feats: dict[str, Features]) -> Coefficients:
    """Ridge least squares on the relative error of `pts` (all of kernel_set), with a scale per board
    (alternating: coefficients, then each board's geometric-mean measured/model ratio)."""
    c_el = ELEMENT_CYCLES.get(kernel_set, DEFAULT_ELEMENT_CYCLES)
    boards = sorted({p.board for p in pts})
    scale = dict.fromkeys(boards, 1.0)
    for _ in range(20):
        theta = _solve(kernel_set, pts, feats, scale)
        coef = _coefficients(kernel_set, theta, c_el, len(pts), tuple(boards), dict.fromkeys(boards, 1.0))
        logs = {b: float(np.mean([np.log(p.cycles / coef.cycles(feats[p.benchmark])) for p in pts if p.board == b]))
                for b in boards}
        mean = float(np.mean(list(logs.values())))
        scale = {b: float(np.exp(v - mean)) for b, v in logs.items()}
    return _coefficients(kernel_set, theta, c_el, len(pts), tuple(boards), scale)


def _coefficients(kernel_set: str, theta: np.ndarray, c_el: float, points: int, boards: tuple[str, ...],
                  scale: dict[str, float]) -> Coefficients:
    """`Coefficients` from the solved (c_mac, c_fc, c_in, c_out, c_op)."""
    c_mac, c_fc, c_in, c_out, c_op = (float(v) for v in theta)
    return Coefficients(kernel_set, c_mac, c_fc, c_in, c_out, c_op, c_el, points, boards, scale)


@dataclass(frozen=True)
class HeldOut:
    """One held-out point: estimate / measured for latency (and energy where measured)."""

    point: Point
    fold: str  # "benchmark" or "board"
    latency_ratio: float
    energy_ratio: float | None


def _board_power_uW(pts: list[Point], board: str, skip: str) -> float | None:
    """Mean measured power of `board` over its energy points of other benchmarks than `skip`."""
    watts = [p.energy_uJ / p.latency_ms * 1e3 for p in pts if p.board == board and p.benchmark != skip
             and p.energy_uJ is not None]
    return float(np.mean(watts)) if watts else None


def cross_validate(all_points: list[Point] | None = None, feats: dict[str, Features] | None = None
                   ) -> list[HeldOut]:
    """Leave-one-benchmark-out and leave-one-board-out over every kernel set."""
    all_points = all_points if all_points is not None else points()
    feats = feats or benchmark_features()
    out: list[HeldOut] = []
    for ks in sorted({p.kernel_set for p in all_points}):
        pts = [p for p in all_points if p.kernel_set == ks]
        for fold, key in (("benchmark", "benchmark"), ("board", "board")):
            groups = sorted({getattr(p, key) for p in pts})
            if len(groups) < 2:
                continue
            for g in groups:
                train = [p for p in pts if getattr(p, key) != g]
                coef = fit(ks, train, feats)
                for p in (p for p in pts if getattr(p, key) == g):
                    est = coef.cycles(feats[p.benchmark], p.board)
                    power = _board_power_uW(pts, p.board, p.benchmark)
                    e_ratio = None
                    if p.energy_uJ is not None and power is not None:
                        e_ratio = est / p.clock_hz * power / p.energy_uJ
                    out.append(HeldOut(p, fold, est / p.cycles, e_ratio))
    return out


def band(ratios: list[float]) -> tuple[float, float]:
    """Factors (low, high) such that measured lies in [estimate x low, estimate x high] for the central
    90 % of the held-out ratios (estimate / measured)."""
    r = np.asarray(ratios, float)
    lo_q, hi_q = np.quantile(r, BAND_QUANTILES)
    return float(1.0 / hi_q), float(1.0 / lo_q)


@dataclass(frozen=True)
class Validation:
    """The figures bench/bench_cost_model.py prints and gates on."""

    lobo_latency_median: float
    lobo_latency_worst: float
    lobo_energy_median: float
    loboard_latency_median: float
    loboard_latency_worst: float
    band: tuple[float, float]  # from the leave-one-benchmark-out latency ratios
    board_band: tuple[float, float]  # from the leave-one-board-out ratios: for an MCU without its own points
    band_coverage: float  # share of held-out points inside a band built without their benchmark


def validate(held: list[HeldOut]) -> Validation:
    """Summary statistics of a cross-validation."""
    lobo = [h for h in held if h.fold == "benchmark"]
    board = [h for h in held if h.fold == "board"]
    lat = np.abs([h.latency_ratio - 1 for h in lobo])
    energy = np.abs([h.energy_ratio - 1 for h in lobo if h.energy_ratio is not None])
    blat = np.abs([h.latency_ratio - 1 for h in board]) if board else np.array([np.nan])
    inside = 0
    for h in lobo:  # nested: the band must not have seen this point's benchmark
        lo, hi = band([o.latency_ratio for o in lobo if o.point.benchmark != h.point.benchmark])
        inside += lo <= 1.0 / h.latency_ratio <= hi
    return Validation(
        lobo_latency_median=float(np.median(lat)), lobo_latency_worst=float(np.max(lat)),
        lobo_energy_median=float(np.median(energy)) if energy.size else float("nan"),
        loboard_latency_median=float(np.median(blat)), loboard_latency_worst=float(np.max(blat)),
        band=band([h.latency_ratio for h in lobo]),
        board_band=band([h.latency_ratio for h in board]) if board else (float("nan"), float("nan")),
        band_coverage=inside / max(len(lobo), 1),
    )


def has_points(kernel_set: str) -> bool:
    """Whether any published point backs `kernel_set`."""
    return any(p.kernel_set == kernel_set for p in points())


@functools.lru_cache(maxsize=16)
def coefficients(kernel_set: str) -> Coefficients:
    """The kernel set's coefficients fitted on all its points (KeyError when it has none)."""
    pts = [p for p in points() if p.kernel_set == kernel_set]
    if not pts:
        raise KeyError(kernel_set)
    return fit(kernel_set, pts, benchmark_features())


@functools.lru_cache(maxsize=1)
def validation() -> Validation:
    """Cross-validation over all published points (cached; a fraction of a second)."""
    return validate(cross_validate())
