"""The `battery` stage: profile.profile -> battery/lifetime.json, plots, JUnit XML and a Markdown summary.

It records the gate's verdict but never fails the pipeline; `edge battery check` is the gate.
"""

from __future__ import annotations

import json
from typing import Any

from edge.config import RunConfig
from edge.manifest import StageRun
from edge.power.assess import evaluate_battery, record_profiles
from edge.power.provenance import InferenceSource


def run_stage(run: StageRun, config: RunConfig) -> None:
    """Stage `battery`: lifetime distribution and gate verdict (recorded, never fails the pipeline)."""
    profile = json.loads(run.input("profile", "profile").read_text(encoding="utf-8"))
    record_profiles(run, config.battery)
    cost = profile.get("battery_mcu", profile)  # the device's MCU when the export target differs
    outcome = evaluate_battery(config.battery, float(cost["energy_uJ"]), float(cost["latency_ms"]),
                               profile["model"], run.dir, _profile_source(profile, cost))
    for key, path in outcome.files.items():
        run.output(key, path)
    g = outcome.gate
    run.metrics.update({
        "device": g.device,
        "lifetime_p5_days": round(g.lifetime_p5_days, 1),
        "lifetime_p50_days": round(g.lifetime_p50_days, 1),
        "lifetime_p95_days": round(g.lifetime_p95_days, 1),
        "target_days": round(g.target_days, 1),
        "avg_current_uA": round(g.avg_current_uA, 3),
        "gate_passed": g.passed,
    })
    run.notes.append(g.message.splitlines()[0])
    run.notes.extend(g.warnings)


def _profile_source(profile: dict[str, Any], cost: dict[str, Any]) -> InferenceSource:
    """The inference figures of profile.json: a cost-model estimate with its band."""
    band = cost.get("band", profile.get("band"))
    return InferenceSource("estimated", f"cost model on {cost.get('mcu', profile.get('mcu'))}, "
                           f"kernel set {profile.get('kernel_set') or 'profile estimates'}",
                           (float(band[0]), float(band[1])) if band else None)
