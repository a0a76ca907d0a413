"""edge.paths: artifact paths and default names said once, and what must agree with it."""

from __future__ import annotations

import re
from pathlib import Path

from edge import paths
from edge.cli import build_parser
from edge.config import RunConfig
from edge.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]


def test_build_dir_and_exported_model():
    assert paths.exported_model() == Path("build/cortex-m/model_int8.tflite")
    assert paths.build_dir("nrf52840", "/x/runs") == Path("/x/build/nrf52840")
    assert paths.build_dir("cortex-m4", "/x/runs", root="/y/out") == Path("/y/out/cortex-m4")
    assert paths.exported_model("cortex-m7", "/x/runs") == Path("/x/build/cortex-m7/model_int8.tflite")


def test_export_stage_writes_where_paths_says(tmp_path):
    from edge.export.stage import build_dir

    runs = tmp_path / "runs"
    run = Manifest(runs / "r").begin("export", "0" * 64)
    config = RunConfig()
    assert build_dir(run, config) == paths.build_dir(paths.DEFAULT_TARGET, runs.resolve())
    config.export.build_dir = str(tmp_path / "elsewhere")
    assert build_dir(run, config) == tmp_path / "elsewhere" / paths.DEFAULT_TARGET


def test_makefile_defaults_are_edge_paths():
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^RUN\s*\?=\s*(\S+)$", text, re.M).group(1) == paths.DEFAULT_RUN
    assert re.search(r"^TARGET\s*\?=\s*(\S+)$", text, re.M).group(1) == paths.DEFAULT_TARGET
    models = re.findall(r"\S*/model_int8\.tflite", text)
    assert models and set(models) == {f"build/$(TARGET)/{paths.MODEL_INT8}"}


def test_config_and_cli_defaults_are_edge_paths():
    config = RunConfig()
    assert config.target == paths.DEFAULT_TARGET
    assert config.battery.device == paths.DEFAULT_DEVICE
    parser = build_parser()
    run = parser.parse_args(["run"])
    assert (run.run, run.runs_dir) == (paths.DEFAULT_RUN, paths.RUNS_DIR)
    assert parser.parse_args(["flash", "--port", "loop://"]).model == paths.exported_model()
    assert parser.parse_args(["bench", "--port", "loop://"]).mcu == paths.DEFAULT_MCU
    assert parser.parse_args(["emulator"]).target == paths.DEFAULT_MCU


def test_defaults_name_real_profiles():
    from edge.export.targets import known_targets, resolve_target
    from edge.power.profiles import list_profiles

    assert paths.DEFAULT_TARGET in known_targets()
    assert resolve_target(paths.DEFAULT_TARGET).mcu == paths.DEFAULT_MCU
    assert paths.DEFAULT_DEVICE in list_profiles("devices")
