"""The lifetime gate: P(1-confidence) lifetime vs the target, with a message saying which budget broke.

Writes JUnit XML (one test suite, a test case per budget) and a Markdown summary for CI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from edge.atomic import atomic_write_text
from edge.power.durations import format_days
from edge.power.headroom import Headroom
from edge.power.provenance import InputFigure
from edge.power.simulate import SimResult


@dataclass
class GateResult:
    """The verdict and the numbers behind it."""

    passed: bool
    device: str
    model: str
    target_days: float
    confidence: float
    lifetime_low_days: float  # the (1 - confidence) percentile, e.g. P5 at 95 %
    lifetime_p5_days: float
    lifetime_p50_days: float
    lifetime_p95_days: float
    censored_fraction: float
    horizon_days: float
    avg_current_uA: float  # mean load current of the run at the gated percentile (current_run names it)
    budget_current_uA: float  # average current that would just meet the target
    breakdown_mAh: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    message: str = ""
    current_run: str = ""  # which run avg_current_uA belongs to, e.g. 'P5'
    p50_current_uA: float = 0.0  # mean load current of the median run
    headroom: dict[str, Any] | None = None  # edge.power.headroom.Headroom.to_json()
    inputs: list[dict[str, Any]] = field(default_factory=list)  # InputFigure.to_json() each
    horizon_note: str = ""  # why the simulation stops where it does

    def to_json(self) -> dict[str, Any]:
        """Plain data for lifetime.json."""
        return asdict(self)


def evaluate(sim: SimResult, target_days: float, confidence: float, device: str, model: str,
             horizon_days: float, *, headroom: Headroom | None = None, inputs: Sequence[InputFigure] = (),
             horizon_note: str = "") -> GateResult:
    """Compare the lifetime distribution with the target; headroom and inputs go into every report."""
    low = sim.percentile_days(100 * (1 - confidence))
    passed = low >= target_days
    current = sim.current_at_percentile(100 * (1 - confidence))
    budget = headroom.budget_current_uA if headroom else current * low / target_days
    result = GateResult(
        passed=passed, device=device, model=model, target_days=target_days, confidence=confidence,
        lifetime_low_days=low, lifetime_p5_days=sim.percentile_days(5), lifetime_p50_days=sim.percentile_days(50),
        lifetime_p95_days=sim.percentile_days(95), censored_fraction=float(np.mean(sim.censored)),
        horizon_days=horizon_days, avg_current_uA=current, budget_current_uA=budget,
        breakdown_mAh=dict(sim.breakdown_mAh), warnings=list(sim.warnings),
        current_run=f"P{100 * (1 - confidence):g}", p50_current_uA=sim.current_at_percentile(50),
        headroom=headroom.to_json() if headroom else None, inputs=[i.to_json() for i in inputs],
        horizon_note=horizon_note,
    )
    result.message = _message(result)
    return result


def headroom_line(r: GateResult) -> str:
    """One line: the largest event rate and energy per inference that still meet the target."""
    h = r.headroom
    if not h:
        return "headroom: not computed"
    def num(v: float | None, fmt: str) -> str:
        return "unbounded" if v is None else format(v, fmt)
    projected = h["projected_lifetime_days"]
    ratio = "" if not h["max_inference_uJ"] else f", x{h['max_inference_uJ'] / max(h['inference_uJ'], 1e-12):.1f}"
    limit = h.get("hold_off_limit_per_day")
    capped = (f" (the {86400 / limit:g} s hold-off lets at most {limit:,.0f} through)"
              if limit and h["max_event_rate_per_day"] is not None and h["max_event_rate_per_day"] > limit else "")
    return (f"headroom at {r.current_run}: the target {format_days(r.target_days)} still holds up to "
            f"{num(h['max_event_rate_per_day'], ',.0f')} events/day{capped} (now {h['event_rate_per_day']:g}) or up to "
            f"{num(h['max_inference_uJ'], ',.0f')} uJ per inference (now {h['inference_uJ']:,.0f} uJ{ratio}); "
            f"projected {r.current_run} lifetime {format_days(projected)} without the horizon "
            f"({r.horizon_note or 'analytic, see docs/power.md'})")


def inputs_line(r: GateResult) -> str:
    """One line: how many inputs are measured / cited / estimated / given, naming the estimated ones."""
    counts: dict[str, list[str]] = {}
    for item in r.inputs:
        counts.setdefault(item["status"], []).append(item["name"])
    parts = [f"{len(v)} {k}" for k, v in sorted(counts.items())]
    est = counts.get("estimated", [])
    return f"inputs: {', '.join(parts)}" + (f"; estimated: {', '.join(est)}" if est else "")


def _top_consumers(breakdown: dict[str, float], n: int = 2) -> str:
    total = sum(breakdown.values()) or 1.0
    top = sorted(breakdown.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in top)


def _message(r: GateResult) -> str:
    q = f"P{100 * (1 - r.confidence):g}"
    low = f">{format_days(r.lifetime_low_days)}" if r.lifetime_low_days >= r.horizon_days else format_days(
        r.lifetime_low_days)
    if r.passed:
        margin = r.lifetime_low_days / r.target_days
        return (f"PASS: {q} lifetime {low} meets the target {format_days(r.target_days)} "
                f"(margin x{margin:.1f}{' or more' if r.lifetime_low_days >= r.horizon_days else ''}) on "
                f"device '{r.device}'")
    short = r.target_days - r.lifetime_low_days
    lines = [
        f"FAIL: lifetime budget broken on device '{r.device}': {q} lifetime {low} is {short:.0f} d "
        f"({100 * short / r.target_days:.0f} %) short of the target {format_days(r.target_days)}",
        f"average-current budget broken: {r.avg_current_uA:.1f} uA drawn ({r.current_run} run), at most "
        f"{r.budget_current_uA:.1f} uA "
        f"would meet the target (over by {r.avg_current_uA - r.budget_current_uA:.1f} uA, "
        f"{100 * (r.avg_current_uA / max(r.budget_current_uA, 1e-12) - 1):.0f} %); "
        f"largest consumers: {_top_consumers(r.breakdown_mAh)}",
    ]
    lines += [f"peak-current budget broken: {w}" for w in r.warnings if w.startswith("peak")]
    return "\n".join(lines)


def junit_xml(r: GateResult) -> str:
    """JUnit XML with one case per budget: lifetime (the gate) and peak current (warnings only)."""
    q = f"P{100 * (1 - r.confidence):g}"
    cases = []
    life = f'  <testcase classname="battery.{escape(r.device)}" name={quoteattr(f"{q} lifetime >= target")}'
    if r.passed:
        cases.append(life + f">\n    <system-out>{escape(r.message)}</system-out>\n  </testcase>")
    else:
        first = r.message.splitlines()[0]
        cases.append(life + f">\n    <failure message={quoteattr(first)} type=\"LifetimeBudget\">"
                     f"{escape(r.message)}</failure>\n  </testcase>")
    peak = f'  <testcase classname="battery.{escape(r.device)}" name="peak current within the cell rating">'
    warn = "\n".join(r.warnings) or "no peak beyond the cell's rating"
    cases.append(peak + f"\n    <system-out>{escape(warn)}</system-out>\n  </testcase>")
    failures = 0 if r.passed else 1
    props = "".join(f"    <property name={quoteattr(k)} value={quoteattr(v)}/>\n" for k, v in _properties(r))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuites tests="2" failures="{failures}">\n'
        f'<testsuite name="battery-gate" tests="2" failures="{failures}" errors="0" skipped="0">\n'
        + f"  <properties>\n{props}  </properties>\n"
        + "\n".join(cases) + "\n</testsuite>\n</testsuites>\n"
    )


def _properties(r: GateResult) -> list[tuple[str, str]]:
    """JUnit properties: lifetimes, the current shown and whose it is, headroom, every input's status."""
    props = [("lifetime_p5_days", f"{r.lifetime_p5_days:.1f}"), ("lifetime_p50_days", f"{r.lifetime_p50_days:.1f}"),
             ("target_days", f"{r.target_days:.1f}"),
             ("avg_current_uA", f"{r.avg_current_uA:.3f} ({r.current_run} run)"),
             ("p50_current_uA", f"{r.p50_current_uA:.3f} (P50 run)"), ("horizon", r.horizon_note)]
    if r.headroom:
        props += [(f"headroom.{k}", "unbounded" if v is None else f"{v:.6g}") for k, v in r.headroom.items()]
    props += [(f"input.{i['name']}", f"{i['value']:.6g} {i['unit']} {i['status']}: {i['source']}".replace("  ", " "))
              for i in r.inputs]
    return props


def markdown(r: GateResult, plots: dict[str, str] | None = None) -> str:
    """A Markdown summary for CI job pages."""
    verdict = "PASS" if r.passed else "FAIL"
    total = sum(r.breakdown_mAh.values()) or 1.0
    q = f"P{100 * (1 - r.confidence):g}"
    lines = [
        f"## Battery gate: {verdict}",
        "",
        f"Device `{r.device}`, model `{Path(r.model).name}`, target {format_days(r.target_days)} at "
        f"{100 * r.confidence:g} % confidence ({q} lifetime).",
        "",
        "| lifetime | days | years |",
        "|---|---:|---:|",
    ]
    for name, days in (("P5", r.lifetime_p5_days), ("P50", r.lifetime_p50_days), ("P95", r.lifetime_p95_days)):
        more = ">" if days >= r.horizon_days else ""
        lines.append(f"| {name} | {more}{days:.0f} | {more}{days / 365.25:.2f} |")
    lines += [
        "",
        f"Average battery current of the {r.current_run} run {r.avg_current_uA:.2f} uA (the median run: "
        f"{r.p50_current_uA:.2f} uA); the target allows about {r.budget_current_uA:.2f} uA at {r.current_run}.",
        "",
        headroom_line(r),
        "",
    ]
    if r.inputs:
        lines += ["| input | value | status | source |", "|---|---:|---|---|"]
        lines += [f"| {i['name']} | {i['value']:,.4g} {i['unit']} | {i['status']} | {i['source']} |" for i in r.inputs]
    lines += [
        "",
        "| where the charge went | mAh | share |",
        "|---|---:|---:|",
    ]
    for name, mah in sorted(r.breakdown_mAh.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {mah:.1f} | {100 * mah / total:.1f} % |")
    lines += ["", "```", r.message, "```"]
    if r.warnings:
        lines += ["", "Warnings:"] + [f"- {w}" for w in r.warnings]
    if r.censored_fraction > 0 or r.lifetime_low_days >= r.horizon_days:
        lines += ["", f"Runs that outlive the simulated horizon of {format_days(r.horizon_days)} are lower bounds "
                  f"('>'): {r.horizon_note}."]
    for title, path in (plots or {}).items():
        lines += ["", f"![{title}]({path})"]
    return "\n".join(lines) + "\n"


def write_reports(r: GateResult, junit_path: Path, md_path: Path, plots: dict[str, str] | None = None) -> None:
    """Write JUnit XML and Markdown atomically."""
    atomic_write_text(junit_path, junit_xml(r))
    atomic_write_text(md_path, markdown(r, plots))
