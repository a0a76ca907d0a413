"""On-device benchmark over the MLPerf Tiny protocol, checked against the model run locally in TFLM.

Performance: load one input, `infer N W`, latency = (second lap - first lap) / N.
Validation: load each input, `infer 1 0`, read `m-results-[...]`; if the .tflite is given, the
same input runs in the local `tflite_micro` interpreter and its output, printed with the
firmware's `%0.3f`, must equal the device's line exactly (and so must the predicted class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edge.errors import ConfigError
from edge.firmware_bridge.mlperf import MlperfDut


class EnergyProbe(Protocol):
    """An energy monitor acquiring during the bench (power_monitor.Lpm01a)."""

    def before_infer(self) -> None:
        """Called right before the performance `infer N W`."""

    def after_infer(self, runs: int) -> dict:
        """Called right after it: measured energy of its window (TraceEnergy JSON)."""


@dataclass
class BenchReport:
    """What `edge bench` measured; written as JSON."""

    port: str
    device: str
    profile: dict[str, str]
    runs: int
    warmups: int
    latency_ms: float | None  # None: an energy-mode DUT behind an IO manager printed no stamps
    laps_us: tuple[int, int] | None
    timing_source: str
    predictions: list[int] = field(default_factory=list)
    results: list[list[float]] = field(default_factory=list)
    local_predictions: list[int] | None = None
    local_match: bool | None = None
    mismatches: list[int] = field(default_factory=list)
    energy: dict | None = None
    io_manager: str | None = None  # the IO manager's `name` when the DUT was reached through one

    def to_json(self) -> dict:
        """Plain data for JSON (units in key names)."""
        return asdict(self)

    def table(self) -> str:
        """A short human table."""
        latency = "n/a" if self.latency_ms is None else f"{self.latency_ms:.3f}"
        rows = [
            *([("io manager", self.io_manager)] if self.io_manager is not None else []),
            ("device", self.device),
            ("firmware", self.profile.get("profile", "?")),
            ("model", self.profile.get("model", "?")),
            ("runs x warmups", f"{self.runs} x {self.warmups}"),
            ("latency_ms", latency),
            ("timing", self.timing_source),
            ("inputs checked", str(len(self.predictions))),
        ]
        if self.local_match is not None:
            verdict = "all equal" if self.local_match else f"MISMATCH at inputs {self.mismatches[:10]}"
            rows.append(("vs local TFLM", verdict))
        if self.energy is not None:
            rows.append(("measured_uJ/inference", f"{self.energy['energy_per_inference_uJ']:.2f} "
                         f"({self.energy['method']})"))
            energy = self.energy
            if energy.get("costmodel_energy_uJ") is not None:
                rows.append(("cost model uJ", f"{energy['costmodel_energy_uJ']:.2f} on {energy['costmodel_mcu']} "
                             f"(measured/model {energy['measured_over_model']:.2f})"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def model_input_spec(model: bytes) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of the model's first input, read by the TFLM interpreter."""
    from edge.firmware_bridge.model_runner import ModelRunner

    runner = ModelRunner(model)
    return tuple(int(d) for d in runner.input["shape"]), np.dtype(runner.input["dtype"])


def random_inputs(model: bytes, count: int, seed: int = 0) -> list[bytes]:
    """`count` seeded random tensors in the model's input dtype and shape."""
    shape, dtype = model_input_spec(model)
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    out = []
    for _ in range(count):
        if info is not None:
            array = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
        else:
            array = rng.standard_normal(size=shape).astype(dtype)
        out.append(array.tobytes())
    return out


def read_inputs(path: Path, model: bytes | None) -> list[bytes]:
    """Inputs from a raw .bin (one tensor) or a .npy array ([N, ...] or one tensor), checked against the
    model's input: size, and values that fit its dtype (no silent wrap-around); ConfigError names the fault."""
    if not path.is_file():
        raise ConfigError("input file not found" if not path.exists() else "input is not a file", where=str(path))
    spec = model_input_spec(model) if model is not None else None
    if path.suffix != ".npy":
        data = path.read_bytes()
        if not data:
            raise ConfigError("input file is empty", where=str(path))
        if spec is not None:
            size = int(np.prod(spec[0])) * spec[1].itemsize
            if len(data) != size:
                raise ConfigError(f"input is {len(data)} bytes; the model's input {list(spec[0])} {spec[1]} is "
                                  f"{size} bytes", where=str(path), hint="a raw .bin holds exactly one input tensor")
        return [data]
    array = _load_npy(path)
    if spec is None:
        return [row.tobytes() for row in (array.reshape(1, -1) if array.ndim <= 1 else array.reshape(len(array), -1))]
    shape, dtype = spec
    per = int(np.prod(shape))
    if array.size == 0 or array.size % per:
        raise ConfigError(f"array {list(array.shape)} has {array.size} values, not a multiple of the model's input "
                          f"{list(shape)} ({per} values)", where=str(path), hint="save [N, *input shape] arrays")
    return [row.tobytes() for row in cast_checked(array, dtype, str(path)).reshape(-1, per)]


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays (pickles) and malformed headers
        raise ConfigError(f"not a plain numeric .npy array: {exc}", where=str(path),
                          hint="save a numeric array with numpy.save (no Python objects)") from exc
    except (OSError, EOFError) as exc:
        raise ConfigError(f"cannot read .npy: {exc}", where=str(path)) from exc
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        kind = getattr(array, "dtype", type(array).__name__)
        raise ConfigError(f"array of {kind} is not numeric", where=str(path), hint="save int8 or float values")
    return array


def cast_checked(array: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
    """`array` as `dtype`, refusing values that would change: non-finite, fractional or out of range for an
    integer dtype (numpy's cast would wrap 1000 to -24)."""
    if array.dtype == dtype:
        return array
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = array.astype(np.float64)
        bad = ~np.isfinite(values) | (values < info.min) | (values > info.max) | (values != np.round(values))
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ConfigError(f"value {float(array[index])!r} at index {list(index)} does not fit the model's {dtype} "
                              f"input ({info.min}..{info.max}, whole numbers); {int(bad.sum())} such values",
                              where=where,
                              hint=f"quantise the input first (int8 input = pixel - 128) or save it as {dtype}")
    elif not np.isfinite(array.astype(np.float64)).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(array.astype(np.float64)))[0])
        raise ConfigError(f"non-finite value at index {list(index)}", where=where)
    return array.astype(dtype)


def local_results(model: bytes, inputs: list[bytes]) -> list[str]:
    """The `m-results-[...]` line the firmware would print for each input, computed locally."""
    from edge.firmware_bridge.model_runner import ModelRunner, format_results

    runner = ModelRunner(model)
    return [format_results(runner.run(data)[0]) for data in inputs]


def run_bench(
    dut: MlperfDut,
    inputs: list[bytes],
    *,
    runs: int,
    warmups: int,
    model: bytes | None = None,
    progress: Callable[[int], None] | None = None,
    energy_probe: EnergyProbe | None = None,
) -> BenchReport:
    """Performance run on the first input, then one inference per input (see module doc).

    `energy_probe` (an energy monitor streaming during the run) measures the performance run's window.
    """
    if not inputs:
        raise ConfigError("no inputs to benchmark", hint="pass --input FILE or --model to make random ones")
    device = dut.sync()
    profile = dut.profile()
    dut.load(inputs[0])
    if energy_probe is not None:
        energy_probe.before_infer()
    perf = dut.infer(runs, warmups)
    energy = energy_probe.after_infer(runs) if energy_probe is not None else None
    latency_ms, timing = perf.latency_ms, _timing_source(perf.lap_source, profile)
    if latency_ms is None and energy is not None and energy.get("window_s"):  # as the runner: D7 window / N
        latency_ms = energy["window_s"] / runs * 1000.0
        timing = f"energy monitor D7 events ({energy['sample_rate_Hz']} Hz samples)"
    report = BenchReport(
        port=dut.link.url,
        device=device,
        profile=profile,
        runs=runs,
        warmups=warmups,
        latency_ms=latency_ms,
        laps_us=perf.laps_us,
        timing_source=timing,
        io_manager=dut.io_manager_name,
        energy=energy,
    )
    if progress is not None:
        progress(1)
    device_lines = []
    for data in inputs:
        dut.load(data)
        reply = dut.infer(1, 0)
        values = list(reply.results)
        report.results.append(values)
        report.predictions.append(int(np.argmax(values)) if values else -1)
        device_lines.append("m-results-[" + ",".join(f"{v:0.3f}" for v in values) + "]")
        if progress is not None:
            progress(1)
    if model is not None:
        expected = local_results(model, inputs)
        local_values = [[float(x) for x in line[len("m-results-["):-1].split(",")] for line in expected]
        report.local_predictions = [int(np.argmax(v)) for v in local_values]
        report.mismatches = [i for i, (a, b) in enumerate(zip(device_lines, expected, strict=False)) if a != b]
        report.local_match = not report.mismatches
    return report


def _timing_source(lap_source: str, profile: dict[str, str]) -> str:
    """Where the latency came from, in words."""
    if lap_source == "io-manager timer":
        return "io-manager timer (enable-timer: DUT timestamp GPIO edges)"
    if lap_source == "none":
        return "none: energy-mode DUT (timestamps are GPIO edges for the energy monitor; try --io-timer)"
    return profile.get("timing", "device clock")


def trace_energy(
    trace: Path, model: bytes | None, mcu: str, *, voltage_V: float | None, inferences: int | None, marker: int | None
) -> dict:
    """Measured energy per inference from a current trace, next to the cost model's estimate."""
    from edge.firmware_bridge.trace import energy_per_inference

    measured = energy_per_inference(trace, voltage_V=voltage_V, inferences=inferences, marker=marker).to_json()
    return with_costmodel(measured, model, mcu)


def with_costmodel(measured: dict, model: bytes | None, mcu: str) -> dict:
    """`measured` (TraceEnergy JSON) plus the cost model's energy for `model` on `mcu` and the ratio."""
    from edge.firmware_bridge.model_runner import costmodel_estimate

    modelled = costmodel_estimate(model, mcu) if model is not None else None
    measured["costmodel_mcu"] = mcu
    measured["costmodel_energy_uJ"] = modelled[1] if modelled else None
    measured["measured_over_model"] = measured["energy_per_inference_uJ"] / modelled[1] if modelled else None
    return measured
