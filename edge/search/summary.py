"""What `edge search` says when it ends: what it made, where, the recommended model and the verdict."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edge.search.pareto import front, recommended


def _model(row: dict[str, Any]) -> str:
    f = row["figures"]
    band = f", band x{f['energy_band'][0]:.2f}-x{f['energy_band'][1]:.2f}" if f.get("energy_band") else ""
    parts = [f"val int8 top-1 {row['val_int8_top1']:.3f} (measured)",
             f"{row['energy_uJ']:,.0f} uJ per inference (estimated{band})"]
    if f.get("test_int8_top1") is not None:
        parts.append(f"TFLM int8 test top-1 {f['test_int8_top1']:.3f} (measured)")
    if f.get("tflite_int8_bytes"):
        parts.append(f"{f['tflite_int8_bytes']:,} B int8")
    if f.get("lifetime_p5_days") is not None:
        parts.append(f"P5 lifetime {f['lifetime_p5_days'] / 365.25:.1f} y (simulated)")
    return ", ".join(parts)


def summary_lines(rows: list[dict[str, Any]], files: dict[str, Path], run: str) -> tuple[list[str], bool]:
    """The closing lines and whether a feasible model was found."""
    states = Counter(r["state"] for r in rows)
    rejected = sum(r["rejected_before_training"] for r in rows)
    feasible = sum(r["feasible"] for r in rows)
    lines = [f"[search] made: {', '.join(str(p) for p in files.values())}",
             f"[search] {len(rows)} trials: {states['COMPLETE'] - rejected} run to the end ({feasible} feasible), "
             f"{rejected} rejected before training, {states['PRUNED']} pruned on their val curve, "
             f"{states['FAIL']} failed or interrupted, {states['RUNNING'] + states['WAITING']} running or queued; "
             f"Pareto front: {len(front(rows))} trial(s)"]
    best = recommended(rows)
    if best is None:
        lines.append("[search] verdict: no trial met every limit yet (flash, RAM, TFLM, agreement, export gates, "
                     f"lifetime); see {files['trials_csv']} for why, run longer or loosen the limits")
        return lines, False
    params = " ".join(f"{k}={v}" for k, v in best["params"].items())
    lines.append(f"[search] recommended: trial {best['number']} ({params}): {_model(best)}")
    default = next((r for r in rows if r["warm_start"] and r["val_int8_top1"] is not None), None)
    if default is not None and default["number"] != best["number"] and default["energy_uJ"]:
        lines.append(f"[search] the default pipeline (trial {default['number']}): {_model(default)}; the recommended "
                     f"one is {best['val_int8_top1'] - default['val_int8_top1']:+.3f} val top-1 at "
                     f"x{best['energy_uJ'] / default['energy_uJ']:.2f} the energy")
    lines.append(f"[search] verdict: a feasible model was found; make it a normal run with "
                 f"`edge search --run {run} --export BEST`")
    return lines, True
