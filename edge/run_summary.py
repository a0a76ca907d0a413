"""What `edge run` says when it ends: what it made, where, the key figures with their basis, the verdict.

Read from the run's manifest only (no torch, no TensorFlow), so it costs nothing and shows exactly
what the stages recorded. A stage that did not run is left out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge.manifest import Manifest
from edge.pipeline import STAGE_NAMES


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "?" if value is None else format(value, spec)


def _years(days: Any) -> str:
    return "?" if days is None else f"{days / 365.25:.1f} y"


def _line(stage: str, metrics: dict[str, Any], manifest: Manifest) -> str | None:
    m = metrics
    if stage == "data":
        return (f"{m.get('n_train')} train / {m.get('n_val')} val / {m.get('n_test')} test images, "
                f"{m.get('image_size_px')} px x {m.get('channels')}, {m.get('num_classes')} classes "
                f"({m.get('source')})")
    if stage == "train":
        baseline = (f", pixel baseline {_fmt(m.get('baseline_val_top1'))}"
                    + ("" if m.get("beats_baseline", True) else " (NOT BEATEN)")) if "baseline_val_top1" in m else ""
        return (f"{m.get('params', 0):,} params, val top-1 {_fmt(m.get('val_top1'))}{baseline}, "
                f"{m.get('epochs_run')} epochs")
    if stage == "prune":
        return (f"{m.get('params', 0):,} params ({_fmt(m.get('params_ratio'), '.0%')} kept), val top-1 "
                f"{_fmt(m.get('val_top1'))}; {m.get('stop_reason', '')}").rstrip("; ")
    if stage == "qat":
        return None if m.get("skipped") else f"fake-quant val top-1 {_fmt(m.get('val_top1'))}"
    if stage == "export":
        model = manifest.stages[stage].outputs.get("tflite_int8")
        where = _shown(manifest, model.path) if model else "?"
        return (f"{where} {m.get('tflite_int8_bytes', 0):,} B, TFLM arena {m.get('tflm_arena_bytes', 0):,} B; "
                f"TFLM int8 test top-1 {_fmt(m.get('test_top1_tflm_int8'))}, agreement with "
                f"{m.get('agreement_reference', 'the reference')} {_fmt(m.get('tflm_vs_qat_top1'))} (measured)")
    if stage == "profile":
        return (f"{m.get('mcu')}: {_fmt(m.get('latency_ms'), '.1f')} ms, {_fmt(m.get('energy_uJ'), '.0f')} uJ per "
                f"inference ({m.get('basis', 'estimated')})")
    if stage == "battery":
        verdict = "PASS" if m.get("gate_passed") else "FAIL"
        return (f"{m.get('device')}: P5 lifetime {_years(m.get('lifetime_p5_days'))}, P50 "
                f"{_years(m.get('lifetime_p50_days'))}, target {_years(m.get('target_days'))}: {verdict}")
    return None


def _shown(manifest: Manifest, rel: str) -> str:
    """An artifact's path as the user would type it from here."""
    return os.path.relpath(manifest.resolve(rel))


def summary(run_dir: str | Path) -> str:
    """The closing lines of `edge run` for `run_dir`: one line per stage that ran, then the reports."""
    manifest = Manifest(Path(run_dir))
    lines = [f"[edge] done: run '{Path(run_dir).name}' -> {run_dir}/ (manifest.json; `edge status` for the table)"]
    for stage in STAGE_NAMES:
        record = manifest.stages.get(stage)
        text = _line(stage, record.metrics, manifest) if record else None
        if text:
            lines.append(f"  {stage:8s} {text}")
    reports = [_shown(manifest, record.outputs[key].path) for stage, key in (("report", "report_html"),
                                                                               ("export", "report_md"),
                                                                               ("battery", "summary"))
               if (record := manifest.stages.get(stage)) and key in record.outputs]
    if reports:
        lines.append("  reports  " + ", ".join(reports))
    return "\n".join(lines)
