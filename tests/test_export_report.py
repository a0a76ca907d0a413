"""The export report names the cost model's kernel set and the measurements behind it."""

from __future__ import annotations

from edge.export import report
from edge.export.targets import resolve_target


def _section(target_name: str) -> str:
    target = resolve_target(target_name)
    return "\n".join(report._cost_model({"cost_model": report.cost_model_basis(target)}, target.as_dict()))


def test_the_targets_runtime_picks_the_kernel_set_and_its_points() -> None:
    basis = report.cost_model_basis(resolve_target("cortex-m"))
    assert basis is not None
    assert (basis["kernel_set"], basis["cited_points"], basis["boards"], basis["own_points"], basis["mcu"]) == (
        "tflm-cmsis-nn", 4, ("EK-RA6M4",), 0, "nrf52840")
    text = _section("cortex-m")
    assert text.startswith("## Cost model basis\n\nRuntime tflm with kernels cmsis-nn picks the kernel set "
                           "tflm-cmsis-nn (TensorFlow Lite Micro with CMSIS-NN kernels")
    assert ": 4 cited MLPerf Tiny points (EK-RA6M4); none on nrf52840" in text


def test_points_of_other_cores_do_not_back_an_m55() -> None:
    basis = report.cost_model_basis(resolve_target("alif-e3-he"))
    assert basis is not None and basis["cited_points"] == 0 and basis["core"] == "cortex-m55"
    assert "no published measurement that applies to a cortex-m55; none on alif-e3-he" in _section("alif-e3-he")


def test_runtimes_without_a_kernel_set_and_old_reports_say_so() -> None:
    assert report.cost_model_basis(resolve_target("ethos-u55")) is None
    assert "None: no kernel set of the cost model for runtime vela with kernels ethos-u." in _section("ethos-u55")
    assert "None: the target has no MCU profile." in _section("cortex-m7")
    old = report._cost_model({}, resolve_target("cortex-m").as_dict())
    assert old[2] == "Not recorded: this report was written before exports named their kernel set; rerun the export."
