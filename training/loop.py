"""The training loop shared by train, prune fine-tuning and QAT.

Seeded and deterministic: the shuffle order and augmentation of epoch `e` come from a generator
seeded with (seed, e), so a run resumed from the checkpoint of epoch `e` continues exactly as an
uninterrupted run would. A checkpoint is written atomically after every epoch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from edge.atomic import atomic_path
from edge.errors import ConfigError


@dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters of one `fit` call."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    label_smoothing: float = 0.05
    patience: int = 6
    target_val_top1: float | None = None
    augment: bool = True
    hflip: bool = True
    seed: int = 0
    distill_alpha: float = 0.5
    distill_temperature: float = 4.0


@dataclass
class FitResult:
    """What `fit` returns: per-epoch history and the best model state (by val_top1)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_val_top1: float = 0.0
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    stopped_early: bool = False
    stopped_by_time: bool = False


def to_input(x: np.ndarray | torch.Tensor, mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
    """uint8 NHWC images -> float NCHW model input `(pixel/255 - mean) / std`."""
    t = torch.as_tensor(np.asarray(x)).permute(0, 3, 1, 2).float()
    return (t / 255.0 - mean) / std


def augment_batch(x: torch.Tensor, gen: torch.Generator, hflip: bool = True) -> torch.Tensor:
    """Camera-like augmentation on a normalised NCHW batch: left-right flip (if `hflip`), shift,
    gain/offset, noise. The random draws are the same either way."""
    n = x.shape[0]
    flip = (torch.rand(n, generator=gen) < 0.5) & hflip
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    pad = max(1, x.shape[-1] // 16)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    size = x.shape[-1]
    x = torch.stack([padded[i, :, dy[i] : dy[i] + size, dx[i] : dx[i] + size] for i in range(n)])
    gain = 1.0 + 0.2 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    offset = 0.2 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    noise = 0.03 * torch.randn(x.shape, generator=gen)
    return ((x * gain + offset) + noise).clamp(-1.5, 1.5)


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256
) -> tuple[float, float, torch.Tensor]:
    """(top-1 accuracy, mean cross-entropy, logits) of `model` on prepared inputs."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    top1 = (logits.argmax(1) == y).float().mean().item()
    return top1, F.cross_entropy(logits, y).item(), logits


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton KD: KL(teacher || student) at temperature T, scaled by T^2."""
    return F.kl_div(
        F.log_softmax(student / temperature, 1), F.softmax(teacher / temperature, 1), reduction="batchmean"
    ) * (temperature**2)


def _lr_lambda(cfg: FitConfig, steps_per_epoch: int) -> Callable[[int], float]:
    warmup = cfg.warmup_epochs * steps_per_epoch
    total = max(1, cfg.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def fit(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    cfg: FitConfig,
    *,
    teacher: nn.Module | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    desc: str = "train",
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    max_seconds: float | None = None,
) -> FitResult:
    """Train `model` with AdamW + warmup/cosine, early stopping and optional distillation.

    `train`/`val` are (inputs, labels) tensors from `to_input`. With `checkpoint`, the state is saved
    atomically after every epoch; `resume=True` continues from it. `stop_after_epochs` ends this
    call after that many epochs (simulates an interruption; the checkpoint stays resumable), and so does
    `max_seconds` (a time budget, checked after each epoch; `result.stopped_by_time` says it ended the call).
    """
    x_train, y_train = train
    steps = math.ceil(len(x_train) / cfg.batch_size)
    torch.manual_seed(cfg.seed)
    rank, world = distributed_rank_world()
    trainable = _wrap_distributed(model) if world > 1 else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps))
    result = FitResult()
    start_epoch, bad_epochs = 0, 0
    if resume:
        start_epoch, bad_epochs = _load_checkpoint(checkpoint, cfg, model, optimizer, scheduler, result)
    if teacher is not None:
        teacher.eval()

    started = time.monotonic()
    bar = tqdm(total=cfg.epochs * steps, initial=start_epoch * steps, desc=desc, unit="batch", dynamic_ncols=True,
               disable=rank != 0)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if stop_after_epochs is not None and epoch - start_epoch >= stop_after_epochs:
                break
            train_loss = _train_epoch(trainable, x_train, y_train, cfg, epoch, optimizer, scheduler, teacher, bar)
            val_top1, val_loss, _ = evaluate(model, *val)
            row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_top1": val_top1,
                   "lr": optimizer.param_groups[0]["lr"]}
            result.history.append(row)
            bad_epochs = _keep_best(result, model, epoch, bad_epochs)
            bar.set_postfix(loss=f"{train_loss:.3f}", val_top1=f"{val_top1:.3f}", best=f"{result.best_val_top1:.3f}")
            done = _converged(cfg, result, bad_epochs)
            if checkpoint is not None and rank == 0:
                _save_checkpoint(checkpoint, cfg, epoch, bad_epochs, done, model, optimizer, scheduler, result)
            if on_epoch is not None:
                on_epoch(row)
            if done:
                result.stopped_early = epoch + 1 < cfg.epochs
                break
            if max_seconds is not None and time.monotonic() - started > max_seconds and epoch + 1 < cfg.epochs:
                result.stopped_by_time = True
                break
    finally:
        bar.close()
    return result


def _keep_best(result: FitResult, model: nn.Module, epoch: int, bad_epochs: int) -> int:
    """Keep the model's state when the epoch's val top-1 (the last history row) is the best so far;
    returns the count of epochs since the best."""
    val_top1 = result.history[-1]["val_top1"]
    if val_top1 > result.best_val_top1 or result.best_epoch < 0:
        result.best_val_top1, result.best_epoch = val_top1, epoch
        result.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return 0
    return bad_epochs + 1


def _converged(cfg: FitConfig, result: FitResult, bad_epochs: int) -> bool:
    """Early stop: `patience` epochs without a better val top-1, or the target reached."""
    return bad_epochs >= cfg.patience or (cfg.target_val_top1 is not None
                                          and result.best_val_top1 >= cfg.target_val_top1)


def _train_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: FitConfig,
    epoch: int,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    teacher: nn.Module | None,
    bar: tqdm,
) -> float:
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    order = torch.randperm(len(x), generator=gen)
    rank, world = distributed_rank_world()
    model.train()
    total, count = 0.0, 0
    for start in range(0, len(x), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        xb, yb = x[idx], y[idx]
        if cfg.augment:
            xb = augment_batch(xb, gen, cfg.hflip)  # every rank draws the same numbers, then keeps its share
        if world > 1:
            xb, yb, idx = xb[rank::world], yb[rank::world], idx[rank::world]
        logits = model(xb)
        loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
        if teacher is not None:
            with torch.no_grad():
                soft = teacher(xb)
            kd = distill_loss(logits, soft, cfg.distill_temperature)
            loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * kd
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(idx)
        count += len(idx)
        bar.update(1)
    return total / max(1, count)


def _save_checkpoint(path: Path, cfg: FitConfig, epoch: int, bad_epochs: int, done: bool, model: nn.Module,
                     optimizer: torch.optim.Optimizer, scheduler: Any, result: FitResult) -> None:
    """Write the resume state atomically: tensors and plain containers (readable with weights_only=True)
    and one JSON metadata string (settings, model structure, data fingerprint; see edge.resume)."""
    from edge.atomic import remove_stale_temps
    from edge.resume import checkpoint_meta

    remove_stale_temps(path)  # left by a process killed mid-write; only rank 0 writes here
    meta = checkpoint_meta(path, model, {
        "fit_config": asdict(cfg), "epoch": epoch, "bad_epochs": bad_epochs, "done": done,
        "history": result.history, "best_val_top1": result.best_val_top1, "best_epoch": result.best_epoch,
    })
    state = {"meta": meta, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "best_state": result.best_state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path | None, cfg: FitConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, result: FitResult) -> tuple[int, int]:
    """Restore a checkpoint written by `_save_checkpoint`: weights only (no pickled code runs), and only
    when the loop settings, the model structure and the run's data match (edge.resume)."""
    import pickle
    import re

    from edge.atomic import remove_stale_temps
    from edge.resume import check_resumable, read_meta

    if path is None or not path.is_file():
        raise ConfigError("nothing to resume: no checkpoint", where=str(path),
                          hint="run without --resume to start training from scratch")
    remove_stale_temps(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"it would call {found.group(1)}" if found else "it holds Python objects, not only tensors and numbers"
        raise ConfigError(f"checkpoint refused: {what}; loading it could run code", where=str(path),
                          hint="only resume checkpoints this edge wrote; delete it and train without --resume") from exc
    except Exception as exc:  # torch raises many types for a damaged file
        raise ConfigError(f"checkpoint is unreadable ({type(exc).__name__}: {str(exc)[:200]})", where=str(path),
                          hint="delete it and train without --resume") from exc
    meta = read_meta(state, path)
    check_resumable(meta, path, asdict(cfg), model)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        result.history = list(meta["history"])
        result.best_val_top1, result.best_epoch = float(meta["best_val_top1"]), int(meta["best_epoch"])
        result.best_state = dict(state["best_state"])
        next_epoch = cfg.epochs if meta["done"] else int(meta["epoch"]) + 1
        return next_epoch, int(meta["bad_epochs"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"checkpoint is incomplete or does not fit the model ({type(exc).__name__}: "
                          f"{str(exc)[:200]})", where=str(path), hint="delete it and train without --resume") from exc


def distributed_rank_world() -> tuple[int, int]:
    """(rank, world size) under torchrun with an initialised process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _wrap_distributed(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)


def set_threads(threads: int | None) -> int:
    """Use `threads` torch CPU threads (default: every core this process may use)."""
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads
