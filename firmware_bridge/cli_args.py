"""Options that `edge flash`, `edge bench` and `edge emulator` share: the port, the SMP framing, files to write."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from edge.argtypes import positive_float, positive_int
from edge.errors import ConfigError

if TYPE_CHECKING:
    from edge.firmware_bridge.smp_serial import Framing

DEFAULT_BAUD = 115200


def add_port(parser: argparse.ArgumentParser) -> None:
    """--port, --baud, --timeout and --log."""
    parser.add_argument(
        "--port", required=True,
        help="serial port or pyserial URL: /dev/ttyACM0, COM3, /dev/pts/N, socket://host:port, rfc2217://..., loop://",
    )
    parser.add_argument("--baud", type=positive_int, default=DEFAULT_BAUD, help=f"baud rate (default {DEFAULT_BAUD})")
    parser.add_argument("--timeout", type=positive_float, default=5.0,
                        help="base timeout per command, seconds (default 5)")
    parser.add_argument("--log", type=Path, metavar="FILE",
                        help="write a timestamped transcript of the wire, both directions, to FILE")


def add_framing(parser: argparse.ArgumentParser) -> None:
    """--framing and --raw-timeout-ms."""
    parser.add_argument(
        "--framing", choices=("console", "raw"), default="console",
        help="SMP serial framing: console = base64 lines with CRC16 (Zephyr CONFIG_MCUMGR_TRANSPORT_UART, "
        "default); raw = binary packets, ~1.4x faster, no CRC on the wire (CONFIG_MCUMGR_TRANSPORT_RAW_UART)",
    )
    parser.add_argument(
        "--raw-timeout-ms", type=float, default=100.0,
        help="raw framing: the device's CONFIG_MCUMGR_TRANSPORT_RAW_UART_INPUT_TIMEOUT_TIME_MS (default 100)",
    )


def framing_of(args: argparse.Namespace) -> Framing:
    """The SMP framing that --framing and --raw-timeout-ms ask for."""
    from edge.firmware_bridge.smp_serial import framing

    if args.raw_timeout_ms <= 0:
        raise ConfigError(f"--raw-timeout-ms must be positive, got {args.raw_timeout_ms}", where="--raw-timeout-ms")
    return framing(args.framing, args.raw_timeout_ms / 1000)


def wire_log(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """The `--log FILE` WireLog (checked before the port opens), or a null context."""
    from edge.firmware_bridge.transport import WireLog

    if args.log is None:
        return contextlib.nullcontext()
    return WireLog(writable_file(args.log, "--log"))


def writable_file(path: Path, flag: str) -> Path:
    """Check that `path` can be written as a file (not a folder, its folder exists) before any work."""
    if path.is_dir():
        raise ConfigError("is a folder; give a file name", where=f"{flag} {path}",
                          hint=f"e.g. {flag} {path / 'bench.json'}")
    if not path.parent.is_dir():
        raise ConfigError(f"folder '{path.parent}' does not exist", where=f"{flag} {path}",
                          hint="create it first or pick another path")
    return path
