"""Accuracy vs size of structured pruning at several ratios (the curve behind issue 3).

Prunes the trained model of a run (default `runs/default`; if it has no trained model, one is
trained briefly first with `edge train`) to each keep ratio with the prune stage's algorithm
(iterative, Taylor importance, distillation fine-tuning) and prints params, MACs, the int8 size
estimate and val_top1 for each, next to the seed claim "90 % smaller model, accuracy within 8 %".

    .venv/bin/python bench/bench_prune.py [--run default] [--ratios 0.7,0.5,0.3,0.2,0.1]
        [--steps 2] [--epochs 1] [--final-epochs 1] [--importance taylor] [--threads N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

from edge.config import PruneConfig
from edge.manifest import Manifest
from edge.paths import DEFAULT_RUN, RUNS_DIR
from edge.training.dataset import load_dataset
from edge.training.loop import set_threads, to_input
from edge.training.models import load_model
from edge.training.stages.prune import iterative_prune

SEED_CLAIM = "seed claim: 90 % smaller model, accuracy within 8 %"


def _trained_run(run_dir: Path, train_epochs: int) -> Manifest:
    manifest = Manifest(run_dir)
    if "train" not in manifest.stages:
        print(f"[bench] {run_dir} has no trained model: training one for {train_epochs} epochs", file=sys.stderr)
        cmd = [sys.executable, "-m", "edge", "train", "--run", run_dir.name, "--runs-dir", str(run_dir.parent),
               "--set", f"train.epochs={train_epochs}"]
        if subprocess.call(cmd) != 0:
            raise SystemExit("training failed")
        manifest = Manifest(run_dir)
    return manifest


def main() -> int:
    """Prune at each ratio and print the accuracy-vs-size table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=DEFAULT_RUN)
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    parser.add_argument("--ratios", default="0.7,0.5,0.3,0.2,0.1", help="params keep ratios, comma-separated")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs after each step")
    parser.add_argument("--final-epochs", type=int, default=1)
    parser.add_argument("--importance", choices=("taylor", "magnitude"), default="taylor")
    parser.add_argument("--train-epochs", type=int, default=8, help="if the run has no trained model")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    set_threads(args.threads)

    manifest = _trained_run(args.runs_dir / args.run, args.train_epochs)
    data = load_dataset(manifest.artifact("data", "dataset"))
    model, spec = load_model(manifest.artifact("train", "weights"), manifest.artifact("train", "spec"))
    train = (to_input(data.train.x, spec.input_mean, spec.input_std), torch.as_tensor(data.train.y))
    val = (to_input(data.val.x, spec.input_mean, spec.input_std), torch.as_tensor(data.val.y))

    print(f"run {args.run}: {spec.name}, {len(data.train)} train / {len(data.val)} val images; "
          f"{args.steps} steps x {args.epochs} epochs + {args.final_epochs} final, {args.importance} importance")
    header = (f"{'keep':>5s} {'params':>8s} {'smaller':>8s} {'MACs':>11s} {'int8 est':>9s} {'ram est':>8s} "
              f"{'val_top1':>8s} {'drop':>7s} {'rel drop':>8s} {'wall_s':>7s}")
    rows = []
    for ratio in (float(r) for r in args.ratios.split(",")):
        cfg = PruneConfig(params_ratio=ratio, int8_ratio=None, max_drop=None, steps=args.steps,
                          finetune_epochs=args.epochs, final_epochs=args.final_epochs, importance=args.importance)
        start = time.perf_counter()
        result = iterative_prune(model, spec, train, val, cfg)
        before, after = result.steps[0], result.steps[-1]
        if not rows:
            print(f"unpruned: {before['params']:,} params, {before['macs']:,} MACs, "
                  f"int8 est {before['int8_bytes_estimate'] / 1024:.1f} KB, val_top1 {before['val_top1']:.4f}")
            print(header + "\n" + "-" * len(header))
        drop = before["val_top1"] - after["val_top1"]
        rows.append(f"{ratio:5.2f} {after['params']:8,d} {1 - after['params'] / before['params']:8.1%} "
                    f"{after['macs']:11,d} {after['int8_bytes_estimate'] / 1024:7.1f}KB "
                    f"{after['ram_bytes_estimate'] / 1024:6.1f}KB {after['val_top1']:8.4f} {drop:+7.4f} "
                    f"{drop / before['val_top1']:8.1%} {time.perf_counter() - start:7.1f}")
        print(rows[-1], flush=True)
    print(f"\n{SEED_CLAIM}: compare the 'smaller' and 'rel drop' columns at keep 0.10")
    return 0


if __name__ == "__main__":
    sys.exit(main())
