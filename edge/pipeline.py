"""The default flow and its runner: data -> train -> prune -> qat -> export -> profile -> battery -> report.

Each stage runs in its own Python process (torch and TensorFlow must not share one: their native libraries clash)
and meets the others only through artifacts recorded in the manifest. A stage whose config
fingerprint and input hashes are unchanged is skipped.

A stage entry point has the signature `run_stage(run: StageRun, config: RunConfig) -> None`:
it reads inputs with `run.input(...)`, declares outputs with `run.output(...)` and fills
`run.metrics`; the runner hashes the outputs and commits the record.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.atomic import sha256_json
from edge.config import RunConfig, validate_settings
from edge.errors import ConfigError
from edge.manifest import Manifest


@dataclass(frozen=True)
class StageSpec:
    """One stage of the flow: where its code is, which config sections it depends on."""

    name: str
    entry: str  # "module:function"
    config_keys: tuple[str, ...]
    tools: tuple[str, ...] = ()
    # "module:function" computing, from the RunConfig, a fingerprint of inputs outside the run (a
    # user's image folder); the stage records it as metrics["source_fingerprint"] and reruns on change.
    source_fingerprint: str | None = None


STAGES: tuple[StageSpec, ...] = (
    StageSpec("data", "edge.training.stages.data:run_stage", ("data",), ("numpy", "pillow"),
              source_fingerprint="edge.training.stages.data:source_fingerprint"),
    StageSpec("train", "edge.training.stages.train:run_stage", ("model", "train"), ("torch", "timm", "codecarbon")),
    StageSpec("prune", "edge.training.stages.prune:run_stage", ("prune",), ("torch", "timm", "torch-pruning")),
    StageSpec("qat", "edge.training.stages.qat:run_stage", ("prune", "qat"),
              ("torch", "timm", "nncf", "onnx", "onnxruntime")),
    StageSpec(
        "export",
        "edge.export.stage:run_stage",
        ("target", "export"),
        ("tensorflow-cpu", "onnx", "onnxruntime", "ai-edge-litert", "tflite-micro"),
    ),
    StageSpec("profile", "edge.power.stages.profile:run_stage", ("target", "battery"), ("ai-edge-litert",)),
    StageSpec("battery", "edge.power.stages.battery:run_stage", ("battery",), ("numpy", "matplotlib")),
    StageSpec("report", "edge.report.stage:run_stage", (), ("ai-edge-litert", "tflite-micro", "numpy", "matplotlib")),
)
STAGE_NAMES = tuple(spec.name for spec in STAGES)


def stage_spec(name: str) -> StageSpec:
    """Look up a stage by name, with a clear error listing the known ones."""
    for spec in STAGES:
        if spec.name == name:
            return spec
    raise ConfigError(f"unknown stage '{name}'", hint=f"stages are: {', '.join(STAGE_NAMES)}")


def config_fingerprint(config: RunConfig, spec: StageSpec) -> str:
    """SHA-256 of the config sections a stage depends on."""
    return sha256_json(config.section(*spec.config_keys))


def run_stage_here(run_dir: Path, name: str, options: dict[str, Any] | None = None) -> None:
    """Run one stage in this process and commit its record (used by the child process)."""
    manifest = Manifest(run_dir)
    config = validate_settings(manifest.config, f"{manifest.file}: config")
    spec = stage_spec(name)
    func = _load(spec.entry)
    run = manifest.begin(name, config_fingerprint(config, spec))
    run.options = dict(options or {})
    func(run, config)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 records the stage
        manifest.commit(run.finish(spec.tools))


def _load(entry: str) -> Any:
    module_name, func_name = entry.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def staleness(manifest: Manifest, config: RunConfig, spec: StageSpec) -> str | None:
    """Why `spec` must run again (config, artifacts, or its outside source changed), or None."""
    reason = manifest.staleness(spec.name, config_fingerprint(config, spec))
    if reason is None and spec.source_fingerprint is not None:
        recorded = manifest.stages[spec.name].metrics.get("source_fingerprint")
        if recorded != _load(spec.source_fingerprint)(config):
            reason = "its source changed"
    return reason


def run_pipeline(
    run_dir: Path,
    config: RunConfig,
    until: str = STAGE_NAMES[-1],
    force: tuple[str, ...] = (),
    options: dict[str, dict[str, Any]] | None = None,
    settings: dict[str, Any] | None = None,
) -> int:
    """Run every stage up to and including `until`, each in a child process; returns exit code.

    `settings` (the user's explicit settings) are remembered in the run so that a later
    command on the same run keeps them; `config` is what the stages see.
    """
    stage_spec(until)
    for name in force:
        stage_spec(name)
    manifest = Manifest(run_dir)
    manifest.config = config.model_dump(mode="json")
    if settings is not None:
        manifest.settings = settings
    manifest.save()
    for spec in STAGES:
        reason = "forced" if spec.name in force else staleness(manifest, config, spec)
        if reason is None:
            print(f"[edge] {spec.name}: up to date, skipped", file=sys.stderr)
        else:
            print(f"[edge] {spec.name}: running ({reason})", file=sys.stderr)
            stage_options = (options or {}).get(spec.name, {})
            code = _run_child(run_dir, spec.name, stage_options)
            if code != 0:
                print(f"[edge] {spec.name}: failed (exit {code})", file=sys.stderr)
                return code
            manifest = Manifest(run_dir)
        if spec.name == until:
            break
    return 0


def _run_child(run_dir: Path, name: str, options: dict[str, Any]) -> int:
    nproc = int(options.get("nproc", 1))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*(launcher if nproc > 1 else [sys.executable]), "-m", "edge", "stage", name, "--run-dir", str(run_dir)]
    if options:
        cmd += ["--options", json.dumps(options)]
    child = subprocess.Popen(cmd, env=os.environ.copy())
    try:
        return child.wait()
    except KeyboardInterrupt:
        # Ctrl-C reaches the child too: let it finish its current write and exit by itself.
        try:
            return child.wait(timeout=60)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            child.kill()
            return 130
