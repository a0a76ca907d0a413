"""Cost model on real .tflite files (built by TensorFlow in a child process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from power_fixtures import reference_models

from edge.errors import ConfigError
from edge.power.cost import estimate_file, layer_table_csv, op_cycles
from edge.power.profiles import load_mcu
from edge.power.tflite_graph import parse_tflite


@pytest.fixture(scope="module")
def models() -> dict[str, Path]:
    return reference_models()


def test_macs_per_op_match_hand_counts(models: dict[str, Path]) -> None:
    graph = parse_tflite(models["tiny_int8"])
    rows = [(op.op, op.op_class, op.dtype, op.macs, op.elements) for op in graph.ops]
    assert rows == [
        ("CONV_2D", "conv", "int8", 32 * 32 * 8 * 3 * 3 * 1, 32 * 32 * 8),
        ("DEPTHWISE_CONV_2D", "depthwise", "int8", 16 * 16 * 8 * 3 * 3, 16 * 16 * 8),
        ("AVERAGE_POOL_2D", "pooling", "int8", 0, 16 * 16 * 8),  # pooling counts its input elements
        ("FULLY_CONNECTED", "fully_connected", "int8", 8 * 4, 4),
    ]


def test_batch_matmul_and_softmax(models: dict[str, Path]) -> None:
    graph = parse_tflite(models["attn_int8"])
    matmuls = [op.macs for op in graph.ops if op.op == "BATCH_MATMUL"]
    assert matmuls == [10 * 10 * 16, 10 * 16 * 10]  # q k^T and a v
    assert [op.op_class for op in graph.ops].count("softmax") == 1


def test_latency_and_energy_follow_the_profile(models: dict[str, Path]) -> None:
    mcu = load_mcu("nrf52840")
    cost = estimate_file(models["tiny_int8"], mcu)
    k = mcu.kernels.optimized
    expected = (73728 * k.conv_cycles_per_mac + 18432 * k.depthwise_cycles_per_mac + 2048 * k.pooling_cycles_per_element
                + 32 * k.fully_connected_cycles_per_mac + 4 * k.op_overhead_cycles)
    assert cost.cycles == pytest.approx(expected, rel=1e-6)
    assert cost.latency_ms == pytest.approx(expected / 64e6 * 1e3, rel=1e-9)
    assert cost.energy_uJ == pytest.approx(cost.latency_ms * 1e-3 * 3300 * 3.0, rel=1e-9)
    assert sum(r.cycles for r in cost.layers) == pytest.approx(cost.cycles)
    assert layer_table_csv(cost).splitlines()[1].startswith("0,CONV_2D,conv,int8,optimized,1x32x32x8,73728,8192,")


def test_reference_and_float_kernels_cost_more(models: dict[str, Path]) -> None:
    mcu = load_mcu("stm32l4r5")
    fast = estimate_file(models["tiny_int8"], mcu)
    ref = estimate_file(models["tiny_int8"], mcu, "reference")
    flt = estimate_file(models["tiny_float"], mcu)
    assert flt.kernels == "float32" and {r.kernels for r in flt.layers} == {"float32"}
    assert ref.cycles > 3 * fast.cycles and flt.cycles > 3 * fast.cycles
    assert op_cycles(mcu.kernels.optimized, "conv", 1000, 0) == 1000 * 1.2 + 2000


def test_vit_models_in_the_expected_range(models: dict[str, Path]) -> None:
    pruned = estimate_file(models["vit_pruned_int8"], load_mcu("nrf52840"))
    full = estimate_file(models["vit_float"], load_mcu("nrf52840"))
    assert 5e6 < pruned.macs < 15e6 and pruned.fits_flash
    assert full.macs > 2 * pruned.macs and full.energy_uJ > 5 * pruned.energy_uJ
    assert not full.fits_flash  # 1.26 MB of float weights do not fit the nRF52840's 1 MB


def test_not_a_tflite_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match=r"not a TFLite flatbuffer: bytes 4-7 are b'\\x00\\x00\\x00\\x00', "
                       r"expected b'TFL3'"):
        parse_tflite(bad)


@pytest.mark.slow
def test_mlperf_tiny_vww_reference_points(tmp_path: Path) -> None:
    """MobileNetV1-0.25 (VWW) against the published MLPerf Tiny results: latency within 10 %, energy 25 %.

    The per-class cycle figures were calibrated on these points, so this guards the calibration and the
    graph parser (7,489,664 MACs is the published MAC count of the VWW model).
    """
    from edge.power.tfmodels import build

    path = build(tmp_path, ("mobilenet_v1_025_int8",))["mobilenet_v1_025_int8"]
    for name in ("stm32l4r5", "stm32u575"):
        mcu = load_mcu(name)
        cost = estimate_file(path, mcu)
        assert cost.macs == 7_489_664
        ref = mcu.mlperf_tiny[0]
        assert cost.latency_ms == pytest.approx(ref.latency_ms, rel=0.10)
        assert cost.energy_uJ == pytest.approx(ref.energy_uJ, rel=0.25)
