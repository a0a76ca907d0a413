"""The `edge` command line: help, config errors, exit codes, and no heavy imports at start."""

from __future__ import annotations

import subprocess
import sys


def edge(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_the_pipeline_commands():
    result = edge("--help")
    assert result.returncode == 0
    for command in ("run", "train", "prune", "qat", "export", "status", "config"):
        assert command in result.stdout


def test_cli_start_imports_neither_torch_nor_tensorflow():
    code = (
        "import sys; from edge.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('torch', 'tensorflow', 'timm', 'nncf') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_config_key_exits_2_with_the_field(tmp_path):
    result = edge("config", "--runs-dir", str(tmp_path), "--set", "train.epoch=3")
    assert result.returncode == 2
    assert "field 'train.epoch': unknown key" in result.stderr


def test_config_show_resolves_overrides(tmp_path):
    result = edge("config", "--runs-dir", str(tmp_path), "--set", "train.epochs=7", "--target", "cortex-m7")
    assert result.returncode == 0, result.stderr
    assert "epochs: 7" in result.stdout
    assert "target: cortex-m7" in result.stdout
