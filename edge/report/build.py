"""Build runs/<run>/report/: report.html, report.md and report.json (the `report` stage is edge/report/stage.py)."""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.atomic import atomic_write_json, atomic_write_text
from edge.manifest import ArtifactRef
from edge.report import card, device, html, markdown
from edge.report.content import Basis, Figure, Section
from edge.report.gather import RunView
from edge.report.provenance import provenance

FORMAT = "edge-run-report/1"
UPSTREAM = ("data", "train", "prune", "qat", "export", "profile", "battery")


@dataclass(frozen=True)
class Built:
    """What build_report wrote and how long the parts took."""

    files: dict[str, Path]
    sections: list[Section]
    timings_s: dict[str, float]
    read: dict[str, ArtifactRef]  # the artifacts the report read, verified against the manifest
    missing_stages: list[str]


def overview(view: RunView, sections: list[Section]) -> Section:
    """At a glance: the headline figures and every mark that is not a pass."""
    sec = Section("overview", "At a glance")
    picks: tuple[tuple[str, str, str, str, Basis], ...] = (
             ("export", "test_top1_tflm_int8", "int8 test top-1 on TFLite Micro", "", "measured"),
             ("export", "tflite_int8_bytes", "int8 model", "B", "measured"),
             ("export", "tflm_arena_bytes", "TFLM arena", "B", "measured"),
             ("profile", "latency_ms", "latency per inference", "ms", "estimated"),
             ("profile", "energy_uJ", "energy per inference", "uJ", "estimated"),
             ("battery", "lifetime_p5_days", "P5 battery lifetime", "years", "estimated"))
    for stage, key, label, unit, basis in picks:
        fig = view.figure(stage, key, label, unit, basis, scale=1 / 365.25 if unit == "years" else 1.0)
        if fig is not None and stage == "profile" and isinstance(band := view.metric(stage, "band"), list):
            fig = Figure(fig.label, fig.value, unit, basis, fig.source, band=(fig.value * band[0], fig.value * band[1]))
        if fig is not None:
            sec.figures.append(fig)
    checks = [c for s in sections for c in s.checks]
    passed = sum(c.mark == "pass" for c in checks)
    sec.intro = (f"{passed} of {len(checks)} checks pass, {sum(c.mark == 'warn' for c in checks)} warn, "
                 f"{sum(c.mark == 'n/a' for c in checks)} could not be judged. Not passing:")
    sec.checks = [c for c in checks if c.mark != "pass"]
    missing = [s for s in UPSTREAM if view.record(s) is None]
    if missing:
        sec.problems.append(f"stages not run: {', '.join(missing)} (their sections are empty)")
    if view.problems:
        changed = ", ".join(sorted(view.problems))
        sec.problems.append(f"artifacts changed since their stage wrote them, not read: {changed} (did another run "
                            "export to the same build folder? rerun with `edge run --force export` or set "
                            "export.build_dir)")
    return sec


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Built:
    """Read the run, measure the int8 model's quality, and write the three report files."""
    view = RunView(run_dir)
    out = Path(out_dir) if out_dir else view.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    res = card.measure_int8(view)
    timings["int8_measurements"] = time.perf_counter() - started
    started = time.perf_counter()
    speed, energies = device.speed(view)
    body = [card.model_card(view, res), card.quality(view, res), device.fit(view), speed, device.battery(view),
            device.carbon(view, energies)]
    body.append(provenance(view))
    sections = [overview(view, body), *body]
    timings["sections_and_plots"] = time.perf_counter() - started
    title = f"edge run '{view.name}'"
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    subtitle = (f"{_shown(view.manifest.file)}, target {view.manifest.config.get('target', '?')}, "
                f"report made {when}. Basis of each figure: measured, estimated (with its band), cited, or "
                "recorded by a stage.")
    files = {"report_html": out / "report.html", "report_md": out / "report.md", "report_json": out / "report.json"}
    atomic_write_text(files["report_html"], html.render(title, subtitle, sections))
    atomic_write_text(files["report_md"], markdown.render(title, subtitle, sections))
    atomic_write_json(files["report_json"], report_json(view, sections, res, timings, when))
    return Built(files, sections, {k: round(v, 3) for k, v in timings.items()}, dict(view.used),
                 [s for s in UPSTREAM if view.record(s) is None])


def _shown(path: Path) -> str:
    """A path as the user would type it from here (absolute when it is outside the working folder)."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def report_json(view: RunView, sections: list[Section], res: card.Int8Results | None, timings: dict[str, float],
                when: str) -> dict[str, Any]:
    """Every figure, check and table of the page, plus what was measured and what was read."""
    return {
        "format": FORMAT,
        "run": view.name,
        "made_at": when,
        "sections": [s.to_json() for s in sections],
        "measured": card.summary_json(res),
        "artifacts_read": {k: ref.model_dump() for k, ref in sorted(view.used.items())},
        "artifacts_not_current": dict(view.problems),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
