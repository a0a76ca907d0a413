"""The `qat` stage: NNCF quantisation + QAT fine-tuning of the pruned (or trained) model.

Reads `prune.weights`/`prune.spec` (or `train.*` when pruning is off) and `data.dataset`; writes
`qat/model.safetensors` + `qat/model_spec.json` (plain float weights after QAT), `qat/quant_ranges.json`,
`qat/model_int8.onnx` (QDQ), `qat/reference_logits.npz` and `qat/quantizer_map.json` (docs/artifacts.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edge.atomic import atomic_path, atomic_write_json
from edge.config import QATConfig, RunConfig
from edge.errors import ConfigError
from edge.manifest import StageRun
from edge.quant_ranges import write_ranges
from edge.training.loop import FitConfig, FitResult, evaluate, fit, set_threads, to_input
from edge.training.models import count_macs, count_params, load_model, save_model
from edge.training.prune_plan import int8_bytes_estimate
from edge.training.qat import (
    export_qdq_onnx,
    float_model,
    learned_ranges,
    onnx_logits,
    quantize,
    quantizers,
)
from edge.vit_spec import VitSpec


def qat_fit_config(qat: QATConfig) -> FitConfig:
    """The loop settings of a QATConfig."""
    return FitConfig(
        epochs=max(1, qat.epochs), batch_size=qat.batch_size, lr=qat.lr, weight_decay=qat.weight_decay,
        warmup_epochs=qat.warmup_epochs, label_smoothing=qat.label_smoothing, patience=qat.early_stop_patience,
        augment=qat.augment, seed=qat.seed, distill_alpha=qat.distill_alpha,
        distill_temperature=qat.distill_temperature,
    )


def run_stage(run: StageRun, config: RunConfig) -> None:
    """Quantise, fine-tune and record the QAT model and everything the export stage reads from it."""
    from edge.training.data import load_dataset

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
    qmodel, result = quantize_and_finetune(teacher, calib_x, train_xy, val_xy, qat, run.metrics, f"qat {spec.name}")
    if result is not None:
        _write_history(run, result)
    _record(run, qmodel, spec, qat, val_xy, test_xy)


def quantize_and_finetune(
    teacher: torch.nn.Module,
    calib_x: torch.Tensor,
    train_xy: tuple[torch.Tensor, torch.Tensor],
    val_xy: tuple[torch.Tensor, torch.Tensor],
    qat: QATConfig,
    metrics: dict[str, Any],
    desc: str = "qat",
) -> tuple[torch.nn.Module, FitResult | None]:
    """NNCF calibration then QAT fine-tuning (best epoch kept); fills val_top1_input/_ptq in `metrics`."""
    teacher.eval()
    metrics["val_top1_input"] = round(evaluate(teacher, *val_xy)[0], 4)
    torch.manual_seed(qat.seed)
    qmodel = quantize(teacher, calib_x, qat.activation_bits, qat.model_type, qat.bias_correction)
    metrics["val_top1_ptq"] = round(evaluate(qmodel, *val_xy)[0], 4)
    if qat.epochs == 0:
        return qmodel, None
    result = fit(qmodel, train_xy, val_xy, qat_fit_config(qat), teacher=teacher if qat.distill_alpha > 0 else None,
                 desc=desc)
    qmodel.load_state_dict(result.best_state)
    return qmodel, result


def _record(run: StageRun, qmodel: torch.nn.Module, spec: VitSpec, qat: QATConfig,
            val_xy: tuple[torch.Tensor, torch.Tensor], test_xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    plain = float_model(qmodel, spec)
    save_model(plain, spec, run.output("weights", run.dir / "model.safetensors"),
               run.output("spec", run.dir / "model_spec.json"))

    report = learned_ranges(qmodel, spec, qat.activation_bits)
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

    onnx_path = export_qdq_onnx(qmodel, spec, run.output("onnx_qdq", run.dir / "model_int8.onnx"), qat.onnx_opset)
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
        "quantizers": sum(1 for _ in quantizers(qmodel)),
        "points_with_ranges": len(report.ranges.activations),
        "weights_with_ranges": len(report.ranges.weights),
        "activation_bits": qat.activation_bits,
    })
    trained = run.manifest.stages.get("train")
    if trained and {"params", "val_top1"} <= set(trained.metrics):  # issue 3's acceptance figures
        run.metrics["params_ratio_vs_trained"] = round(count_params(plain) / trained.metrics["params"], 4)
        run.metrics["val_top1_drop_vs_trained"] = round(trained.metrics["val_top1"] - val_top1, 4)


def _write_history(run: StageRun, result: FitResult) -> None:
    from edge.training.plots import plot_history

    atomic_write_json(run.output("history", run.dir / "history.json"), result.history)
    plot_history(result.history, run.output("curves", run.dir / "curves.png"), title="QAT fine-tuning")
