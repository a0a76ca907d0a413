"""TensorFlow Lite Micro as the judge of "runs on a microcontroller".

`check_tflm(model, images, out_dir)` runs `python -m edge.export.tflm_check` in a child process
(the TFLM Python interpreter can SIGABRT on a model LiteRT runs): it refuses ops and types TFLM has no kernel
for (naming them), finds the smallest working arena by bisection (the interpreter has no
`arena_used_bytes`), runs the images and saves the int outputs and dequantised logits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.atomic import atomic_write_json
from edge.errors import ExportError
from edge.export.child import child_main, run_module
from edge.export.tflite_inspect import TfliteModel, dequantize, quantize, read_tflite

# Builtin ops with a kernel in TFLM's MicroMutableOpResolver (method name = "Add" + value).
TFLM_OPS: dict[str, str] = {name: "".join(p.capitalize() for p in name.split("_")) for name in (
    "ABS", "ADD", "ADD_N", "ARG_MAX", "ARG_MIN", "ASSIGN_VARIABLE", "AVERAGE_POOL_2D", "BATCH_MATMUL",
    "BATCH_TO_SPACE_ND", "BROADCAST_ARGS", "BROADCAST_TO", "CALL_ONCE", "CAST", "CEIL", "CONCATENATION", "CONV_2D",
    "COS", "CUMSUM", "DEPTH_TO_SPACE", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "DIV", "ELU", "EMBEDDING_LOOKUP",
    "EQUAL", "EXP", "EXPAND_DIMS", "FILL", "FLOOR", "FLOOR_DIV", "FLOOR_MOD", "FULLY_CONNECTED", "GATHER",
    "GATHER_ND", "GREATER", "GREATER_EQUAL", "HARD_SWISH", "IF", "L2_NORMALIZATION", "L2_POOL_2D", "LEAKY_RELU",
    "LESS", "LESS_EQUAL", "LOG", "LOG_SOFTMAX", "LOGICAL_AND", "LOGICAL_NOT", "LOGICAL_OR", "LOGISTIC", "MAX_POOL_2D",
    "MAXIMUM", "MEAN", "MINIMUM", "MIRROR_PAD", "MUL", "NEG", "NOT_EQUAL", "PACK", "PAD", "PADV2", "PRELU",
    "QUANTIZE", "READ_VARIABLE", "REDUCE_MAX", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "ROUND", "RSQRT", "SELECT_V2", "SHAPE", "SIN", "SLICE", "SOFTMAX",
    "SPACE_TO_BATCH_ND", "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "SQRT", "SQUARE", "SQUARED_DIFFERENCE", "SQUEEZE",
    "STRIDED_SLICE", "SUB", "SUM", "SVDF", "TANH", "TRANSPOSE", "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "UNPACK", "VAR_HANDLE", "WHILE", "ZEROS_LIKE",
)}
TFLM_OPS.update({  # where TFLM's method name is not the plain CamelCase of the builtin
    "CONV_2D": "Conv2D", "DEPTHWISE_CONV_2D": "DepthwiseConv2D", "AVERAGE_POOL_2D": "AveragePool2D",
    "MAX_POOL_2D": "MaxPool2D", "L2_POOL_2D": "L2Pool2D", "BATCH_MATMUL": "BatchMatMul", "CUMSUM": "CumSum",
    "PADV2": "PadV2", "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTM", "PRELU": "Prelu",
})
# (op, tensor type) pairs a TFLM kernel rejects although the op exists (seen in TFLM runs and TFLM sources).
TFLM_TYPE_GAPS: dict[tuple[str, str], str] = {
    ("GATHER", "INT16"): "take the class token with a slice x[:, 0:1] instead of GATHER",
    ("SQUARED_DIFFERENCE", "INT16"): "write LayerNorm as d = x - mean(x); d * rsqrt(mean(d*d) + eps)",
}
MAX_RANK = 4
_ARENA_CAP = 64 << 20


def resolver_calls(model: TfliteModel) -> list[str]:
    """The `Add...()` calls a MicroMutableOpResolver needs for `model`, sorted."""
    return sorted(f"Add{TFLM_OPS[name]}" for name in model.op_names)


def unsupported(model: TfliteModel) -> list[str]:
    """Reasons TFLM cannot run `model` (missing ops, unsupported types, >4-D tensors); empty if none."""
    problems = []
    for op in model.ops:
        where = f"op {op.index} {op.name}"
        if op.name not in TFLM_OPS:
            problems.append(f"{where}: TFLite Micro has no kernel for {op.name}")
            continue
        types = {model.tensors[i].dtype for i in op.inputs + op.outputs if i >= 0}
        for dtype in sorted(types):
            if (op.name, dtype) in TFLM_TYPE_GAPS:
                problems.append(f"{where}: no {dtype} kernel ({TFLM_TYPE_GAPS[op.name, dtype]})")
        ranks = [len(model.tensors[i].shape) for i in op.inputs + op.outputs if i >= 0]
        if op.name in ("TRANSPOSE", "STRIDED_SLICE") and max(ranks, default=0) > MAX_RANK:
            problems.append(f"{where}: {max(ranks)}-D tensor, TFLite Micro handles at most {MAX_RANK}-D")
    return list(dict.fromkeys(problems))


def require_tflm_ops(model: TfliteModel) -> None:
    """Raise ExportError naming every op/type TFLM cannot run."""
    problems = unsupported(model)
    if problems:
        raise ExportError(
            f"TFLite Micro cannot run this model: {'; '.join(problems[:6])}"
            + (f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""),
            where=model.path,
            hint="rewrite those ops in the model (docs/export.md lists TFLM-friendly forms) and export again",
        )


# --- the child process ---------------------------------------------------------------------------
def _interpreter(data: bytes, arena: int) -> Any:
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(data, arena_size=arena)


def _try(data: bytes, arena: int, sample: np.ndarray) -> bool:
    try:
        interp = _interpreter(data, arena)
        interp.set_input(sample, 0)
        interp.invoke()
    except RuntimeError:
        return False
    return True


def _works(data: bytes, arena: int, sample: np.ndarray) -> bool:
    """Does the model allocate and run with `arena` bytes? Probed in a forked process where possible:
    the TFLM interpreter can segfault on a too-small arena instead of returning an error."""
    if not hasattr(os, "fork"):
        return _try(data, arena, sample)
    pid = os.fork()
    if pid == 0:  # the probe: report by exit status, never return into the caller's code
        code = 1
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            code = 0 if _try(data, arena, sample) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def smallest_arena(data: bytes, sample: np.ndarray, granularity: int = 16) -> int:
    """Smallest `arena_size` (multiple of `granularity`) with which the model allocates and runs."""
    high = 16 << 10
    while not _works(data, high, sample):
        if high >= _ARENA_CAP:
            raise ExportError(f"TFLite Micro could not allocate the model even with a {high} byte arena")
        high *= 2
    low = 0  # known to fail
    while high - low > granularity:
        mid = (low + high) // 2 // granularity * granularity
        if mid <= low:
            break
        if _works(data, mid, sample):
            high = mid
        else:
            low = mid
    return high


def _invoke_all(data: bytes, arena: int, inputs: np.ndarray) -> tuple[np.ndarray, float]:
    """Outputs of one interpreter on every input, and the seconds spent invoking."""
    interp = _interpreter(data, arena)
    started = time.perf_counter()
    outs = []
    for sample in inputs:
        interp.set_input(sample[None], 0)
        interp.invoke()
        outs.append(np.array(interp.get_output(0)).reshape(-1))
    return np.stack(outs), time.perf_counter() - started


def run_images(data: bytes, arena: int, inputs: np.ndarray, workers: int | None = None) -> tuple[np.ndarray, float]:
    """Run all inputs, split across forked workers (one interpreter each); returns (outputs, invoke seconds)."""
    workers = workers or min(4, os.cpu_count() or 1)
    workers = min(workers, len(inputs)) if hasattr(os, "fork") else 1
    if workers <= 1:
        return _invoke_all(data, arena, inputs)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    shards = np.array_split(inputs, workers)
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(_invoke_all, [data] * workers, [arena] * workers, shards))
    except BrokenProcessPool as exc:
        raise ExportError("the TFLite Micro interpreter crashed while running the test images",
                          hint="run `edge verify` on the model to see the interpreter's own messages") from exc
    return np.concatenate([r[0] for r in results]), sum(r[1] for r in results)


def _child(model_path: Path, images_path: Path, out_dir: Path) -> None:
    data = model_path.read_bytes()
    model = read_tflite(model_path, data)
    require_tflm_ops(model)
    images = np.load(images_path)
    from edge.export.pixels import centred_pixels

    in_t = model.io("input")
    inputs = centred_pixels(images) if in_t.dtype == "FLOAT32" else quantize(centred_pixels(images), in_t)
    started = time.perf_counter()
    arena = smallest_arena(data, inputs[:1])
    bisect_s = time.perf_counter() - started
    q, invoke_s = run_images(data, arena, inputs)
    out_t = model.io("output")
    logits = q.astype(np.float32) if out_t.dtype == "FLOAT32" else dequantize(q, out_t)
    np.savez(out_dir / "tflm_outputs.npz", q=q, logits=logits)
    atomic_write_json(out_dir / "tflm_check.json", {
        "arena_bytes": arena,
        "ops": model.op_names,
        "op_counts": model.op_counts(),
        "resolver": resolver_calls(model),
        "images": len(inputs),
        "bisect_s": round(bisect_s, 3),
        "invoke_ms_host": round(1000 * invoke_s / max(len(inputs), 1), 3),
    })


def main(argv: list[str] | None = None) -> int:
    """Child entry point: MODEL IMAGES.npy OUT_DIR."""
    parser = argparse.ArgumentParser(prog="python -m edge.export.tflm_check")
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    return child_main(_child, args.model, args.images, args.out_dir)


# --- the parent side -----------------------------------------------------------------------------
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '(\w+)'")
_FAILED_NODE = re.compile(r"Node (\w+) \(number (\d+)\) failed to (\w+)")


def check_tflm(model_path: str | os.PathLike[str], images_path: str | os.PathLike[str],
               out_dir: str | os.PathLike[str], timeout_s: float = 600.0) -> tuple[dict[str, Any], np.ndarray]:
    """Run the TFLM check in a child; returns (tflm_check.json as dict, dequantised logits)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        run_module("edge.export.tflm_check", [str(model_path), str(images_path), str(out)],
                   what="the TFLite Micro check", timeout_s=timeout_s)
    except ExportError as exc:
        raise _explain(exc, str(model_path)) from exc
    info = json.loads((out / "tflm_check.json").read_text(encoding="utf-8"))
    return info, np.load(out / "tflm_outputs.npz")["logits"]


def _explain(exc: ExportError, where: str) -> ExportError:
    """Name the op from TFLM's own log lines when the child failed without a clear error."""
    missing = _MISSING_OP.findall(exc.message)
    if missing:
        return ExportError(f"TFLite Micro cannot run this model: no kernel for {', '.join(sorted(set(missing)))}",
                           where=where, hint="rewrite those ops (docs/export.md lists TFLM-friendly forms)")
    failed = _FAILED_NODE.findall(exc.message)
    if failed:
        op, number, phase = failed[-1]
        return ExportError(f"TFLite Micro: op {number} {op} failed to {phase} (see the log lines above)\n"
                           f"    {exc.message}", where=where)
    return exc


if __name__ == "__main__":
    sys.exit(main())
