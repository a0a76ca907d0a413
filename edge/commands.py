"""Pipeline subcommands: run, data, train, prune, qat, export, stage, config, status, report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge.argtypes import positive_int, run_name
from edge.config import RunConfig, check_settings, user_settings, validate_settings
from edge.errors import ConfigError
from edge.manifest import Manifest
from edge.pipeline import STAGE_NAMES, run_pipeline, run_stage_here

RUNS_DIR = Path("runs")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default="default", metavar="NAME", type=run_name,
                        help="run name: artifacts go to runs/NAME/")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help="where runs live (default: runs/)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML config file (see `edge config --show`)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
        help="override one config value, e.g. --set train.epochs=10 (repeatable)",
    )
    parser.add_argument("--target", help="hardware target, e.g. cortex-m, cortex-m4, nrf52840")
    parser.add_argument("--data", metavar="SOURCE", help="'synthetic', 'imagefolder:PATH' or 'vww:COCO_ROOT'")
    parser.add_argument("--force", action="append", default=[], choices=STAGE_NAMES, help="rerun this stage")
    parser.add_argument("--fresh-config", action="store_true",
                        help="forget the settings this run remembers from earlier --set/--config")


def _resolve(args: argparse.Namespace) -> tuple[Path, RunConfig, dict[str, Any]]:
    """Run folder, resolved and checked config, and the explicit settings (remembered ones + this
    command's). Nothing is saved here: a bad setting stops the command before the run remembers it."""
    overrides = list(args.overrides)
    if getattr(args, "target", None) is not None:
        overrides.append(f"target={args.target}")
    if getattr(args, "data", None) is not None:
        overrides.append(f"data.source={args.data}")
    if getattr(args, "epochs", None) is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.runs_dir.exists() and not args.runs_dir.is_dir():
        raise ConfigError("--runs-dir is a file, not a folder", where=str(args.runs_dir))
    run_dir = args.runs_dir / args.run
    previous = None if args.fresh_config else Manifest(run_dir).settings
    settings, origin = user_settings(args.config, overrides, base=previous)
    try:
        return run_dir, check_settings(validate_settings(settings, origin), origin), settings
    except ConfigError as exc:
        if previous:
            exc.hint = (f"{exc.hint}; " if exc.hint else "") + "--fresh-config forgets the settings this run saved"
        raise


def _cmd_run(args: argparse.Namespace) -> int:
    run_dir, config, settings = _resolve(args)
    options: dict[str, dict[str, Any]] = {"train": {}}
    if getattr(args, "resume", False):
        options["train"]["resume"] = True
    if getattr(args, "nproc", 1) > 1:
        options["train"]["nproc"] = args.nproc
    code = run_pipeline(run_dir, config, until=args.until, force=tuple(args.force), options=options,
                        settings=settings)
    if code == 0:
        from edge.run_summary import summary

        print(summary(run_dir), file=sys.stderr)
    return code


def _options(text: str | None) -> dict[str, Any] | None:
    """`edge stage --options JSON`: a JSON object of run-time options."""
    if not text:
        return None
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not JSON: {exc}", where="--options") from exc
    if not isinstance(options, dict):
        raise ConfigError(f"a JSON object is expected, not {type(options).__name__}", where="--options")
    return options


def _cmd_stage(args: argparse.Namespace) -> int:
    try:
        run_stage_here(args.run_dir, args.name, _options(args.options))
    except KeyboardInterrupt:
        hint = " Finished epochs are checkpointed: continue with `edge train --resume`." if args.name == "train" else ""
        print(f"interrupted: stage '{args.name}' did not finish and recorded nothing.{hint}", file=sys.stderr)
        return 130
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    _, config, _ = _resolve(args)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    manifest = Manifest(args.runs_dir / args.run)
    if not manifest.stages:
        print(f"run '{args.run}' has no finished stages yet ({manifest.file})")
        return 0
    for name in STAGE_NAMES:
        record = manifest.stages.get(name)
        if record is None:
            print(f"{name:8s}  -")
            continue
        metrics = ", ".join(f"{k}={v}" for k, v in record.metrics.items() if not isinstance(v, (dict, list)))
        stale = manifest.staleness(name, record.config_sha256)
        mark = f"  [STALE: {stale}; rerun with `edge run --until {name}`]" if stale else ""
        print(f"{name:8s}  {record.wall_s:8.1f} s  {metrics}{mark}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    run_dir = args.runs_dir / args.run
    if not Manifest(run_dir).stages:
        raise ConfigError(f"run '{args.run}' has no finished stages yet", where=str(run_dir / "manifest.json"),
                          hint=f"run the pipeline first: `edge run --run {args.run}`")
    run_stage_here(run_dir, "report")
    record = Manifest(run_dir).stages["report"]
    m = record.metrics
    print(f"report: {m.get('checks_pass', 0)} checks pass, {m.get('checks_warn', 0)} warn, "
          f"{m.get('checks_na', 0)} n/a ({record.wall_s:.1f} s)")
    for ref in record.outputs.values():
        print(f"  {run_dir / ref.path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the pipeline subcommands."""
    run = subparsers.add_parser(
        "run", help="run the pipeline up to a stage (default: all)",
        description="Run data -> train -> prune -> qat -> export -> profile -> battery -> report, skipping "
        "stages whose config and inputs are unchanged. Each stage runs in its own process.",
    )
    _add_run_options(run)
    run.add_argument("--until", default=STAGE_NAMES[-1], choices=STAGE_NAMES, help="last stage to run")
    run.add_argument("--resume", action="store_true", help="resume an interrupted training from its checkpoint")
    run.set_defaults(func=_cmd_run)

    shortcuts = {
        "data": "build the data set (stage 'data')",
        "train": "train the float ViT-lite (stages up to 'train')",
        "prune": "structurally prune the trained model (stages up to 'prune')",
        "qat": "quantisation-aware training (stages up to 'qat')",
        "export": "export ONNX, int8 TFLite and firmware sources for --target (stages up to 'export')",
    }
    for name, text in shortcuts.items():
        sub = subparsers.add_parser(name, help=text, description=text)
        _add_run_options(sub)
        if name == "train":
            sub.add_argument("--epochs", type=positive_int, help="training epochs (same as --set train.epochs=N)")
            sub.add_argument("--resume", action="store_true", help="resume from the last epoch checkpoint")
            sub.add_argument("--nproc", type=positive_int, default=1,
                             help="train with N processes (torchrun, DistributedDataParallel); default 1")
        sub.set_defaults(func=_cmd_run, until=name)

    stage = subparsers.add_parser("stage", help="run one stage in this process (used by `edge run`)")
    stage.add_argument("name", choices=STAGE_NAMES)
    stage.add_argument("--run-dir", type=Path, required=True)
    stage.add_argument("--options", help="JSON run-time options for the stage")
    stage.set_defaults(func=_cmd_stage)

    config = subparsers.add_parser("config", help="show the resolved configuration as YAML")
    _add_run_options(config)
    config.add_argument("--show", action="store_true", help="print the config (default action)")
    config.set_defaults(func=_cmd_config)

    report = subparsers.add_parser(
        "report", help="write runs/NAME/report/report.html (+ .md, .json): the run on one page",
        description="Build the run's report from its manifest and artifacts (quality checks measured on the int8 "
        "model) without rerunning any other stage; see docs/report.md.")
    report.add_argument("--run", default="default", metavar="NAME", type=run_name)
    report.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help="where runs live (default: runs/)")
    report.set_defaults(func=_cmd_report)

    status = subparsers.add_parser("status", help="list the stages of a run with their metrics")
    status.add_argument("--run", default="default", type=run_name)
    status.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    status.set_defaults(func=_cmd_status)
