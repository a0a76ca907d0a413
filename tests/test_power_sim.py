"""Battery simulator against closed forms, event processes, and the peak-current warning."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from power_fixtures import flat_cell

from edge.errors import ConfigError
from edge.power import events
from edge.power.device import DeviceModel, PeakLoad, build_device
from edge.power.profiles import load_device
from edge.power.schema import EventSpec
from edge.power.simulate import SimOptions, simulate

DEVICE = load_device("camera-trap-nrf52840")
STILL = DEVICE.model_copy(update={
    "events": EventSpec(process="poisson", rate_per_day=0.0),
    "environment": DEVICE.environment.model_copy(update={"temperature_seasonal_amplitude_C": 0.0,
                                                         "temperature_mean_C": 20.0}),
})
ONE_RUN = SimOptions(runs=1, uncertain=False, max_years=20)


def _model(sleep_uA: float, cell_mAh: float = 1000.0, event_uJ: float = 0.0, self_discharge: float = 0.0,
           **extra: object) -> DeviceModel:
    """A 3 V device without regulator losses: battery current = load current."""
    fields = dict(
        name="test", cell=flat_cell(cell_mAh, self_discharge), cells_in_series=1, cells_in_parallel=1, pack_V=3.0,
        regulator_efficiency=1.0, regulator_quiescent_current_uA=0.0, min_voltage_V=1.0,
        sleep_power_uW=sleep_uA * 3.0, wake_energy_uJ=0.0, pulses_per_motion=1.0, capture_energy_uJ=event_uJ,
        inference_energy_uJ=0.0, uplink_energy_uJ=0.0, uplink_probability=0.0, beacon_power_uW=0.0,
        refractory_s=0.0, inference_latency_ms=0.0, event_time_ms=0.0, peaks=(PeakLoad("capture", 1.0, 1.0),),
    )
    fields.update(extra)
    return DeviceModel(**fields)


def test_constant_load_matches_capacity_over_current() -> None:
    result = simulate(_model(sleep_uA=100.0), STILL, ONE_RUN)
    expected_days = 1000.0 / 0.100 / 24.0  # 1000 mAh at 100 uA
    assert result.lifetimes_days[0] == pytest.approx(expected_days, rel=0.01)
    assert result.breakdown_mAh["sleep"] == pytest.approx(1000.0, rel=0.01)


def test_pure_sleep_of_the_real_device() -> None:
    model = build_device(STILL.model_copy(update={"behaviour": STILL.behaviour.model_copy(
        update={"beacon_interval_s": None})}), inference_energy_uJ=0.0, inference_latency_ms=0.0)
    model = dataclasses.replace(model, cell=flat_cell(100.0))
    result = simulate(model, STILL, ONE_RUN)
    # nRF52840 3.16 uA x 3 V + PIR 1 uA x 3 V + 0.5 uA x 3 V, through a 90 % buck from 3 V, + 0.06 uA quiescent
    sleep_uA = (3.16 + 1.0 + 0.5) * 3.0 / (3.0 * 0.9) + 0.06
    assert model.sleep_current_uA == pytest.approx(sleep_uA)
    assert result.lifetimes_days[0] == pytest.approx(100.0 / (sleep_uA / 1000) / 24, rel=0.01)


def test_single_event_type_matches_closed_form() -> None:
    rate, event_uJ, sleep = 500.0, 3000.0, 20.0  # events/day, uJ/event, uA
    device = STILL.model_copy(update={"events": EventSpec(process="poisson", rate_per_day=rate)})
    result = simulate(_model(sleep_uA=sleep, event_uJ=event_uJ), device, ONE_RUN)
    event_uA = rate * event_uJ / 3.0 / 86400.0  # uC per second
    expected_days = 1000.0 / ((sleep + event_uA) / 1000) / 24
    assert result.lifetimes_days[0] == pytest.approx(expected_days, rel=0.01)
    assert result.captures == result.events  # refractory 0: every motion is captured


def test_self_discharge_matches_the_discrete_closed_form() -> None:
    result = simulate(_model(sleep_uA=20.0, self_discharge=10.0), STILL, ONE_RUN)
    k = 1 - 0.9 ** (1 / 365)  # per day at 20 C
    q = 0.020 * 24  # mAh per day
    days = math.log((q / k) / (1000 + q / k)) / math.log(1 - k)
    assert result.lifetimes_days[0] == pytest.approx(days, rel=0.01)
    assert result.breakdown_mAh["self_discharge"] > 0.1 * result.breakdown_mAh["sleep"]


def test_cold_winters_and_load_shorten_life() -> None:
    cold = STILL.model_copy(update={"environment": STILL.environment.model_copy(
        update={"temperature_mean_C": -5.0, "temperature_seasonal_amplitude_C": 15.0})})
    cell = load_device("camera-trap-nrf52840-cr2032").cell
    from edge.power.profiles import load_cell

    model = _model(sleep_uA=10.0, cell=load_cell(cell))
    warm = simulate(model, STILL, ONE_RUN).lifetimes_days[0]
    assert simulate(model, cold, ONE_RUN).lifetimes_days[0] < 0.95 * warm
    heavy = _model(sleep_uA=2000.0, cell=load_cell(cell))  # 2 mA: CR2032 capacity falls to ~180 mAh
    assert simulate(heavy, STILL, ONE_RUN).lifetimes_days[0] < 0.85 * 235 / 2.0 / 24


def test_peak_current_warning_for_a_coin_cell_camera() -> None:
    device = load_device("doorbell-cr2032-ov2640")
    model = build_device(device, inference_energy_uJ=3000.0, inference_latency_ms=300.0)
    result = simulate(model, device, SimOptions(runs=20))
    assert result.warnings[0] == (
        "peak current 36.3 mA per cell in state 'capture' exceeds the max pulse current 15 mA of cell 'cr2032' (2.4x)")
    assert "falls below 2.2 V after 40 % depth of discharge" in result.warnings[1]
    # one pulse model: the brown-out under the peak leaves 40 % of the capacity, no second derating on top
    assert result.brownout_soc == pytest.approx(0.6, abs=0.01) and result.capacity_mAh > 200
    assert result.percentile_days(95) < 600


def test_monte_carlo_spreads_and_is_reproducible() -> None:
    model = _model(sleep_uA=50.0, event_uJ=2000.0)
    device = DEVICE.model_copy(update={"events": EventSpec(process="bursty", rate_per_day=50)})
    a = simulate(model, device, SimOptions(runs=100, seed=3, max_years=5))
    b = simulate(model, device, SimOptions(runs=100, seed=3, max_years=5))
    assert np.array_equal(a.lifetimes_days, b.lifetimes_days)
    assert a.percentile_days(5) < a.percentile_days(50) < a.percentile_days(95)
    assert np.all(np.diff(a.soc_p50) <= 1e-6)  # state of charge never rises


def test_poisson_and_diurnal_rates() -> None:
    rng = np.random.default_rng(0)
    rates = np.full(4, 1000 / 86400)
    run, t = events.poisson(rng, rates, 0.0, 100 * 86400.0)
    assert np.bincount(run).tolist() == pytest.approx([100_000] * 4, rel=0.02)
    assert np.all(np.diff(t)[np.diff(run) == 0] >= 0)
    run, t = events.diurnal(rng, rates, 0.0, 100 * 86400.0, amplitude=0.5, peak_hour=18.0)
    hours = np.bincount(((t / 3600) % 24).astype(int), minlength=24)
    assert t.size == pytest.approx(400_000, rel=0.02)
    assert hours[18] / hours[6] == pytest.approx(1.5 / 0.5, rel=0.1)


def test_bursty_keeps_the_mean_rate_and_clusters() -> None:
    rng = np.random.default_rng(1)
    _run, t = events.bursty(rng, np.full(1, 100 / 86400), 0.0, 200 * 86400.0, mean_size=4.0, spread_s=30.0)
    assert t.size == pytest.approx(20_000, rel=0.05)
    gaps = np.diff(t)
    assert gaps.std() / gaps.mean() > 1.5  # a Poisson process has 1.0


def test_refractory_merges_within_a_run_only() -> None:
    run = np.array([0, 0, 0, 0, 1, 1])
    t = np.array([0.0, 5.0, 14.0, 30.0, 1.0, 2.0])
    assert events.accepted(run, t, 10.0).tolist() == [True, False, False, True, True, False]


def test_replay_log(tmp_path: Path) -> None:
    log = tmp_path / "triggers.csv"
    log.write_text("time,source\n2024-05-01T06:00:00,pir\n2024-05-01T06:00:30,pir\n2024-05-02T18:00:00Z,pir\n")
    times = events.read_trigger_log(log)
    assert times.tolist() == [0.0, 30.0, 129600.0]
    _run, t = events.replay(np.random.default_rng(0), 1, times, 0.0, 10 * 86400.0)
    assert t.size == 15  # a 2-day log repeated over 10 days
    log.write_text("time\n2024-05-01T06:00:00\nyesterday\n")
    with pytest.raises(ConfigError) as err:
        events.read_trigger_log(log)
    assert err.value.where == f"{log}:3"
    assert err.value.message == "trigger time 'yesterday' is neither seconds nor ISO 8601"


def test_replayed_trigger_log_drives_the_simulation(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("\n".join(str(60.0 * i) for i in range(100)) + "\n")  # 100 triggers a minute apart, once a day
    device = STILL.model_copy(update={"events": EventSpec(process="replay", replay_csv="log.csv")})
    model = _model(sleep_uA=10.0, event_uJ=30_000.0, refractory_s=0.0)
    result = simulate(model, device, SimOptions(runs=1, uncertain=False, max_years=6), base_dir=tmp_path)
    days = result.lifetimes_days[0]
    expected = 1000.0 / ((10.0 + 100 * 30_000.0 / 3.0 / 86400.0) / 1000) / 24
    assert days == pytest.approx(expected, rel=0.01)
    assert result.events == 100 * 2190  # the log repeated every day of the 6 simulated years


@given(sleep_uA=st.floats(1.0, 2000.0), capacity_mAh=st.floats(20.0, 5000.0))
@settings(max_examples=25, deadline=None)
def test_lifetime_is_capacity_over_current_for_any_constant_load(sleep_uA: float, capacity_mAh: float) -> None:
    expected = capacity_mAh / (sleep_uA / 1000) / 24
    opts = SimOptions(runs=1, uncertain=False, max_years=1.5 * expected / 365.25)
    days = simulate(_model(sleep_uA=sleep_uA, cell_mAh=capacity_mAh), STILL, opts).lifetimes_days[0]
    assert days == pytest.approx(expected, rel=1e-3)


def test_lifetime_is_capped_at_the_cells_shelf_life() -> None:
    model = build_device(DEVICE, inference_energy_uJ=1600.0, inference_latency_ms=161.0)
    result = simulate(model, DEVICE, SimOptions(runs=20, max_years=30))
    assert result.lifetimes_days.tolist() == [20 * 365.25] * 20 and not result.censored.any()
    assert result.warnings == ["100 % of the runs reach the cell's rated shelf life of 20 years ('aa-lifes2'); "
                               "their lifetime is capped there"]
