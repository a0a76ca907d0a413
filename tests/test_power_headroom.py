"""Headroom (largest event rate / energy per inference that meet the target) against the simulator."""

from __future__ import annotations

import pytest

from edge.power.device import build_device
from edge.power.headroom import budget_draw, headroom, lifetime_days
from edge.power.profiles import load_device
from edge.power.simulate import SimOptions, simulate

DEVICE = load_device("camera-trap-nrf52840")
OPTS = SimOptions(runs=200, seed=1, max_years=1.3)
TARGET = 365.25


def _p5(inference_uJ: float, rate: float | None = None) -> float:
    sim = simulate(build_device(DEVICE, inference_uJ, 100.0), DEVICE,
                   SimOptions(runs=OPTS.runs, seed=OPTS.seed, max_years=OPTS.max_years, event_rate_per_day=rate))
    return sim.percentile_days(5)


def _room(inference_uJ: float, rate: float | None = None):
    sim = simulate(build_device(DEVICE, inference_uJ, 100.0), DEVICE,
                   SimOptions(runs=OPTS.runs, seed=OPTS.seed, max_years=OPTS.max_years, event_rate_per_day=rate))
    assert sim.loads is not None
    return headroom(sim.loads, TARGET, 0.95, inference_uJ, rate or DEVICE.events.rate_per_day)


def test_closed_forms_invert_each_other() -> None:
    q = budget_draw(1000.0, 0.9, 1e-4, 400.0)
    assert float(lifetime_days(1000.0, 0.9, 1e-4, q)) == pytest.approx(400.0, rel=1e-9)
    assert float(lifetime_days(1000.0, 0.9, 0.0, 2.0)) == pytest.approx(450.0)


def test_max_energy_per_inference_is_where_the_simulated_p5_crosses_the_target() -> None:
    room = _room(1340.0)
    assert room.max_inference_uJ > 1e6  # the default camera trap has a lot of room per inference
    assert _p5(0.9 * room.max_inference_uJ) >= TARGET
    assert _p5(1.1 * room.max_inference_uJ) < TARGET


def test_max_event_rate_is_where_the_simulated_p5_crosses_the_target() -> None:
    heavy = 200_000.0  # 0.2 J per inference keeps the crossing rate low enough to simulate quickly
    room = _room(heavy)
    assert 10 < room.max_event_rate_per_day < 2000
    assert _p5(heavy, 0.85 * room.max_event_rate_per_day) >= TARGET
    assert _p5(heavy, 1.15 * room.max_event_rate_per_day) < TARGET


def test_reports_say_what_they_are(tmp_path, capsys) -> None:
    import json
    import xml.etree.ElementTree as ET

    from edge.cli import main

    code = main(["battery", "check", "--inference-uJ", "1340", "--inference-ms", "136", "--runs", "50",
                 "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "headroom at P5: the target 365 d (1.00 y) still holds up to " in out
    assert "inputs: " in out and "estimated: " in out and "given" in out
    summary = (tmp_path / "summary.md").read_text()
    assert "Average battery current of the P5 run" in summary and "(the median run: " in summary
    assert "| MCU sleep current | 3.16 uA | cited | mcus/nrf52840.yaml:" in summary
    assert "| energy per inference | 1,340 uJ | given |" in summary
    assert "the cell's rated shelf life is 20 y" in summary
    props = {p.get("name"): p.get("value") for p in ET.parse(tmp_path / "junit.xml").getroot().iter("property")}
    assert props["avg_current_uA"].endswith("(P5 run)") and float(props["headroom.max_inference_uJ"]) > 1e6
    assert props["input.cell internal resistance"].startswith("0.15 ohm estimated: cells/aa-lifes2.yaml:")
    gate = json.loads((tmp_path / "lifetime.json").read_text())["gate"]
    assert gate["current_run"] == "P5" and gate["headroom"]["max_event_rate_per_day"] > 12
    assert {i["status"] for i in gate["inputs"]} == {"given", "cited", "estimated"}
