"""Current-trace import (PPK2 / Otii CSV) -> measured energy per inference."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import DataError
from edge.firmware_bridge.trace import energy_per_inference, load_trace


def _ppk2(path, bits_column: str = "packed"):
    """1 kHz, 3 inferences of 10 ms at 5 mA on a 100 uA floor; D2 high during each."""
    header = "Timestamp(ms),Current(uA)," + ("D0-D7" if bits_column == "packed" else "D0,D1,D2,D3,D4,D5,D6,D7")
    lines = [header]
    for k in range(100):
        busy = any(10 + 30 * j <= k < 20 + 30 * j for j in range(3))
        bits = "00100000" if busy else "00000000"
        digital = bits if bits_column == "packed" else ",".join(bits)
        lines.append(f"{k:.3f},{5000.0 if busy else 100.0},{digital}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ppk2_marker_windows(tmp_path):
    result = energy_per_inference(_ppk2(tmp_path / "ppk.csv"), voltage_V=3.0, marker=2)
    assert result.inferences == 3
    # each window: 10 samples high -> 9 intervals of 1 ms at 5 mA * 3 V = 15 uJ per ms -> 135 uJ
    assert result.energy_per_inference_uJ == pytest.approx(135.0)
    assert result.duration_s == pytest.approx(0.099)
    same = energy_per_inference(_ppk2(tmp_path / "cols.csv", "columns"), voltage_V=3.0, marker=2)
    assert same.energy_per_inference_uJ == pytest.approx(135.0)


def test_otii_with_voltage_column_and_count(tmp_path):
    path = tmp_path / "otii.csv"
    t = np.arange(0, 1.0001, 0.001)
    rows = ["Timestamp (s),Main current (A),Main voltage (V)"] + [f"{x:.3f},0.002,1.8" for x in t]
    path.write_text("\n".join(rows) + "\n")
    result = energy_per_inference(path, inferences=4)
    assert result.energy_uJ == pytest.approx(0.002 * 1.8 * 1.0 * 1e6)
    assert result.energy_per_inference_uJ == pytest.approx(900.0)
    assert result.mean_current_uA == pytest.approx(2000.0)


def test_clear_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Timestamp(ms),Current(uA)\n0,1\n1,x\n")
    with pytest.raises(DataError, match=r"bad.csv:3: row is not numeric"):
        load_trace(bad)
    units = tmp_path / "units.csv"
    units.write_text("Timestamp(h),Current(uA)\n0,1\n1,2\n")
    with pytest.raises(DataError, match="unknown time unit 'h'"):
        load_trace(units)
    with pytest.raises(DataError, match="no voltage column"):
        energy_per_inference(_ppk2(tmp_path / "p.csv"), marker=2)
    with pytest.raises(DataError, match="marker D5 never goes high"):
        energy_per_inference(_ppk2(tmp_path / "p2.csv"), voltage_V=3.0, marker=5)
