"""The provenance section: every artifact with its manifest sha256, tool versions, profiles and citations."""

from __future__ import annotations

from edge.errors import ConfigError
from edge.manifest import tool_versions
from edge.pipeline import STAGE_NAMES
from edge.report.content import Section, Table
from edge.report.gather import RunView

REPORT_TOOLS = ("ai-edge-litert", "tflite-micro", "numpy", "matplotlib")


def _citations(view: RunView) -> list[list[str]]:
    """The `sources` of every power profile the run's stages recorded as inputs."""
    from edge.power.profiles import load_profile

    rows, seen = [], set()
    for stage in ("profile", "battery"):
        record = view.record(stage)
        for key in record.inputs if record else ():
            parts = key.split(".")
            if parts[0] != "power_profiles" or len(parts) != 3 or key in seen or parts[1] in ("kernels",
                                                                                              "measurements"):
                continue
            seen.add(key)
            try:
                sources = getattr(load_profile(parts[1], parts[2]), "sources", [])
            except ConfigError as exc:
                sources = [f"(unreadable now: {exc.message})"]
            rows += [[f"{parts[1]}/{parts[2]}.yaml", s] for s in sources]
    return rows


def provenance(view: RunView) -> Section:
    """Artifacts (sha256 from the manifest; which ones this report read), inputs from outside, tools, citations."""
    sec = Section("provenance", "Provenance",
                  "Every figure above names its source: a manifest metric (stages.STAGE.metrics.KEY) or an "
                  "artifact (stage.key) listed here with the sha256 its stage recorded. The report reads an artifact "
                  "only when its file still has that hash.")
    rows = []
    for stage in STAGE_NAMES:
        record = view.record(stage)
        for key, ref in sorted(record.outputs.items()) if record else ():
            name = f"{stage}.{key}"
            state = ("read, verified" if name in view.used else
                     f"CHANGED/MISSING: {view.problems[name]}" if name in view.problems else "not read")
            rows.append([name, ref.path, ref.sha256, f"{ref.bytes:,}", state])
    sec.tables.append(Table("Artifacts (manifest)", ["artifact", "path (relative to the run)", "sha256", "bytes",
                                                     "this report"], rows))
    outside = []
    for stage in STAGE_NAMES:
        record = view.record(stage)
        for key, ref in sorted(record.inputs.items()) if record else ():
            if "." in key and key.split(".")[0] in STAGE_NAMES:
                continue
            outside.append([stage, key, ref.path, ref.sha256])
    if outside:
        sec.tables.append(Table("Inputs from outside the run (profiles, measurements, user data)",
                                ["stage", "input", "path", "sha256"], outside))
    tools = []
    for stage in STAGE_NAMES:
        record = view.record(stage)
        if record:
            tools.append([stage, ", ".join(f"{k} {v}" for k, v in sorted(record.tools.items())) or "-",
                          record.started_at, f"{record.wall_s:.1f} s"])
    tools.append(["report", ", ".join(f"{k} {v}" for k, v in tool_versions(REPORT_TOOLS).items()), "now", "-"])
    sec.tables.append(Table("Stages: tools, start, wall time", ["stage", "tools", "started", "wall"], tools))
    citations = _citations(view)
    if citations:
        sec.tables.append(Table("Citations of the power profiles used", ["profile", "source"], citations))
    notes = [[stage, note] for stage in STAGE_NAMES if (record := view.record(stage)) for note in record.notes]
    if notes:
        sec.tables.append(Table("What the stages noted", ["stage", "note"], notes))
    return sec
