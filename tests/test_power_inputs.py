"""Inputs that cannot lie: NaN, infinity, negative and zero on every numeric battery/profile input.

Table-driven: every numeric leaf of one shipped profile of each kind, and every numeric option of
`edge battery check` / `edge profile`, gets NaN, inf, -1 and 0. Each must be refused with exit 2
(ConfigError) naming the field, and the file and line for YAML, unless the table below says the
value is a real setting (a negative temperature, no regulator, no events). Never a PASS.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.cli import main
from edge.errors import ConfigError
from edge.power.profiles import KINDS, list_profiles, load_file, profiles_dir

BAD = {"nan": math.nan, "inf": math.inf, "negative": -1.0, "zero": 0.0}
# (field, bad value name) pairs that are real settings; the field is the dotted path without list indices
ALLOWED = {
    "zero": {"sleep_current_uA",  # radios only: 0 when the radio is inside the MCU (its sleep is the MCU's)
             "settle_frames", "rx_listen_us", "mac_overhead_bytes", "rx_window_ms", "self_discharge_pct_per_year",
             "internal_resistance_ohm", "regulator_quiescent_current_uA", "other_sleep_current_uA", "tx_power_dBm",
             "events.rate_per_day", "events.diurnal_amplitude", "events.peak_hour", "behaviour.refractory_s",
             "behaviour.capture_overhead_ms", "behaviour.detection_fraction", "behaviour.payload_bytes",
             "environment.temperature_mean_C", "environment.temperature_seasonal_amplitude_C",
             "environment.coldest_day_of_year", "uncertainty.sleep_current_rel_sigma",
             "uncertainty.active_energy_rel_sigma", "uncertainty.event_rate_rel_sigma",
             "uncertainty.capacity_rel_sigma", "temperature_derating", "lora.mac_overhead_bytes",
             "lora.rx_window_ms", "ble.rx_listen_us"},
    "negative": {"tx_power_dBm", "environment.temperature_mean_C", "temperature_derating"},
}


def _leaves(data: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Paths of every numeric (non-bool) leaf."""
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _leaves(v, (*path, k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _leaves(v, (*path, i))]
    return [path] if isinstance(data, (int, float)) and not isinstance(data, bool) else []


def _set(data: Any, path: tuple[str | int, ...], value: float) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _field(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path if isinstance(p, str))


def _allowed(path: tuple[str | int, ...], bad: str) -> bool:
    field = _field(path)
    if bad == "negative" and path[0] == "temperature_derating" and path[-1] == 0:
        return True  # temperatures below 0 C
    if bad == "zero" and path[0] == "temperature_derating":
        return True  # 0 C, or no capacity left at that temperature
    return field in ALLOWED.get(bad, set()) or str(path[-1]) in ALLOWED.get(bad, set())


# one profile per kind with every optional section (measured runs, BLE and LoRa, uncertainty, ...)
PROFILES = [("mcus", "stm32l4r5"), ("cameras", "hm01b0"), ("motion", "ekmb1101111"), ("radios", "nrf52840-ble"),
            ("radios", "sx1262"), ("cells", "cr2032"), ("devices", "camera-trap-nrf52840")]


def test_the_table_covers_every_kind() -> None:
    assert {k for k, _ in PROFILES} == set(KINDS)
    assert all(name in list_profiles(kind) for kind, name in PROFILES)


@pytest.mark.parametrize(("kind", "name"), PROFILES)
def test_every_numeric_profile_field_refuses_nan_inf_negative_zero(kind: str, name: str, tmp_path: Path) -> None:
    original = yaml.safe_load((profiles_dir() / kind / f"{name}.yaml").read_text())
    target = tmp_path / kind / f"{name}.yaml"
    target.parent.mkdir()
    problems, checked = [], 0
    for path in _leaves(original):
        for bad, value in BAD.items():
            if _get(original, path) == value:
                continue  # already that value in the shipped file (e.g. depth of discharge 0)
            data = yaml.safe_load(yaml.safe_dump(original))
            _set(data, path, int(value) if bad in ("negative", "zero") and isinstance(_get(original, path), int)
                 else value)
            target.write_text(yaml.safe_dump(data, sort_keys=False))
            checked += 1
            try:
                load_file(kind, target)
            except ConfigError as err:
                top = str(path[0])
                if top not in err.message or not (err.where or "").startswith(f"{target}:"):
                    problems.append(f"{_field(path)}={bad}: error does not name it: {err.where}: {err.message}")
                continue
            if not _allowed(path, bad):
                problems.append(f"{'.'.join(map(str, path))}={bad} was accepted")
    assert checked > 10 and not problems, "\n".join(problems)


def _get(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


BATTERY_OPTIONS = ("--inference-uJ", "--inference-ms", "--confidence", "--runs", "--seed", "--max-years",
                   "--rate-per-day", "--frames-per-event")
OPTION_ALLOWED = {("--seed", "zero"), ("--rate-per-day", "zero")}


@pytest.mark.parametrize("option", BATTERY_OPTIONS)
def test_every_numeric_battery_option_refuses_nan_inf_negative_zero(option: str, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    base = {"--inference-uJ": "1500", "--inference-ms": "150", "--runs": "5", "--max-years": "1"}
    for bad in ("nan", "inf", "-1", "0"):
        args = {**base, option: bad}
        argv = ["battery", "check", "--out", str(tmp_path), *[x for kv in args.items() for x in kv]]
        code = main(argv)
        out, err = capsys.readouterr()
        name = {"-1": "negative", "0": "zero"}.get(bad, bad)
        if (option, name) in OPTION_ALLOWED:
            assert code in (0, 1), err
            continue
        assert code == 2, f"{option} {bad}: exit {code}\n{out}{err}"
        assert f"argument {option}:" in err and "PASS" not in out


def test_profile_top_option_refuses_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("nan", "inf", "-1", "0"):
        assert main(["profile", "--model", "x.tflite", "--top", bad]) == 2
        assert "argument --top:" in capsys.readouterr().err


@pytest.mark.parametrize(("kind", "name", "old", "new", "field"), [
    ("cells", "aa-lifes2", "capacity_mAh: 3500", "capacity_mAh: .nan", "capacity_mAh"),
    ("cells", "aa-lifes2", "internal_resistance_ohm: 0.15", "internal_resistance_ohm: -0.15",
     "internal_resistance_ohm"),
    ("mcus", "nrf52840", "run_current_uA: 3300", "run_current_uA: .inf", "run_current_uA"),
    ("devices", "camera-trap-nrf52840", "regulator_efficiency: 0.9", "regulator_efficiency: 0", "regulator_efficiency"),
])
def test_bad_profile_field_exits_2_through_the_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], kind: str, name: str,
                                                    old: str, new: str, field: str) -> None:
    root = tmp_path / "profiles"
    shutil.copytree(profiles_dir(), root)
    path = root / kind / f"{name}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    line = text[: text.index(old)].count("\n") + 1
    assert f"{path}:{line}: field '{field}'" in _refused_by_the_gate(root, tmp_path, monkeypatch, capsys)


def _refused_by_the_gate(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> str:
    """`edge battery check` with the profiles under `root`: asserts exit 2 and no PASS; returns stderr."""
    monkeypatch.setenv("EDGE_POWER_PROFILES", str(root))
    code = main(["battery", "check", "--inference-uJ", "1500", "--inference-ms", "150", "--runs", "5",
                 "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 2 and "PASS" not in out
    return err


def test_rated_capacity_must_agree_with_the_capacity_table(tmp_path: Path) -> None:
    text = (profiles_dir() / "cells" / "aa-lifes2.yaml").read_text().replace("capacity_mAh: 3500", "capacity_mAh: 1")
    path = tmp_path / "cells" / "aa-lifes2.yaml"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_file("cells", path)
    assert err.value.message.startswith(
        "field 'capacity_mAh': capacity_mAh 1 disagrees with capacity_vs_load, which gives 3500 mAh at "
        "rated_current_mA 25")
    assert err.value.where == f"{path}:7"


@pytest.mark.parametrize(("tail", "message"), [
    (b"\xff\xfe bad: 1\n", "profile is not UTF-8 text: byte "),
    (b"name: again\n", "not valid YAML: key 'name' appears twice (lines 2 and "),
    (b"]\n", "not valid YAML: "),
])
def test_unreadable_part_profile_is_named_with_its_line(tail: bytes, message: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A non-UTF-8 file, a key given twice or broken YAML in a part's profile: exit 2 naming that file:line."""
    root = tmp_path / "profiles"
    shutil.copytree(profiles_dir(), root)
    path = root / "cells" / "aa-lifes2.yaml"
    lines = path.read_bytes().count(b"\n")
    path.write_bytes(path.read_bytes() + tail)
    assert f"{path}:{lines + 1}: {message}" in _refused_by_the_gate(root, tmp_path, monkeypatch, capsys)
