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

from dataclasses import dataclass, field
from pathlib import Path

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


def _event_source(device: DeviceProfile, opts: SimOptions, base_dir: Path | None
                  ) -> tuple[EventSpec, float, np.ndarray | None]:
    """The event process after overrides, its mean rate per day and, for replay, the trigger log."""
    spec: EventSpec = device.events
    if opts.process is not None:
        spec = spec.model_copy(update={"process": opts.process})
    rate = spec.rate_per_day if opts.event_rate_per_day is None else opts.event_rate_per_day
    if spec.process != "replay":
        return spec, rate, None
    csv_path = Path(spec.replay_csv or "")
    if base_dir is not None and not csv_path.is_absolute():
        csv_path = base_dir / csv_path
    log_s = read_trigger_log(csv_path)
    return spec, len(log_s) / max(np.ceil((log_s[-1] + 1) / DAY_S), 1.0), log_s


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
        q = sum(q_parts.values())
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


def simulate(model: DeviceModel, device: DeviceProfile, opts: SimOptions = SimOptions(),
             base_dir: Path | None = None) -> SimResult:
    """Monte Carlo lifetime of `model` (built from `device`) over `opts.runs` runs."""
    rng = np.random.default_rng(opts.seed)
    n = opts.runs
    unc = device.uncertainty
    spec, rate, log_s = _event_source(device, opts, base_dir)
    m_sleep = _multipliers(rng, unc.sleep_current_rel_sigma, n, opts.uncertain)
    m_active = _multipliers(rng, unc.active_energy_rel_sigma, n, opts.uncertain)
    m_rate = _multipliers(rng, unc.event_rate_rel_sigma, n, opts.uncertain)
    m_cap = _multipliers(rng, unc.capacity_rel_sigma, n, opts.uncertain)
    m_inf = band_factors(rng, opts.inference_band, n, opts.uncertain)

    # charges per unit, in mAh (battery side)
    sleep_day = model.sleep_current_uA * 24.0 / 1000.0 * m_sleep
    beacon_day = model.charge_uC(model.beacon_power_uW * DAY_S) / UC_PER_MAH * m_active
    per_event = {name: model.charge_uC(energy) / UC_PER_MAH * m_active for name, energy in (
        ("wake", model.wake_energy_uJ * model.pulses_per_motion), ("capture", model.capture_energy_uJ),
        ("inference", model.inference_energy_uJ), ("uplink", model.uplink_energy_uJ))}
    per_event["inference"] = per_event["inference"] * m_inf
    extra_inf_uC = model.charge_uC(model.inference_energy_uJ) * (m_inf - 1.0)
    event_uC = (model.event_charge_uC() + extra_inf_uC) * m_active
    mean_uA = (sleep_day + beacon_day) * 1000 / 24 + rate * m_rate * event_uC / DAY_S
    capacity, dod_v, warnings = _usable_capacity(model, mean_uA, m_cap)
    year = temperature_by_day(device, np.arange(366))
    loads = RunLoads(
        base_uA=(sleep_day + beacon_day) * 1000 / 24, event_uA=mean_uA - (sleep_day + beacon_day) * 1000 / 24,
        rate_per_day=rate * m_rate, inference_uA=rate * m_rate * per_event["inference"] * 1000 / 24,
        capacity_mAh=capacity, usable_fraction=float(min(dod_v, temperature_factor(model.cell, year).min())),
        self_discharge_per_day=float(self_discharge_per_day(model.cell, year).mean()))

    total_days = int(np.ceil(opts.max_years * 365.25))
    shelf_days = model.cell.shelf_life_years * 365.25 if model.cell.shelf_life_years else None
    shelf_capped = shelf_days is not None and shelf_days <= total_days
    if shelf_capped:
        total_days = int(np.ceil(shelf_days))
    bat = _Battery(capacity=capacity, remaining=capacity.copy(), life=np.full(n, np.nan),
                   alive=np.full(n, dod_v > 0.0), drawn=np.zeros(n), parts={k: np.zeros(n) for k in BREAKDOWN},
                   soc=np.ones((total_days + 1, n), dtype=np.float32))
    bat.life[~bat.alive] = 0.0  # browns out at the first peak
    n_events = n_captures = 0
    # bound the events held in memory at once (~EVENTS_PER_CHUNK) by shortening chunks at high rates
    chunk = int(max(1, min(opts.chunk_days, EVENTS_PER_CHUNK // (n * max(rate, 1e-9) * float(m_rate.max())))))
    day0 = 0
    while day0 < total_days:
        if not bat.alive.any():
            total_days = day0
            break
        days = min(chunk, total_days - day0)
        run, t = generate(rng, spec, rate * m_rate, day0 * DAY_S, (day0 + days) * DAY_S, log_s)
        keep = accepted(run, t, model.refractory_s)
        n_events += t.size
        n_captures += int(keep.sum())
        key = run * days + ((t - day0 * DAY_S) // DAY_S).astype(np.int64)
        motions = np.bincount(key, minlength=n * days).reshape(n, days)
        captures = np.bincount(key[keep], minlength=n * days).reshape(n, days)
        uplinks = rng.binomial(captures, model.uplink_probability) if model.uplink_probability > 0 else 0 * captures
        q_parts = {
            "sleep": np.broadcast_to(sleep_day[:, None], (n, days)),
            "beacon": np.broadcast_to(beacon_day[:, None], (n, days)),
            "wake": motions * per_event["wake"][:, None],
            "capture": captures * per_event["capture"][:, None],
            "inference": captures * per_event["inference"][:, None],
            "uplink": uplinks * per_event["uplink"][:, None],
        }
        temps = temperature_by_day(device, np.arange(day0, day0 + days + 1))
        bat.discharge(q_parts, day0, temps, model.cell, dod_v)
        day0 += days
    life = bat.life
    censored = np.isnan(life)
    if shelf_capped and censored.any():
        life[censored] = shelf_days
        warnings.append(f"{100 * censored.mean():.0f} % of the runs reach the cell's rated shelf life of "
                        f"{model.cell.shelf_life_years:g} years ('{model.cell.name}'); their lifetime is capped there")
        censored[:] = False
    life[censored] = total_days
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
        events=n_events,
        captures=n_captures,
        warnings=warnings,
        capacity_mAh=float(np.median(capacity)),
        brownout_soc=1.0 - dod_v,
        loads=loads,
    )
