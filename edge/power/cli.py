"""`edge profile`, `edge battery check|simulate|profiles`: the cost model, the simulator and the gate.

Exit codes: 0 ok / gate passed, 1 gate failed, 2 bad input (profiles, durations, files).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.errors import ConfigError
from edge.power.inputs import Range, option


def _out_dir(path: Path, flag: str = "--out") -> Path:
    """A folder for reports; a clear error if the path exists and is a file."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"'{path}' exists and is not a folder", where=flag, hint="give a folder path for the reports")
    return path


def _cmd_profile(args: argparse.Namespace) -> int:
    from edge.power.assess import write_profile
    from edge.power.cost import estimate_file, layer_table_markdown
    from edge.power.profiles import load_mcu

    out = _out_dir(args.out) if args.out else None
    cost = estimate_file(args.model, load_mcu(args.mcu), args.kernels)
    print(layer_table_markdown(cost, top=args.top), end="")
    if out:
        for path in write_profile(cost, out).values():
            print(f"wrote {path}")
    if not cost.fits_flash:
        print(f"warning: the model ({cost.model_bytes:,} B) does not fit the {cost.flash_bytes:,} B flash "
              f"of {cost.mcu}")
    return 0


def _battery_config(args: argparse.Namespace, base: dict | None = None):
    from pydantic import ValidationError

    from edge.config import BatteryConfig
    from edge.power.durations import parse_duration_days

    data = dict(base or {})
    for key in ("device", "mcu", "kernels", "min_lifetime", "confidence", "runs", "seed", "max_years",
                "event_rate_per_day", "frames_per_event", "process"):
        value = getattr(args, key, None)
        if value is not None:
            data[key] = value
    if getattr(args, "min_lifetime", None) is not None:
        parse_duration_days(args.min_lifetime, where="--min-lifetime")
    try:
        return BatteryConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{err['msg']} (got {err.get('input')!r})", where=f"--{field.replace('_', '-')}") from exc


def _run_inputs(args: argparse.Namespace) -> tuple[Path, dict]:
    """Model path and stored battery config of `--run NAME`."""
    from edge.manifest import Manifest

    manifest = Manifest(args.runs_dir / args.run)
    if not manifest.stages:
        raise ConfigError(f"run '{args.run}' has no finished stages", where=str(manifest.file),
                          hint=f"run the pipeline first: `edge run --run {args.run}`")
    return manifest.artifact("export", "tflite_int8"), dict(manifest.config.get("battery", {}))


def _inference(args: argparse.Namespace, battery):
    """Energy (uJ), latency (ms), model name and source of one inference: cost model, or given."""
    from edge.power.assess import cost_source, profile_model
    from edge.power.provenance import InferenceSource

    if getattr(args, "measured", None) is not None:
        from edge.power.measured import read_bench

        if args.inference_uj is not None or args.inference_ms is not None:
            raise ConfigError("--measured replaces --inference-uJ/--inference-ms; give one of them", where="--measured")
        uj, ms, source = read_bench(args.measured)
        return uj, ms, str(args.model or args.measured), source
    if args.model is not None:
        cost = profile_model(args.model, battery)
        return cost.energy_uJ, cost.latency_ms, str(args.model), cost_source(cost)
    if args.inference_uj is None or args.inference_ms is None:
        raise ConfigError("give --model X.tflite, or both --inference-uJ and --inference-ms", where="edge battery")
    return args.inference_uj, args.inference_ms, "(given inference cost)", InferenceSource(
        "given", "--inference-uJ/--inference-ms")


def _evaluate(args: argparse.Namespace):
    from edge.power.assess import evaluate_battery

    base = None
    if args.run is not None:
        model, base = _run_inputs(args)
        if args.model is None:
            args.model = model
    battery = _battery_config(args, base)
    uj, ms, name, source = _inference(args, battery)
    out = args.out or (args.runs_dir / args.run / "battery-check" if args.run else Path("battery-report"))
    outcome = evaluate_battery(battery, uj, ms, name, _out_dir(out), source)
    return outcome, out


def _cmd_check(args: argparse.Namespace) -> int:
    from edge.power.gate import headroom_line, inputs_line

    outcome, out = _evaluate(args)
    gate = outcome.gate
    for warning in gate.warnings:
        print(f"warning: {warning}")
    print(gate.message)
    print(headroom_line(gate))
    print(inputs_line(gate))
    print(f"reports: {out / 'junit.xml'}, {out / 'summary.md'}")
    return 0 if gate.passed else 1


def _cmd_simulate(args: argparse.Namespace) -> int:
    from edge.power.gate import headroom_line, inputs_line

    outcome, out = _evaluate(args)
    gate = outcome.gate
    for warning in gate.warnings:
        print(f"warning: {warning}")
    def days(value: float) -> str:
        return f"{'>' if value >= gate.horizon_days else ''}{value:.0f} d"

    print(f"lifetime P5 {days(gate.lifetime_p5_days)}, P50 {days(gate.lifetime_p50_days)}, "
          f"P95 {days(gate.lifetime_p95_days)} ({outcome.sim.lifetimes_days.size} runs); "
          f"average current {gate.p50_current_uA:.2f} uA (P50 run), {gate.avg_current_uA:.2f} uA "
          f"({gate.current_run} run)")
    print(headroom_line(gate))
    print(inputs_line(gate))
    total = sum(gate.breakdown_mAh.values()) or 1.0
    for state, mah in sorted(gate.breakdown_mAh.items(), key=lambda kv: -kv[1]):
        print(f"  {state:15s} {mah:10.1f} mAh  {100 * mah / total:5.1f} %")
    if args.json:
        print(json.dumps(json.loads((out / "lifetime.json").read_text()), indent=2))
    print(f"wrote {out}/lifetime.json, soc.png, breakdown.png, junit.xml, summary.md")
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    from edge.power.profiles import KINDS, list_profiles, load_profile

    for kind in [args.kind] if args.kind else list(KINDS):
        print(f"{kind}:")
        for name in list_profiles(kind):
            load_profile(kind, name)  # validates
            print(f"  {name}")
    return 0


def _sim_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="device profile (default: battery.device, camera-trap-nrf52840)")
    parser.add_argument("--model", type=Path, help=".tflite model whose inference cost to use")
    parser.add_argument("--inference-uJ", dest="inference_uj", type=option(float, Range(0.0, high=1e9)),
                        help="energy per inference instead of --model (> 0)")
    parser.add_argument("--inference-ms", type=option(float, Range(0.0, high=1e7)),
                        help="latency per inference instead of --model (> 0)")
    parser.add_argument("--measured", type=Path, metavar="BENCH_JSON",
                        help="measured latency and energy per inference from `edge bench` (bench.json with an energy "
                        "monitor or trace): replaces the cost model, reports say 'measured'")
    parser.add_argument("--mcu", help="MCU profile for the cost model (default: the device's MCU)")
    parser.add_argument("--kernels", choices=("optimized", "reference"))
    parser.add_argument("--min-lifetime", help="target lifetime, e.g. 1y, 18mo, 400d (default 1y)")
    parser.add_argument("--confidence", type=option(float, Range(0.5, high=0.9999)),
                        help="gate on the (1-confidence) percentile (default 0.95: P5)")
    parser.add_argument("--runs", type=option(int, Range(1, low_ok=True, high=100_000)),
                        help="Monte Carlo runs (default 1000)")
    parser.add_argument("--seed", type=option(int, Range(0, low_ok=True, high=2**63 - 1)))
    parser.add_argument("--max-years", type=option(float, Range(0.0, high=50)), help="simulated horizon (default 10)")
    parser.add_argument("--rate-per-day", dest="event_rate_per_day", type=option(float, Range(0.0, True, 1e6)),
                        help="override the event rate (0 = no events)")
    parser.add_argument("--frames-per-event", type=option(int, Range(1, low_ok=True, high=100)),
                        help="override the device's frames (inferences) per event")
    parser.add_argument("--process", choices=("poisson", "diurnal", "bursty", "replay"))
    parser.add_argument("--run", help="use this run's exported model and battery config (runs/NAME)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, help="report folder (default runs/NAME/battery-check or battery-report/)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `profile` and `battery`."""
    prof = subparsers.add_parser(
        "profile", help="latency/energy per inference of any .tflite on an MCU (per-layer table)",
        description="Estimate latency and energy of one inference of a .tflite model on an MCU profile, op by op.",
    )
    prof.add_argument("--model", type=Path, required=True, help="a .tflite file (int8 or float)")
    prof.add_argument("--mcu", default="nrf52840", help="MCU profile name (see `edge battery profiles`)")
    prof.add_argument("--kernels", choices=("optimized", "reference"), default="optimized")
    prof.add_argument("--top", type=option(int, Range(1, low_ok=True)), help="show only the N most expensive layers")
    prof.add_argument("--out", type=Path, help="also write profile.json, layers.csv, layers.md here")
    prof.set_defaults(func=_cmd_profile)

    bat = subparsers.add_parser("battery", help="battery lifetime simulation and the CI gate")
    sub = bat.add_subparsers(dest="battery_command", metavar="SUBCOMMAND")
    sub.required = True
    check = sub.add_parser(
        "check", help="the gate: exit 0 if the P5 lifetime meets --min-lifetime, 1 if not, 2 on bad input",
        description="Simulate the device with the model and compare the (1-confidence) lifetime percentile with "
        "the target. Writes junit.xml and summary.md.",
    )
    _sim_args(check)
    check.set_defaults(func=_cmd_check)
    sim = sub.add_parser("simulate", help="lifetime distribution, energy breakdown and plots")
    _sim_args(sim)
    sim.add_argument("--json", action="store_true", help="also print lifetime.json")
    sim.set_defaults(func=_cmd_simulate)
    lst = sub.add_parser("profiles", help="list (and validate) the power profiles")
    lst.add_argument("--kind", choices=("mcus", "cameras", "motion", "radios", "cells", "devices"))
    lst.set_defaults(func=_cmd_profiles)
