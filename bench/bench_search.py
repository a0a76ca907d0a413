"""Does the search beat the default pipeline? (issue 15's acceptance figure)

Runs `edge search` on the default data, device and target within a wall-clock budget (default 30 min;
the issue's machine: 2 cores) and looks among its feasible trials for a model at least as accurate as
the default pipeline's (TFLite Micro int8 test top-1, measured) with at most half its energy per
inference (estimated by the cost model), or with int8 bytes <= 5 % of the unpruned float32 default
model. The default pipeline is the search's own trial 0 (the warm start: the default config exactly,
run in the same conditions). Prints both models side by side; exit 0 when such a model was found.
The trials are selected on val; the test split only judges them here.

    .venv/bin/python bench/bench_search.py [--budget 30m] [--workers 2] [--run bench-search] [--set K=V ...]

A second call with the same --run continues the same study (a fresh budget).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge.paths import RUNS_DIR

ENERGY_SHARE, BYTES_SHARE = 0.5, 0.05

ROWS = (
    ("trial", "number", "{}"),
    ("params (pruned)", "figures.params", "{:,}"),
    ("MACs", "figures.macs", "{:,}"),
    ("int8 TFLite bytes (measured)", "figures.tflite_int8_bytes", "{:,}"),
    ("share of unpruned float32 default", "bytes_share", "{:.1%}"),
    ("val int8 top-1 (measured, selects)", "val_int8_top1", "{:.3f}"),
    ("TFLM int8 test top-1 (measured, judges)", "figures.test_int8_top1", "{:.3f}"),
    ("energy per inference, uJ (estimated)", "energy_uJ", "{:,.0f}"),
    ("latency, ms (estimated)", "figures.latency_ms", "{:,.1f}"),
    ("TFLM arena bytes (measured)", "figures.tflm_arena_bytes", "{:,}"),
    ("P5 lifetime, days (simulated)", "figures.lifetime_p5_days", "{:,.0f}"),
)


def _get(row: dict[str, Any], dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(row: dict[str, Any] | None, key: str, fmt: str) -> str:
    if row is None:
        return "-"
    value = _get(row, key)
    return "?" if value is None else fmt.format(value)


def winners(rows: list[dict[str, Any]], default: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Feasible trials at least as accurate (test, int8) as the default with half its energy or 5 % of its
    unpruned float32 bytes; and what the comparison is against."""
    base_acc, base_uJ = default["figures"]["test_int8_top1"], default["energy_uJ"]
    float_bytes = 4 * default["estimate"]["params"]
    found = []
    for r in rows:
        f = r["figures"]
        if not r["feasible"] or r["number"] == default["number"] or f.get("test_int8_top1") is None:
            continue
        r["bytes_share"] = f["tflite_int8_bytes"] / float_bytes
        if f["test_int8_top1"] >= base_acc and (r["energy_uJ"] <= ENERGY_SHARE * base_uJ
                                                or f["tflite_int8_bytes"] <= BYTES_SHARE * float_bytes):
            found.append(r)
    default["bytes_share"] = default["figures"]["tflite_int8_bytes"] / float_bytes
    text = (f"test int8 top-1 >= {base_acc:.3f} and (energy <= {ENERGY_SHARE * base_uJ:,.0f} uJ or int8 bytes <= "
            f"{BYTES_SHARE * float_bytes:,.0f} B = {BYTES_SHARE:.0%} of the unpruned float32 default)")
    return sorted(found, key=lambda r: (r["energy_uJ"], -r["figures"]["test_int8_top1"])), text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="30m")
    parser.add_argument("--workers", default="2")
    parser.add_argument("--run", default="bench-search")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    cmd = [sys.executable, "-m", "edge", "search", "--run", args.run, "--runs-dir", str(args.runs_dir),
           "--budget", args.budget, "--workers", args.workers, *(x for o in args.overrides for x in ("--set", o))]
    env = {**os.environ, "NNCF_EXTENSION_LOAD_TIMEOUT": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    print(f"[bench] {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
    code = subprocess.call(cmd, env=env)
    pareto = args.runs_dir / args.run / "search" / "pareto.json"
    if code not in (0, 1, 130) or not pareto.is_file():
        print(f"[bench] edge search failed (exit {code})", file=sys.stderr)
        return 2
    rows = json.loads(pareto.read_text())["trials"]
    default = next((r for r in rows if r["warm_start"] and r["figures"].get("test_int8_top1") is not None), None)
    if default is None:
        print("[bench] the default pipeline (trial 0) did not finish within the budget: nothing to compare; "
              "give a larger --budget or call again with the same --run to continue", file=sys.stderr)
        return 1
    found, rule = winners(rows, default)
    best = found[0] if found else None
    print(f"\nsearch '{args.run}', budget {args.budget} x {args.workers} worker(s): {len(rows)} trials; "
          f"wanted: {rule}")
    width = max(len(label) for label, _, _ in ROWS)
    print(f"{'':{width}}  {'default pipeline':>22}  {'search':>22}")
    for label, key, fmt in ROWS:
        print(f"{label:{width}}  {_cell(default, key, fmt):>22}  {_cell(best, key, fmt):>22}")
    for name, row in (("default pipeline", default), ("search", best)):
        if row is not None:
            print(f"{name}: {' '.join(f'{k}={v}' for k, v in row['params'].items())}")
    if best is None:
        print("verdict: NOT MET: no feasible trial was as accurate with half the energy or 5 % of the bytes")
        return 1
    how = "half the energy" if best["energy_uJ"] <= ENERGY_SHARE * default["energy_uJ"] else "5 % of the bytes"
    print(f"verdict: MET by trial {best['number']} ({how}; {len(found)} trial(s) qualify: "
          f"{', '.join(str(r['number']) for r in found)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
