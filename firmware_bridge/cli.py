"""`edge flash`, `edge bench`, `edge devices`: boards over a serial port (the host side; no emulation)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edge.argtypes import non_negative_int, positive_int
from edge.errors import ConfigError, DeviceError
from edge.firmware_bridge.cli_args import add_framing, add_port, framing_of, wire_log, writable_file
from edge.firmware_bridge.model_check import checked_model
from edge.paths import DEFAULT_MCU, DEFAULT_RUN, RUNS_DIR, exported_model

if TYPE_CHECKING:
    from tqdm import tqdm

    from edge.firmware_bridge.image import Mark

DEFAULT_MODEL = exported_model()  # build/cortex-m/model_int8.tflite


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

    return exported_run(model.parent) or DEFAULT_RUN


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
    wire = framing_of(args)
    expected = args.sha256 or manifest_sha256(args.model, args.runs_dir, args.run or run_of_export(args.model))
    with wire_log(args) as log, SerialLink(args.port, args.baud, timeout_s=args.timeout, log=log) as link, \
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
    wire = framing_of(args)
    mark: Mark | None = "confirm" if args.confirm else "test" if args.test else None
    with wire_log(args) as log, SerialLink(args.port, args.baud, timeout_s=args.timeout, log=log) as link, \
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
            hint=f"pass --model {DEFAULT_MODEL} or --input tensor.bin",
        )
    with wire_log(args) as log, monitor_session(args) as probe, \
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add flash, bench and devices (`edge emulator` is edge.firmware_bridge.emulation.cli)."""
    _add_flash(subparsers)
    _add_bench(subparsers)
    devices = subparsers.add_parser("devices", help="list serial ports (pyserial list_ports)")
    devices.set_defaults(func=_cmd_devices)


def _add_flash(subparsers: argparse._SubParsersAction) -> None:
    """`edge flash`: a model over SMP file management, or a firmware image over image management."""
    flash = subparsers.add_parser(
        "flash", help="upload a model to a board (mcumgr SMP file upload, device-confirmed sha256)",
        description="Upload the .tflite over mcumgr SMP serial (file management group 8) in CRC-checked "
        "chunks with retries and resume; succeeds only when the device's sha256 of the stored file "
        "equals the local (or manifest) sha256. With --image, an MCUboot firmware image goes to slot 1 over "
        "image management (group 1) instead.",
    )
    add_port(flash)
    flash.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"the .tflite (default {DEFAULT_MODEL})")
    flash.add_argument("--image", type=Path, help="instead of --model: an MCUboot firmware image (e.g. with the "
                       "model compiled in), uploaded to slot 1 over SMP image management (group 1)")
    marks = flash.add_mutually_exclusive_group()
    marks.add_argument("--test", action="store_true", help="with --image: boot it once on the next reset")
    marks.add_argument("--confirm", action="store_true", help="with --image: boot it on every reset")
    flash.add_argument("--upgrade", action="store_true", help="with --image: refuse an image not newer than the "
                       "running one (img_mgmt 'upgrade')")
    flash.add_argument("--name", default="/lfs/model.tflite", help="file name on the device")
    add_framing(flash)
    flash.add_argument("--chunk", type=positive_int, help="largest data bytes per request (default: from the device)")
    flash.add_argument("--no-resume", action="store_true", help="always start at offset 0")
    flash.add_argument("--sha256", help="expected sha256 (default: from runs/RUN/manifest.json if it lists the file)")
    flash.add_argument("--run", help="run whose manifest holds the model's sha256 (default: the run named in "
                       "report.json next to the model, else 'default')")
    flash.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    flash.add_argument("--quiet", action="store_true", help="no progress bar")
    flash.add_argument("--force", action="store_true", help="send --model even if it is not a TFLite model that "
                       "TFLite Micro can run (checked before the board is touched)")
    flash.set_defaults(func=_cmd_flash)


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    """`edge bench`: the MLPerf Tiny protocol, checked against local TFLM."""
    bench = subparsers.add_parser(
        "bench", help="benchmark a board over the MLPerf Tiny serial protocol",
        description="Drive MLPerf Tiny-style firmware: name, profile, db load, infer N W; print latency "
        "and compare each result with the model run locally in TFLite Micro.",
    )
    add_port(bench)
    bench.add_argument("--runs", type=positive_int, default=10, help="timed inferences N (default 10)")
    bench.add_argument("--warmup", type=non_negative_int, default=2, help="warm-up inferences W (default 2)")
    bench.add_argument("--model", type=Path, help=f"the flashed .tflite, for input shape and local check "
                       f"(default {DEFAULT_MODEL} if it exists)")
    bench.add_argument("--input", type=Path, help="input tensor: raw .bin or .npy ([N, ...] for N inputs)")
    bench.add_argument("--inputs", type=positive_int, default=8,
                       help="random inputs to check when no --input (default 8)")
    bench.add_argument("--seed", type=int, default=0)
    _add_energy_options(bench)
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=_cmd_bench)


def _add_energy_options(bench: argparse.ArgumentParser) -> None:
    """The energy setup: an IO manager in front of the DUT, a power monitor or a current trace."""
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
    bench.add_argument("--mcu", default=DEFAULT_MCU,
                       help=f"MCU profile for the cost-model energy (default {DEFAULT_MCU})")
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
