"""Lifetime simulation: events one by one, battery state day by day, Monte Carlo over runs.

For each run: motion events are drawn from the device's event process; each motion wakes the
MCU once per PIR pulse; a motion that is not merged by the retriggerable hold-off starts an
event (capture, inference, optional uplink). Events are binned per day; the battery then steps
day by day: remaining charge R <- R (1 - k(T)) - q, where q is that day's load charge and k the
temperature-dependent self-discharge. The cell is empty when the drawn charge reaches the
usable capacity C x min(temperature factor, voltage limit); the crossing is interpolated within
the day. C is the capacity at the run's mean load current x a Monte Carlo capacity factor; pulses
act only through the voltage limit (internal resistance, see battery.py). All runs are simulated together with numpy.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edge.power.battery import (
    capacity_at_load_mAh,
    peak_warnings,
    self_discharge_per_day,
    temperature_factor,
    voltage_dod_limit,
)
from edge.power.device import DeviceModel
from edge.power.events import DAY_S, accepted, generate, read_trigger_log
from edge.power.schema import CellProfile, DeviceProfile, EventSpec

UC_PER_MAH = 3.6e6
EVENTS_PER_CHUNK = 3_000_000  # ~200 MB peak for 1,000 runs; smaller chunks cost no speed
BREAKDOWN = ("sleep", "wake", "capture", "inference", "uplink", "beacon", "self_discharge")


@dataclass(frozen=True)
class SimOptions:
    """How to simulate."""

    runs: int = 1000
    seed: int = 0
    max_years: float = 15.0
    uncertain: bool = True  # draw the device's uncertain parameters per run
    event_rate_per_day: float | None = None  # override the device's event rate
    process: str | None = None  # override the device's event process
    chunk_days: int = 365
    inference_band: tuple[float, float] | None = None  # measured/estimate factors: sampled as a 90 % lognormal


def band_factors(rng: np.random.Generator, band: tuple[float, float] | None, n: int, on: bool) -> np.ndarray:
    """Per-run factors on the inference energy: lognormal with `band` as its central 90 % interval."""
    if not on or band is None:
        return np.ones(n)
    lo, hi = np.log(band[0]), np.log(band[1])
    return np.exp(rng.normal((lo + hi) / 2, (hi - lo) / (2 * 1.6449), n))


@dataclass(frozen=True)
class RunLoads:
    """Per-run expected loads and capacity, for the analytic headroom (edge.power.headroom)."""

    base_uA: np.ndarray  # sleep + beacons, battery side
    event_uA: np.ndarray  # events at the run's rate (every motion taken as an event: an upper bound)
    rate_per_day: np.ndarray  # the run's event rate
    inference_uA: np.ndarray  # the inference part of event_uA
    capacity_mAh: np.ndarray  # the run's capacity (load-dependent x Monte Carlo factor)
    usable_fraction: float  # min(brown-out depth of discharge, coldest-day temperature factor)
    self_discharge_per_day: float  # mean over the year's temperatures


@dataclass
class SimResult:
    """Lifetimes of every run and what the charge went into."""

    lifetimes_days: np.ndarray
    censored: np.ndarray  # True: still alive at max_years (lifetime is a lower bound)
    breakdown_mAh: dict[str, float]  # mean over runs, until each run's end
    avg_current_uA: float  # mean load current over life (median run)
    run_current_uA: np.ndarray  # mean load current over life, per run
    soc_days: np.ndarray
    soc_p5: np.ndarray
    soc_p50: np.ndarray
    soc_p95: np.ndarray
    events: int  # motion events simulated (all runs)
    captures: int
    warnings: list[str] = field(default_factory=list)
    capacity_mAh: float = 0.0  # usable capacity of the nominal run (before temperature)
    brownout_soc: float = 0.0  # state of charge at which the peak load browns the device out
    loads: RunLoads | None = None

    def percentile_days(self, q: float) -> float:
        """Lifetime percentile in days (q in 0..100)."""
        return float(np.percentile(self.lifetimes_days, q))

    def current_at_percentile(self, q: float) -> float:
        """Mean load current (uA) of the run whose lifetime is at percentile q."""
        order = np.argsort(self.lifetimes_days)
        return float(self.run_current_uA[order[min(int(q / 100 * order.size), order.size - 1)]])


def _multipliers(rng: np.random.Generator, sigma: float, n: int, on: bool) -> np.ndarray:
    return np.exp(rng.normal(0.0, sigma, n)) if on and sigma > 0 else np.ones(n)


def temperature_by_day(device: DeviceProfile, days: np.ndarray) -> np.ndarray:
    """Daily mean temperature: a seasonal cosine with its minimum on coldest_day_of_year."""
    env = device.environment
    phase = 2 * np.pi * (days - env.coldest_day_of_year) / 365.25
    return env.temperature_mean_C - env.temperature_seasonal_amplitude_C * np.cos(phase)


class _EventSource(NamedTuple):
    """The event process after overrides, its mean rate per day and, for replay, the trigger log (s)."""

    spec: EventSpec
    rate_per_day: float
    log_s: np.ndarray | None


def _event_source(device: DeviceProfile, opts: SimOptions, base_dir: Path | None) -> _EventSource:
    """The device's event process with `opts`' overrides; a replay's rate is its log's."""
    spec: EventSpec = device.events
    if opts.process is not None:
        spec = spec.model_copy(update={"process": opts.process})
    rate = spec.rate_per_day if opts.event_rate_per_day is None else opts.event_rate_per_day
    if spec.process != "replay":
        return _EventSource(spec, rate, None)
    csv_path = Path(spec.replay_csv or "")
    if base_dir is not None and not csv_path.is_absolute():
        csv_path = base_dir / csv_path
    log_s = read_trigger_log(csv_path)
    return _EventSource(spec, len(log_s) / max(np.ceil((log_s[-1] + 1) / DAY_S), 1.0), log_s)


def _usable_capacity(model: DeviceModel, mean_uA: np.ndarray, m_cap: np.ndarray
                     ) -> tuple[np.ndarray, float, list[str]]:
    """Capacity per run (load-dependent x Monte Carlo factor), the depth of discharge
    at which the peak load browns the device out, and warnings about the peaks."""
    cell, par, peak = model.cell, model.cells_in_parallel, model.peak
    capacity = capacity_at_load_mAh(cell, mean_uA / 1000.0 / par) * par
    capacity = capacity * m_cap
    dod_v = voltage_dod_limit(cell, peak.battery_current_mA / par, model.min_voltage_V / model.cells_in_series)
    warnings = peak_warnings(cell, [(p.state, p.battery_current_mA, p.duration_ms) for p in model.peaks], par)
    if dod_v < 0.98:
        warnings.append(
            f"under the {peak.battery_current_mA:.1f} mA peak ('{peak.state}') the battery falls below "
            f"{model.min_voltage_V:g} V after {100 * dod_v:.0f} % depth of discharge "
            f"(internal resistance {cell.internal_resistance_ohm:g} ohm): only that share of the capacity is usable"
        )
    return capacity, dod_v, warnings


@dataclass
class _Battery:
    """Per-run battery state carried from chunk to chunk."""

    capacity: np.ndarray
    remaining: np.ndarray
    life: np.ndarray
    alive: np.ndarray
    drawn: np.ndarray
    parts: dict[str, np.ndarray]
    soc: np.ndarray  # [days + 1, runs]

    def discharge(self, q_parts: dict[str, np.ndarray], day0: int, temps: np.ndarray, cell: CellProfile,
                  dod_v: float) -> None:
        """Apply `days` of daily load charges (per state, [runs, days]) with temperatures for days day0..day0+days.

        Remaining charge follows R <- R (1 - k) - q; in closed form R_j = P_j (R_0 - sum_{i<j} q_i / P_{i+1})
        with P the running product of (1 - k). A run ends on the first day its drawn charge reaches the
        usable limit; the crossing is interpolated within the day.
        """
        q: np.ndarray = functools.reduce(operator.add, q_parts.values())  # in BREAKDOWN's order, as sum() would
        n, days = q.shape
        cap = self.capacity[:, None]
        keep = np.cumprod(np.concatenate(([1.0], 1.0 - self_discharge_per_day(cell, temps[:-1]))))
        rem = keep[None, :] * (self.remaining[:, None] - np.concatenate(
            (np.zeros((n, 1)), np.cumsum(q / keep[None, 1:], axis=1)), axis=1))
        used = cap - rem
        limit = cap * np.minimum(temperature_factor(cell, temps), dod_v)[None, :]
        over = (used[:, 1:] >= limit[:, 1:]) & self.alive[:, None]
        hit = over.any(axis=1)
        col = np.where(hit, over.argmax(axis=1), days)  # day within the chunk on which the run ends
        rows = np.flatnonzero(hit)
        c = col[rows]
        denom = (used[rows, c + 1] - used[rows, c]) - (limit[rows, c + 1] - limit[rows, c])
        frac = np.clip(np.divide(limit[rows, c] - used[rows, c], denom, out=np.zeros(rows.size), where=denom > 0),
                       0.0, 1.0)
        self.life[rows] = day0 + c + frac
        losses = rem[:, :-1] * (1.0 - keep[1:] / keep[:-1])[None, :]
        weight = np.clip(np.where(np.isnan(self.life), np.inf, self.life)[:, None] - (day0 + np.arange(days)),
                         0.0, 1.0)
        for name, arr in q_parts.items():
            self.parts[name] += (arr * weight).sum(axis=1)
        self.parts["self_discharge"] += (losses * weight).sum(axis=1)
        self.drawn += (q * weight).sum(axis=1)
        ended = np.arange(days)[None, :] >= col[:, None]
        self.soc[day0 + 1: day0 + days + 1] = np.where(ended | ~self.alive[:, None], 0.0, rem[:, 1:] / cap).T
        self.alive &= ~hit
        self.remaining = rem[:, -1]


@dataclass(frozen=True)
class _Draws:
    """Per-run Monte Carlo factors (all ones when the run is not uncertain)."""

    sleep: np.ndarray
    active: np.ndarray
    rate: np.ndarray
    capacity: np.ndarray
    inference: np.ndarray


def _draw(rng: np.random.Generator, device: DeviceProfile, opts: SimOptions) -> _Draws:
    """The per-run factors, drawn in a fixed order (the seed's stream depends on it)."""
    unc, n, on = device.uncertainty, opts.runs, opts.uncertain
    return _Draws(sleep=_multipliers(rng, unc.sleep_current_rel_sigma, n, on),
                  active=_multipliers(rng, unc.active_energy_rel_sigma, n, on),
                  rate=_multipliers(rng, unc.event_rate_rel_sigma, n, on),
                  capacity=_multipliers(rng, unc.capacity_rel_sigma, n, on),
                  inference=band_factors(rng, opts.inference_band, n, on))


@dataclass(frozen=True)
class _Charges:
    """Battery-side charges per run in mAh: per day (sleep, beacons) and per wake/capture/inference/uplink."""

    sleep_day: np.ndarray
    beacon_day: np.ndarray
    per_event: dict[str, np.ndarray]
    mean_uA: np.ndarray  # mean load current at the run's event rate

    @property
    def base_uA(self) -> np.ndarray:
        """Sleep + beacons as a mean current."""
        return (self.sleep_day + self.beacon_day) * 1000 / 24


def _charges(model: DeviceModel, draws: _Draws, rate: float) -> _Charges:
    """Each state's charge per unit for every run, and the run's mean load current."""
    sleep_day = model.sleep_current_uA * 24.0 / 1000.0 * draws.sleep
    beacon_day = model.charge_uC(model.beacon_power_uW * DAY_S) / UC_PER_MAH * draws.active
    per_event = {name: model.charge_uC(energy) / UC_PER_MAH * draws.active for name, energy in (
        ("wake", model.wake_energy_uJ * model.pulses_per_motion), ("capture", model.capture_energy_uJ),
        ("inference", model.inference_energy_uJ), ("uplink", model.uplink_energy_uJ))}
    per_event["inference"] = per_event["inference"] * draws.inference
    extra_inf_uC = model.charge_uC(model.inference_energy_uJ) * (draws.inference - 1.0)
    event_uC = (model.event_charge_uC() + extra_inf_uC) * draws.active
    mean_uA = (sleep_day + beacon_day) * 1000 / 24 + rate * draws.rate * event_uC / DAY_S
    return _Charges(sleep_day=sleep_day, beacon_day=beacon_day, per_event=per_event, mean_uA=mean_uA)


def _run_loads(model: DeviceModel, device: DeviceProfile, charges: _Charges, rate_per_day: np.ndarray,
               capacity: np.ndarray, dod_v: float) -> RunLoads:
    """The per-run loads the analytic headroom needs."""
    year = temperature_by_day(device, np.arange(366))
    return RunLoads(
        base_uA=charges.base_uA, event_uA=charges.mean_uA - charges.base_uA, rate_per_day=rate_per_day,
        inference_uA=rate_per_day * charges.per_event["inference"] * 1000 / 24, capacity_mAh=capacity,
        usable_fraction=float(min(dod_v, temperature_factor(model.cell, year).min())),
        self_discharge_per_day=float(self_discharge_per_day(model.cell, year).mean()))


def _horizon(model: DeviceModel, opts: SimOptions) -> tuple[int, float | None]:
    """Days to simulate, and the cell's shelf life in days when it ends the simulation before max_years."""
    total_days = int(np.ceil(opts.max_years * 365.25))
    shelf_days = model.cell.shelf_life_years * 365.25 if model.cell.shelf_life_years else None
    if shelf_days is not None and shelf_days <= total_days:
        return int(np.ceil(shelf_days)), shelf_days
    return total_days, None


def _day_loads(model: DeviceModel, charges: _Charges, rng: np.random.Generator, motions: np.ndarray,
               captures: np.ndarray) -> dict[str, np.ndarray]:
    """Each state's charge per run and day ([runs, days]) from the day's motions and captures."""
    n, days = motions.shape
    uplinks = rng.binomial(captures, model.uplink_probability) if model.uplink_probability > 0 else 0 * captures
    per_event = charges.per_event
    return {
        "sleep": np.broadcast_to(charges.sleep_day[:, None], (n, days)),
        "beacon": np.broadcast_to(charges.beacon_day[:, None], (n, days)),
        "wake": motions * per_event["wake"][:, None],
        "capture": captures * per_event["capture"][:, None],
        "inference": captures * per_event["inference"][:, None],
        "uplink": uplinks * per_event["uplink"][:, None],
    }


@dataclass
class _Counts:
    """Motion events and captures simulated so far (all runs), and the day the simulation stopped."""

    events: int = 0
    captures: int = 0
    days: int = 0


def _discharge_days(model: DeviceModel, device: DeviceProfile, opts: SimOptions, rng: np.random.Generator,
                    bat: _Battery, charges: _Charges, dod_v: float, total_days: int,
                    source: _EventSource, rate_per_run: np.ndarray) -> _Counts:
    """Draw the events chunk by chunk and discharge the battery until every run ends or total_days pass."""
    spec, rate, log_s = source
    n = opts.runs
    counts = _Counts(days=total_days)
    # bound the events held in memory at once (~EVENTS_PER_CHUNK) by shortening chunks at high rates
    chunk = int(max(1, min(opts.chunk_days, EVENTS_PER_CHUNK // (n * max(rate, 1e-9) * float(rate_per_run.max())))))
    day0 = 0
    while day0 < total_days:
        if not bat.alive.any():
            counts.days = day0
            break
        days = min(chunk, total_days - day0)
        run, t = generate(rng, spec, rate * rate_per_run, day0 * DAY_S, (day0 + days) * DAY_S, log_s)
        keep = accepted(run, t, model.refractory_s)
        counts.events += t.size
        counts.captures += int(keep.sum())
        key = run * days + ((t - day0 * DAY_S) // DAY_S).astype(np.int64)
        motions = np.bincount(key, minlength=n * days).reshape(n, days)
        captures = np.bincount(key[keep], minlength=n * days).reshape(n, days)
        q_parts = _day_loads(model, charges, rng, motions, captures)
        temps = temperature_by_day(device, np.arange(day0, day0 + days + 1))
        bat.discharge(q_parts, day0, temps, model.cell, dod_v)
        day0 += days
    return counts


def _lifetimes(bat: _Battery, cell: CellProfile, shelf_days: float | None, total_days: int,
               warnings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each run's lifetime in days and whether it is censored (alive at the end); runs that reach the cell's
    shelf life end there (not censored), with a warning."""
    life = bat.life
    censored = np.isnan(life)
    if shelf_days is not None and censored.any():
        life[censored] = shelf_days
        warnings.append(f"{100 * censored.mean():.0f} % of the runs reach the cell's rated shelf life of "
                        f"{cell.shelf_life_years:g} years ('{cell.name}'); their lifetime is capped there")
        censored[:] = False
    life[censored] = total_days
    return life, censored


def simulate(model: DeviceModel, device: DeviceProfile, opts: SimOptions = SimOptions(),
             base_dir: Path | None = None) -> SimResult:
    """Monte Carlo lifetime of `model` (built from `device`) over `opts.runs` runs."""
    rng = np.random.default_rng(opts.seed)
    n = opts.runs
    source = _event_source(device, opts, base_dir)
    draws = _draw(rng, device, opts)
    charges = _charges(model, draws, source.rate_per_day)
    capacity, dod_v, warnings = _usable_capacity(model, charges.mean_uA, draws.capacity)
    loads = _run_loads(model, device, charges, source.rate_per_day * draws.rate, capacity, dod_v)

    total_days, shelf_days = _horizon(model, opts)
    bat = _Battery(capacity=capacity, remaining=capacity.copy(), life=np.full(n, np.nan),
                   alive=np.full(n, dod_v > 0.0), drawn=np.zeros(n), parts={k: np.zeros(n) for k in BREAKDOWN},
                   soc=np.ones((total_days + 1, n), dtype=np.float32))
    bat.life[~bat.alive] = 0.0  # browns out at the first peak
    counts = _discharge_days(model, device, opts, rng, bat, charges, dod_v, total_days, source, draws.rate)
    total_days = counts.days
    life, censored = _lifetimes(bat, model.cell, shelf_days, total_days, warnings)
    soc = bat.soc[: total_days + 1]
    pct = np.percentile(soc, [5, 50, 95], axis=1)
    run_uA = bat.drawn / np.maximum(life, 1e-9) / 24.0 * 1000.0
    median_run = int(np.argsort(life)[n // 2])
    return SimResult(
        lifetimes_days=life,
        censored=censored,
        breakdown_mAh={k: float(v.mean()) for k, v in bat.parts.items()},
        avg_current_uA=float(run_uA[median_run]),
        run_current_uA=run_uA,
        soc_days=np.arange(total_days + 1, dtype=float),
        soc_p5=pct[0],
        soc_p50=pct[1],
        soc_p95=pct[2],
        events=counts.events,
        captures=counts.captures,
        warnings=warnings,
        capacity_mAh=float(np.median(capacity)),
        brownout_soc=1.0 - dod_v,
        loads=loads,
    )
