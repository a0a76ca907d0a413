"""Is the built-in synthetic set learnable but not trivial? Train the default ViT-lite on it and print val accuracy.

Uses the project's own training loop (edge.training.loop.fit) on the default split sizes and
prints val top-1 per epoch. The aim (issue 2): about 0.93-0.97 after ~15 epochs, and clearly
below 1.00 after the first epoch. Takes minutes on 2 cores; not a unit test.

    .venv/bin/python bench/bench_data_learnability.py [--epochs 15] [--threads 1]
        [--recipe '{"person_contrast": [0.2, 0.5]}']   # try other generator parameters
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch
from tqdm import tqdm

from edge.config import DEFAULT_IMAGE_SIZE, DataConfig
from edge.training.loop import FitConfig, fit, to_input
from edge.training.models import build_model
from edge.training.synthetic import DEFAULT_RECIPE, generate
from edge.vit_spec import family_spec


def main() -> int:
    """Generate, train, print the per-epoch curve and the final figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--model", default="vit_lite_s")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=DataConfig().n_train, help="training frames")
    parser.add_argument("--recipe", default="{}", help="JSON object of Recipe fields to change")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.recipe).items()}
    recipe = dataclasses.replace(DEFAULT_RECIPE, **changes)
    cfg = DataConfig(n_train=args.n_train)
    start = time.perf_counter()
    size = cfg.image_size or DEFAULT_IMAGE_SIZE
    data = {split: generate(split, n, size, cfg.channels, cfg.seed, recipe, progress=False)
            for split, n in (("train", cfg.n_train), ("val", cfg.n_val))}
    took = time.perf_counter() - start
    print(f"generated {cfg.n_train} + {cfg.n_val} frames in {took:.1f} s; recipe changes: {changes}")
    spec = family_spec(args.model, cfg.image_size or DEFAULT_IMAGE_SIZE, cfg.channels, 2)
    torch.manual_seed(0)
    model = build_model(spec)
    train = (to_input(data["train"][0]), torch.as_tensor(data["train"][1]))
    val = (to_input(data["val"][0]), torch.as_tensor(data["val"][1]))
    start = time.perf_counter()
    result = fit(model, train, val, FitConfig(epochs=args.epochs, patience=args.epochs),
                 on_epoch=lambda row: tqdm.write(f"epoch {int(row['epoch']) + 1:2d}: val_top1 {row['val_top1']:.4f}"))
    first = result.history[0]["val_top1"]
    print(f"{args.model}: best val_top1 {result.best_val_top1:.4f} (epoch {result.best_epoch + 1}), "
          f"after epoch 1 {first:.4f}, {time.perf_counter() - start:.0f} s training")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
