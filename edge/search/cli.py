"""`edge search`: the most accurate model that still meets the target's flash and RAM, runs on TFLite
Micro, passes the agreement gate and lasts the battery lifetime, by Optuna multi-objective search.

This process (the coordinator) checks the input, opens the study, learns the data set's shape and the
lifetime's energy budget once, enqueues the default pipeline as trial 0, recovers trials of killed
workers, starts `--workers` worker processes (edge.search.worker), prints a line per finished trial
and writes the Pareto front. Exit 0 when a feasible model was found, 1 when none was (the verdict),
2 on bad input, 130 when interrupted (the study keeps everything; run the command again to continue).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edge.argtypes import positive_int, run_name
from edge.config import check_settings, user_settings, validate_settings
from edge.errors import EXIT_GATE_FAILED, EXIT_INTERRUPTED, ConfigError
from edge.paths import DEFAULT_DEVICE, DEFAULT_RUN, DEFAULT_TARGET, RUNS_DIR

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def budget_seconds(text: str) -> float:
    """argparse type of --budget: `30m`, `2h`, `90s` -> seconds (> 0)."""
    match = _BUDGET.match(text.lower())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive duration such as 30m, 2h or 90s, got {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _checked_flags(args: argparse.Namespace) -> list[str]:
    """--target, --device and --min-lifetime as overrides, each checked with an error naming the flag."""
    from edge.export.targets import resolve_target
    from edge.power.durations import parse_duration_days
    from edge.power.profiles import profile_path

    overrides = []
    if args.target is not None:
        resolve_target(args.target)
        overrides.append(f"target={args.target}")
    if args.device is not None:
        try:
            profile_path("devices", args.device)
        except ConfigError as exc:
            raise ConfigError(exc.message, where="--device", hint=exc.hint) from exc
        overrides.append(f"battery.device={args.device}")
    if args.min_lifetime is not None:
        parse_duration_days(args.min_lifetime, where="--min-lifetime")
        overrides.append(f"battery.min_lifetime={args.min_lifetime}")
    if args.data is not None:
        overrides.append(f"data.source={args.data}")
    return overrides


def _target_error(exc: ConfigError) -> ConfigError:
    return ConfigError(exc.message, where="--target", hint=exc.hint) if exc.where in (None, "target") else exc


def base_settings(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """The search's own settings (every trial starts from them) and their resolved config."""
    try:
        flags = _checked_flags(args)
    except ConfigError as exc:
        raise _target_error(exc) from exc
    settings, origin = user_settings(args.config, [*args.overrides, *flags])
    return settings, check_settings(validate_settings(settings, origin), origin)


def _data_shape(search_dir: Path, config: Any, settings: dict[str, Any]) -> tuple[int, int]:
    """(channels, classes) of the data set, from a data-stage run in search/base/."""
    from edge.manifest import Manifest
    from edge.pipeline import run_pipeline

    base = search_dir / "base"
    code = run_pipeline(base, config, until="data", settings=settings)
    if code != 0:
        raise ConfigError(f"the data stage failed (exit {code})", where=str(base),
                          hint="fix the data source first: `edge data --data ...`")
    metrics = Manifest(base).stages["data"].metrics
    return int(metrics["channels"]), int(metrics["num_classes"])


def _study_facts(study: Any, search_dir: Path, config: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """Data shape and lifetime energy budget: measured once per study, stored in it."""
    from edge.search.estimate import lifetime_budget_uJ

    facts = study.user_attrs.get("facts")
    if facts is None:
        channels, classes = _data_shape(search_dir, config, settings)
        budget = lifetime_budget_uJ(config.battery, search_dir / "lifetime_budget")
        facts = {"channels": channels, "num_classes": classes,
                 "energy_budget_uJ": None if math.isinf(budget) else budget}
        study.set_user_attr("facts", facts)
    return dict(facts)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _shares(remaining: int | None, workers: int) -> list[int | None]:
    if remaining is None:
        return [None] * workers
    return [remaining // workers + (i < remaining % workers) for i in range(workers)]


def _start_workers(spec_path: Path, shares: list[int | None], log_dir: Path) -> list[subprocess.Popen[bytes]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, share in enumerate(shares):
        if share == 0:
            continue
        cmd = [sys.executable, "-m", "edge.search.worker", str(spec_path), "--worker", str(i)]
        if share is not None:
            cmd += ["--n-trials", str(share)]
        with open(log_dir / f"worker-{i}.log", "ab") as log:
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
                                          preexec_fn=_die_with_parent))
    return procs


def _wait(procs: list[subprocess.Popen[bytes]], progress: Any) -> bool:
    """Wait for the workers, printing progress; on SIGTERM/Ctrl-C stop them. True when interrupted."""
    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while any(p.poll() is None for p in procs):
            progress.poll()
            time.sleep(1.0)
        return False
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=90)
            except subprocess.TimeoutExpired:
                p.kill()
        return True
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.poll()


def _cmd_search(args: argparse.Namespace) -> int:
    from edge.search import storage
    from edge.search.space import default_params
    from edge.search.worker import SearchSpec

    search_dir = args.runs_dir / args.run / "search"
    if args.export is not None:
        return _cmd_export(args, search_dir)
    settings, config = base_settings(args)
    store, where = storage.open_storage(args.study, search_dir)
    name = args.study_name or f"edge-search-{args.run}"
    study = storage.load_study(store, name, {"settings": settings}, args.seed)
    search_dir.mkdir(parents=True, exist_ok=True)
    facts = _study_facts(study, search_dir, config, settings)
    storage.warm_start(study, default_params())
    recovered = storage.recover(study)
    deadline = time.time() + args.budget if args.budget else None
    from edge.search.progress import Progress

    progress = Progress(study, args.trials, deadline)
    remaining = None if args.trials is None else max(0, args.trials - progress.done())
    print(f"[search] study '{name}' in {where}: {progress.done()} trials finished"
          f"{f', {len(recovered)} of a killed worker enqueued again ({recovered})' if recovered else ''}; "
          f"{args.workers} worker(s), {f'{remaining} trial(s) to go' if remaining is not None else 'no trial limit'}"
          f"{f', budget {args.budget / 60:.0f} min' if args.budget else ''}; lifetime allows "
          f"{_energy_text(facts['energy_budget_uJ'])} per inference (estimated)", file=sys.stderr, flush=True)
    spec = SearchSpec(study=args.study, study_name=name, search_dir=str(search_dir.resolve()),
                      base_settings=settings, identity={"settings": settings}, seed=args.seed,
                      channels=facts["channels"], num_classes=facts["num_classes"],
                      energy_budget_uJ=facts["energy_budget_uJ"], max_trials=args.trials, deadline=deadline,
                      threads=max(1, (os.cpu_count() or 1) // args.workers), fidelity=not args.no_fidelity)
    spec.save(search_dir / "spec.json")
    interrupted = False
    if remaining != 0:
        procs = _start_workers(search_dir / "spec.json", _shares(remaining, args.workers), search_dir / "logs")
        interrupted = _wait(procs, progress)
    code = _finish(study, search_dir, name, where, args, config)
    return EXIT_INTERRUPTED if interrupted and (deadline is None or time.time() < deadline) else code


def _energy_text(uJ: float | None) -> str:
    return "any energy" if uJ is None else f"up to {uJ:,.0f} uJ"


def _finish(study: Any, search_dir: Path, name: str, where: str, args: argparse.Namespace, config: Any) -> int:
    from edge.search.pareto import rows_of, write_outputs
    from edge.search.summary import summary_lines

    rows = rows_of(study)
    meta = {"study": name, "storage": where, "target": config.target, "device": config.battery.device,
            "min_lifetime": config.battery.min_lifetime}
    files = write_outputs(rows, search_dir, f"edge search '{args.run}': {config.target}, {config.battery.device}, "
                          f">= {config.battery.min_lifetime}", meta)
    lines, found = summary_lines(rows, files, args.run)
    for line in lines:
        print(line, file=sys.stderr)
    return 0 if found else EXIT_GATE_FAILED


def _cmd_export(args: argparse.Namespace, search_dir: Path) -> int:
    from edge.pipeline import run_pipeline
    from edge.run_summary import summary
    from edge.search import storage
    from edge.search.export_best import export_trial, pick

    if args.study is None and not (search_dir / "study.journal").is_file():
        raise ConfigError(f"no search in run '{args.run}'", where=str(search_dir / "study.journal"),
                          hint=f"run `edge search --run {args.run}` first, or pass --study URL")
    store, _ = storage.open_storage(args.study, search_dir)
    name = args.study_name or f"edge-search-{args.run}"
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=store)
    except KeyError as exc:
        raise ConfigError(f"no study named '{name}'", where="--study-name") from exc
    row = pick(study, args.export)
    to = args.to or f"{args.run}-trial{row['number']}"
    run_dir = args.runs_dir / to
    config, settings = export_trial(row, search_dir / "trials", run_dir)
    print(f"[search] trial {row['number']} -> run '{to}' ({run_dir}); exporting to build/{config.target}/",
          file=sys.stderr, flush=True)
    code = run_pipeline(run_dir, config, settings=settings)
    if code == 0:
        print(summary(run_dir), file=sys.stderr)
        print(f"[search] run '{to}' is a normal run: make export RUN={to} TARGET={config.target}, "
              f"edge report --run {to}, edge battery check --run {to}", file=sys.stderr)
    return code


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `edge search`."""
    p = subparsers.add_parser(
        "search", help="find the most accurate model within flash, RAM and battery-lifetime limits (Optuna)",
        description="Multi-objective search (max int8 val top-1, min energy per inference) over image size, patch "
        "size, widths, depth, heads, MLP ratio, pruning tolerance and int8/int16 activations; every trial is a "
        "normal pipeline run in runs/RUN/search/trials/N/. See docs/search.md.")
    p.add_argument("--run", default=DEFAULT_RUN, metavar="NAME", type=run_name,
                   help=f"the search lives in runs/NAME/search/ (default: {DEFAULT_RUN})")
    p.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help="where runs live (default: runs/)")
    p.add_argument("--config", type=Path, metavar="FILE", help="YAML config every trial starts from")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="a config value every trial starts from (repeatable); searched keys are overridden")
    p.add_argument("--target", help=f"hardware target (flash/RAM limits, export; default {DEFAULT_TARGET})")
    p.add_argument("--device", help=f"battery device profile (default {DEFAULT_DEVICE})")
    p.add_argument("--min-lifetime", metavar="DURATION", help="P5 lifetime the model must allow, e.g. 1y, 18mo "
                   "(default battery.min_lifetime, 1y)")
    p.add_argument("--data", metavar="SOURCE", help="'synthetic', 'imagefolder:PATH' or 'vww:COCO_ROOT'")
    p.add_argument("--budget", type=budget_seconds, metavar="TIME",
                   help="wall-clock budget of this command, e.g. 30m, 2h; a trial still running then is stopped "
                   "and kept for the next start")
    p.add_argument("--trials", type=positive_int, metavar="N",
                   help="stop once the study has N complete or pruned trials (default 20 without --budget)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="worker processes on this machine (default 1); each gets cores/N torch threads")
    p.add_argument("--study", metavar="URL", help="shared study: an RDB URL (postgresql://..., sqlite:///...) or "
                   "journal:PATH on a shared filesystem (default: runs/NAME/search/study.journal)")
    p.add_argument("--study-name", metavar="NAME", help="study name inside --study (default edge-search-RUN)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (worker i uses seed + i)")
    p.add_argument("--no-fidelity", action="store_true", help="never stop a trial early on its val curve")
    p.add_argument("--export", metavar="BEST|N", help="turn the recommended trial (BEST) or trial N into a "
                   "normal run (runs/RUN-trialN/, or --to NAME) and run export, profile, battery and report on it")
    p.add_argument("--to", metavar="NAME", type=run_name, help="--export: the new run's name")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.trials is None and args.budget is None and args.export is None:
        args.trials = 20
    return _cmd_search(args)
