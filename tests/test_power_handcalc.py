"""docs/power.md's hand calculations of the default camera trap and the CR2032 doorbell, figure by figure,
against the simulator (deterministic runs): lifetimes within 1 %.

Every figure below is typed from the profiles as the document does it; the simulator composes the same
profiles through edge.power.device and steps the battery day by day.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.power.device import build_device
from edge.power.profiles import load_device
from edge.power.simulate import SimOptions, simulate


def k_mean(pct_per_year: float, mean_C: float, amplitude_C: float) -> float:
    """Mean daily self-discharge fraction over a seasonal year (the rate doubles per +10 C)."""
    days = np.arange(366)
    temps = mean_C - amplitude_C * np.cos(2 * np.pi * (days - 15) / 365.25)
    return float(np.mean(1 - (1 - pct_per_year / 100) ** (2 ** ((temps - 20) / 10) / 365)))


def lifetime_days(capacity_mAh: float, usable: float, k: float, q_mAh_day: float) -> float:
    """R(t) = (C + q/k) e^(-kt) - q/k reaches (1 - usable) C."""
    a = q_mAh_day / k
    return -math.log((a + capacity_mAh * (1 - usable)) / (capacity_mAh + a)) / k


def _sim_days(name: str, inference_uJ: float, inference_ms: float, years: float, process: str) -> float:
    device = load_device(name)
    model = build_device(device, inference_uJ, inference_ms)
    model = type(model)(**{**model.__dict__, "cell": model.cell.model_copy(update={"shelf_life_years": None})})
    sim = simulate(model, device, SimOptions(runs=8, seed=2, max_years=years, uncertain=False, process=process))
    assert not sim.censored.any()
    return float(np.mean(sim.lifetimes_days))


def test_default_camera_trap_by_hand() -> None:
    run_uW = 3300 * 3.0                                    # nRF52840 run current x supply
    sleep_uW = 3.16 * 3.0 + 1.0 * 3.0 + 0.5 * 3.0          # MCU System ON + PIR + leakage = 13.98 uW
    to_uA = 1 / (2 * 1.5 * 0.9)                            # 2x AA in series, 90 % buck: uW -> uA
    sleep_uA = sleep_uW * to_uA + 0.06                     # + buck quiescent = 5.238 uA
    packet_uJ = 500 * 3.0 * 400e-6 + 3 * 4800 * 3.0 * (140 + (10 + 16) * 8) * 1e-6  # start-up + 3 channels
    packet_ms = (400 + 3 * (140 + 208)) / 1000             # 1.444 ms
    beacon_uJ = packet_uJ + run_uW * 3e-6 + run_uW * packet_ms * 1e-3   # every 60 s
    beacon_uA = beacon_uJ / 60 * to_uA
    wake_uJ = 2.5 * (run_uW * 3e-6 + run_uW * 2e-3)        # 2.5 PIR pulses, 2 ms awake each
    capture_ms = 30 + 3 * 33.3 + 5                         # power-up, 2 settle + 1 frame, 5 ms overhead
    capture_uJ = 400 * 2.8 * 30e-3 + 3 * 714 * 2.8 * 33.3e-3 + run_uW * capture_ms * 1e-3
    inference_uJ = 3336.0                                  # an example figure (docs/power.md)
    uplink_uJ = 0.3 * 3 * (packet_uJ + run_uW * packet_ms * 1e-3)  # 30 % detections x 3 repeats
    event_uC = (wake_uJ + capture_uJ + inference_uJ + uplink_uJ) * to_uA  # uJ / (3.0 V x 0.9)
    avg_uA = sleep_uA + beacon_uA + 12 * event_uC / 86400
    assert avg_uA == pytest.approx(5.68, abs=0.01)
    k = k_mean(1.0, 12.0, 10.0)                            # Li-FeS2 1 %/year at 20 C, 12 +- 10 C
    usable = 0.95 + (1.0 - 0.95) * 2 / 20                  # coldest day 2 C on the temperature table: 0.955
    hand = lifetime_days(3500, usable, k, avg_uA * 24 / 1000)
    assert hand / 365.25 == pytest.approx(54.8, abs=0.1)
    assert _sim_days("camera-trap-nrf52840", inference_uJ, 337.0, 70, "poisson") == pytest.approx(hand, rel=0.01)


def test_cr2032_doorbell_by_hand() -> None:
    run_uW = 3300 * 3.0
    to_uA = 1 / 3.0                                        # one CR2032, no regulator (efficiency 1)
    sleep_uA = (3.16 * 3.0 + 1.0 * 3.0 + 0.5 * 3.0) * to_uA   # 4.66 uA
    packet_uJ = 500 * 3.0 * 400e-6 + 3 * 4800 * 3.0 * (140 + (20 + 16) * 8) * 1e-6
    packet_ms = (400 + 3 * (140 + 288)) / 1000
    wake_uJ = 2.5 * (run_uW * 3e-6 + run_uW * 2e-3)
    capture_ms = 100 + 8 * 33.3 + 3 * 5                    # OV2640 power-up, 5 settle + 3 frames, 3 x 5 ms
    capture_uJ = 20000 * 3.0 * 100e-3 + 8 * 33000 * 3.0 * 33.3e-3 + run_uW * capture_ms * 1e-3
    inference_uJ = 3 * 3336.0                              # 3 frames per event
    uplink_uJ = 1.0 * 3 * (packet_uJ + run_uW * packet_ms * 1e-3)   # always, 3 repeats
    event_uC = (wake_uJ + capture_uJ + inference_uJ + uplink_uJ) * to_uA
    avg_uA = sleep_uA + 30 * event_uC / 86400
    # the peak: capture, PIR + leakage + MCU run + the OV2640's larger of active (99 mW) and power-up (60 mW)
    peak_mA = (1.0 * 3.0 + 0.5 * 3.0 + run_uW + max(33000 * 3.0, 20000 * 3.0)) * to_uA / 1000
    assert peak_mA == pytest.approx(36.3, abs=0.1)
    # brown-out: OCV - 36.3 mA x 20 ohm = OCV - 0.727 V >= 2.2 V -> OCV >= 2.927 V: depth of discharge 0.373
    dod_v = 0.1 + (3.0 - (2.2 + peak_mA * 1e-3 * 20)) / (3.0 - 2.9) * 0.4
    usable = min(dod_v, 0.85 + 0.15 * (18 - 8) / 20)       # temperature 18 +- 8 C: coldest 10 C -> 0.925
    k = k_mean(1.0, 18.0, 8.0)
    hand = lifetime_days(235, usable, k, avg_uA * 24 / 1000)
    assert _sim_days("doorbell-cr2032-ov2640", inference_uJ / 3, 337.0, 5, "poisson") == pytest.approx(hand, rel=0.01)
