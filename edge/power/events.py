"""Motion-event processes, vectorised over many Monte Carlo runs at once.

Each generator returns `(run, t_s)`: the run index and the time in seconds of every event in
the window [t0, t1), sorted by run and then time. Processes: homogeneous Poisson, diurnal
non-homogeneous Poisson (thinning), bursty/clustered (Neyman-Scott: Poisson cluster starts,
1 + Poisson(m - 1) events each, exponential offsets) and replay of a recorded trigger log.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np

from edge.errors import ConfigError
from edge.power.schema import EventSpec

DAY_S = 86400.0
Events = tuple[np.ndarray, np.ndarray]


def _sort(run: np.ndarray, t: np.ndarray, span: float) -> Events:
    """Sort by run, then time, with one float sort (times lie in a window shorter than `span`)."""
    order = np.argsort(run * span + t, kind="stable")
    return run[order], t[order]


def _unit_block(rng: np.random.Generator, means: np.ndarray) -> np.ndarray:
    """A [runs, K] matrix of cumulative Exp(1) sums covering [0, means[r]) in every row.

    K has room for the largest mean + 8 sigma; more columns are drawn in the rare case a row falls short.
    """
    top = float(means.max(initial=0.0))
    cols = int(np.ceil(top + 8.0 * np.sqrt(top) + 16))
    s = np.cumsum(rng.standard_exponential((means.size, cols)), axis=1)
    while means.size and (s[:, -1] < means).any():
        more = np.cumsum(rng.standard_exponential((means.size, cols)), axis=1) + s[:, -1:]
        s = np.concatenate((s, more), axis=1)
    return s


def _unit_arrivals(rng: np.random.Generator, means: np.ndarray, groups: int = 8) -> Events:
    """Arrivals of a unit-rate Poisson process on [0, means[r]) for each run r, as (run, s).

    Each run's arrivals are contiguous and increasing. Runs are blocked by similar means so the
    padded matrices waste little work when the Monte Carlo rates differ between runs.
    """
    order = np.argsort(means, kind="stable")
    runs, values = [], []
    for block in np.array_split(order, min(groups, max(means.size, 1))):
        if block.size == 0:
            continue
        s = _unit_block(rng, means[block])
        valid = s < means[block][:, None]
        runs.append(np.broadcast_to(block[:, None], s.shape)[valid])
        values.append(s[valid])
    if not runs:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(runs), np.concatenate(values)


def poisson(rng: np.random.Generator, rates_per_s: np.ndarray, t0: float, t1: float) -> Events:
    """Homogeneous Poisson events with one rate per run (exponential gaps, no sorting needed)."""
    rates = np.maximum(np.asarray(rates_per_s, dtype=float), 1e-300)
    run, s = _unit_arrivals(rng, rates * (t1 - t0))
    return run, t0 + s / rates[run]


def _diurnal_g(t: np.ndarray, amplitude: float, peak_hour: float) -> np.ndarray:
    """Integral of 1 + a cos(2 pi (t/day - peak/24)) from 0 to t (seconds); G(t + day) = G(t) + day."""
    w = 2 * np.pi / DAY_S
    phase = 2 * np.pi * peak_hour / 24.0
    return t + amplitude / w * (np.sin(w * t - phase) + np.sin(phase))


def diurnal(rng: np.random.Generator, rates_per_s: np.ndarray, t0: float, t1: float,
            amplitude: float, peak_hour: float) -> Events:
    """Non-homogeneous Poisson with rate(t) = mean (1 + a cos(2 pi (hour - peak) / 24)).

    Exact time change: unit-rate arrivals u are mapped through the inverse of the cumulative
    intensity (a 10 s lookup table over one day, which repeats), so no thinning or sorting is needed.
    """
    rates = np.maximum(np.asarray(rates_per_s, dtype=float), 1e-300)
    g0, g1 = (float(_diurnal_g(np.asarray(x), amplitude, peak_hour)) for x in (t0, t1))
    run, s = _unit_arrivals(rng, rates * (g1 - g0))
    fine = np.linspace(0.0, DAY_S, 86401)
    n_tab = 8640
    inverse = np.interp(np.linspace(0.0, DAY_S, n_tab + 1), _diurnal_g(fine, amplitude, peak_hour), fine)
    # the inverse repeats every day (G(t + day) = G(t) + day): for many events, unroll it over the
    # window once, so each event needs only index arithmetic and two gathers (no search, no division)
    first = np.floor(g0 / DAY_S)
    n_days = int(np.ceil(g1 / DAY_S) - first) + 1
    scale = n_tab / DAY_S / rates  # table positions per unit arrival, per run
    pos = s * scale[run] + (g0 - first * DAY_S) * (n_tab / DAY_S)
    idx = pos.astype(np.int64)
    if s.size < n_days * n_tab:  # few events: wrap the one-day table instead of unrolling it
        day, within = np.divmod(idx, n_tab)
        t = (first + day) * DAY_S + inverse[within] + (pos - idx) * np.diff(inverse)[within]
    else:
        table = ((first + np.arange(n_days))[:, None] * DAY_S + inverse[None, :-1]).ravel()
        table = np.append(table, (first + n_days) * DAY_S)
        t = table[idx] + (pos - idx) * np.diff(table)[idx]
    return run, np.minimum(t, np.nextafter(t1, t0))


def bursty(rng: np.random.Generator, rates_per_s: np.ndarray, t0: float, t1: float,
           mean_size: float, spread_s: float) -> Events:
    """Clustered events: the mean rate is preserved (cluster rate = rate / mean_size)."""
    run, start = poisson(rng, rates_per_s / mean_size, t0, t1)
    sizes = 1 + rng.poisson(mean_size - 1, start.size)
    run = np.repeat(run, sizes)
    t = np.repeat(start, sizes)
    first = np.zeros(t.size, dtype=bool)
    first[np.cumsum(sizes) - sizes] = True
    t = t + np.where(first, 0.0, rng.exponential(spread_s, t.size))
    keep = t < t1
    return _sort(run[keep], t[keep], (t1 - t0) * 2 + 1)


def read_trigger_log(path: str | Path) -> np.ndarray:
    """Trigger times (s from the first) from a CSV whose first column is ISO 8601 time or seconds.

    A header line is allowed. Raises ConfigError naming the file and line of a bad row.
    """
    path = Path(path)
    times: list[float] = []
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except OSError as exc:
        raise ConfigError(f"cannot read trigger log: {exc.strerror}", where=str(path)) from exc
    for lineno, row in enumerate(rows, 1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        cell = row[0].strip()
        try:
            times.append(float(cell))
        except ValueError:
            try:
                stamp = dt.datetime.fromisoformat(cell.replace("Z", "+00:00"))
            except ValueError:
                if lineno == 1:
                    continue  # header
                raise ConfigError(
                    f"trigger time {cell!r} is neither seconds nor ISO 8601", where=f"{path}:{lineno}",
                    hint="first column: seconds (e.g. 3600.5) or a time stamp (e.g. 2024-05-01T06:30:00)",
                ) from None
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=dt.timezone.utc)
            times.append(stamp.timestamp())
    if not times:
        raise ConfigError("the trigger log has no events", where=str(path))
    arr = np.sort(np.asarray(times, dtype=float))
    return arr - arr[0]


def replay(rng: np.random.Generator, n_runs: int, log_s: np.ndarray, t0: float, t1: float) -> Events:
    """The log repeated back to back (period = its span rounded up to whole days), random phase per run."""
    period = max(np.ceil((log_s[-1] + 1.0) / DAY_S), 1.0) * DAY_S
    phase = rng.uniform(0, period, n_runs) if n_runs > 1 else np.zeros(1)
    runs, times = [], []
    for r in range(n_runs):
        k0 = int(np.floor((t0 + phase[r]) / period)) - 1
        k1 = int(np.ceil((t1 + phase[r]) / period)) + 1
        t = (np.arange(k0, k1)[:, None] * period + log_s[None, :]).ravel() - phase[r]
        t = t[(t >= t0) & (t < t1)]
        runs.append(np.full(t.size, r))
        times.append(t)
    return np.concatenate(runs), np.concatenate(times)


def generate(rng: np.random.Generator, spec: EventSpec, rates_per_day: np.ndarray, t0: float, t1: float,
             log_s: np.ndarray | None = None) -> Events:
    """Events of `spec` for every run (rates_per_day has one entry per run) in [t0, t1)."""
    rates = np.asarray(rates_per_day, dtype=float) / DAY_S
    if spec.process == "poisson":
        return poisson(rng, rates, t0, t1)
    if spec.process == "diurnal":
        return diurnal(rng, rates, t0, t1, spec.diurnal_amplitude, spec.peak_hour)
    if spec.process == "bursty":
        return bursty(rng, rates, t0, t1, spec.cluster_mean_size, spec.cluster_spread_s)
    if log_s is None:
        raise ConfigError("process 'replay' needs events.replay_csv (a CSV of trigger times)", where="events")
    return replay(rng, len(rates), log_s, t0, t1)


def accepted(run: np.ndarray, t: np.ndarray, refractory_s: float) -> np.ndarray:
    """Mask of events that start a capture: retriggerable hold-off, an event is merged into the previous
    one when it comes less than `refractory_s` after the previous motion of the same run."""
    if t.size == 0:
        return np.zeros(0, dtype=bool)
    keep = np.ones(t.size, dtype=bool)
    same = run[1:] == run[:-1]
    keep[1:] = ~same | (np.diff(t) >= refractory_s)
    return keep
