"""`edge flash`, `edge bench`, `edge devices`, `edge emulator`: boards over a serial port."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edge.argtypes import non_negative_int, positive_float, positive_int
from edge.errors import ConfigError, DeviceError

if TYPE_CHECKING:
    from tqdm import tqdm

    from edge.firmware_bridge.image import Mark
    from edge.firmware_bridge.smp_serial import Framing

DEFAULT_MODEL = Path("build/cortex-m/model_int8.tflite")
DEFAULT_BAUD = 115200


def _add_port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", required=True,
        help="serial port or pyserial URL: /dev/ttyACM0, COM3, /dev/pts/N, socket://host:port, rfc2217://..., loop://",
    )
    parser.add_argument("--baud", type=positive_int, default=DEFAULT_BAUD, help=f"baud rate (default {DEFAULT_BAUD})")
    parser.add_argument("--timeout", type=positive_float, default=5.0,
                        help="base timeout per command, seconds (default 5)")
    parser.add_argument("--log", type=Path, metavar="FILE",
                        help="write a timestamped transcript of the wire, both directions, to FILE")


def _add_framing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--framing", choices=("console", "raw"), default="console",
        help="SMP serial framing: console = base64 lines with CRC16 (Zephyr CONFIG_MCUMGR_TRANSPORT_UART, "
        "default); raw = binary packets, ~1.4x faster, no CRC on the wire (CONFIG_MCUMGR_TRANSPORT_RAW_UART)",
    )
    parser.add_argument(
        "--raw-timeout-ms", type=float, default=100.0,
        help="raw framing: the device's CONFIG_MCUMGR_TRANSPORT_RAW_UART_INPUT_TIMEOUT_TIME_MS (default 100)",
    )


def _framing(args: argparse.Namespace) -> Framing:
    from edge.firmware_bridge.smp_serial import framing

    if args.raw_timeout_ms <= 0:
        raise ConfigError(f"--raw-timeout-ms must be positive, got {args.raw_timeout_ms}", where="--raw-timeout-ms")
    return framing(args.framing, args.raw_timeout_ms / 1000)


def _read_model(path: Path) -> bytes:
    """A model file's bytes: missing, unreadable and oversized files are refused unread (exit 2)."""
    from edge.export.tflite_inspect import read_model_bytes

    return read_model_bytes(path, ConfigError)


def checked_model(path: Path, force: bool = False) -> bytes:
    """The bytes of a .tflite that TFLite Micro can run, checked before anything goes to a board.

    Refuses (ConfigError, exit 2) a file that is not a sound TFLite flatbuffer (magic, size, bounds) or
    has ops/types TFLM has no kernel for. `force` skips the checks after the file is read.
    """
    from edge.export.tflite_inspect import read_tflite
    from edge.export.tflm_check import unsupported

    data = _read_model(path)
    if force:
        print(f"warning: --force: {path} is sent without checking that it is a TFLite model", file=sys.stderr)
        return data
    hint = "nothing was sent to the board; pass a .tflite from `edge export` (or --force to send it anyway)"
    try:
        model = read_tflite(path, data, error=ConfigError)
    except ConfigError as exc:
        raise ConfigError(exc.message, where=exc.where, hint=hint) from exc
    problems = unsupported(model)
    if problems:
        raise ConfigError(f"TFLite Micro cannot run this model: {'; '.join(problems[:4])}"
                          + (f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""),
                          where=str(path), hint=hint)
    return data


def _wire_log(args: argparse.Namespace) -> contextlib.AbstractContextManager:
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


def manifest_sha256(model: Path, runs_dir: Path, run: str) -> str | None:
    """The sha256 the run manifest recorded for this exact file (export.tflite_int8), if any."""
    from edge.manifest import Manifest

    manifest = Manifest(runs_dir / run)
    record = manifest.stages.get("export")
    if record is None:
        return None
    for ref in record.outputs.values():
        if (manifest.run_dir / ref.path).resolve() == model.resolve():
            return ref.sha256
    return None


def run_of_export(model: Path) -> str:
    """The run whose export wrote `model` (its folder's report.json names it), else 'default'."""
    from edge.export.report import exported_run

    return exported_run(model.parent) or "default"


def _progress_bar(total: int, name: str, quiet: bool) -> tqdm:
    """A bytes progress bar on stderr."""
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=f"flash {name}", file=sys.stderr, disable=quiet)


def _cmd_flash(args: argparse.Namespace) -> int:
    if args.image is not None:
        return _flash_image(args)
    image_only = [flag for flag, on in (("--test", args.test), ("--confirm", args.confirm),
                                        ("--upgrade", args.upgrade)) if on]
    if image_only:
        raise ConfigError(f"{image_only[0]} only applies to firmware images", where="edge flash",
                          hint="add --image FILE (an MCUboot image), or drop the flag to upload --model")
    from edge.firmware_bridge.file_upload import upload_file
    from edge.firmware_bridge.transport import SerialLink
    from edge.firmware_bridge.upload import UploadOptions

    data = checked_model(args.model, args.force)
    wire = _framing(args)
    expected = args.sha256 or manifest_sha256(args.model, args.runs_dir, args.run or run_of_export(args.model))
    with _wire_log(args) as log, SerialLink(args.port, args.baud, timeout_s=args.timeout, log=log) as link, \
            _progress_bar(len(data), args.model.name, args.quiet) as bar:
        stats = upload_file(
            link, data, name=args.name, framing=wire, expected_sha256=expected,
            options=UploadOptions(chunk=args.chunk, resume=not args.no_resume), progress=bar.update,
        )
    source = "manifest" if expected else "local file"
    print(
        f"flashed {args.model} -> {args.port}:{args.name}: {stats.bytes} B in {stats.wall_s:.2f} s "
        f"({stats.goodput_Bps / 1000:.1f} kB/s), device sha256 {stats.device_sha256} = {source} sha256; "
        f"{stats.retries} retries, {stats.reconnects} reconnects"
        + (f", resumed at {stats.resumed_from} B" if stats.resumed_from else "")
    )
    return 0


def _flash_image(args: argparse.Namespace) -> int:
    """`edge flash --image`: an MCUboot image over SMP image management (group 1)."""
    from edge.firmware_bridge.image import upload_image
    from edge.firmware_bridge.transport import SerialLink
    from edge.firmware_bridge.upload import UploadOptions

    if not args.image.is_file():
        raise ConfigError("image file not found", where=str(args.image),
                          hint="pass the signed MCUboot image of your firmware, e.g. build/zephyr/zephyr.signed.bin")
    data = args.image.read_bytes()
    wire = _framing(args)
    mark: Mark | None = "confirm" if args.confirm else "test" if args.test else None
    with _wire_log(args) as log, SerialLink(args.port, args.baud, timeout_s=args.timeout, log=log) as link, \
            _progress_bar(len(data), args.image.name, args.quiet) as bar:
        stats = upload_image(link, data, source=str(args.image), framing=wire,
                             options=UploadOptions(chunk=args.chunk),
                             mark=mark, upgrade=args.upgrade, progress=bar.update)
    state = "; pending (permanent)" if stats.permanent else "; pending (test boot)" if stats.pending else ""
    match = "the device's sha256 matched" if stats.device_match else "the device sent no sha256 match"
    print(f"flashed image {args.image} (version {stats.version}) -> {args.port} slot {stats.slot}: {stats.bytes} B "
          f"in {stats.wall_s:.2f} s ({stats.goodput_Bps / 1000:.1f} kB/s); image hash {stats.image_hash} listed by "
          f"the device; {match}{state}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from edge.cli import print_json
    from edge.firmware_bridge.bench import random_inputs, read_inputs, run_bench, trace_energy, with_costmodel
    from edge.firmware_bridge.mlperf import MlperfDut
    from edge.firmware_bridge.power_monitor import monitor_session
    from edge.firmware_bridge.transport import SerialLink

    writable_file(args.json, "--json")
    model = checked_model(args.model) if args.model is not None else None
    if args.model is None and DEFAULT_MODEL.is_file():
        model = checked_model(DEFAULT_MODEL)
    if args.input is not None:
        inputs = read_inputs(args.input, model)
    elif model is not None:
        inputs = random_inputs(model, args.inputs, args.seed)
    else:
        raise ConfigError(
            "no input tensor and no model to shape one", where="edge bench",
            hint="pass --model build/cortex-m/model_int8.tflite or --input tensor.bin",
        )
    with _wire_log(args) as log, monitor_session(args) as probe, \
            SerialLink(args.port, args.baud, timeout_s=args.timeout, log=log) as link, tqdm(
        total=len(inputs) + 1, unit="inference", desc="bench", file=sys.stderr, disable=args.quiet
    ) as bar:
        dut = MlperfDut(link, energy_mode=args.energy_mode, io_manager=args.io_manager, io_timer=args.io_timer,
                        dut_baud=args.dut_baud)
        report = run_bench(dut, inputs, runs=args.runs, warmups=args.warmup, model=model, progress=bar.update,
                           energy_probe=probe)
    if report.energy is not None:  # measured by the --power-monitor probe
        report.energy = with_costmodel(report.energy, model, args.mcu)
    if args.trace is not None:
        report.energy = trace_energy(args.trace, model, args.mcu, voltage_V=args.voltage,
                                     inferences=args.trace_inferences, marker=args.marker)
    print(report.table())
    print_json(report.to_json(), args.json)
    print(f"wrote {args.json}", file=sys.stderr)
    if report.local_match is False:
        raise DeviceError(
            f"device results differ from local TFLM at {len(report.mismatches)} of {len(inputs)} inputs",
            where=args.port, hint="is the flashed model the one passed with --model? run `edge flash` first",
        )
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from serial.tools import list_ports

    ports = sorted(list_ports.comports(), key=lambda p: p.device)
    if not ports:
        print("no serial ports found (plug in a board; on Linux check the 'dialout' group)")
        return 0
    for port in ports:
        ids = f"{port.vid:04x}:{port.pid:04x}" if port.vid is not None and port.pid is not None else "-"
        print(f"{port.device:20s} {ids:10s} {port.description}")
    return 0


def _cmd_emulator(args: argparse.Namespace) -> int:
    from edge.firmware_bridge.emulator import MODEL_FILE, EmulatedDevice
    from edge.firmware_bridge.io_manager import DEFAULT_DUT_BAUD, EmulatedIoManager
    from edge.firmware_bridge.lpm01a_emulator import DutActivity, EmulatedLpm01a
    from edge.firmware_bridge.pty_device import Board, Faults, PtyDevice, TcpDevice

    model = checked_model(args.model) if args.model is not None else None  # before any pty is made
    try:
        faults = Faults(
            drop=args.drop, flip=args.flip, stall_every=args.stall_every, stall_s=args.stall_s,
            disconnect_after=args.disconnect_after, disconnect_s=args.disconnect_s, seed=args.seed,
        )
    except ValueError as exc:
        raise ConfigError(str(exc), where="edge emulator") from exc
    dut = EmulatedDevice(store=args.store, target=args.target, framing=_framing(args))
    if model is not None:
        dut.flash.write(MODEL_FILE, 0, model)
    board: Board = dut
    if args.io_manager:
        if args.framing == "raw":
            raise ConfigError("--io-manager needs text on the DUT's UART; --framing raw has none",
                              where="edge emulator", hint="drop --framing raw")
        board = EmulatedIoManager(dut, dut_baud=args.dut_line_rate or DEFAULT_DUT_BAUD,
                                  pace_dut=bool(args.dut_line_rate))
    elif args.power_monitor:
        raise ConfigError("--power-monitor powers the DUT behind an IO manager", where="edge emulator",
                          hint="add --io-manager")
    device = (TcpDevice(board, port=args.tcp, baud=args.line_rate, faults=faults) if args.tcp is not None
              else PtyDevice(board, baud=args.line_rate, faults=faults))
    monitor = None
    if args.power_monitor:
        lpm = EmulatedLpm01a(DutActivity.attach(dut.mlperf))
        monitor = TcpDevice(lpm, port=0) if args.tcp is not None else PtyDevice(lpm)
    device.start()
    print(device.path, flush=True)
    if monitor is not None:
        monitor.start()
        print(monitor.path, flush=True)
    print(
        f"emulated board on {device.path} "
        f"(line rate {f'{args.line_rate} baud' if args.line_rate else 'unlimited'}); "
        + (f"try: edge bench --port {device.path} --io-manager --model M; " if args.io_manager else
           f"try: edge flash --port {device.path} --model M; ") + "Ctrl-C to stop",
        file=sys.stderr, flush=True,
    )
    if monitor is not None:
        print(f"emulated LPM01A energy monitor on {monitor.path}; try: edge bench --port {device.path} --io-manager "
              f"--power-monitor {monitor.path} --model M --runs 1000", file=sys.stderr, flush=True)
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add flash, bench, devices and emulator."""
    flash = subparsers.add_parser(
        "flash", help="upload a model to a board (mcumgr SMP file upload, device-confirmed sha256)",
        description="Upload the .tflite over mcumgr SMP serial (file management group 8) in CRC-checked "
        "chunks with retries and resume; succeeds only when the device's sha256 of the stored file "
        "equals the local (or manifest) sha256. With --image, an MCUboot firmware image goes to slot 1 over "
        "image management (group 1) instead.",
    )
    _add_port(flash)
    flash.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"the .tflite (default {DEFAULT_MODEL})")
    flash.add_argument("--image", type=Path, help="instead of --model: an MCUboot firmware image (e.g. with the "
                       "model compiled in), uploaded to slot 1 over SMP image management (group 1)")
    marks = flash.add_mutually_exclusive_group()
    marks.add_argument("--test", action="store_true", help="with --image: boot it once on the next reset")
    marks.add_argument("--confirm", action="store_true", help="with --image: boot it on every reset")
    flash.add_argument("--upgrade", action="store_true", help="with --image: refuse an image not newer than the "
                       "running one (img_mgmt 'upgrade')")
    flash.add_argument("--name", default="/lfs/model.tflite", help="file name on the device")
    _add_framing(flash)
    flash.add_argument("--chunk", type=positive_int, help="largest data bytes per request (default: from the device)")
    flash.add_argument("--no-resume", action="store_true", help="always start at offset 0")
    flash.add_argument("--sha256", help="expected sha256 (default: from runs/RUN/manifest.json if it lists the file)")
    flash.add_argument("--run", help="run whose manifest holds the model's sha256 (default: the run named in "
                       "report.json next to the model, else 'default')")
    flash.add_argument("--runs-dir", type=Path, default=Path("runs"))
    flash.add_argument("--quiet", action="store_true", help="no progress bar")
    flash.add_argument("--force", action="store_true", help="send --model even if it is not a TFLite model that "
                       "TFLite Micro can run (checked before the board is touched)")
    flash.set_defaults(func=_cmd_flash)

    bench = subparsers.add_parser(
        "bench", help="benchmark a board over the MLPerf Tiny serial protocol",
        description="Drive MLPerf Tiny-style firmware: name, profile, db load, infer N W; print latency "
        "and compare each result with the model run locally in TFLite Micro.",
    )
    _add_port(bench)
    bench.add_argument("--runs", type=positive_int, default=10, help="timed inferences N (default 10)")
    bench.add_argument("--warmup", type=non_negative_int, default=2, help="warm-up inferences W (default 2)")
    bench.add_argument("--model", type=Path, help=f"the flashed .tflite, for input shape and local check "
                       f"(default {DEFAULT_MODEL} if it exists)")
    bench.add_argument("--input", type=Path, help="input tensor: raw .bin or .npy ([N, ...] for N inputs)")
    bench.add_argument("--inputs", type=positive_int, default=8,
                       help="random inputs to check when no --input (default 8)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--energy-mode", action="store_true", help="26-byte db chunks, as behind the energy IO manager")
    bench.add_argument("--io-manager", action="store_true",
                       help="--port is an IO manager (EEMBC io-manager / MLPerf Tiny interface board): send "
                       "`dut <cmd>%%`, unwrap `[dut]: ` replies; implies 26-byte db chunks")
    bench.add_argument("--io-timer", action="store_true",
                       help="with --io-manager: send `enable-timer%%` so the IO manager stamps the DUT's timestamp "
                       "GPIO (latency for energy-mode DUTs, which print no m-lap-us)")
    bench.add_argument("--dut-baud", type=positive_int, default=9600,
                       help="with --io-manager: IO manager <-> DUT baud rate, for timeouts only (default 9600)")
    bench.add_argument("--json", type=Path, default=Path("bench.json"), help="where to write the JSON report")
    bench.add_argument("--trace", type=Path, help="current trace CSV (PPK2 or Otii export) taken during the run")
    bench.add_argument("--voltage", type=float, help="supply voltage, V: for a trace without a voltage column, or "
                       "what the --power-monitor supplies (default 3.3)")
    bench.add_argument("--marker", type=int, choices=range(8), metavar="0-7",
                       help="digital channel D0-D7 that is high during each inference")
    bench.add_argument("--trace-inferences", type=positive_int,
                       help="inferences in the trace (when there is no marker)")
    bench.add_argument("--mcu", default="nrf52840", help="MCU profile for the cost-model energy (default nrf52840)")
    bench.add_argument("--power-monitor", metavar="PORT",
                       help="with --io-manager: an ST X-NUCLEO-LPM01A on this port powers the DUT and measures "
                       "the energy of the `infer N W` window (between its D7 events); --voltage sets the supply "
                       "(default 3.3)")
    bench.add_argument("--monitor-freq", default="1k", help="LPM01A sampling frequency (default 1k, as the "
                       "MLPerf Tiny runner)")
    bench.add_argument("--monitor-baud", type=positive_int, default=3686400,
                       help="LPM01A port baud rate (default 3686400)")
    bench.add_argument("--power-on-wait", type=float, default=1.0,
                       help="seconds between the LPM01A's `pwr on` and `start`, for the DUT to boot (default 1)")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=_cmd_bench)

    devices = subparsers.add_parser("devices", help="list serial ports (pyserial list_ports)")
    devices.set_defaults(func=_cmd_devices)

    emu = subparsers.add_parser(
        "emulator", help="run an emulated board on a pty and print its path",
        description="An emulated board (MLPerf Tiny DUT + mcumgr SMP file server + TFLite Micro) on a "
        "pseudo-terminal. Prints the pty path on stdout; stop with Ctrl-C.",
    )
    emu.add_argument("--line-rate", type=non_negative_int, default=0, metavar="BAUD",
                     help="emulate a UART at this baud rate (a pty has none; default: unlimited)")
    emu.add_argument("--model", type=Path, help="pre-flash this .tflite")
    _add_framing(emu)
    emu.add_argument("--tcp", type=int, metavar="PORT", help="serve on socket://127.0.0.1:PORT instead of a pty "
                     "(0 = any free port)")
    emu.add_argument("--store", type=Path, help="keep the emulated flash in this folder (survives restarts)")
    emu.add_argument("--mcu", default="nrf52840", dest="target",
                     help="MCU profile (power_profiles/mcus/) whose cost model times inferences (default nrf52840)")
    emu.add_argument("--drop", type=float, default=0.0, help="probability a byte is dropped")
    emu.add_argument("--flip", type=float, default=0.0, help="probability a byte has a bit flipped")
    emu.add_argument("--stall-every", type=non_negative_int, default=0, help="stall after every N received bytes")
    emu.add_argument("--stall-s", type=float, default=0.0, help="stall length, seconds")
    emu.add_argument("--disconnect-after", type=non_negative_int, default=0,
                     help="drop off the bus once, after N received bytes")
    emu.add_argument("--disconnect-s", type=float, default=0.5, help="how long a disconnect lasts, seconds")
    emu.add_argument("--seed", type=int, default=0, help="fault injection seed")
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
