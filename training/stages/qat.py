"""The `qat` stage: quantisation + QAT fine-tuning of the pruned (or trained) model.

`qat.scheme` picks the fake quantisation: `tflite` (`training/quant_vit.py`: the int8 TFLite graph op by op,
int8 with the ReLU MLP) or `nncf` (`training/qat.py`: NNCF quantizers, also int16 and other MLP activations);
`auto` takes tflite where it applies.

Reads `prune.weights`/`prune.spec` (or `train.*` when pruning is off) and `data.dataset`; writes
`qat/model.safetensors` + `qat/model_spec.json` (plain float weights after QAT), `qat/quant_ranges.json`,
`qat/model_int8.onnx` (QDQ), `qat/reference_logits.npz` and `qat/quantizer_map.json` (docs/artifacts.md).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from edge.atomic import atomic_path, atomic_write_json
from edge.config import QATConfig, RunConfig
from edge.errors import ConfigError
from edge.manifest import StageRun
from edge.quant_ranges import write_ranges
from edge.training.loop import FitConfig, FitResult, evaluate, fit, set_threads, to_input
from edge.training.models import VitLite, count_macs, count_params, load_model, save_model
from edge.training.prune_plan import int8_bytes_estimate
from edge.training.qat import (
    RangeReport,
    export_qdq_onnx,
    float_model,
    learned_ranges,
    onnx_logits,
    quantize,
    quantizers,
)
from edge.training.quant_vit import QuantVit, calibrate, weight_layers
from edge.training.quant_vit import export_qdq_onnx as export_quant_vit_onnx
from edge.training.stages.train import mirroring
from edge.vit_spec import VitSpec


def tflite_unsupported(qat: QATConfig, spec: VitSpec) -> str:
    """Why the tflite scheme cannot simulate this model ('' when it can)."""
    if qat.activation_bits != 8:
        return "int16 activations (qat.activation_bits=16)"
    return f"the MLP activation {spec.act!r} (it mirrors model.act=relu)" if spec.act != "relu" else ""


def resolve_scheme(qat: QATConfig, spec: VitSpec) -> str:
    """'tflite' or 'nncf' for this model; an explicit 'tflite' that cannot apply is a ConfigError."""
    why_not = tflite_unsupported(qat, spec)
    if qat.scheme == "tflite" and why_not:
        raise ConfigError(f"qat.scheme=tflite simulates the int8 TFLite graph and does not support {why_not}",
                          where="qat.scheme", hint="use qat.scheme=nncf (or auto, which picks it by itself)")
    if qat.scheme == "auto":
        return "nncf" if why_not else "tflite"
    return qat.scheme


def qat_fit_config(qat: QATConfig, hflip: bool = True) -> FitConfig:
    """The loop settings of a QATConfig (`hflip`: the training's mirror augmentation)."""
    return FitConfig(
        epochs=max(1, qat.epochs), batch_size=qat.batch_size, lr=qat.lr, weight_decay=qat.weight_decay,
        warmup_epochs=qat.warmup_epochs, label_smoothing=qat.label_smoothing, patience=qat.early_stop_patience,
        augment=qat.augment, hflip=hflip, seed=qat.seed, distill_alpha=qat.distill_alpha,
        distill_temperature=qat.distill_temperature,
    )


def run_stage(run: StageRun, config: RunConfig) -> None:
    """Quantise, fine-tune and record the QAT model and everything the export stage reads from it."""
    from edge.training.dataset import load_dataset

    qat = config.qat
    if not qat.enabled:
        run.notes.append("qat.enabled is false: no QAT model; export falls back to the prune/train model")
        run.metrics["skipped"] = True
        return
    set_threads(config.train.threads)
    upstream = "prune" if config.prune.enabled else "train"
    teacher, spec = load_model(run.input(upstream, "weights"), run.input(upstream, "spec"))
    data = load_dataset(run.input("data", "dataset"))

    def prepared(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        part = data.split(split)
        return to_input(part.x, spec.input_mean, spec.input_std), torch.as_tensor(part.y)

    train_xy, val_xy, test_xy, (calib_x, _) = (prepared(s) for s in ("train", "val", "test", "calib"))
    if qat.calib_size is not None:
        calib_x = calib_x[: qat.calib_size]
    if len(calib_x) == 0:
        raise ConfigError("the data set has no calibration images", where="data.n_calib",
                          hint="rebuild the data set with data.n_calib >= 1")
    scheme = resolve_scheme(qat, spec)
    if qat.scheme == "auto" and scheme == "nncf":
        run.notes.append(f"qat.scheme=auto chose NNCF: the integer-graph QAT does not support "
                         f"{tflite_unsupported(qat, spec)}")
    run.metrics["scheme"] = scheme
    qmodel, result = quantize_and_finetune(teacher, calib_x, train_xy, val_xy, qat, run.metrics, f"qat {spec.name}",
                                           scheme=scheme, spec=spec, hflip=mirroring(run, config.train))
    if result is not None:
        _write_history(run, result)
    _record(run, qmodel, spec, qat, val_xy, test_xy)


def quantize_and_finetune(
    teacher: VitLite,
    calib_x: torch.Tensor,
    train_xy: tuple[torch.Tensor, torch.Tensor],
    val_xy: tuple[torch.Tensor, torch.Tensor],
    qat: QATConfig,
    metrics: dict[str, Any],
    desc: str = "qat",
    scheme: str = "nncf",
    spec: VitSpec | None = None,
    hflip: bool = True,
) -> tuple[torch.nn.Module, FitResult | None]:
    """Calibration then QAT fine-tuning (best epoch kept); fills val_top1_input/_ptq in `metrics`.

    `scheme` 'tflite' (needs `spec`) wraps a copy of the model in a `QuantVit`; 'nncf' uses NNCF.
    """
    teacher.eval()
    metrics["val_top1_input"] = round(evaluate(teacher, *val_xy)[0], 4)
    torch.manual_seed(qat.seed)
    if scheme == "tflite":
        if spec is None:
            raise ValueError("the tflite scheme needs the model's spec")
        quant_vit = QuantVit(copy.deepcopy(teacher), spec)
        calibrate(quant_vit, calib_x)
        qmodel: torch.nn.Module = quant_vit
    else:
        qmodel = quantize(teacher, calib_x, qat.activation_bits, qat.model_type, qat.bias_correction)
    metrics["val_top1_ptq"] = round(evaluate(qmodel, *val_xy)[0], 4)
    if qat.epochs == 0:
        return qmodel, None
    result = fit(qmodel, train_xy, val_xy, qat_fit_config(qat, hflip),
                 teacher=teacher if qat.distill_alpha > 0 else None, desc=desc)
    qmodel.load_state_dict(result.best_state)
    return qmodel, result


def _record(run: StageRun, qmodel: torch.nn.Module, spec: VitSpec, qat: QATConfig,
            val_xy: tuple[torch.Tensor, torch.Tensor], test_xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    qvit = qmodel if isinstance(qmodel, QuantVit) else None  # the tflite scheme's integer graph
    plain = _plain_copy(qvit.model, spec) if qvit is not None else float_model(qmodel, spec)
    save_model(plain, spec, run.output("weights", run.dir / "model.safetensors"),
               run.output("spec", run.dir / "model_spec.json"))

    report = _integer_report(qvit) if qvit is not None else learned_ranges(qmodel, spec, qat.activation_bits)
    report.ranges.check_shapes({k: tuple(v.shape) for k, v in plain.state_dict().items()})
    write_ranges(run.output("quant_ranges", run.dir / "quant_ranges.json"), report.ranges)
    atomic_write_json(run.output("quantizer_map", run.dir / "quantizer_map.json"),
                      {"placement": report.placement, "unmapped": report.unmapped})
    if report.unmapped:
        run.notes.append(f"quantizers without a documented point (left to export calibration): {report.unmapped}")

    val_top1, _, _ = evaluate(qmodel, *val_xy)
    test_top1, _, test_qat = evaluate(qmodel, *test_xy)
    _, _, test_float = evaluate(plain, *test_xy)
    with atomic_path(run.output("reference", run.dir / "reference_logits.npz")) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, test_float=test_float.numpy().astype(np.float32), test_qat=test_qat.numpy().astype(np.float32))

    onnx_out = run.output("onnx_qdq", run.dir / "model_int8.onnx")
    onnx_path = (export_quant_vit_onnx(qvit, onnx_out, qat.onnx_opset) if qvit is not None
                 else export_qdq_onnx(qmodel, spec, onnx_out, qat.onnx_opset))
    ort_logits = onnx_logits(onnx_path, test_xy[0].numpy())
    agreement = round(float((ort_logits.argmax(1) == test_qat.numpy().argmax(1)).mean()), 4)

    shape = (spec.in_chans, spec.img_size, spec.img_size)
    run.metrics.update({
        "val_top1": round(val_top1, 4),
        "val_top1_float": round(evaluate(plain, *val_xy)[0], 4),
        "test_top1": round(test_top1, 4),
        "test_top1_float": round(float((test_float.argmax(1) == test_xy[1]).float().mean()), 4),
        "params": count_params(plain),
        "macs": count_macs(plain, shape),
        "float32_bytes": 4 * count_params(plain),
        "int8_bytes_estimate": int8_bytes_estimate(spec),
        "onnx_qdq_vs_torch_top1": agreement,
        "onnx_qdq_max_logit_error": round(float(np.abs(ort_logits - test_qat.numpy()).max()), 6),
        "quantizers": (len(qvit.points) + weight_layers(qvit)) if qvit is not None
        else sum(1 for _ in quantizers(qmodel)),
        "points_with_ranges": len(report.ranges.activations),
        "weights_with_ranges": len(report.ranges.weights),
        "activation_bits": qat.activation_bits,
    })
    trained = run.manifest.stages.get("train")
    if trained and {"params", "val_top1"} <= set(trained.metrics):  # issue 3's acceptance figures
        run.metrics["params_ratio_vs_trained"] = round(count_params(plain) / trained.metrics["params"], 4)
        run.metrics["val_top1_drop_vs_trained"] = round(trained.metrics["val_top1"] - val_top1, 4)


def _plain_copy(model: torch.nn.Module, spec: VitSpec) -> torch.nn.Module:
    """A plain VitLite with `model`'s weights (strict load, as the export will load them)."""
    from edge.training.models import build_model

    plain = build_model(spec)
    plain.load_state_dict(model.state_dict(), strict=True)
    return plain.eval()


def _integer_report(qmodel: QuantVit) -> RangeReport:
    """Format-2 ranges of every learned point, each placed at its own quantiser."""
    placement = {f"quant.{point}": point for point in qmodel.learned_points()}
    return RangeReport(qmodel.ranges_file(), placement=placement)


def _write_history(run: StageRun, result: FitResult) -> None:
    from edge.training.plots import plot_history

    atomic_write_json(run.output("history", run.dir / "history.json"), result.history)
    plot_history(result.history, run.output("curves", run.dir / "curves.png"), title="QAT fine-tuning")
