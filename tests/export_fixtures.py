"""Shared model and run helpers (no TF here): tiny ViT-lite specs, a tiny run with data and train records for the
export tests, a one-op .tflite built with the flatbuffer schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.config import RunConfig
from edge.manifest import Manifest
from edge.pipeline import config_fingerprint, stage_spec
from edge.vit_spec import BlockSpec, VitSpec

TINY = VitSpec(name="vit_lite_tiny", img_size=32, in_chans=1, patch_size=8, embed_dim=32, num_classes=2,
               blocks=[BlockSpec(num_heads=2, head_dim=16, mlp_hidden=64)] * 2, labels=["empty", "person"])


def tiny_spec(**changes: object) -> VitSpec:
    """A 16 px, 3-class ViT-lite of two blocks (5,091 params) for model and pruning arithmetic, with `changes`."""
    spec = VitSpec(name="tiny", img_size=16, in_chans=1, patch_size=4, embed_dim=16, num_classes=3,
                   blocks=[BlockSpec(num_heads=2, head_dim=8, mlp_hidden=32)] * 2)
    return spec.model_copy(update=changes)


def tiny_images(n: int, seed: int = 0, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is 'bright blob in the centre' (learnable by a linear probe), uint8 NHWC."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 90, (n, size, size, 1)).astype(np.int16)
    x[y == 1, size // 4: 3 * size // 4, size // 4: 3 * size // 4] += 150
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def write_weights(spec: VitSpec, path: Path, seed: int = 0) -> None:
    """Random weights with the torch model's names and shapes (torch builds them, numpy saves them)."""
    import torch
    from safetensors.numpy import save_file

    from edge.training.models import build_model

    torch.manual_seed(seed)
    model = build_model(spec)
    save_file({k: v.detach().numpy().copy() for k, v in model.state_dict().items()}, str(path))


def make_run(root: Path, spec: VitSpec = TINY, n_test: int = 24, **export: object) -> tuple[Path, RunConfig]:
    """runs/t/ with a data record and a train record holding `spec` with random weights."""
    run_dir = root / "runs" / "t"
    run_dir.mkdir(parents=True)
    config = RunConfig.model_validate({"export": {"min_tflm_agreement": 0.0, **export}})
    manifest = Manifest(run_dir)
    manifest.config = config.model_dump(mode="json")
    data = run_dir / "data"
    data.mkdir()
    arrays = {}
    for i, (split, n) in enumerate((("train", 8), ("val", 8), ("test", n_test), ("calib", 16))):
        arrays[f"{split}_x"], arrays[f"{split}_y"] = tiny_images(n, seed=i, size=spec.img_size)
    arrays["labels"] = np.array(spec.labels, dtype=str)
    np.savez(data / "dataset.npz", **arrays)
    run = manifest.begin("data", config_fingerprint(config, stage_spec("data")))
    run.output("dataset", data / "dataset.npz")
    manifest.commit(run.finish())
    train = run_dir / "train"
    train.mkdir()
    write_weights(spec, train / "model.safetensors")
    spec.save(train / "model_spec.json")
    run = manifest.begin("train", config_fingerprint(config, stage_spec("train")))
    run.output("weights", train / "model.safetensors")
    run.output("spec", train / "model_spec.json")
    manifest.commit(run.finish())
    return run_dir, config


def single_op_tflite(op: str, dtype: str = "INT8", shape: tuple[int, ...] = (1, 8)) -> bytes:
    """A one-op .tflite built with the flatbuffer schema (no TensorFlow): input -> OP -> output."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    def tensor(name: str) -> s.TensorT:
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), list(shape), getattr(s.TensorType, dtype), 0
        if dtype in ("INT8", "INT16"):
            q = s.QuantizationParametersT()
            q.scale, q.zeroPoint = [0.05], [0]
            t.quantization = q
        return t

    code = s.OperatorCodeT()
    code.builtinCode = getattr(s.BuiltinOperator, op)
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    code.version = 1
    operator = s.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = 0, [0], [1]
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = [tensor("x"), tensor("y")], [0], [1], [operator]
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [graph], [s.BufferT()]
    model.description = b"edge test model"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
