"""Measured inference figures from `edge bench` (bench.json): measured beats estimated.

bench.json holds `latency_ms` (device clock, IO-manager timer or energy-monitor window) and, with
an energy monitor or a current trace, `energy.energy_per_inference_uJ` with its `method`. Both
must be there, finite and positive; anything else is a ConfigError (exit 2) naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.errors import ConfigError
from edge.power.inputs import check
from edge.power.provenance import InferenceSource


def read_bench(path: Path) -> tuple[float, float, InferenceSource]:
    """(energy_uJ, latency_ms, source) of one inference from a bench.json."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the measurement: {exc.strerror}", where=str(path),
                          hint="give the bench.json that `edge bench --json` wrote") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not JSON: {exc.msg} (line {exc.lineno})", where=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError("not a bench.json object", where=str(path))
    energy = data.get("energy")
    if not isinstance(energy, dict) or energy.get("energy_per_inference_uJ") is None:
        raise ConfigError("field 'energy.energy_per_inference_uJ' is missing: the bench had no energy monitor or "
                          "current trace", where=str(path),
                          hint="run `edge bench --power-monitor PORT` or `--trace capture.csv`")
    if data.get("latency_ms") is None:
        raise ConfigError("field 'latency_ms' is missing", where=str(path), hint="run `edge bench --io-timer`")
    uj = check(energy["energy_per_inference_uJ"], "energy.energy_per_inference_uJ", str(path))
    ms = check(data["latency_ms"], "latency_ms", str(path))
    method = energy.get("method", "energy monitor")
    device = data.get("device", "?")
    source = f"{path.name}: {method} on '{device}', latency from {data.get('timing_source', 'the bench')}"
    return uj, ms, InferenceSource("measured", source)
