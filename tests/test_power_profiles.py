"""Power profiles: every shipped profile validates; bad ones are rejected with file:line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.power.profiles import KINDS, list_profiles, load_device, load_mcu, load_profile, profiles_dir

SHIPPED = {
    "mcus": {"stm32l4r5", "stm32u575", "nrf52840", "esp32s3", "alif-e3-he"},
    "cameras": {"hm01b0", "ov2640"},
    "motion": {"ekmb1101111"},
    "radios": {"nrf52840-ble", "sx1262"},
    "cells": {"cr2032", "cr123a", "aa-alkaline", "aa-lifes2", "aa-lisocl2", "lipo-1000"},
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_shipped_profile_validates_and_cites_sources(kind: str) -> None:
    names = list_profiles(kind)
    assert set(SHIPPED.get(kind, set())) <= set(names)
    for name in names:
        profile = load_profile(kind, name)
        assert profile.sources, f"{kind}/{name} has no sources"


def test_mcu_api_for_the_export_stage() -> None:
    mcu = load_mcu("stm32l4r5")
    assert (mcu.core, mcu.clock_hz, mcu.flash_bytes, mcu.ram_bytes) == ("cortex-m4", 120_000_000, 2_097_152, 655_360)
    assert mcu.kernels.optimized.conv_cycles_per_mac < mcu.kernels.reference.conv_cycles_per_mac
    assert load_mcu("alif-e3-he").core == "cortex-m55"


# float32 (TFLM's reference kernels): int8 reference figure + 2 cycles per MAC (VLDR + VMLA 2 + 3 against LDRSB + MLA
# 2 + 1, Cortex-M4 TRM table 3-1); per element below int8, which requantises, but MEAN (the same generic reduce loop)
FLOAT_FROM_INT8 = {"conv_cycles_per_mac": ("CONV_2D", "macs"), "depthwise_cycles_per_mac": ("CONV_2D_depth1", "macs"),
                   "fully_connected_cycles_per_mac": ("FULLY_CONNECTED", "macs"),
                   "matmul_cycles_per_mac": ("BATCH_MATMUL", "macs")}
FLOAT_BELOW_INT8 = {"elementwise_cycles_per_element": ("MUL", "out_elements"),
                    "activation_cycles_per_element": ("RSQRT", "out_elements"),
                    "softmax_cycles_per_element": ("SOFTMAX", "out_elements")}


@pytest.mark.parametrize("name", ["nrf52840", "stm32l4r5", "stm32u575", "alif-e3-he"])
def test_float32_figures_start_from_the_int8_reference_kernel_counts(name: str) -> None:
    from edge.power.kernel_files import load_kernel_file
    from edge.power.provenance import field_status

    mcu = load_mcu(name)
    ref = load_kernel_file("tflm-reference", mcu.core)
    assert ref is not None
    flt = mcu.kernels.float32
    for field, (op, feature) in FLOAT_FROM_INT8.items():
        assert getattr(flt, field) == pytest.approx(ref.coefficients[op][feature] + 2, abs=0.051), field
    for field, (op, feature) in FLOAT_BELOW_INT8.items():
        assert getattr(flt, field) < ref.coefficients[op][feature], field
    assert flt.reduce_cycles_per_element == pytest.approx(ref.coefficients["MEAN"]["in_elements"], abs=0.51)
    assert flt.data_movement_cycles_per_element == pytest.approx(4 * ref.coefficients["RESHAPE"]["out_elements"],
                                                                 abs=0.051)  # 4 bytes per element
    for field in type(flt).model_fields:  # every figure an estimate, none read as measured
        assert field_status("mcus", name, ("kernels", "float32", field))[0] == "estimated", field
    text = (profiles_dir() / "mcus" / f"{name}.yaml").read_text()
    assert "nothing here counts a float kernel itself" in text and "ARM DDI 0439, table 3-1" in text


def test_float32_on_a_core_without_counts_is_its_int8_reference_estimate_plus_the_fpu() -> None:
    from edge.power.provenance import field_status

    k = load_mcu("esp32s3").kernels
    for field in FLOAT_FROM_INT8:
        assert getattr(k.float32, field) == getattr(k.reference, field) + 2, field
        assert field_status("mcus", "esp32s3", ("kernels", "float32", field))[0] == "estimated"
    m4 = load_mcu("nrf52840").kernels.float32
    assert (k.float32.elementwise_cycles_per_element, k.float32.reduce_cycles_per_element) == (
        m4.elementwise_cycles_per_element, m4.reduce_cycles_per_element)


def test_devices_compose_existing_parts() -> None:
    for name in list_profiles("devices"):
        load_device(name)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the shipped profiles to break."""
    shutil.copytree(profiles_dir(), tmp_path / "pp")
    return tmp_path / "pp"


def _edit(root: Path, kind: str, name: str, old: str, new: str) -> Path:
    path = root / kind / f"{name}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def _line(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _rejected(root: Path, kind: str, name: str, old: str, new: str, needle: str) -> ConfigError:
    """Edit a profile, load it, check the error points at the line holding `needle`; return the error."""
    path = _edit(root, kind, name, old, new)
    with pytest.raises(ConfigError) as err:
        load_profile(kind, name, root)
    assert err.value.where == f"{path}:{_line(path, needle)}"
    return err.value


def test_negative_current_names_file_line_and_field(root: Path) -> None:
    err = _rejected(root, "mcus", "nrf52840", "run_current_uA: 3300", "run_current_uA: -3300", "run_current_uA")
    assert err.message == "field 'run_current_uA': Input should be greater than 0 (got -3300)"


def test_missing_unit_is_called_a_missing_unit(root: Path) -> None:
    err = _rejected(root, "mcus", "nrf52840", "sleep_current_uA: 3.16", "sleep_current: 3.16", "sleep_current:")
    assert err.message.startswith(
        "field 'sleep_current': missing unit: the key must name its unit, e.g. 'sleep_current_uA'")


def test_wrong_unit_is_called_a_wrong_unit(root: Path) -> None:
    err = _rejected(root, "mcus", "nrf52840", "sleep_current_uA: 3.16", "sleep_current_mA: 0.00316",
                    "sleep_current_mA")
    assert err.message.startswith("field 'sleep_current_mA': wrong unit: this quantity is given as 'sleep_current_uA'")
    assert err.hint == "convert the value"


def test_unknown_key(root: Path) -> None:
    err = _rejected(root, "cells", "cr2032", "internal_resistance_ohm: 20.0",
                    "internal_resistance_ohm: 20.0\nesr_mohm: 5", "esr_mohm")
    assert err.message == "field 'esr_mohm': unknown key"


def test_unknown_nested_key_with_a_suggestion(root: Path) -> None:
    err = _rejected(root, "mcus", "stm32l4r5", "    conv_cycles_per_mac: 9.0", "    conv_cycle_per_mac: 9.0",
                    "conv_cycle_per_mac")
    assert err.message.startswith("field 'kernels.reference.conv_cycle_per_mac': unknown key")
    assert err.hint == "did you mean 'conv_cycles_per_mac'?"


def test_impossible_sleep_above_run_points_at_the_field(root: Path) -> None:
    err = _rejected(root, "mcus", "stm32l4r5", "sleep_current_uA: 3.1 ", "sleep_current_uA: 20000 ", "sleep_current_uA")
    assert err.message == (
        "field 'sleep_current_uA': impossible: sleep_current_uA 20000.0 is not below run_current_uA 11120.0")


def test_impossible_cell_cutoff_and_unsorted_table(root: Path) -> None:
    _edit(root, "cells", "cr2032", "cutoff_V: 2.0 ", "cutoff_V: 3.5 ")
    with pytest.raises(ConfigError, match=r"impossible: cutoff_V 3.5 is not below nominal_V 3.0"):
        load_profile("cells", "cr2032", root)
    _edit(root, "cells", "cr2032", "cutoff_V: 3.5 ", "cutoff_V: 2.0 ")
    _edit(root, "cells", "cr2032", "  - [1.0, 210]", "  - [0.1, 210]")
    with pytest.raises(ConfigError, match=r"capacity_vs_load: the first column must increase strictly"):
        load_profile("cells", "cr2032", root)


def test_implausible_run_current_unit(root: Path) -> None:
    _edit(root, "mcus", "nrf52840", "run_current_uA: 3300", "run_current_uA: 3.3")
    with pytest.raises(ConfigError, match=r"0.1 uA/MHz \(real MCUs draw 5-2000 uA/MHz\); check the unit"):
        load_mcu("nrf52840", root)


def test_device_with_unknown_part_suggests_a_name(root: Path) -> None:
    _edit(root, "devices", "camera-trap-nrf52840", "cell: aa-lifes2", "cell: aa-lifes")
    with pytest.raises(ConfigError) as err:
        load_device("camera-trap-nrf52840", root)
    assert "no cell profile named 'aa-lifes'" in err.value.message
    assert err.value.hint == "did you mean 'aa-lifes2'?"


def test_lora_time_on_air_matches_semtech_formula() -> None:
    lora = load_profile("radios", "sx1262").lora
    assert lora.time_on_air_ms(10) == pytest.approx(61.696, abs=1e-3)  # 23 B at SF7/125 kHz: ~62 ms on air
    sf12 = lora.model_copy(update={"spreading_factor": 12})
    assert sf12.time_on_air_ms(10) == pytest.approx(1482.752, abs=1e-3)  # low data rate optimisation on


def _current_keys() -> list[tuple[str, str, str]]:
    """(kind, profile, key) for every top-level current in the shipped part profiles."""
    out = []
    for kind in ("mcus", "cameras", "motion", "radios"):
        for name in list_profiles(kind):
            for line in (profiles_dir() / kind / f"{name}.yaml").read_text().splitlines():
                key = line.split(":", 1)[0]
                if key.endswith("current_uA") and not line.startswith(" "):
                    out.append((kind, name, key))
    return out


@pytest.mark.parametrize(("kind", "name", "key"), _current_keys())
def test_every_negative_current_is_rejected_at_its_line(root: Path, kind: str, name: str, key: str) -> None:
    path = root / kind / f"{name}.yaml"
    lines = path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
    lines[index] = f"{key}: -1.0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        load_profile(kind, name, root)
    assert err.value.where == f"{path}:{index + 1}"
    assert err.value.message.startswith(f"field '{key}': Input should be greater than")
    assert err.value.message.endswith("(got -1.0)")
