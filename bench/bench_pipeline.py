"""Wall time of every stage of `make export TARGET=cortex-m` on the built-in default.

Runs the whole pipeline in a fresh run directory (or reads an existing one with --read-only)
and prints each stage's wall time from the manifest against its budget:
train < 5 min (issue 2), export < 60 s and the whole run < 10 min on 2 cores (issue 4).

    .venv/bin/python bench/bench_pipeline.py [--run bench] [--target cortex-m] [--read-only]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edge.manifest import Manifest
from edge.paths import DEFAULT_TARGET, RUNS_DIR
from edge.pipeline import STAGE_NAMES

BUDGET_S = {"train": 300.0, "export": 60.0}
TOTAL_BUDGET_S = 600.0


def main() -> int:
    """Run (or read) the pipeline and print the stage-time table; exit 1 if a budget broke."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="bench")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    parser.add_argument("--target", default=DEFAULT_TARGET)
    parser.add_argument("--read-only", action="store_true", help="only report an existing run")
    args = parser.parse_args()
    run_dir = args.runs_dir / args.run
    elapsed = None
    if not args.read_only:
        shutil.rmtree(run_dir, ignore_errors=True)
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "edge", "run", "--run", args.run, "--runs-dir", str(args.runs_dir),
               "--target", args.target, "--fresh-config"]
        code = subprocess.call(cmd)
        elapsed = time.perf_counter() - start
        if code != 0:
            print(f"pipeline failed with exit code {code}")
            return code
    manifest = Manifest(run_dir)
    ok = True
    print(f"{'stage':10s} {'wall_s':>8s} {'budget_s':>9s}  status")
    total = 0.0
    for name in STAGE_NAMES:
        record = manifest.stages.get(name)
        if record is None:
            print(f"{name:10s} {'-':>8s}")
            continue
        total += record.wall_s
        budget = BUDGET_S.get(name)
        within = budget is None or record.wall_s <= budget
        ok &= within
        status = "" if budget is None else ("ok" if within else "OVER BUDGET")
        print(f"{name:10s} {record.wall_s:8.1f} {budget or '':>9}  {status}")
    print(f"{'stages':10s} {total:8.1f} {TOTAL_BUDGET_S:9.0f}  {'ok' if total <= TOTAL_BUDGET_S else 'OVER BUDGET'}")
    if elapsed is not None:
        print(f"{'end-to-end':10s} {elapsed:8.1f} {'':9s}  (includes process start-up; ratio stages/end-to-end "
              f"{total / elapsed:.2f})")
    ok &= total <= TOTAL_BUDGET_S
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
