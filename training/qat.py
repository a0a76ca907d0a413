"""Quantisation-aware training of a ViT-lite with NNCF (`qat.scheme=nncf`), and what export needs from it.

`quantize` inserts NNCF fake quantizers (per-channel symmetric int8 weights; int8 or int16
activations, calibrated on the calibration split) without SmoothQuant, so the float weights stay
the plain VitLite weights that `build_model(spec)` loads and the exporter rebuilds in TensorFlow.
The wrapped model trains with `edge.training.loop.fit` like any module (the quantizers' scales are
parameters, so the ranges are learned). Afterwards `float_model` strips the quantizers,
`learned_ranges` maps them to the documented point names, and `export_qdq_onnx` writes standard
QuantizeLinear/DequantizeLinear ONNX (int16 pairs for 16-bit activations, via `qdq_onnx.py`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge.quant_ranges import FORMAT_V1, ActivationRange, QuantRangesFile, WeightRange
from edge.training.models import VitLite, build_model
from edge.training.nncf_points import locate, merge_activation
from edge.vit_spec import VitSpec

HOOKS_PREFIX = "__nncf_hooks."


def _nncf() -> Any:
    """Import NNCF with no time limit on building its C++ extension (> 60 s on first use on 2 cores)."""
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
    import nncf

    return nncf


def quantize(
    model: VitLite,
    calib_x: torch.Tensor,
    activation_bits: int = 8,
    model_type: str = "default",
    bias_correction: bool = True,
    batch_size: int = 25,
) -> nn.Module:
    """A fake-quantised copy of `model` calibrated on `calib_x` (in batches of `batch_size`).

    `model_type` "default" quantises every tensor NNCF can (closest to a full-integer TFLite model);
    "transformer" uses NNCF's transformer scheme (inputs of matmuls and linears only).
    """
    nncf = _nncf()
    from nncf.common.quantization.structs import QuantizationScheme
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        QuantizationParameters,
    )

    extra: dict[str, Any] = {}
    if activation_bits == 16:  # TFLite int16x8 wants symmetric int16 activations (zero point 0)
        extra["activations_quantization_params"] = QuantizationParameters(
            num_bits=16, mode=QuantizationScheme.SYMMETRIC)
    advanced = AdvancedQuantizationParameters(
        # SmoothQuant would rescale weights and insert multiplies the exporter knows nothing about.
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1, convolution=-1),
        **extra,
    )
    model = copy.deepcopy(model).eval()
    samples = [calib_x[i : i + batch_size] for i in range(0, len(calib_x), batch_size)]
    qmodel = nncf.quantize(
        model,
        nncf.Dataset(samples),
        preset=nncf.QuantizationPreset.MIXED if activation_bits == 8 else nncf.QuantizationPreset.PERFORMANCE,
        model_type=nncf.ModelType.TRANSFORMER if model_type == "transformer" else None,
        subset_size=len(samples),
        fast_bias_correction=True if bias_correction else None,  # None = off (False is not for torch)
        advanced_parameters=advanced,
    )
    _drop_input_quantizers(qmodel)
    return qmodel


def _drop_input_quantizers(qmodel: nn.Module) -> None:
    """Remove NNCF's quantizer on the model input.

    The deployed int8 input is the pixel itself (`pixel - 128`, exact: the exporter folds the
    normalisation into the patch embedding), so the input carries no quantisation error there.
    NNCF's input quantizer would add one, and its grid puts the discrete pixel values on rounding
    ties, where NNCF's kernel and onnxruntime round differently.
    """
    from nncf.torch.function_hook.hook_storage import decode_hook_name
    from nncf.torch.function_hook.wrapper import get_hook_storage

    storage = get_hook_storage(qmodel)
    for name, _ in list(quantizers(qmodel)):
        hook_type, op_name, _ = decode_hook_name(name)
        if hook_type == "post_hooks" and op_name in _input_names(qmodel):
            storage.delete_hook(name)


def _input_names(model: nn.Module) -> set[str]:
    """Names NNCF gives the model's inputs: the parameters of `forward`."""
    import inspect

    return set(inspect.signature(type(model).forward).parameters) - {"self"}


def quantizers(qmodel: nn.Module) -> Iterator[tuple[str, Any]]:
    """(hook name, quantizer module) of every NNCF quantizer in the model (NNCF's `BaseQuantizer`, untyped)."""
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.quantization.layers import BaseQuantizer

    for name, module in get_hook_storage(qmodel).named_hooks():
        if isinstance(module, BaseQuantizer):
            yield name, module


def plain_state(qmodel: nn.Module) -> dict[str, torch.Tensor]:
    """The model's own weights (VitLite names), without NNCF's quantizer state."""
    return {k: v.detach().clone() for k, v in qmodel.state_dict().items() if not k.startswith(HOOKS_PREFIX)}


def float_model(qmodel: nn.Module, spec: VitSpec) -> VitLite:
    """A plain VitLite with the (QAT fine-tuned) float weights of `qmodel`, loaded strictly."""
    model = build_model(spec)
    model.load_state_dict(plain_state(qmodel), strict=True)
    return model.eval()


@dataclass
class RangeReport:
    """Learned ranges plus how every quantizer was named."""

    ranges: QuantRangesFile
    placement: dict[str, str] = field(default_factory=dict)  # NNCF hook name -> contract name
    unmapped: list[str] = field(default_factory=list)


def learned_ranges(qmodel: nn.Module, spec: VitSpec, activation_bits: int = 8) -> RangeReport:
    """Every quantizer's range, keyed by the documented point (activations) or weight name."""
    from nncf.torch.function_hook.hook_storage import decode_hook_name
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph
    from nncf.torch.function_hook.wrapper import wrap_model

    example = torch.zeros(1, spec.in_chans, spec.img_size, spec.img_size)
    graph = build_nncf_graph(wrap_model(build_model(spec).eval()), example)
    report = RangeReport(QuantRangesFile(format=FORMAT_V1, activation_bits=activation_bits))  # torch names
    activations: dict[str, tuple[int, ActivationRange]] = {}
    for hook_name, quantizer in quantizers(qmodel):
        hook_type, op_name, port = decode_hook_name(hook_name)
        where = locate(graph, op_name, port if hook_type == "pre_hooks" else None, spec)
        with torch.no_grad():
            low, high = (t.detach().float().reshape(-1) for t in quantizer.get_input_low_input_high())
        if where.kind == "weight":
            report.ranges.weights[where.name] = WeightRange(axis=0, min=low.tolist(), max=high.tolist())
        elif where.kind == "activation" and low.numel() == 1:
            merge_activation(activations, where, float(low), float(high))
        else:
            report.unmapped.append(hook_name)
            continue
        report.placement[hook_name] = where.name
    report.ranges.activations = {name: activations[name][1] for name in sorted(activations)}
    return report


def export_qdq_onnx(qmodel: nn.Module, spec: VitSpec, path: str | os.PathLike[str], opset: int = 17) -> Path:
    """Write the fake-quant model as standard QuantizeLinear/DequantizeLinear ONNX (atomically).

    8-bit: NNCF's own QDQ export. Any 16-bit quantizer: NNCF's FakeQuantize export rewritten into
    QDQ pairs with int16 codes (`qdq_onnx.py`, opset 21).
    """
    import warnings

    import onnx
    from nncf.torch.quantization.layers import QuantizerExportMode

    from edge.atomic import atomic_path
    from edge.training.qdq_onnx import fakequantize_to_qdq

    wide = any(quantizer.num_bits > 8 for _, quantizer in quantizers(qmodel))
    mode = QuantizerExportMode.FAKE_QUANTIZE if wide else QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS
    for _, quantizer in quantizers(qmodel):
        quantizer.set_export_mode(mode)
    qmodel.eval()
    example = torch.zeros(1, spec.in_chans, spec.img_size, spec.img_size)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # NNCF reads its levels with .item()
        torch.onnx.export(qmodel, (example,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
        if wide:
            onnx.save(fakequantize_to_qdq(onnx.load(str(tmp))), str(tmp))
        onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
    return Path(path)


def onnx_logits(path: str | os.PathLike[str], x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of an ONNX model under onnxruntime (CPU) for model inputs `x` [N, C, H, W]."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.ascontiguousarray(x, dtype=np.float32)
    return np.concatenate([session.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)])
