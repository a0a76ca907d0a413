"""TARGET resolution, 'did you mean', and the fit check with numbers."""

from __future__ import annotations

import pytest
from edge_cli import run_edge

from edge.errors import ConfigError, ExportError
from edge.export.targets import check_fit, known_targets, resolve_target
from edge.power.profiles import load_mcu


def test_families_take_budgets_from_mcu_profiles() -> None:
    target = resolve_target("cortex-m")
    mcu = load_mcu("nrf52840")
    assert (target.mcu, target.core, target.runtime) == ("nrf52840", "cortex-m4", "tflm")
    assert (target.flash_bytes, target.ram_bytes) == (mcu.flash_bytes, mcu.ram_bytes)
    assert resolve_target("ethos-u55").runtime == "vela"
    assert resolve_target("linux").family == "cortex-a"


def test_a_board_named_by_its_profile_is_a_target() -> None:
    target = resolve_target("stm32u575")
    assert (target.family, target.runtime, target.kernels) == ("cortex-m33", "tflm", "cmsis-nn")
    assert "stm32u575" in known_targets()


def test_unknown_target_suggests_the_closest_names() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_target("cortex-m5")
    assert err.value.message == "unknown target 'cortex-m5'"
    assert err.value.hint == "did you mean 'cortex-m55' or 'cortex-m' or 'cortex-m7'?"


def test_a_model_that_does_not_fit_fails_with_the_numbers() -> None:
    target = resolve_target("cortex-m0plus")
    with pytest.raises(ExportError) as err:
        check_fit(target, model_bytes=150_000, arena_bytes=40_000, frame_bytes=4096)
    assert err.value.exit_code == 4
    assert err.value.message == (
        "the model does not fit target 'cortex-m0plus' (small Cortex-M0+ part (STM32G071RB class, no FPU, no DSP "
        "extension)): flash: needs 248,304 B (model 150,000 + runtime 98,304) but 131,072 B are available; "
        "RAM: needs 60,480 B (arena 40,000 + frame 4,096 + other 16,384) but 36,864 B are available")


def test_a_model_that_fits_reports_its_share() -> None:
    fit = check_fit(resolve_target("cortex-m"), model_bytes=100_000, arena_bytes=50_000, frame_bytes=4096)
    assert fit["flash_needed_bytes"] == 198_304 and fit["ram_needed_bytes"] == 70_480
    assert fit["ram_used_fraction"] == round(70_480 / 262_144, 4)


def test_edge_targets_lists_families_and_boards() -> None:
    proc = run_edge("targets")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert {"cortex-m", "cortex-m0plus", "ethos-u55", "linux", "nrf52840"} <= set(rows)
    assert "flash   1,048,576 B  RAM     262,144 B" in rows["cortex-m"] and " vela " in rows["ethos-u55"]


TABLE = """\
runtimes:
  tflm: {reserved_flash_bytes: 1024, reserved_ram_bytes: 512}
families:
  tiny:
    description: a board with its own budget
    core: cortex-m0+
    flash_byte: 65536
    ram_bytes: 8192
    source: a datasheet
"""


def test_a_bad_target_table_names_file_line_and_field(tmp_path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(TABLE)
    with pytest.raises(ConfigError) as err:
        resolve_target("tiny", path)
    assert err.value.where == f"{path}:7"
    assert err.value.message.startswith("field 'families.tiny.flash_byte': unknown key")
    assert err.value.hint == "did you mean 'flash_bytes'?"


def test_a_family_needs_an_mcu_or_a_budget_and_aliases_a_family(tmp_path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(TABLE.replace("    flash_byte: 65536\n", ""))
    with pytest.raises(ConfigError) as err:
        resolve_target("tiny", path)
    assert err.value.where == f"{path}:4" and "without 'mcu' a family gives its own flash_bytes" in err.value.message
    path.write_text(TABLE.replace("flash_byte:", "flash_bytes:") + "aliases:\n  small: tine\n")
    with pytest.raises(ConfigError) as err:
        resolve_target("small", path)
    assert err.value.where == f"{path}:10"
    assert err.value.message == "field 'aliases': 'small' in aliases points to 'tine', which is not a family"
    path.write_text(TABLE.replace("flash_byte:", "flash_bytes:") + "aliases:\n  small: tiny\n")
    assert resolve_target("small", path).reserved_flash_bytes == 1024
