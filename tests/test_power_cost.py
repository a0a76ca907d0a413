"""Cost model on real .tflite files (built by TensorFlow in a child process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.power import fit as fitted
from edge.power.cost import estimate_file, layer_table_csv, op_cycles
from edge.power.profiles import load_mcu
from edge.power.tflite_graph import parse_tflite


def test_macs_per_op_match_hand_counts(power_models: dict[str, Path]) -> None:
    graph = parse_tflite(power_models["tiny_int8"])
    rows = [(op.op, op.op_class, op.dtype, op.macs, op.elements) for op in graph.ops]
    assert rows == [
        ("CONV_2D", "conv", "int8", 32 * 32 * 8 * 3 * 3 * 1, 32 * 32 * 8),
        ("DEPTHWISE_CONV_2D", "depthwise", "int8", 16 * 16 * 8 * 3 * 3, 16 * 16 * 8),
        ("AVERAGE_POOL_2D", "pooling", "int8", 0, 16 * 16 * 8),  # pooling counts its input elements
        ("FULLY_CONNECTED", "fully_connected", "int8", 8 * 4, 4),
    ]


def test_batch_matmul_and_softmax(power_models: dict[str, Path]) -> None:
    graph = parse_tflite(power_models["attn_int8"])
    matmuls = [op.macs for op in graph.ops if op.op == "BATCH_MATMUL"]
    assert matmuls == [10 * 10 * 16, 10 * 16 * 10]  # q k^T and a v
    assert [op.op_class for op in graph.ops].count("softmax") == 1


def test_latency_and_energy_follow_the_fitted_kernel_set(power_models: dict[str, Path]) -> None:
    mcu = load_mcu("nrf52840")
    # the MLPerf fit, no instruction-level file
    cost = estimate_file(power_models["tiny_int8"], mcu, kernel_files=False)
    c, k = fitted.coefficients("tflm-cmsis-nn"), mcu.kernels.optimized
    expected = (73728 * (c.c_mac + c.c_in) + 18432 * c.c_mac + 2048 * k.pooling_cycles_per_element
                + 32 * (c.c_mac + c.c_fc) + (8192 + 2048 + 4) * c.c_out + 4 * c.c_op)
    assert cost.kernel_set == "tflm-cmsis-nn" and cost.measured_points == ()
    assert cost.cycles == pytest.approx(expected, rel=1e-6)
    assert cost.latency_ms == pytest.approx(expected / 64e6 * 1e3, rel=1e-6)
    assert cost.energy_uJ == pytest.approx(cost.latency_ms * 1e-3 * 3300 * 3.0, rel=1e-9)  # datasheet power
    assert sum(r.cycles for r in cost.layers) == pytest.approx(cost.cycles)
    assert layer_table_csv(cost).splitlines()[1].startswith("0,CONV_2D,conv,int8,tflm-cmsis-nn,1x32x32x8,73728,8192,")
    assert cost.band[0] < 1 < cost.band[1]  # no own point: LOBO band x cross-board band


def test_measured_power_and_no_published_reference_kernels(power_models: dict[str, Path]) -> None:
    cost = estimate_file(power_models["tiny_int8"], load_mcu("stm32u575"))
    assert cost.run_power_uW == 23390 and cost.power_source.startswith("measured 23.4 mW at 160 MHz, 1.8 V SMPS")
    # the MLPerf Tiny v0.5 'reference' run was built with CMSIS-NN: no published point backs the reference kernels
    ref = estimate_file(power_models["tiny_int8"], load_mcu("stm32l4r5"), "reference", kernel_files=False)
    assert ref.kernel_set == "" and ref.measured_points == () and ref.band == (0.5, 3.0)
    assert "no published measurement of tflm-reference on cortex-m4" in ref.basis


def test_reference_and_float_kernels_cost_more(power_models: dict[str, Path]) -> None:
    mcu = load_mcu("stm32l4r5")
    fast = estimate_file(power_models["tiny_int8"], mcu)
    ref = estimate_file(power_models["tiny_int8"], mcu, "reference")
    flt = estimate_file(power_models["tiny_float"], mcu)
    assert flt.kernels == "float32" and {r.kernels for r in flt.layers} == {"float32"}
    # reference kernels cost more than CMSIS-NN (instruction-level figures where committed, else estimates); float32
    # runs on TFLM's reference kernels too: the profile's estimates (int8 reference counts + 2 cycles per MAC) put
    # it 3.1x above CMSIS-NN int8 here (conv 29.2, depthwise 65.7 cycles/MAC against 1.2 and 3.0)
    assert ref.cycles > 1.3 * fast.cycles and flt.cycles > 2 * fast.cycles
    assert op_cycles(mcu.kernels.optimized, "conv", 1000, 0) == 1000 * 1.2 + 2000


def test_vit_models_in_the_expected_range(power_models: dict[str, Path]) -> None:
    pruned = estimate_file(power_models["vit_pruned_int8"], load_mcu("nrf52840"))
    full = estimate_file(power_models["vit_float"], load_mcu("nrf52840"))
    assert 5e6 < pruned.macs < 15e6 and pruned.fits_flash
    assert full.macs > 2 * pruned.macs and full.energy_uJ > pruned.energy_uJ  # float32: per-class estimates
    assert not full.fits_flash  # 1.26 MB of float weights do not fit the nRF52840's 1 MB


def test_not_a_tflite_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match=r"not a TFLite flatbuffer: bytes 4-7 are b'\\x00\\x00\\x00\\x00', "
                       r"expected b'TFL3'"):
        parse_tflite(bad)


@pytest.mark.slow
def test_mlperf_tiny_vww_macs_match_the_reference_model(tmp_path: Path) -> None:
    """The graph reader counts the MLPerf Tiny VWW model (MobileNetV1-0.25) as the measurements file does."""
    from tflite_models import build

    path = build(tmp_path, ("mobilenet_v1_025_int8",))["mobilenet_v1_025_int8"]
    assert estimate_file(path, load_mcu("stm32l4r5")).macs == 7_489_664 == fitted.benchmark_features()["vww"].macs
