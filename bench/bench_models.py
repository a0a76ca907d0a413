"""Family members side by side: accuracy on a data set and estimated cost on an MCU, per model.

Trains each member (the project's loop, `--epochs` epochs, one thread, seed 0) on a run's data set
(the built-in default, or digits: `--data runs/<run>/data/dataset.npz`), converts it to int8 with
the export's converter (in a TensorFlow child process) and estimates one inference with the cost
model (`edge profile`'s; the per-op figures are the instruction-level ones of power_profiles/kernels/).
Prints val/test top-1, tokens, params, MACs and the estimate with its band, and each model's cost as
a ratio to the first. Cost is measured unpruned and also at `--widths` (e.g. the default plan
embed 42, 1 head, 85 MLP units: `--widths 42,1,85`), where only the cost is measured.

    .venv/bin/python bench/bench_models.py --data runs/default/data/dataset.npz [--models vit_lite_s,cct_lite_s]
        [--epochs 15] [--mcu nrf52840] [--hflip/--no-hflip] [--widths 42,1,85]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge.export.child import run_module
from edge.power.cost import estimate_file
from edge.power.profiles import load_mcu
from edge.training.dataset import load_dataset
from edge.training.loop import FitConfig, evaluate, fit, set_threads, to_input
from edge.training.models import build_model, count_params, save_model
from edge.training.prune_plan import spec_macs
from edge.vit_spec import BlockSpec, VitSpec, family_spec


def _estimate(spec: VitSpec, model: torch.nn.Module, calib: np.ndarray, mcu: str, folder: Path) -> dict[str, Any]:
    """int8-convert `model` (export's converter, in a child) and estimate one inference on `mcu`."""
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, spec, folder / "model.safetensors", folder / "model_spec.json")
    np.save(folder / "calib.npy", calib)
    job = {"spec": str(folder / "model_spec.json"), "weights": str(folder / "model.safetensors"), "ranges": None,
           "calib": str(folder / "calib.npy"), "out_dir": str(folder), "int16": False}
    (folder / "job.json").write_text(json.dumps(job))
    run_module("edge.export.tflite_convert", [str(folder / "job.json")], what="conversion")
    cost = estimate_file(folder / "model_int8.tflite", load_mcu(mcu))
    return {"ms": cost.latency_ms, "band": (cost.latency_ms * cost.band[0], cost.latency_ms * cost.band[1]),
            "uJ": cost.energy_uJ}


def _narrowed(spec: VitSpec, widths: str) -> VitSpec:
    embed, heads, mlp = (int(v) for v in widths.split(","))
    head_dim = spec.blocks[0].head_dim
    return spec.model_copy(update={"embed_dim": embed, "blocks": [BlockSpec(num_heads=heads, head_dim=head_dim,
                                                                            mlp_hidden=mlp)] * len(spec.blocks)})


def main() -> int:
    """Train, convert and estimate each model; print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a run's data set (runs/<run>/data/dataset.npz)")
    parser.add_argument("--models", default="vit_lite_s,cct_lite_s")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--mcu", default="nrf52840")
    parser.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--widths", help="also estimate each model at these pruned widths: embed,heads,mlp")
    args = parser.parse_args()
    set_threads(1)
    data = load_dataset(args.data)
    train = (to_input(data.train.x), torch.as_tensor(data.train.y))
    val = (to_input(data.val.x), torch.as_tensor(data.val.y))
    test = (to_input(data.test.x), torch.as_tensor(data.test.y))
    calib = data.calib.x[:32] if len(data.calib.x) else data.train.x[:32]
    print(f"{args.data}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test, "
          f"{data.image_size} px, {args.epochs} epochs, hflip={args.hflip}; cost estimated on {args.mcu} "
          f"(int8, CMSIS-NN kernel figures; lower bound with the band above it)")
    print(f"{'model':12s} {'tokens':>6s} {'params':>8s} {'MACs':>10s} {'val':>6s} {'test':>6s} {'ms':>8s} "
          f"{'band ms':>15s} {'uJ':>8s} {'x cost':>7s}" + (f" {'ms@widths':>10s} {'x':>5s}" if args.widths else ""))
    first: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            spec = family_spec(name, data.image_size, data.channels, len(data.labels), list(data.labels))
            torch.manual_seed(0)
            model = build_model(spec)
            result = fit(model, train, val, FitConfig(epochs=args.epochs, patience=args.epochs, hflip=args.hflip),
                         desc=name)
            model.load_state_dict(result.best_state)
            test_top1 = evaluate(model, *test)[0]
            cost = _estimate(spec, model, calib, args.mcu, Path(tmp) / name)
            first = first or {"ms": cost["ms"]}
            line = (f"{name:12s} {spec.num_tokens:6d} {count_params(model):8,d} {spec_macs(spec):10,d} "
                    f"{result.best_val_top1:6.4f} {test_top1:6.4f} {cost['ms']:8.1f} "
                    f"{cost['band'][0]:7.0f}-{cost['band'][1]:<7.0f} {cost['uJ']:8.0f} {cost['ms'] / first['ms']:7.2f}")
            if args.widths:
                narrow = _narrowed(spec, args.widths)
                small = _estimate(narrow, build_model(narrow), calib, args.mcu, Path(tmp) / f"{name}-narrow")
                first.setdefault("narrow", small["ms"])
                line += f" {small['ms']:10.1f} {small['ms'] / first['narrow']:5.2f}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
