"""QAT's simulated integers against the int8 TFLite model's, tensor by tensor (docs/compression.md, "QAT").

`QuantVit(x, record=...)` gives the int8 codes of every activation point; TFLite Micro's Python
interpreter with `kPreserveAllTensors` gives every tensor of the int8 model as the device computes
it, which `QuantVit` reproduces (`runtime="litert-reference"` / `"litert"`: LiteRT with its reference
or optimised kernels, which round FULLY_CONNECTED, and MUL and MEAN, once). A point is found in the
flatbuffer by its quantisation (the scale and zero point QAT gave it, which the converter keeps)
and its element count, taking the earliest producing op among equals (a RESHAPE after it carries
the same values). Stripped models work too: no tensor names are needed.

    python -m edge.training.quant_compare RUN_DIR MODEL_INT8.tflite [--images 16] [--runtime tflm]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge.export.pixels import int8_pixels
from edge.export.tflite_inspect import TfliteModel, read_tflite

if TYPE_CHECKING:
    from edge.training.quant_vit import QuantVit


RUNTIMES = ("tflm", "litert-reference", "litert")  # TFLite Micro; LiteRT's reference or optimised kernels


@dataclass(frozen=True)
class PointQuant:
    """What identifies a point's tensor in the flatbuffer."""

    scale: float
    zero_point: int
    size: int  # elements per image


@dataclass(frozen=True)
class StepDiff:
    """|QAT code - TFLite code| over every element of one tensor."""

    max_steps: int
    within_one: float  # share of elements at most 1 step apart
    elements: int
    exact: float = 1.0  # share of elements with the same code


def locate_points(model: TfliteModel, points: dict[str, PointQuant]) -> dict[str, int]:
    """Point -> tensor index of `model` (points whose tensor is not found are left out)."""
    producer = {index: -1 for index in model.inputs} | {out: op.index for op in model.ops for out in op.outputs}
    taken: set[int] = set()
    found = {}
    for name, want in points.items():
        candidates = [t.index for t in model.tensors
                      if t.index in producer and t.index not in taken and len(t.scale) == 1
                      and abs(t.scale[0] - want.scale) <= 1e-5 * want.scale and t.zero_point[0] == want.zero_point
                      and int(np.prod(t.shape)) == want.size]
        if candidates:
            found[name] = min(candidates, key=lambda index: producer[index])
            taken.add(found[name])
    return found


def litert_tensors(model_path: str | os.PathLike[str], images_u8: np.ndarray, tensors: dict[str, int],
                   kernels: str = "reference") -> dict[str, np.ndarray]:
    """Point -> int8 codes [N, size] of those tensors, one image at a time (LiteRT, `kernels` reference
    or default)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if kernels == "reference" else OpResolverType.AUTO
    interp = Interpreter(model_path=str(model_path), experimental_preserve_all_tensors=True, num_threads=1,
                         experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    index = interp.get_input_details()[0]["index"]

    def invoke(pixels: np.ndarray) -> None:
        interp.set_tensor(index, pixels)
        interp.invoke()

    return _per_image(images_u8, tensors, invoke, interp.get_tensor)


def tflm_tensors(model_path: str | os.PathLike[str], images_u8: np.ndarray, tensors: dict[str, int]
                 ) -> dict[str, np.ndarray]:
    """Point -> int8 codes [N, size] of those tensors in TFLite Micro's Python interpreter (its reference
    kernels, every tensor preserved), one image at a time."""
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_file(str(model_path),
                                           intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)

    def invoke(pixels: np.ndarray) -> None:
        interp.set_input(pixels, 0)
        interp.invoke()

    return _per_image(images_u8, tensors, invoke, lambda tensor: interp.GetTensor(tensor, 0)["tensor_data"])


def _per_image(images_u8: np.ndarray, tensors: dict[str, int], invoke: Callable[[np.ndarray], None],
               read: Callable[[int], np.ndarray]) -> dict[str, np.ndarray]:
    """Point -> int8 codes [N, size]: `invoke` each image's int8 pixels, then `read` each tensor."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in tensors}
    for image in images_u8:
        invoke(int8_pixels(image[None]))
        for name, tensor in tensors.items():
            out[name].append(np.asarray(read(tensor)).astype(np.int32).reshape(-1))
    return {name: np.stack(values) for name, values in out.items()}


def step_differences(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> dict[str, StepDiff]:
    """Per point (in `theirs`' order): max |difference| in int8 steps and the share within 1 step."""
    diffs = {}
    for name, codes in theirs.items():
        diff = np.abs(ours[name].reshape(codes.shape).astype(np.int64) - codes)
        diffs[name] = StepDiff(int(diff.max()), float((diff <= 1).mean()), int(diff.size), float((diff == 0).mean()))
    return diffs


def compare_run(qvit: QuantVit, model_path: str | os.PathLike[str], images_u8: np.ndarray,
                runtime: str = "tflm") -> dict[str, StepDiff]:
    """Compare a `QuantVit` (torch) with its exported int8 model on `images_u8` (uint8 NHWC)."""
    import torch

    from edge.training.loop import to_input

    spec = qvit.spec
    record: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        qvit.eval()(to_input(images_u8, spec.input_mean, spec.input_std), record=record)
    ours = {name: codes.reshape(len(images_u8), -1).numpy() for name, codes in record.items()}
    points = {}
    for name in ours:
        with torch.no_grad():
            scale, zero = (float(t) for t in qvit.quantiser(name).scale_zero_point())
        points[name] = PointQuant(scale, int(zero), ours[name].shape[1])
    tensors = locate_points(read_tflite(model_path), points)
    missing = sorted(set(points) - set(tensors))
    if missing:
        raise LookupError(f"no tensor of {model_path} has the quantisation of {missing}")
    if runtime == "tflm":
        return step_differences(ours, tflm_tensors(model_path, images_u8, tensors))
    kernels = {"litert-reference": "reference", "litert": "default"}[runtime]
    return step_differences(ours, litert_tensors(model_path, images_u8, tensors, kernels))


def format_table(diffs: dict[str, StepDiff]) -> str:
    """A Markdown table of the per-tensor differences."""
    rows = ["| point | max steps | equal | within 1 step | elements |", "|---|---:|---:|---:|---:|"]
    rows += [f"| {name} | {d.max_steps} | {d.exact:.4%} | {d.within_one:.4%} | {d.elements} |"
             for name, d in diffs.items()]
    return "\n".join(rows)


def compare_run_dir(run_dir: Path, tflite: Path, images: int | None = None,
                    runtime: str = "tflm") -> dict[str, StepDiff]:
    """Compare a run's QAT model (qat/ of `run_dir` with its quant_ranges.json) with an int8 .tflite on
    the first `images` test images (all when None)."""
    from edge.quant_ranges import read_ranges
    from edge.training.dataset import load_dataset
    from edge.training.models import load_model
    from edge.training.quant_vit import QuantVit

    model, spec = load_model(run_dir / "qat" / "model.safetensors", run_dir / "qat" / "model_spec.json")
    qvit = QuantVit(model.eval(), spec)
    qvit.load_ranges(read_ranges(run_dir / "qat" / "quant_ranges.json"))
    test = load_dataset(run_dir / "data" / "dataset.npz").split("test").x
    return compare_run(qvit, tflite, test if images is None else test[:images], runtime)


def main(argv: list[str] | None = None) -> int:
    """Print the per-tensor table of a run's QAT model against an int8 .tflite."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("tflite", type=Path)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--runtime", choices=RUNTIMES, default="tflm")
    args = parser.parse_args(argv)
    print(format_table(compare_run_dir(args.run_dir, args.tflite, args.images, args.runtime)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
