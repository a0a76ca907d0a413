"""The `train` stage: the float ViT-lite, optionally distilled from a teacher trained first."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from edge.atomic import atomic_write_json
from edge.config import RunConfig, TrainConfig
from edge.manifest import StageRun
from edge.training.loop import FitConfig, FitResult, evaluate, fit, set_threads, to_input
from edge.training.models import SmallCNN, build_model, count_macs, count_params, save_model
from edge.training.plots import plot_history
from edge.vit_spec import family_spec

#: Shortest schedule `epochs_for` gives (the built-in data set plateaus by epoch 15).
MIN_EPOCHS = 15


def epochs_for(train: TrainConfig, n_train: int) -> int:
    """The schedule length: `train.epochs`, or (null) enough epochs for `train.target_steps` optimizer
    steps on `n_train` images, between MIN_EPOCHS and `train.max_epochs`."""
    if train.epochs is not None:
        return train.epochs
    steps_per_epoch = math.ceil(n_train / train.batch_size)
    wanted = math.ceil(train.target_steps / steps_per_epoch)
    return max(min(MIN_EPOCHS, train.max_epochs), min(train.max_epochs, wanted))


def patience_for(train: TrainConfig, epochs: int) -> int:
    """Early-stopping patience: `train.early_stop_patience`, or (null) 30 % of the schedule, at least 6."""
    return train.early_stop_patience if train.early_stop_patience is not None else max(6, math.ceil(0.3 * epochs))


def fit_config(train: TrainConfig, n_train: int, **changes: Any) -> FitConfig:
    """The loop settings of a TrainConfig for `n_train` training images (the distillation weights included)."""
    epochs = epochs_for(train, n_train)
    base = FitConfig(
        epochs=epochs, batch_size=train.batch_size, lr=train.lr, weight_decay=train.weight_decay,
        warmup_epochs=train.warmup_epochs, label_smoothing=train.label_smoothing,
        patience=patience_for(train, epochs), target_val_top1=train.target_val_top1, augment=train.augment,
        hflip=train.hflip is not False, seed=train.seed, distill_alpha=train.distill.alpha,
        distill_temperature=train.distill.temperature,
    )
    return FitConfig(**{**base.__dict__, **changes})


@contextlib.contextmanager
def carbon_tracker(country: str, metrics: dict[str, Any], notes: list[str]) -> Iterator[None]:
    """Measure energy (kWh) and CO2 (kg) of the block with CodeCarbon's offline tracker."""
    try:
        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        tracker = OfflineEmissionsTracker(country_iso_code=country, save_to_file=False, log_level="error")
        tracker.start()
    except Exception as exc:  # CodeCarbon is best effort: never fail training for it
        notes.append(f"CodeCarbon unavailable: {type(exc).__name__}: {exc}")
        yield
        return
    try:
        yield
    finally:
        emissions = tracker.stop()
        data = tracker.final_emissions_data
        metrics["train_energy_kWh"] = round(float(data.energy_consumed), 9) if data else None
        metrics["train_co2_kg"] = round(float(emissions or 0.0), 9)
        metrics["carbon_country"] = country


def run_stage(run: StageRun, config: RunConfig) -> None:
    """Train the configured ViT-lite on the run's data set and record it in the manifest."""
    from edge.training.dataset import load_dataset

    set_threads(config.train.threads)
    with distributed_group():
        _train(run, config, load_dataset)


@contextlib.contextmanager
def distributed_group() -> Iterator[None]:
    """Join the torchrun process group when launched with several processes (gloo on CPU)."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield
        return
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def _train(run: StageRun, config: RunConfig, load_dataset: Any) -> None:
    data = load_dataset(run.input("data", "dataset"))
    spec = config.model.spec(data.image_size, data.channels, len(data.labels), list(data.labels))
    train_xy = (to_input(data.train.x, spec.input_mean, spec.input_std), torch.as_tensor(data.train.y))
    val_xy = (to_input(data.val.x, spec.input_mean, spec.input_std), torch.as_tensor(data.val.y))
    resume = bool(run.options.get("resume"))
    cfg = fit_config(config.train, len(data.train), hflip=decide_mirroring(run, config.train, data))
    max_seconds = config.train.max_minutes * 60 if config.train.max_minutes else None

    with carbon_tracker(config.train.carbon_country, run.metrics, run.notes):
        teacher = _teacher(run, config, spec, train_xy, val_xy, resume)
        torch.manual_seed(config.train.seed)
        model = build_model(spec)
        result = fit(model, train_xy, val_xy, cfg, teacher=teacher, checkpoint=run.dir / "checkpoint.pt",
                     resume=resume, desc=f"train {spec.name}", max_seconds=max_seconds,
                     on_epoch=epoch_logger(run.options.get("epoch_log")))

    model.load_state_dict(result.best_state)
    test_top1, _, _ = evaluate(model, to_input(data.test.x, spec.input_mean, spec.input_std),
                               torch.as_tensor(data.test.y))
    save_model(model, spec, run.output("weights", run.dir / "model.safetensors"),
               run.output("spec", run.dir / "model_spec.json"))
    _write_history(run, result)
    run.metrics.update({
        "val_top1": round(result.best_val_top1, 4), "test_top1": round(test_top1, 4),
        "params": count_params(model), "macs": count_macs(model, (spec.in_chans, spec.img_size, spec.img_size)),
        "float32_bytes": 4 * count_params(model), "epochs_run": len(result.history),
        "best_epoch": result.best_epoch, "stopped_early": result.stopped_early, "schedule_epochs": cfg.epochs,
        "stopped_by_time_budget": result.stopped_by_time,
    })
    _compare_with_baseline(run, data, result.best_val_top1, config.train.seed)


def decide_mirroring(run: StageRun, train: TrainConfig, data: Any) -> bool:
    """`train.hflip`, or (null) the data's answer (`check_mirroring`, seconds), recorded in the metrics."""
    if train.hflip is not None:
        run.metrics.update({"hflip": train.hflip, "hflip_source": "config"})
        return train.hflip
    from edge.training.baseline import check_mirroring

    check = check_mirroring((data.train.x, data.train.y), (data.val.x, data.val.y), train.seed)
    run.metrics.update({"hflip": check.keeps_labels, "hflip_source": "data",
                        "mirror_check": {"baseline_val_top1": round(check.val_top1, 4),
                                         "baseline_val_top1_with_mirror_images": round(check.mirrored_val_top1, 4),
                                         "tolerance": round(check.tolerance, 4)}})
    run.notes.append(check.describe())
    print(f"[edge] {check.describe()}", file=sys.stderr)
    return check.keeps_labels


def mirroring(run: StageRun, train: TrainConfig) -> bool:
    """The mirror augmentation the train stage used, for prune and QAT to fine-tune with the same."""
    if train.hflip is not None:
        return train.hflip
    record = run.manifest.stages.get("train")
    return bool(record.metrics.get("hflip", True)) if record else True


def epoch_logger(path: str | None) -> Callable[[dict[str, float]], None] | None:
    """With run option `epoch_log` (a file), append each epoch's row to it as one JSON line, flushed, so
    another process can follow the val curve while training runs (`edge search` prunes on it)."""
    if not path:
        return None

    def log(row: dict[str, float]) -> None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    return log


def _compare_with_baseline(run: StageRun, data: Any, val_top1: float, seed: int) -> None:
    """Fit the pixel baseline on the same split, record it, and warn loudly when the model does not beat it."""
    from edge.training.baseline import fit_baseline

    base = fit_baseline((data.train.x, data.train.y), (data.val.x, data.val.y), (data.test.x, data.test.y),
                        seed=seed)
    run.metrics.update({"baseline_val_top1": round(base.val_top1, 4), "baseline_test_top1": round(base.test_top1, 4),
                        "baseline": base.description, "beats_baseline": val_top1 > base.val_top1})
    if val_top1 <= base.val_top1:
        message = (f"WARNING: the model (val top-1 {val_top1:.3f}) does not beat a {base.description} "
                   f"(val top-1 {base.val_top1:.3f}). It has not learned what the data allows: train longer "
                   f"(--set train.max_epochs / train.target_steps), try another data.image_size, or a teacher "
                   f"(--set train.distill.teacher=cnn); see docs/data.md")
        run.notes.append(message)
        print(f"[edge] {message}", file=sys.stderr)


def _teacher(run: StageRun, config: RunConfig, spec: Any, train_xy: Any, val_xy: Any, resume: bool) -> nn.Module | None:
    kind = config.train.distill.teacher
    if kind == "none":
        return None
    torch.manual_seed(config.train.seed + 1)
    teacher: nn.Module = (
        SmallCNN(spec.in_chans, spec.num_classes) if kind == "cnn"
        else build_model(family_spec(kind, spec.img_size, spec.in_chans, spec.num_classes))
    )
    cfg = fit_config(config.train, len(train_xy[1]), epochs=config.train.distill.teacher_epochs,
                     label_smoothing=0.0)
    result = fit(teacher, train_xy, val_xy, cfg, checkpoint=run.dir / "teacher_checkpoint.pt",
                 resume=resume and (run.dir / "teacher_checkpoint.pt").is_file(), desc=f"teacher {kind}")
    teacher.load_state_dict(result.best_state)
    run.metrics["teacher"] = kind
    run.metrics["teacher_val_top1"] = round(result.best_val_top1, 4)
    run.metrics["teacher_params"] = count_params(teacher)
    return teacher


def _write_history(run: StageRun, result: FitResult) -> None:
    atomic_write_json(run.output("history", run.dir / "history.json"), result.history)
    plot_history(result.history, run.output("curves", run.dir / "curves.png"), title="training")
