"""Measured energy per inference from a current trace (Nordic PPK2 or Qoitech Otii CSV export).

Formats read (the header names the columns and their units):
- PPK2 (nRF Connect Power Profiler "Export"): `Timestamp(ms),Current(uA)[,D0-D7]`, the digital
  channels as one 8-character bit string (D0 first) or as columns `D0`..`D7`.
- Otii: `Timestamp (s),Main current (A)[,Main voltage (V)]` and similar.
Any time column in s/ms/us and current column in A/mA/uA/nA works; a voltage column (V/mV)
is used when present, otherwise `voltage_V` must be given.

Inferences are found either by a digital marker channel (the firmware raises a GPIO during
`th_infer`, as the MLPerf Tiny energy runner's timestamp pin does) or by dividing the whole
trace's energy by a known inference count.
"""

from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge.errors import DataError

_UNIT = re.compile(r"\(\s*([A-Za-zµμ]+)\s*\)")
_TIME_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6}
_CURRENT_SCALE = {"a": 1.0, "ma": 1e-3, "ua": 1e-6, "µa": 1e-6, "μa": 1e-6, "na": 1e-9}
_VOLT_SCALE = {"v": 1.0, "mv": 1e-3}


@dataclass(frozen=True)
class TraceEnergy:
    """Energy figures of one trace (units in the names)."""

    file: str
    samples: int
    duration_s: float
    mean_current_uA: float
    energy_uJ: float
    inferences: int
    energy_per_inference_uJ: float
    method: str

    def to_json(self) -> dict:
        """Plain data for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class Trace:
    """Samples: time (s), current (A), optional voltage (V) and digital bits (int, D0 = bit 0)."""

    time_s: np.ndarray
    current_A: np.ndarray
    voltage_V: np.ndarray | None
    bits: np.ndarray | None


def _unit(header: str, table: dict[str, float], default: str, path: Path, what: str) -> float:
    match = _UNIT.search(header)
    unit = (match.group(1) if match else default).lower()
    scale = table.get(unit)
    if scale is None:
        raise DataError(f"unknown {what} unit '{unit}' in column '{header}'", where=f"{path}:1",
                        hint=f"expected one of {', '.join(sorted(table))}")
    return scale


def load_trace(path: str | Path) -> Trace:
    """Read a PPK2/Otii CSV export into SI-unit arrays."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read trace: {exc.strerror}", where=str(path)) from exc
    with handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        lower = [h.lower() for h in header]
        t_col = next((i for i, h in enumerate(lower) if "time" in h), None)
        i_col = next((i for i, h in enumerate(lower) if "current" in h), None)
        if t_col is None or i_col is None:
            raise DataError(f"need a time and a current column, header is {header}", where=f"{path}:1",
                            hint="export from the Power Profiler / Otii as CSV with timestamps")
        v_col = next((i for i, h in enumerate(lower) if "voltage" in h), None)
        bit_cols = {int(h[1]): i for i, h in enumerate(lower) if re.fullmatch(r"d[0-7]", h)}
        packed = next((i for i, h in enumerate(lower) if h == "d0-d7"), None)
        t_scale = _unit(header[t_col], _TIME_SCALE, "s", path, "time")
        i_scale = _unit(header[i_col], _CURRENT_SCALE, "A", path, "current")
        v_scale = _unit(header[v_col], _VOLT_SCALE, "V", path, "voltage") if v_col is not None else 1.0
        times, currents, volts, bits = [], [], [], []
        for line_no, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            try:
                times.append(float(row[t_col]) * t_scale)
                currents.append(float(row[i_col]) * i_scale)
                if v_col is not None:
                    volts.append(float(row[v_col]) * v_scale)
                if packed is not None:
                    text = row[packed].strip()
                    bits.append(sum(1 << k for k, ch in enumerate(text[:8]) if ch == "1"))
                elif bit_cols:
                    bits.append(sum(1 << k for k, col in bit_cols.items() if row[col].strip() == "1"))
            except (ValueError, IndexError):
                raise DataError(f"row is not numeric or too short: {','.join(row)[:80]}", where=f"{path}:{line_no}",
                                hint="the file should be an unedited CSV export") from None
    if len(times) < 2:
        raise DataError("trace has fewer than 2 samples", where=str(path))
    t = np.asarray(times)
    if np.any(np.diff(t) <= 0):
        bad = int(np.argmax(np.diff(t) <= 0)) + 3
        raise DataError("timestamps must increase", where=f"{path}:{bad}")
    return Trace(t, np.asarray(currents), np.asarray(volts) if volts else None, np.asarray(bits) if bits else None)


def _energy_J(trace: Trace, voltage_V: float | None, mask: np.ndarray | None = None) -> float:
    volts = trace.voltage_V if trace.voltage_V is not None else np.full_like(trace.current_A, voltage_V or 0.0)
    power = trace.current_A * volts
    dt = np.diff(trace.time_s)
    segment = 0.5 * (power[1:] + power[:-1]) * dt
    if mask is not None:
        segment = segment[mask[1:] & mask[:-1]]
    return float(segment.sum())


def energy_per_inference(
    path: str | Path,
    *,
    voltage_V: float | None = None,
    inferences: int | None = None,
    marker: int | None = None,
) -> TraceEnergy:
    """Energy per inference: per marker-high window (digital channel `marker`), or total / `inferences`."""
    return summarize(load_trace(path), str(path), voltage_V=voltage_V, inferences=inferences, marker=marker)


def summarize(
    trace: Trace,
    source: str,
    *,
    voltage_V: float | None = None,
    inferences: int | None = None,
    marker: int | None = None,
    runs_per_window: int = 1,
) -> TraceEnergy:
    """Energy figures of `trace` (named `source` in errors): per marker-high window of digital channel
    `marker` divided by `runs_per_window` inferences each, or total / `inferences`."""
    if trace.voltage_V is None and not voltage_V:
        raise DataError("the trace has no voltage column", where=source, hint="pass the supply voltage (--voltage)")
    total = _energy_J(trace, voltage_V)
    duration = float(trace.time_s[-1] - trace.time_s[0])
    charge = float(np.sum(0.5 * (trace.current_A[1:] + trace.current_A[:-1]) * np.diff(trace.time_s)))
    mean_uA = charge / duration * 1e6 if duration > 0 else 0.0
    if marker is not None:
        if trace.bits is None:
            raise DataError(f"no digital channels for marker D{marker}", where=source,
                            hint="export with the digital channels (PPK2: D0-D7) or pass the inference count")
        high = (trace.bits >> marker) & 1 == 1
        windows = int(np.count_nonzero(high[1:] & ~high[:-1]) + int(high[0]))
        if windows == 0:
            raise DataError(f"marker D{marker} never goes high", where=source)
        count = windows * runs_per_window
        per = _energy_J(trace, voltage_V, high) / count
        runs = f" x {runs_per_window} inferences" if runs_per_window > 1 else ""
        method = f"marker D{marker} ({windows} windows{runs})"
    else:
        if not inferences or inferences < 1:
            raise DataError("need the number of inferences in the trace or a marker channel", where=source)
        count, per, method = inferences, total / inferences, f"total / {inferences} inferences"
    return TraceEnergy(source, len(trace.time_s), duration, mean_uA, total * 1e6, count, per * 1e6, method)
