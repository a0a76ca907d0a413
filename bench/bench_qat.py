"""QAT choices compared on a run's pruned model: scheme, PTQ vs QAT, and what a QAT step costs.

For the integer-graph scheme (`qat.scheme=tflite`, ReLU models) and each NNCF `qat.model_type`
("default": every tensor NNCF can quantise; "transformer": inputs of matmuls/linears only) prints
the number of quantizers and named points, val_top1 of the float input model, right after
calibration (PTQ) and after `--epochs` of QAT, and the wall time of one QAT training step as a
ratio to one float step measured in the same process.

    .venv/bin/python bench/bench_qat.py [--run default] [--epochs 1] [--train-images 1000] [--threads 1]

Needs a run with a pruned (or trained) model: `make prune` (or `edge prune --run NAME`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from edge.config import QATConfig
from edge.manifest import Manifest
from edge.paths import DEFAULT_RUN, RUNS_DIR
from edge.training.dataset import load_dataset
from edge.training.loop import set_threads, to_input
from edge.training.models import load_model
from edge.training.qat import learned_ranges, quantizers
from edge.training.quant_vit import QuantVit, weight_layers
from edge.training.stages.qat import quantize_and_finetune


def step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 3) -> float:
    """Median wall time of one forward + backward pass on batch `x`."""
    model.train()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        F.cross_entropy(model(x), y).backward()
        times.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    return sorted(times[1:])[repeats // 2]  # the first pass warms up


def main() -> int:
    """Run every scheme that applies on the run's model and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=DEFAULT_RUN)
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    parser.add_argument("--epochs", type=int, default=1, help="QAT epochs per scheme")
    parser.add_argument("--train-images", type=int, default=1000, help="training images used for QAT")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    set_threads(args.threads)

    manifest = Manifest(args.runs_dir / args.run)
    stage = "prune" if "prune" in manifest.stages else "train"
    teacher, spec = load_model(manifest.artifact(stage, "weights"), manifest.artifact(stage, "spec"))
    data = load_dataset(manifest.artifact("data", "dataset"))

    def prepared(split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        part = data.split(split)
        return to_input(part.x[:limit], spec.input_mean, spec.input_std), torch.as_tensor(part.y[:limit])

    train_xy, val_xy, (calib_x, _) = prepared("train", args.train_images), prepared("val"), prepared("calib")
    batch = train_xy[0][:64], train_xy[1][:64]
    float_step = step_seconds(teacher, *batch)
    print(f"model: {stage} stage of run '{args.run}', {sum(p.numel() for p in teacher.parameters()):,} params; "
          f"QAT on {len(train_xy[0])} images for {args.epochs} epoch(s); float step {float_step * 1e3:.0f} ms")
    print(f"{'scheme':12s} {'quantizers':>10s} {'points':>6s} {'float':>6s} {'PTQ':>6s} {'QAT':>6s} "
          f"{'step x float':>12s} {'wall s':>7s}")
    variants = [("tflite", "default")] if spec.act == "relu" else []
    for scheme, model_type in [*variants, ("nncf", "default"), ("nncf", "transformer")]:
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        qat = QATConfig(epochs=args.epochs, scheme=scheme, model_type=model_type, warmup_epochs=0)
        qmodel, result = quantize_and_finetune(teacher, calib_x, train_xy, val_xy, qat, metrics, f"qat {scheme}",
                                               scheme=scheme, spec=spec)
        wall = time.perf_counter() - start
        ratio = step_seconds(qmodel, *batch) / float_step
        if isinstance(qmodel, QuantVit):
            name, count, points = "tflite", len(qmodel.points) + weight_layers(qmodel), len(qmodel.learned_points())
        else:
            name, count = f"nncf {model_type}", sum(1 for _ in quantizers(qmodel))
            points = len(learned_ranges(qmodel, spec).ranges.activations)
        qat_top1 = result.best_val_top1 if result else float("nan")
        print(f"{name:12s} {count:10d} {points:6d} {metrics['val_top1_input']:6.3f} "
              f"{metrics['val_top1_ptq']:6.3f} {qat_top1:6.3f} {ratio:12.1f} {wall:7.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
