"""One search trial = one normal run of the pipeline, data -> battery, in `trials/<n>/`.

The run is made by `edge.pipeline.run_pipeline` exactly as `edge run` makes it (each stage in its own
process), with the trial's settings remembered in its manifest, the export written to `trials/<n>/build/`
and the train stage appending its val curve to `trials/<n>/epochs.jsonl` for the pruner. The outcome is
read back from the run's manifest and artifacts: the int8 val top-1 of the qat stage (the integer graph
the export converts; TFLM agrees with it, which the export gate checks), the energy per inference on the
battery's MCU from the profile stage (a cost-model estimate with its band), the fit, TFLM and agreement
figures of export's report.json, and the battery stage's P5 lifetime.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.config import RunConfig, check_settings, validate_settings
from edge.errors import EXIT_BAD_INPUT, EXIT_EXPORT
from edge.manifest import Manifest
from edge.search import constraints as cons

EPOCH_LOG = "epochs.jsonl"


@dataclass
class Outcome:
    """What a finished trial gives: the objectives, its constraint values and the figures behind them."""

    val_int8_top1: float
    energy_uJ: float
    constraints: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)
    note: str = ""


class TrialPrunedError(Exception):
    """The pruner stopped the trial during training."""


class TrialCrashedError(Exception):
    """A stage failed in a way that says nothing about the model (a bug, a killed process)."""


def trial_config(settings: dict[str, Any], origin: str) -> RunConfig:
    """The trial's resolved and checked config."""
    return check_settings(validate_settings(settings, origin), origin)


def stop_stage_processes() -> None:
    """End this process's children (the running stage): SIGTERM, the way a prune stops a trial."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGTERM)


def run_trial(run_dir: Path, config: RunConfig, settings: dict[str, Any], fidelity: Any | None) -> Outcome:
    """Run the pipeline for one trial and read its outcome (raises TrialPrunedError / TrialCrashedError)."""
    from edge.pipeline import run_pipeline
    from edge.search.fidelity import CurveWatcher

    epoch_log = run_dir / EPOCH_LOG
    run_dir.mkdir(parents=True, exist_ok=True)
    epoch_log.unlink(missing_ok=True)
    options = {"train": {"epoch_log": str(epoch_log.resolve())}}
    number = int(run_dir.name)
    if fidelity is None:
        code = run_pipeline(run_dir, config, until="battery", options=options, settings=settings)
        pruned_at = None
    else:
        watcher = CurveWatcher(fidelity, number, epoch_log, stop_stage_processes)
        try:
            with watcher:
                code = run_pipeline(run_dir, config, until="battery", options=options, settings=settings)
        except BaseException:
            watcher.finish(interrupted=True)
            raise
        watcher.finish(interrupted=code != 0 and watcher.pruned_at is None)
        pruned_at = watcher.pruned_at
    if pruned_at is not None:
        raise TrialPrunedError(f"pruned at epoch {pruned_at}: val top-1 {watcher.curve[-1]:.3f} in the bottom "
                               f"quarter of the curves at that epoch")
    return read_outcome(run_dir, config, code)


def _export_report(config: RunConfig, run_dir: Path) -> dict[str, Any] | None:
    from edge import paths

    report = paths.build_dir(config.target, run_dir.parent, config.export.build_dir) / "report.json"
    if not report.is_file():
        return None
    data = json.loads(report.read_text(encoding="utf-8"))
    return data if (data.get("run") or {}).get("name") == run_dir.name else None


def _agreement_gap(config: RunConfig, report: dict[str, Any]) -> float:
    """min agreement - the agreement export's gate judges, by its basis (<= 0: the gate holds)."""
    from edge.export.stage import agreement_passes

    cfg, agreement = config.export, report["agreement"]
    judged = agreement["decisive_top1_agreement" if cfg.agreement_basis == "decisive" else "tflm_vs_qat_top1"]
    gap = cfg.min_tflm_agreement - float(judged if judged is not None else 0.0)
    if agreement_passes(agreement["tflm_vs_qat_top1"], cfg.min_tflm_agreement, cfg.agreement_basis, agreement):
        return min(0.0, gap)
    return max(1e-6, gap)  # failed on the near-tie share although the decisive agreement is high enough


def read_outcome(run_dir: Path, config: RunConfig, code: int) -> Outcome:
    """The outcome of a finished (or export-failed) trial run from its manifest and artifacts."""
    from edge.power.durations import parse_duration_days

    manifest = Manifest(run_dir)
    stages = manifest.stages
    if code == EXIT_BAD_INPUT and "export" not in stages:
        return Outcome(0.0, 0.0, {"valid": 1.0}, note="a stage refused the settings (exit 2); see log.txt")
    if code not in (0, EXIT_EXPORT) or "qat" not in stages:
        raise TrialCrashedError(f"the pipeline stopped with exit {code} (see {run_dir / 'log.txt'})")
    val = float(stages["qat"].metrics["val_top1"])
    report = _export_report(config, run_dir)
    target_days = parse_duration_days(config.battery.min_lifetime, "battery.min_lifetime")
    figures: dict[str, Any] = {"val_float_top1": stages["qat"].metrics.get("val_top1_float"),
                               "params": stages["qat"].metrics.get("params"), "macs": stages["qat"].metrics.get("macs")}
    if code == EXIT_EXPORT or "battery" not in stages:
        values = {"valid": 0.0, "tflm": 1.0, "export": 1.0}
        if report is not None:  # export wrote its report, then a gate failed
            values = cons.measured(report["fit"], True, _agreement_gap(config, report), None, target_days)
            values.update({"export": 1.0, "lifetime": 0.0})  # lifetime: not simulated, the model failed export
        return Outcome(val, 0.0, values, figures, note="export failed its gates (exit 4); see log.txt")
    profile = json.loads(manifest.artifact("profile", "profile").read_text(encoding="utf-8"))
    cost = profile.get("battery_mcu", profile)
    battery = stages["battery"].metrics
    export = stages["export"].metrics
    assert report is not None
    figures.update({
        "test_int8_top1": export.get("test_top1_tflm_int8"), "tflite_int8_bytes": export["tflite_int8_bytes"],
        "int8_fraction_of_unpruned_float32": export.get("int8_fraction_of_unpruned_float32"),
        "tflm_arena_bytes": export["tflm_arena_bytes"], "tflm_vs_qat_top1": export["tflm_vs_qat_top1"],
        "latency_ms": round(float(cost["latency_ms"]), 3), "energy_band": cost.get("band"), "mcu": cost.get("mcu"),
        "lifetime_p5_days": battery["lifetime_p5_days"], "gate_passed": battery["gate_passed"],
        "flash_needed_bytes": report["fit"]["flash_needed_bytes"],
        "ram_needed_bytes": report["fit"]["ram_needed_bytes"],
    })
    values = cons.measured(report["fit"], True, _agreement_gap(config, report), float(battery["lifetime_p5_days"]),
                           target_days)
    return Outcome(val, float(cost["energy_uJ"]), values, figures)


def redirect_output(log: Path) -> tuple[int, int]:
    """Send this process's stdout and stderr (and its children's) to `log`; returns the saved fds."""
    saved = os.dup(1), os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return saved


def restore_output(saved: tuple[int, int]) -> None:
    """Undo `redirect_output`."""
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    os.close(saved[0])
    os.close(saved[1])
