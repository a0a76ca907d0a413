"""The `report` stage: the run on one page (edge/report/build.py), recorded with everything it read as inputs."""

from __future__ import annotations

from edge.config import RunConfig
from edge.manifest import StageRun
from edge.report.build import build_report
from edge.report.content import Check


def _counts(checks: list[Check]) -> dict[str, int]:
    """How many checks passed, warned and did not apply."""
    return {m: sum(c.mark == m for c in checks) for m in ("pass", "warn", "n/a")}


def run_stage(run: StageRun, config: RunConfig) -> None:
    """Stage `report`: build the report from the run's records; records what it read as inputs."""
    del config  # the report reads the run as the stages recorded it
    built = build_report(run.manifest.run_dir, run.dir)
    for key, path in built.files.items():
        run.output(key, path)
    run.inputs.update(built.read)
    if built.missing_stages:
        # a partial run: a stage recorded later must rerun the report, so the manifest itself is an input
        run.external_input("manifest", run.manifest.file)
    checks = [c for s in built.sections if s.id != "overview" for c in s.checks]
    run.metrics.update({f"checks_{k.replace('/', '')}": v for k, v in _counts(checks).items()})
    run.metrics.update({f"{k}_s": v for k, v in built.timings_s.items()})
    run.notes += [f"{c.name}: {c.mark} ({c.threshold})" for c in checks if c.mark == "warn"]
