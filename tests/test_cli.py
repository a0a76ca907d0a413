"""The `edge` command line: help, config errors, exit codes, and no heavy imports at start."""

from __future__ import annotations

import subprocess
import sys

from edge_cli import run_edge


def test_help_lists_the_pipeline_commands():
    result = run_edge("--help")
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
    result = run_edge("config", "--runs-dir", str(tmp_path), "--set", "train.epoch=3")
    assert result.returncode == 2
    assert "field 'train.epoch': unknown key" in result.stderr


def test_config_show_resolves_overrides(tmp_path):
    result = run_edge("config", "--runs-dir", str(tmp_path), "--set", "train.epochs=7", "--target", "cortex-m7")
    assert result.returncode == 0, result.stderr
    assert "epochs: 7" in result.stdout
    assert "target: cortex-m7" in result.stdout


def _boom(args):
    raise ValueError("something internal broke")


def test_unexpected_exception_is_one_line_with_its_own_exit_code(tmp_path, monkeypatch, capsys):
    import edge.commands
    from edge.cli import main
    from edge.errors import EXIT_GATE_FAILED, EXIT_INTERNAL

    monkeypatch.setattr(edge.commands, "_cmd_config", _boom)
    monkeypatch.delenv("EDGE_DEBUG", raising=False)
    code = main(["config", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL != EXIT_GATE_FAILED
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error in `edge config`: ValueError at test_cli.py:" in err
    assert "something internal broke" in err and "re-run with --debug for the traceback" in err


def test_debug_anywhere_shows_the_traceback(tmp_path, monkeypatch, capsys):
    import edge.commands
    from edge.cli import main

    monkeypatch.setattr(edge.commands, "_cmd_config", _boom)
    monkeypatch.delenv("EDGE_DEBUG", raising=False)
    assert main(["config", "--runs-dir", str(tmp_path), "--debug"]) == 5
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_usage_errors_return_2_in_process(capsys):
    from edge.cli import main

    assert main(["train", "--nproc", "0"]) == 2
    assert "argument --nproc: must be at least 1, got 0" in capsys.readouterr().err
    assert main(["--help"]) == 0
