"""`edge verify MODEL`, `edge inspect MODEL` and `edge targets`: model checks for people.

A truncated or corrupted .tflite/.onnx gets a clear error (exit 4), never a traceback.
Nothing here imports torch or TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ExportError


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".tflite", ".onnx"):
        return suffix[1:]
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ExportError(f"cannot read model file: {exc.strerror}", where=str(path)) from exc
    return "tflite" if head[4:8] == b"TFL3" else "onnx"


def inspect_model(path: Path) -> dict[str, Any]:
    """A JSON-ready description of a .tflite or .onnx file (raises ExportError if it is malformed)."""
    if not path.is_file():
        raise ExportError("model file not found", where=str(path), hint="check the path (e.g. build/cortex-m/)")
    if _kind(path) == "onnx":
        from edge.export.onnx_check import describe_onnx, read_onnx

        return {"format": "onnx", "path": str(path), "bytes": path.stat().st_size, **describe_onnx(read_onnx(path))}
    from edge.export.tflite_inspect import read_tflite
    from edge.export.tflm_check import unsupported

    model = read_tflite(path)
    in_t, out_t = model.io("input"), model.io("output")
    return {
        "format": "tflite", "path": str(path), "bytes": model.size_bytes, "subgraphs": model.subgraphs,
        "op_counts": model.op_counts(), "tensor_types": model.tensor_types(),
        "full_integer": not model.float_tensors(),
        "input": {"dtype": in_t.dtype.lower(), "shape": in_t.shape, "scale": in_t.scale[:1],
                  "zero_point": in_t.zero_point[:1]},
        "output": {"dtype": out_t.dtype.lower(), "shape": out_t.shape, "scale": out_t.scale[:1],
                   "zero_point": out_t.zero_point[:1]},
        "tflm_problems": unsupported(model),
    }


def verify_model(path: Path, tflm: bool = True, full_integer: bool = False) -> dict[str, Any]:
    """Check a model: structure, onnx.checker / TFLM ops, and that it runs (TFLM arena or onnxruntime)."""
    info = inspect_model(path)
    if info["format"] == "onnx":
        import onnxruntime as ort

        from edge.export.onnx_check import run_onnx

        meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in meta.shape]
        info["runs_in_onnxruntime"] = run_onnx(path, np.zeros(shape, dtype=np.float32)).shape[0] == shape[0]
        return info
    from edge.export.tflite_inspect import read_tflite, require_full_integer
    from edge.export.tflm_check import check_tflm, require_tflm_ops

    model = read_tflite(path)
    if full_integer:
        require_full_integer(model)
    if tflm:
        require_tflm_ops(model)
        shape = model.io("input").shape
        with tempfile.TemporaryDirectory() as tmp:
            images = Path(tmp) / "images.npy"
            np.save(images, np.full(shape, 128, dtype=np.uint8))
            result, _ = check_tflm(path, images, tmp)
        info["tflm_arena_bytes"] = result["arena_bytes"]
        info["tflm_resolver"] = result["resolver"]
    return info


def _cmd_verify(args: argparse.Namespace) -> int:
    info = verify_model(args.model, tflm=not args.no_tflm, full_integer=args.full_integer)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{args.model}: OK ({info['format']}, {info['bytes']:,} bytes)")
    print(f"  ops: {', '.join(f'{k} x{v}' for k, v in info['op_counts'].items())}")
    if info["format"] == "tflite":
        print(f"  full-integer: {info['full_integer']}, input {info['input']['dtype']} {info['input']['shape']}")
        if "tflm_arena_bytes" in info:
            print(f"  TFLite Micro: runs, smallest arena {info['tflm_arena_bytes']:,} bytes")
    else:
        print(f"  opset {info['opset']}, {info['qdq_nodes']} Q/DQ nodes, runs in onnxruntime")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    print(json.dumps(inspect_model(args.model), indent=2))
    return 0


def _cmd_targets(args: argparse.Namespace) -> int:
    from edge.export.targets import known_targets, resolve_target

    for name in known_targets():
        t = resolve_target(name)
        print(f"{name:14s} {t.core:11s} {t.runtime:6s} flash {t.flash_bytes:>11,} B  RAM {t.ram_bytes:>11,} B  "
              f"{t.description}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `verify`, `inspect` and `targets`."""
    verify = subparsers.add_parser(
        "verify", help="check a .tflite/.onnx model (structure, TFLM ops and arena, onnxruntime)",
        description="Check a model file: a truncated or corrupted file is reported with what and where. "
        ".tflite: ops TFLite Micro can run and the smallest arena; .onnx: onnx.checker and onnxruntime.")
    verify.add_argument("model", type=Path)
    verify.add_argument("--no-tflm", action="store_true", help="skip the TFLite Micro run")
    verify.add_argument("--full-integer", action="store_true", help="fail if any tensor is floating point")
    verify.add_argument("--json", action="store_true", help="print the findings as JSON")
    verify.set_defaults(func=_cmd_verify)
    inspect = subparsers.add_parser("inspect", help="print a .tflite/.onnx model's ops, tensors and quantisation")
    inspect.add_argument("model", type=Path)
    inspect.set_defaults(func=_cmd_inspect)
    targets = subparsers.add_parser("targets", help="list export targets (TARGET=...) with their budgets")
    targets.set_defaults(func=_cmd_targets)
