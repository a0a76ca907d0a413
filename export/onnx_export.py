"""torch child process: float ONNX (opset >= 17), PyTorch float logits, params and MACs.

Run as `python -m edge.export.onnx_export SPEC WEIGHTS IMAGES.npy OUT_DIR [--opset 17]`. Writes
`model.onnx` (input `image`: float NCHW `(pixel/255 - mean)/std`, output `logits`) and
`torch_float.npz` (`logits` of the PyTorch model on IMAGES) and `torch.json` (params, MACs).
The ONNX file is then checked and run by onnx_check.py in the parent (no torch there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edge.atomic import atomic_path, atomic_write_json
from edge.export.child import child_main


def export_onnx(spec_path: Path, weights: Path, images: Path, out_dir: Path, opset: int = 17) -> None:
    """Export the float model to ONNX and record PyTorch's own logits on `images`."""
    import torch

    from edge.training.models import count_macs, count_params, load_model

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    model, spec = load_model(weights, spec_path)
    model.eval()
    x = np.load(images).astype(np.float32) / 255.0
    x = torch.from_numpy(((x - spec.input_mean) / spec.input_std).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in x.split(64)]).numpy()
    np.savez(out_dir / "torch_float.npz", logits=logits)
    example = torch.zeros(1, spec.in_chans, spec.img_size, spec.img_size)
    with atomic_path(out_dir / "model.onnx") as tmp:
        torch.onnx.export(model, (example,), str(tmp), input_names=["image"], output_names=["logits"],
                          opset_version=opset, dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)
    atomic_write_json(out_dir / "torch.json", {
        "params": count_params(model),
        "macs": count_macs(model, (spec.in_chans, spec.img_size, spec.img_size)),
        "torch": torch.__version__,
        "opset": opset,
    })


def main(argv: list[str] | None = None) -> int:
    """Child entry point."""
    parser = argparse.ArgumentParser(prog="python -m edge.export.onnx_export")
    parser.add_argument("spec", type=Path)
    parser.add_argument("weights", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args(argv)
    return child_main(export_onnx, args.spec, args.weights, args.images, args.out_dir, args.opset)


if __name__ == "__main__":
    sys.exit(main())
