"""Cell behaviour from a CellProfile: load-dependent capacity, temperature derating,
self-discharge, and the voltage limit under a peak load.

Pulses are modelled once, by the cell's internal resistance: under the device's peak current the
terminal voltage is the open-circuit voltage at that depth of discharge minus peak x resistance,
and the cell is empty for the device when that falls below the brown-out voltage (or the cell's
cutoff). There is no second, capacity-derating factor for the same effect.
"""

from __future__ import annotations

import numpy as np

from edge.power.schema import CellProfile


def _xy(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(points, dtype=float)
    return arr[:, 0], arr[:, 1]


def capacity_at_load_mAh(cell: CellProfile, current_mA: np.ndarray | float) -> np.ndarray:
    """Deliverable capacity at a (mean) load current, log-interpolated in current, clamped at the ends."""
    x, y = _xy(cell.capacity_vs_load)
    return np.interp(np.log(np.maximum(np.asarray(current_mA, dtype=float), 1e-9)), np.log(x), y)


def temperature_factor(cell: CellProfile, temp_C: np.ndarray | float) -> np.ndarray:
    """Share of the capacity usable at a temperature (reversible: cold reduces what can be drawn)."""
    x, y = _xy(cell.temperature_derating)
    return np.interp(np.asarray(temp_C, dtype=float), x, y)


def self_discharge_per_day(cell: CellProfile, temp_C: np.ndarray | float) -> np.ndarray:
    """Fraction of the remaining charge lost per day; the rate doubles every +10 C above 20 C."""
    yearly = cell.self_discharge_pct_per_year / 100.0
    accel = 2.0 ** ((np.asarray(temp_C, dtype=float) - 20.0) / 10.0)
    return 1.0 - (1.0 - yearly) ** (accel / 365.0)


def voltage_dod_limit(cell: CellProfile, peak_mA: float, min_cell_V: float) -> float:
    """Largest depth of discharge at which the cell still holds `min_cell_V` under the peak current.

    Open-circuit voltage from the cell's voltage curve minus peak x internal resistance. The cell's
    own cutoff also applies. Returns 0 when even a fresh cell browns out.
    """
    dod, ocv = _xy(cell.voltage_curve)
    grid = np.linspace(0.0, 1.0, 2001)
    loaded = np.interp(grid, dod, ocv) - peak_mA * 1e-3 * cell.internal_resistance_ohm
    ok = loaded >= max(min_cell_V, cell.cutoff_V)
    if not ok[0]:
        return 0.0
    bad = np.flatnonzero(~ok)
    return float(grid[bad[0] - 1]) if bad.size else 1.0


def peak_warnings(cell: CellProfile, peaks: list[tuple[str, float, float]], parallel: int) -> list[str]:
    """Warnings for peaks (state, battery mA, duration ms) beyond what the cell delivers."""
    out = []
    for state, mA, ms in peaks:
        per_cell = mA / parallel
        if per_cell > cell.max_pulse_current_mA:
            out.append(
                f"peak current {per_cell:.1f} mA per cell in state '{state}' exceeds the max pulse current "
                f"{cell.max_pulse_current_mA:g} mA of cell '{cell.name}' ({per_cell / cell.max_pulse_current_mA:.1f}x)"
            )
        elif per_cell > cell.max_continuous_current_mA and ms > 1000:
            out.append(
                f"current {per_cell:.1f} mA per cell for {ms / 1000:.1f} s in state '{state}' exceeds the max "
                f"continuous current {cell.max_continuous_current_mA:g} mA of cell '{cell.name}'"
            )
    return out
