"""`edge`: one command line for the whole pipeline.

Subcommands are registered by small modules (COMMAND_MODULES), each exposing
`register(subparsers)`; none of them imports torch or TensorFlow at import time.

`main` is the one error boundary: an EdgeError prints its message and exits with its code; any
other exception is a bug in edge and prints one line (what failed, where) and exits
EXIT_INTERNAL, never 1 (which means "gate failed"). `--debug` (anywhere on the line, or
EDGE_DEBUG=1, which stage processes inherit) prints the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from pathlib import Path

from edge import __version__
from edge.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EdgeError

DEBUG_FLAG = "--debug"
DEBUG_ENV = "EDGE_DEBUG"

# Modules that add subcommands; each has register(subparsers) -> None.
COMMAND_MODULES: tuple[str, ...] = (
    "edge.commands",
    "edge.export.cli",
    "edge.firmware_bridge.cli",
    "edge.firmware_bridge.emulation.cli",
    "edge.power.cli",
    "edge.search.cli",
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
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="print the Python traceback of an unexpected error (also accepted after the command)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `edge` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    if debug:
        os.environ[DEBUG_ENV] = "1"  # stage processes started by `edge run` inherit it
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors (2), --help/--version (0)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except EdgeError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the boundary: anything else is a bug in edge, reported in one line
        if debug:
            traceback.print_exc()
        print(f"error: {internal_error_line(exc, args.command)}", file=sys.stderr)
        return EXIT_INTERNAL


def internal_error_line(exc: BaseException, command: str) -> str:
    """One line for an unexpected exception: the command, the exception, the innermost edge frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "site-packages" not in f.filename] or frames
    at = f" at {Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else ""
    text = " ".join(str(exc).split())[:300] or "(no message)"
    return (f"internal error in `edge {command}`: {type(exc).__name__}{at}: {text} "
            f"(exit {EXIT_INTERNAL}: a bug in edge, not a verdict on your model; re-run with --debug for the "
            "traceback and report it)")


def print_json(obj: object, path: Path | None = None) -> None:
    """Print `obj` as JSON (or write it atomically to `path`)."""
    from edge.atomic import atomic_write_json

    if path is None:
        print(json.dumps(obj, indent=2, sort_keys=True))
    else:
        atomic_write_json(path, obj)
