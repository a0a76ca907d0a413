"""`edge emulator`: the emulated board on a pseudo-terminal (or loopback TCP), optionally behind an IO manager
and powered by an emulated LPM01A energy monitor."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edge.argtypes import non_negative_int
from edge.errors import ConfigError
from edge.firmware_bridge.cli_args import add_framing, framing_of
from edge.paths import DEFAULT_MCU

if TYPE_CHECKING:
    from edge.firmware_bridge.emulation.board import EmulatedDevice
    from edge.firmware_bridge.emulation.pty_device import Board, Faults, PtyDevice


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `edge emulator`."""
    emu = subparsers.add_parser(
        "emulator", help="run an emulated board on a pty and print its path",
        description="An emulated board (MLPerf Tiny DUT + mcumgr SMP file server + TFLite Micro) on a "
        "pseudo-terminal. Prints the pty path on stdout; stop with Ctrl-C.",
    )
    emu.add_argument("--line-rate", type=non_negative_int, default=0, metavar="BAUD",
                     help="emulate a UART at this baud rate (a pty has none; default: unlimited)")
    emu.add_argument("--model", type=Path, help="pre-flash this .tflite")
    add_framing(emu)
    emu.add_argument("--tcp", type=int, metavar="PORT", help="serve on socket://127.0.0.1:PORT instead of a pty "
                     "(0 = any free port)")
    emu.add_argument("--store", type=Path, help="keep the emulated flash in this folder (survives restarts)")
    emu.add_argument("--mcu", default=DEFAULT_MCU, dest="target",
                     help=f"MCU profile (power_profiles/mcus/) whose cost model times inferences "
                     f"(default {DEFAULT_MCU})")
    _add_fault_options(emu)
    emu.add_argument("--io-manager", action="store_true",
                     help="serve an IO manager with the board (energy-mode firmware) behind it: "
                     "`dut <cmd>%%` passthrough, `[dut]: ` replies, enable-timer; SMP does not pass through")
    emu.add_argument("--dut-line-rate", type=non_negative_int, default=0, metavar="BAUD",
                     help="with --io-manager: pace the IO manager <-> DUT UART (real energy setups: 9600; "
                     "default unlimited)")
    emu.add_argument("--power-monitor", action="store_true",
                     help="with --io-manager: also serve an emulated LPM01A energy monitor powering the DUT; its "
                     "port is printed on a second line")
    emu.add_argument("--seconds", type=float, default=0.0, help="stop after this many seconds (default: until Ctrl-C)")
    emu.set_defaults(func=_cmd_emulator)


def _add_fault_options(emu: argparse.ArgumentParser) -> None:
    """Byte-level faults injected on the line: drops, bit flips, stalls, one disconnect."""
    emu.add_argument("--drop", type=float, default=0.0, help="probability a byte is dropped")
    emu.add_argument("--flip", type=float, default=0.0, help="probability a byte has a bit flipped")
    emu.add_argument("--stall-every", type=non_negative_int, default=0, help="stall after every N received bytes")
    emu.add_argument("--stall-s", type=float, default=0.0, help="stall length, seconds")
    emu.add_argument("--disconnect-after", type=non_negative_int, default=0,
                     help="drop off the bus once, after N received bytes")
    emu.add_argument("--disconnect-s", type=float, default=0.5, help="how long a disconnect lasts, seconds")
    emu.add_argument("--seed", type=int, default=0, help="fault injection seed")


def _cmd_emulator(args: argparse.Namespace) -> int:
    from edge.firmware_bridge.model_check import checked_model

    model = checked_model(args.model) if args.model is not None else None  # before any pty is made
    faults = _faults(args)
    dut, board = _boards(args, model)
    device = _serve(board, args, faults)
    monitor = _monitor(dut, args) if args.power_monitor else None
    device.start()
    print(device.path, flush=True)
    if monitor is not None:
        monitor.start()
        print(monitor.path, flush=True)
    _print_usage(args, device.path, monitor.path if monitor is not None else None)
    try:
        end = time.monotonic() + args.seconds if args.seconds else None
        while end is None or time.monotonic() < end:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        device.stop()
        if monitor is not None:
            monitor.stop()
    return 0


def _faults(args: argparse.Namespace) -> Faults:
    """The --drop/--flip/--stall-*/--disconnect-* settings (bad rates are exit 2)."""
    from edge.firmware_bridge.emulation.pty_device import Faults

    try:
        return Faults(
            drop=args.drop, flip=args.flip, stall_every=args.stall_every, stall_s=args.stall_s,
            disconnect_after=args.disconnect_after, disconnect_s=args.disconnect_s, seed=args.seed,
        )
    except ValueError as exc:
        raise ConfigError(str(exc), where="edge emulator") from exc


def _boards(args: argparse.Namespace, model: bytes | None) -> tuple[EmulatedDevice, Board]:
    """The emulated board (with `model` pre-flashed) and what the host's port reaches: it, or an IO manager."""
    from edge.firmware_bridge.emulation.board import EmulatedDevice
    from edge.firmware_bridge.emulation.flash import MODEL_FILE
    from edge.firmware_bridge.emulation.io_manager import DEFAULT_DUT_BAUD, EmulatedIoManager

    if args.io_manager and args.framing == "raw":
        raise ConfigError("--io-manager needs text on the DUT's UART; --framing raw has none",
                          where="edge emulator", hint="drop --framing raw")
    if args.power_monitor and not args.io_manager:
        raise ConfigError("--power-monitor powers the DUT behind an IO manager", where="edge emulator",
                          hint="add --io-manager")
    dut = EmulatedDevice(store=args.store, target=args.target, framing=framing_of(args))
    if model is not None:
        dut.flash.write(MODEL_FILE, 0, model)
    if not args.io_manager:
        return dut, dut
    io_manager = EmulatedIoManager(dut, dut_baud=args.dut_line_rate or DEFAULT_DUT_BAUD,
                                   pace_dut=bool(args.dut_line_rate))
    return dut, io_manager


def _serve(board: Board, args: argparse.Namespace, faults: Faults | None = None) -> PtyDevice:
    """`board` on a pty, or on the --tcp port; the line rate and faults apply to the board's port only."""
    from edge.firmware_bridge.emulation.pty_device import PtyDevice, TcpDevice

    if args.tcp is None:
        return PtyDevice(board, baud=args.line_rate, faults=faults)
    return TcpDevice(board, port=args.tcp, baud=args.line_rate, faults=faults)


def _monitor(dut: EmulatedDevice, args: argparse.Namespace) -> PtyDevice:
    """An emulated LPM01A powering `dut`, on its own pty (or any free TCP port with --tcp)."""
    from edge.firmware_bridge.emulation.lpm01a import DutActivity, EmulatedLpm01a
    from edge.firmware_bridge.emulation.pty_device import PtyDevice, TcpDevice

    lpm = EmulatedLpm01a(DutActivity.attach(dut.mlperf))
    return TcpDevice(lpm, port=0) if args.tcp is not None else PtyDevice(lpm)


def _print_usage(args: argparse.Namespace, port: str, monitor: str | None) -> None:
    """What to try next, on stderr (stdout carries only the ports)."""
    print(
        f"emulated board on {port} "
        f"(line rate {f'{args.line_rate} baud' if args.line_rate else 'unlimited'}); "
        + (f"try: edge bench --port {port} --io-manager --model M; " if args.io_manager else
           f"try: edge flash --port {port} --model M; ") + "Ctrl-C to stop",
        file=sys.stderr, flush=True,
    )
    if monitor is not None:
        print(f"emulated LPM01A energy monitor on {monitor}; try: edge bench --port {port} --io-manager "
              f"--power-monitor {monitor} --model M --runs 1000", file=sys.stderr, flush=True)
