"""The device sections: fit, speed and energy (float vs int8), battery, carbon.

Figures come from the export report, profile.json and lifetime.json as the stages wrote them. Two
figures are new estimates made here, each labelled so: the float model's cost on the same MCU (the
same cost model the profile stage uses, on `model_float.tflite`) and the unpruned float model's,
scaled from it by MACs.
"""

from __future__ import annotations

from typing import Any

from edge.report import plots
from edge.report.content import Basis, Check, Figure, Image, Section, Table, fmt, mark
from edge.report.gather import RunView, dig

MAX_BUDGET_USE = 0.9  # flash / RAM use of the target's budget
CLAIM_SPEEDUP = 4.0  # the seed's claims: int8 about 4x faster ...
CLAIM_ENERGY_CUT = 0.60  # ... and 60 % less energy per inference
TOP_LAYERS = 12


def fit(view: RunView) -> Section:
    """Flash and RAM against the target's budgets, TFLM arena, ops and resolver."""
    sec = Section("fit", "Fit")
    got = view.json("export", "report")
    if got is None:
        sec.problems += ["no current export report", *view.problems_of("export")]
        return sec
    report, art = got
    f, target, tflm = report.get("fit", {}), report.get("target", {}), report.get("tflm", {})
    src = art.source
    for label, key in (("model (int8 .tflite)", "model_bytes"), ("TFLM arena", "arena_bytes"),
                       ("flash needed", "flash_needed_bytes"), ("flash budget", "flash_available_bytes"),
                       ("RAM needed", "ram_needed_bytes"), ("RAM budget", "ram_available_bytes")):
        if key in f:
            sec.figures.append(Figure(label, f[key], "B", "measured" if "budget" not in label else "cited",
                                      f"{src} fit.{key}", art.ref.sha256))
    sec.figures.append(Figure("target", f"{target.get('name', '?')} ({target.get('mcu', '?')}, "
                                        f"{target.get('core', '?')}, {target.get('runtime', '?')})", "", "cited",
                              f"{src} target; {target.get('source', '')}", art.ref.sha256))
    items = [(n, float(f[u]), float(f[a])) for n, u, a in (("flash", "flash_needed_bytes", "flash_available_bytes"),
                                                          ("RAM", "ram_needed_bytes", "ram_available_bytes"))
             if f.get(u) is not None and f.get(a)]
    for name, used, avail in items:
        sec.checks.append(Check(f"{name} fits", round(used / avail, 3), f"<= {MAX_BUDGET_USE:.0%} of the budget",
                                mark(used / avail <= MAX_BUDGET_USE), f"{used:,.0f} of {avail:,.0f} B"))
    if items:
        sec.images.append(Image("flash and RAM against the budget", plots.usage_plot(items, "Fit on the target"),
                                src, art.ref.sha256))
    counts = tflm.get("op_counts", {})
    if counts:
        sec.tables.append(Table("Ops in the int8 graph (TFLite Micro)", ["op", "count"],
                                [[op, fmt(n)] for op, n in sorted(counts.items())], f"source: {src} tflm.op_counts"))
    if tflm.get("resolver"):
        sec.tables.append(Table("MicroMutableOpResolver", ["call"], [[f"{c}()"] for c in tflm["resolver"]],
                                f"{len(tflm['resolver'])} ops; source: {src} tflm.resolver"))
    return sec


def _float_cost(view: RunView, mcu: str) -> tuple[Any, str] | None:
    """The cost model on the float .tflite for the same MCU (a new estimate), or None."""
    from edge.power.cost import estimate_file
    from edge.power.profiles import load_mcu

    art = view.artifact("export", "tflite_float")
    if art is None:
        return None
    kernels = dig(view.manifest.config, "battery", "kernels", default="optimized")
    return estimate_file(art.path, load_mcu(mcu), kernels), art.ref.sha256


def speed(view: RunView) -> tuple[Section, dict[str, float]]:
    """Per-layer latency/energy of the int8 model, float vs int8 side by side; returns the section and the
    energies (uJ) the carbon section needs."""
    sec = Section("speed", "Speed and energy per inference")
    got = view.json("profile", "profile")
    if got is None:
        sec.problems += ["the profile stage has not run or its profile is not current", *view.problems_of("profile")]
        return sec, {}
    prof, art = got
    band = prof.get("band")
    basis: Basis = "measured" if prof.get("basis", "").startswith("measured") else "estimated"
    lat, energy = prof.get("latency_ms"), prof.get("energy_uJ")
    mcu = prof.get("mcu", "?")
    sec.intro = (f"On {mcu} ({prof.get('core', '?')}, {prof.get('clock_hz', 0) / 1e6:.0f} MHz). "
                 f"Backed by: {prof.get('basis', 'the cost model')}. Power: {prof.get('power_source', '?')}.")
    for label, value, unit in (("int8 latency", lat, "ms"), ("int8 energy", energy, "uJ")):
        if value is not None:
            sec.figures.append(Figure(label, value, unit, basis, art.source, art.ref.sha256,
                                      (value * band[0], value * band[1]) if band else None))
    points = prof.get("measured_points") or []
    sec.figures.append(Figure("measured points of this MCU in the fit", len(points), "", "cited",
                              f"{art.source} measured_points"))
    _kernel_set(sec, prof, art)
    energies = {"int8_uJ": float(energy)} if energy is not None else {}
    flt = _float_cost(view, mcu) if mcu != "?" else None
    if flt is not None and lat and energy:
        cost, sha = flt
        lo, hi = cost.band
        speedup, cut = cost.latency_ms / lat, 1 - energy / cost.energy_uJ
        src = "estimated here: edge.power.cost on export.tflite_float (same MCU and kernels)"
        sec.figures += [
            Figure("float32 latency", cost.latency_ms, "ms", "estimated", src, sha, (cost.latency_ms * lo,
                                                                                     cost.latency_ms * hi)),
            Figure("float32 energy", cost.energy_uJ, "uJ", "estimated", src, sha,
                   (cost.energy_uJ * lo, cost.energy_uJ * hi)),
            Figure("int8 speed-up over float32", round(speedup, 2), "x", "estimated", "ratio of the two estimates"),
            Figure("int8 energy saved vs float32", round(100 * cut, 1), "%", "estimated",
                   "ratio of the two estimates (the cost model has one run power per MCU, so power while running "
                   "is the same and energy falls with latency)"),
        ]
        sec.checks += [
            Check("claim: int8 about 4x faster", round(speedup, 2), f">= {CLAIM_SPEEDUP:g}x (estimate vs estimate)",
                  mark(speedup >= CLAIM_SPEEDUP)),
            Check("claim: 60 % less energy", f"{100 * cut:.0f} %", f">= {CLAIM_ENERGY_CUT:.0%} less per inference",
                  mark(cut >= CLAIM_ENERGY_CUT)),
        ]
        energies["float_uJ"] = float(cost.energy_uJ)
        classes = sorted(set(prof.get("by_class", {})) | set(cost.by_class))
        sec.images.append(Image("latency per op class, float32 vs int8", plots.grouped_bars(
            classes, {"float32 (estimate)": [cost.by_class.get(c, {}).get("latency_ms", 0.0) for c in classes],
                      "int8 (profile)": [dig(prof, "by_class", c, "latency_ms", default=0.0) for c in classes]},
            "ms per inference (log)", f"Latency per op class on {mcu}", log=True), f"{art.source}; {src}"))
        sec.tables.append(Table("float32 vs int8 per op class", ["op class", "float32 ms", "int8 ms", "ratio"],
                                [[c, fmt(f := cost.by_class.get(c, {}).get("latency_ms", 0.0)),
                                  fmt(i := dig(prof, "by_class", c, "latency_ms", default=0.0)),
                                  f"{f / i:.1f}x" if i else "-"] for c in classes],
                                f"both estimated (band float x{lo:.2f}-x{hi:.2f}; int8 x{band[0]:.2f}-x{band[1]:.2f})"
                                if band else "both estimated"))
    _layers(sec, prof, art)
    return sec, energies


def _kernel_set(sec: Section, prof: dict[str, Any], art: Any) -> None:
    """Name the kernel set of the estimate and the cited measurements behind it."""
    backing = prof.get("backing")
    if not isinstance(backing, dict):
        sec.problems.append("profile.json names no kernel set (written before kernel sets were recorded): rerun the "
                            "profile stage")
        return
    from edge.power.cost import KernelBacking

    sec.intro += f" Estimated with the {KernelBacking(**{**backing, 'boards': tuple(backing['boards'])}).line()}."
    sec.figures.append(Figure(f"cited points behind kernel set {backing['kernel_set']}", backing["cited_points"], "",
                              "cited", f"{art.source} backing"))


def _layers(sec: Section, prof: dict[str, Any], art: Any) -> None:
    layers = sorted(prof.get("layers", []), key=lambda r: -float(r.get("latency_ms", 0)))[:TOP_LAYERS]
    if not layers:
        return
    total = float(prof.get("latency_ms") or 1.0)
    sec.tables.append(Table(f"Most expensive int8 layers (top {len(layers)} of {len(prof.get('layers', []))})",
                            ["#", "op", "output", "MACs", "ms", "uJ", "share", "basis"],
                            [[str(r.get("index")), r.get("op", "?"), r.get("output_shape", ""), fmt(r.get("macs", 0)),
                              f"{r.get('latency_ms', 0):.3f}", f"{r.get('energy_uJ', 0):.1f}",
                              f"{100 * r.get('latency_ms', 0) / total:.1f} %", r.get("basis", "estimate")]
                             for r in layers], f"source: {art.source}; every layer: profile/layers.md"))
    sec.images.append(Image("latency of the most expensive int8 layers", plots.bars(
        [f"#{r.get('index')} {r.get('op')}" for r in layers], [float(r.get("latency_ms", 0)) for r in layers],
        "ms (estimate)", "Most expensive int8 layers"), art.source, art.ref.sha256))


def battery(view: RunView) -> Section:
    """Lifetime distribution, state of charge, charge by state, headroom and the gate verdict."""
    sec = Section("battery", "Battery")
    got = view.json("battery", "lifetime")
    if got is None:
        sec.problems += ["the battery stage has not run or its lifetime.json is not current"]
        sec.problems += view.problems_of("battery")
        return sec
    life, art = got
    gate = life.get("gate", {})
    sec.intro = gate.get("message", "")
    percentiles = {p: gate[f"lifetime_{p.lower()}_days"] for p in ("P5", "P50", "P95")
                   if gate.get(f"lifetime_{p.lower()}_days") is not None}
    horizon = gate.get("horizon_days") or float("inf")
    for p, days in percentiles.items():
        bound = " (at least: outlived the simulated horizon)" if days >= horizon else ""
        sec.figures.append(Figure(f"lifetime {p}{bound}", round(days / 365.25, 2), "years", "estimated",
                                  f"{art.source} gate.lifetime_{p.lower()}_days", art.ref.sha256))
    for label, key, unit in (("target", "target_days", "days"), ("simulated horizon", "horizon_days", "days"),
                             ("average current (P5 run)", "avg_current_uA", "uA"),
                             ("current the target allows", "budget_current_uA", "uA"),
                             ("runs outliving the horizon", "censored_fraction", "")):
        if gate.get(key) is not None:
            sec.figures.append(Figure(label, gate[key], unit, "estimated" if "current" in key else "recorded",
                                      f"{art.source} gate.{key}", art.ref.sha256))
    passed = gate.get("passed")
    sec.checks.append(Check("battery gate", "PASS" if passed else "FAIL",
                            f"P{100 - 100 * gate.get('confidence', 0.95):.0f} lifetime >= target "
                            f"{gate.get('target_days', 0) / 365.25:.2f} y", mark(passed), gate.get("horizon_note", "")))
    for warning in gate.get("warnings", []):
        sec.problems.append(f"battery warning: {warning}")
    if percentiles and gate.get("target_days"):
        sec.images.append(Image("lifetime distribution", plots.lifetime_plot(
            percentiles, gate["target_days"], gate.get("horizon_days"), "Lifetime percentiles (Monte Carlo)"),
            art.source, art.ref.sha256))
    for key, title in (("soc_plot", "state of charge"), ("breakdown_plot", "charge by state")):
        plot = view.artifact("battery", key)
        if plot:
            sec.images.append(Image(title, plot.path.read_bytes(), plot.source, plot.ref.sha256))
    breakdown = gate.get("breakdown_mAh", {})
    if breakdown:
        total = sum(breakdown.values()) or 1.0
        sec.tables.append(Table("Where the charge goes (P5 run)", ["state", "mAh", "share"],
                                [[k, f"{v:.1f}", f"{100 * v / total:.1f} %"]
                                 for k, v in sorted(breakdown.items(), key=lambda kv: -kv[1])],
                                f"source: {art.source} gate.breakdown_mAh"))
    room = gate.get("headroom", {})
    if room:
        sec.tables.append(Table("Headroom", ["figure", "value"], [[k, fmt(v)] for k, v in room.items()
                                                                 if not isinstance(v, (dict, list))],
                                f"source: {art.source} gate.headroom (estimated)"))
    inputs = gate.get("inputs", [])
    if inputs:
        sec.tables.append(Table("Inputs of the simulation", ["input", "value", "status", "source"],
                                [[i.get("name", "?"), f"{fmt(i.get('value'))} {i.get('unit', '')}".strip(),
                                  i.get("status", "?"), i.get("source", "")] for i in inputs],
                                f"source: {art.source} gate.inputs"))
    return sec


def _pack_volts(device_name: str) -> tuple[float, str]:
    """Nominal pack voltage of the device's battery and where it is cited."""
    from edge.power.profiles import load_cell, load_device

    device = load_device(device_name)
    cell = load_cell(device.cell)
    return device.cells_in_series * cell.nominal_V, (f"devices/{device.name}.yaml cells_in_series "
                                                     f"{device.cells_in_series} x cells/{cell.name}.yaml nominal_V "
                                                     f"{cell.nominal_V:g} V")


def carbon(view: RunView, energies: dict[str, float]) -> Section:
    """Training energy and CO2, the device's lifetime energy, and what compression saved on the device."""
    sec = Section("carbon", "Carbon and energy")
    for stage in ("train", "prune", "qat"):
        for key, value in view.metrics(stage).items():
            if key.endswith(("_kWh", "_co2_kg")) and value is not None:
                unit = "kWh" if key.endswith("_kWh") else "kg CO2eq"
                sec.figures.append(Figure(f"{stage}: {'energy' if unit == 'kWh' else 'CO2'}", value, unit,
                                          "measured" if unit == "kWh" else "estimated",
                                          f"manifest stages.{stage}.metrics.{key} (CodeCarbon, offline)"))
    country = view.metric("train", "carbon_country")
    if country:
        sec.figures.append(Figure("grid country used for CO2", country, "", "given",
                                  "manifest stages.train.metrics.carbon_country (train.carbon_country)"))
    if not sec.figures:
        sec.problems.append("no training energy recorded (CodeCarbon did not run in this run's train stage)")
    got = view.json("battery", "lifetime")
    if got is None:
        sec.problems.append("no current battery simulation: device energy not shown")
        return sec
    life, art = got
    gate = life.get("gate", {})
    breakdown = gate.get("breakdown_mAh", {})
    volts, vsrc = _pack_volts(gate.get("device") or view.metric("battery", "device"))
    drawn_Wh = sum(breakdown.values()) * volts / 1000
    days = min(gate.get("lifetime_p5_days") or 0.0, gate.get("horizon_days") or float("inf"))
    sec.figures += [
        Figure("device energy over its life (P5 run)", round(drawn_Wh, 3), "Wh", "estimated",
               f"{art.source} gate.breakdown_mAh x {volts:g} V ({vsrc}); over {days:,.0f} d", art.ref.sha256),
        Figure("per 1,000 devices", round(drawn_Wh, 3), "kWh", "estimated", "x 1,000 devices / 1,000 Wh per kWh"),
    ]
    inference_mAh = breakdown.get("inference")
    int8, flt = energies.get("int8_uJ"), energies.get("float_uJ")
    macs_train, macs_export = view.metric("train", "macs"), view.metric("export", "macs")
    if inference_mAh is not None and int8 and flt and macs_train and macs_export:
        unpruned = flt * macs_train / macs_export
        extra_Wh = inference_mAh * (unpruned / int8 - 1) * volts / 1000
        sec.figures += [
            Figure("unpruned float32 energy per inference", round(unpruned, 1), "uJ", "estimated",
                   f"float32 estimate x train.macs {macs_train:,} / export.macs {macs_export:,}"),
            Figure("device energy compression saved (per device)", round(extra_Wh, 3), "Wh", "estimated",
                   "inference charge of the P5 run x (unpruned float32 / int8 energy - 1) x pack voltage"),
            Figure("... per 1,000 devices", round(extra_Wh, 3), "kWh", "estimated", "x 1,000 devices"),
        ]
    sec.intro = ("Training energy is CodeCarbon's measurement of this machine; its CO2 uses the stated country's "
                 "grid intensity. Device energy comes from the battery (not the grid), so no CO2 is given for it.")
    return sec
