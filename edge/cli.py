"""`edge`: one command line for the whole pipeline.

Subcommands are registered by small modules (COMMAND_MODULES), each exposing
`register(subparsers)`; none of them imports torch or TensorFlow at import time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from edge import __version__
from edge.errors import EdgeError

# Modules that add subcommands; each has register(subparsers) -> None.
COMMAND_MODULES: tuple[str, ...] = (
    "edge.commands",
    "edge.export.cli",
    "edge.firmware_bridge.cli",
    "edge.power.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="edge",
        description=(
            "Train, prune, quantise and export a ViT-lite for microcontrollers, flash and benchmark "
            "boards, and prove the battery lasts. Start with `edge run --target cortex-m`."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `edge` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgeError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def print_json(obj: object, path: Path | None = None) -> None:
    """Print `obj` as JSON (or write it atomically to `path`)."""
    from edge.atomic import atomic_write_json

    if path is None:
        print(json.dumps(obj, indent=2, sort_keys=True))
    else:
        atomic_write_json(path, obj)
