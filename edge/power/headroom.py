"""How far the device is from its lifetime target: the largest event rate and the largest energy
per inference that still meet it, and the lifetime beyond the simulated horizon.

Analytic, from each Monte Carlo run's expected loads (edge.power.simulate.RunLoads): with a
constant draw q (mAh/day) and self-discharge k per day of the remaining charge, the remaining
charge is R(t) = (C + q/k) e^(-kt) - q/k, and the run ends when C - R(t) reaches the usable share
u C (brown-out depth of discharge, coldest-day temperature factor). Solved for t (the lifetime)
or for q (the draw that lasts exactly the target). The gated percentile is taken over these
projected lifetimes, so it is defined beyond the simulated horizon too; the largest rate and
energy are the scale factors of the event (or inference) load at which that percentile equals
the target. It ignores the seasonal
timing of the cold and the load dependence of capacity; tests/test_power_headroom.py checks it
against the simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge.power.simulate import RunLoads

HOURS = 24.0


@dataclass(frozen=True)
class Headroom:
    """The margin to the target at the gated percentile."""

    percentile: float  # e.g. 5 for P5
    projected_lifetime_days: float  # at the gated percentile, not capped by the horizon or shelf life
    budget_current_uA: float  # average battery current that lasts exactly the target
    current_uA: float  # expected average battery current of that run
    event_rate_per_day: float  # the configured mean rate
    max_event_rate_per_day: float  # largest mean rate that still meets the target (inf: sleep alone fails)
    inference_uJ: float  # per inference, as simulated
    max_inference_uJ: float  # largest energy per inference that still meets the target
    hold_off_limit_per_day: float = float("inf")  # events the retriggerable hold-off lets through at most

    def to_json(self) -> dict[str, Any]:
        """Plain data for lifetime.json."""
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(self).items()}


def lifetime_days(capacity_mAh: np.ndarray, usable: float, k: float, draw_mAh_day: np.ndarray) -> np.ndarray:
    """Days until the drawn charge plus self-discharge reaches `usable` x capacity."""
    c, q = np.asarray(capacity_mAh, float), np.maximum(np.asarray(draw_mAh_day, float), 1e-12)
    if k <= 0:
        return usable * c / q
    a = q / k
    return -np.log((a + c * (1 - usable)) / (c + a)) / k


def budget_draw(capacity_mAh: float, usable: float, k: float, days: float) -> float:
    """The constant draw (mAh/day) that reaches the usable share exactly after `days` (<= 0: never)."""
    if k <= 0:
        return usable * capacity_mAh / days
    e = np.exp(-k * days)
    return float(k * (capacity_mAh * e - capacity_mAh * (1 - usable)) / (1 - e))


def _crossing(life_at: Callable[[float], np.ndarray], q: float, target_days: float) -> float:
    """The factor f (>= 0) at which the q-th percentile of life_at(f) equals the target (bisection in log f)."""
    def low(f: float) -> float:
        return float(np.percentile(life_at(f), q))
    if low(0.0) < target_days:
        return 0.0
    lo, hi = 1e-9, 1.0
    while low(hi) >= target_days:
        lo, hi = hi, hi * 10
        if hi > 1e15:
            return np.inf
    for _ in range(60):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if low(mid) >= target_days else (lo, mid)
    return float(lo)


def headroom(loads: RunLoads, target_days: float, confidence: float, inference_uJ: float,
             event_rate_per_day: float, refractory_s: float = 0.0) -> Headroom:
    """The margin at the (1 - confidence) percentile of projected lifetimes.

    The percentile is recomputed for every trial load (a heavier inference reorders the runs)."""
    q = 100 * (1 - confidence)
    to_day = HOURS / 1000.0

    def life(base: np.ndarray, events: np.ndarray) -> np.ndarray:
        return lifetime_days(loads.capacity_mAh, loads.usable_fraction, loads.self_discharge_per_day,
                             (base + events) * to_day)

    other = loads.event_uA - loads.inference_uA
    now = life(loads.base_uA, loads.event_uA)
    f_rate = _crossing(lambda f: life(loads.base_uA, f * loads.event_uA), q, target_days)
    f_inf = _crossing(lambda f: life(loads.base_uA, other + f * loads.inference_uA), q, target_days)
    order = np.argsort(now)
    r = int(order[min(int(q / 100 * order.size), order.size - 1)])
    budget = budget_draw(float(loads.capacity_mAh[r]), loads.usable_fraction, loads.self_discharge_per_day,
                         target_days) / to_day
    return Headroom(
        percentile=q, projected_lifetime_days=float(np.percentile(now, q)), budget_current_uA=budget,
        current_uA=float(loads.base_uA[r] + loads.event_uA[r]), event_rate_per_day=event_rate_per_day,
        max_event_rate_per_day=f_rate * event_rate_per_day, inference_uJ=inference_uJ,
        max_inference_uJ=f_inf * inference_uJ,
        hold_off_limit_per_day=86400.0 / refractory_s if refractory_s > 0 else float("inf"),
    )
