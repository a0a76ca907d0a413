"""Battery simulator speed: one simulated year (events/s) and a 1,000-run Monte Carlo.

Targets (issue 5): a year of events < 0.1 s, 1,000-run Monte Carlo < 10 s on 2 cores.
Prints wall and CPU seconds (CPU time is steadier on a shared machine). Run:
    .venv/bin/python bench/bench_battery.py [--runs 1000] [--years 10]
"""

from __future__ import annotations

import argparse
import time

from edge.paths import DEFAULT_DEVICE
from edge.power.device import build_device
from edge.power.profiles import load_device
from edge.power.simulate import SimOptions, simulate


def timed(fn, repeat: int = 1) -> tuple[float, float, object]:
    """Best-of-`repeat` wall and CPU seconds of fn() and its last result."""
    best_wall = best_cpu = float("inf")
    result = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        best_wall, best_cpu = min(best_wall, time.perf_counter() - w), min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, result


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default=DEFAULT_DEVICE)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--years", type=float, default=10.0, help="Monte Carlo horizon (the stage default)")
    args = parser.parse_args()
    device = load_device(args.device)
    model = build_device(device, inference_energy_uJ=3300.0, inference_latency_ms=335.0)  # pruned ViT-lite on nRF

    print(f"device {device.name}, process {device.events.process}")
    for rate in (device.events.rate_per_day, 1000.0, 10000.0):
        opts = SimOptions(runs=1, uncertain=False, max_years=1.0, event_rate_per_day=rate)
        wall, cpu, res = timed(lambda o=opts: simulate(model, device, o), repeat=5)
        print(f"one year, 1 run, {rate:>7.0f} events/day: {res.events:>8,} events in {wall * 1e3:7.1f} ms wall "
              f"({cpu * 1e3:7.1f} ms CPU) -> {res.events / wall:,.0f} events/s; target < 100 ms: "
              f"{'ok' if wall < 0.1 else 'MISSED'}")
    for years in (1.0, args.years):
        opts = SimOptions(runs=args.runs, max_years=years)
        wall, cpu, res = timed(lambda o=opts: simulate(model, device, o))
        print(f"Monte Carlo {args.runs} runs x {years:g} y: {res.events:,} events in {wall:.2f} s wall "
              f"({cpu:.2f} s CPU), {res.events / wall:,.0f} events/s; "
              f"target < 10 s: {'ok' if wall < 10 else 'MISSED'}; "
              f"P5/P50/P95 = {res.percentile_days(5):.0f}/{res.percentile_days(50):.0f}/"
              f"{res.percentile_days(95):.0f} d")


if __name__ == "__main__":
    main()
