"""The `prune` stage: iterative structured pruning of the trained model, with distillation.

Each of `steps` steps shrinks the model to the plan for that step's budget (budgets interpolate
geometrically from the unpruned size to the final budget, `prune_plan.Budget.at_step`), removing
the least important heads, MLP units and embedding channels (`pruning.prune_to`), then fine-tunes
it with distillation from the unpruned model (`loop.fit(..., teacher=unpruned)`). The result is a
dense model: its spec lists the new widths and it rebuilds with `build_model(spec)` + strict load.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from edge.atomic import atomic_write_json
from edge.config import PruneConfig, RunConfig
from edge.errors import ConfigError, EdgeError
from edge.manifest import StageRun
from edge.training.loop import FitConfig, evaluate, fit, set_threads, to_input
from edge.training.models import VitLite, count_params, load_model, save_model, spec_of
from edge.training.prune_plan import Budget, Dims, size_figures, solve_plan
from edge.training.prune_plot import plot_size_vs_accuracy
from edge.training.pruning import drop_blocks, prune_to
from edge.vit_spec import VitSpec

Tensors = tuple[torch.Tensor, torch.Tensor]


def budget_of(cfg: PruneConfig) -> Budget:
    """The budget a PruneConfig asks for (validated)."""
    budget = Budget(params_ratio=cfg.params_ratio, int8_ratio=cfg.int8_ratio, max_macs=cfg.max_macs,
                    flash_bytes=cfg.flash_bytes, ram_bytes=cfg.ram_bytes)
    budget.check()
    return budget


def dims_of(cfg: PruneConfig) -> Dims:
    """Which dimensions a PruneConfig lets shrink."""
    return Dims(heads=cfg.heads, mlp=cfg.mlp, embed=cfg.embed, min_embed=cfg.min_embed_dim)


#: With prune.max_drop, a step still out of the drop after its fine-tuning gets up to (this - 1) x its epochs
#: more, ending as soon as it is back within the drop, before it counts as too costly.
RECOVERY_FACTOR = 3


def finetune_config(cfg: PruneConfig, epochs: int, target_val_top1: float | None = None,
                    hflip: bool = True) -> FitConfig:
    """Loop settings of one fine-tuning round (no warm-up: the weights are already trained); it ends
    early once val top-1 reaches `target_val_top1`; `hflip` is the training's mirror augmentation."""
    return FitConfig(epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, warmup_epochs=0, patience=epochs + 1,
                     target_val_top1=target_val_top1, hflip=hflip, seed=cfg.seed, distill_alpha=cfg.distill_alpha,
                     distill_temperature=cfg.distill_temperature)


@dataclass
class PruneResult:
    """The pruned model, its spec and one record per step (step 0 = the unpruned model)."""

    model: VitLite
    spec: VitSpec
    steps: list[dict[str, Any]] = field(default_factory=list)
    dropped_blocks: list[int] = field(default_factory=list)
    stop_reason: str = ""

    @property
    def reached_budget(self) -> bool:
        """Whether every step was kept (the model meets the size budget), or accuracy stopped it early."""
        return all(step.get("accepted", True) for step in self.steps)


def _importance_batches(train: Tensors, cfg: PruneConfig, step: int) -> list[Tensors]:
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + step)
    order = torch.randperm(len(train[0]), generator=gen)[: cfg.importance_batches * cfg.batch_size]
    return [(train[0][idx], train[1][idx]) for idx in order.split(cfg.batch_size)]


def _record(step: int, spec: VitSpec, val_pruned: float | None, val_top1: float, epochs: int,
            wall_s: float) -> dict[str, Any]:
    return {
        "step": step, "embed_dim": spec.embed_dim, "heads": [b.num_heads for b in spec.blocks],
        "mlp_hidden": [b.mlp_hidden for b in spec.blocks], **size_figures(spec),
        "val_top1_pruned": None if val_pruned is None else round(val_pruned, 4),
        "val_top1": round(val_top1, 4), "finetune_epochs": epochs, "wall_s": round(wall_s, 2),
    }


def finetune_epochs(cfg: PruneConfig, train_epochs: int) -> tuple[int, int]:
    """(epochs after each step, extra epochs after the last): the config's, or (null) 1/15 and 3/15 of
    the training schedule, so fine-tuning takes as many optimizer steps as the data needed to train."""
    each = cfg.finetune_epochs if cfg.finetune_epochs is not None else max(1, round(train_epochs / 15))
    final = cfg.final_epochs if cfg.final_epochs is not None else round(3 * train_epochs / 15)
    return each, final


def _finetune_with_recovery(student: VitLite, teacher: VitLite, train: Tensors, val: Tensors, cfg: PruneConfig,
                            epochs: tuple[int, int], reference_top1: float, hflip: bool, label: str,
                            pruned_top1: float) -> tuple[float, int]:
    """Fine-tune a pruned step for `epochs[0]` epochs; when it is still more than `cfg.max_drop` below the
    reference, recover with up to (RECOVERY_FACTOR - 1) x `epochs[1]` more, ending as soon as it is back
    within. Returns (val top-1, epochs run)."""
    planned, each = epochs
    top1, ran = _finetune(student, teacher, train, val, finetune_config(cfg, planned, hflip=hflip),
                          f"{label} fine-tune", pruned_top1)
    if cfg.max_drop is not None and reference_top1 - top1 > cfg.max_drop and each:
        top1, extra = _finetune(student, teacher, train, val,
                                finetune_config(cfg, each * (RECOVERY_FACTOR - 1), reference_top1 - cfg.max_drop,
                                                hflip), f"{label} recovery", top1)
        ran += extra
    return top1, ran


def iterative_prune(model: VitLite, spec: VitSpec, train: Tensors, val: Tensors, cfg: PruneConfig,
                    train_epochs: int = 15, hflip: bool = True) -> PruneResult:
    """Prune a trained model in `cfg.steps` steps with distillation fine-tuning; `model` is left as is.

    With `cfg.max_drop`, a step whose fine-tuned val top-1 falls more than that below the trained
    model's is undone and pruning stops there (unless the kept model breaks a hard limit)."""
    each_epochs, final_epochs = finetune_epochs(cfg, train_epochs)
    budget, dims = budget_of(cfg), dims_of(cfg)
    if not 0 <= cfg.drop_blocks < len(spec.blocks):
        raise ConfigError(f"cannot drop {cfg.drop_blocks} of {len(spec.blocks)} blocks", where="prune.drop_blocks")
    shallow = spec.model_copy(update={"blocks": spec.blocks[cfg.drop_blocks:]})  # same widths, fewer blocks
    final_plan = solve_plan(shallow, budget.limits(spec), dims)  # fails early on an impossible budget
    teacher = model.eval()
    student = copy.deepcopy(model)
    result = PruneResult(student, spec, [_record(0, spec, None, evaluate(teacher, *val)[0], 0, 0.0)])
    reference_top1 = result.steps[0]["val_top1"]
    reference_correct = _correct(teacher, val)
    max_drop = cfg.max_drop
    if cfg.drop_blocks:
        result.dropped_blocks = drop_blocks(student, cfg.drop_blocks, _importance_batches(train, cfg, 0))
    current = spec_of(student, spec)
    for step in range(1, cfg.steps + 1):
        started = time.perf_counter()
        kept = copy.deepcopy(student) if max_drop is not None else None
        plan = final_plan if step == cfg.steps else solve_plan(shallow, budget.at_step(spec, step, cfg.steps), dims)
        plan = _between(plan, final_plan, current)
        torch.manual_seed(cfg.seed + step)
        prune_to(student, plan, cfg.importance, _importance_batches(train, cfg, step))
        current = spec_of(student, spec)
        pruned_top1 = evaluate(student, *val)[0]
        epochs = each_epochs + (final_epochs if step == cfg.steps else 0)
        top1, epochs = _finetune_with_recovery(student, teacher, train, val, cfg, (epochs, each_epochs),
                                               reference_top1, hflip, f"prune step {step}/{cfg.steps}", pruned_top1)
        record = _record(step, current, pruned_top1, top1, epochs, time.perf_counter() - started)
        result.steps.append(record)
        tqdm.write(f"[prune] step {step}/{cfg.steps}: {count_params(student):,} params, "
                   f"val_top1 {pruned_top1:.4f} after pruning, {top1:.4f} after fine-tuning")
        if kept is None or max_drop is None:
            continue
        drop, se = paired_drop(reference_correct, _correct(student, val))
        record.update({"drop": round(drop, 4), "drop_se": round(se, 4)})
        if drop - max_drop > NOISE_Z * se and _meets(spec_of(kept, spec), spec, cfg):
            record["accepted"] = False
            result.stop_reason = (f"step {step} lost {drop:.4f} val top-1, more than prune.max_drop {max_drop} "
                                  f"by over {NOISE_Z} standard errors ({se:.4f} on {len(val[1])} images): kept "
                                  f"the model of step {step - 1}")
            tqdm.write(f"[prune] {result.stop_reason}")
            student, current = kept, spec_of(kept, spec)
            break
    else:
        result.stop_reason = "reached the size budget" + (
            f" within prune.max_drop {cfg.max_drop}" if cfg.max_drop is not None else "")
    result.model, result.spec = student, current
    _check_budget(current, spec, budget if result.reached_budget else _hard_budget(cfg))
    return result


#: A step is undone only when its drop exceeds prune.max_drop by more than this many standard errors of the
#: paired difference (one-sided 90 %): on 800 val images one standard error is about half a point, so the
#: point estimate alone would undo steps on noise.
NOISE_Z = 1.28


def _correct(model: VitLite, data: Tensors) -> torch.Tensor:
    """Per image: is `model`'s top-1 right?"""
    return evaluate(model, *data)[2].argmax(1) == data[1]


def paired_drop(before: torch.Tensor, after: torch.Tensor) -> tuple[float, float]:
    """(top-1 drop, its standard error) between two models' per-image correctness on the same images
    (paired: only the images on which they differ count)."""
    n = len(before)
    lost = int((before & ~after).sum())
    gained = int((~before & after).sum())
    drop = (lost - gained) / n
    se = math.sqrt(max(0.0, lost + gained - (lost - gained) ** 2 / n)) / n
    return drop, se


def _finetune(student: VitLite, teacher: VitLite, train: Tensors, val: Tensors, cfg: FitConfig, desc: str,
              top1: float) -> tuple[float, int]:
    """Fine-tune `student` in place with distillation, keeping its best epoch (or its weights when no epoch
    beats `top1`); returns (val top-1, epochs run)."""
    if not cfg.epochs:
        return top1, 0
    before = {k: v.detach().clone() for k, v in student.state_dict().items()}
    fitted = fit(student, train, val, cfg, teacher=teacher, desc=desc)
    if fitted.best_val_top1 >= top1:
        student.load_state_dict(fitted.best_state)
        return fitted.best_val_top1, len(fitted.history)
    student.load_state_dict(before)
    return top1, len(fitted.history)


def _hard_budget(cfg: PruneConfig) -> Budget:
    """The absolute limits (MACs, flash, RAM) that hold even when accuracy stops the pruning early."""
    return Budget(max_macs=cfg.max_macs, flash_bytes=cfg.flash_bytes, ram_bytes=cfg.ram_bytes)


def _meets(candidate: VitSpec, base: VitSpec, cfg: PruneConfig) -> bool:
    """Whether `candidate` meets the hard limits, so that pruning may stop at it."""
    return all(measure(candidate) <= maximum for measure, maximum in _hard_budget(cfg).limits(base).values())


def _between(plan: VitSpec, low: VitSpec, high: VitSpec) -> VitSpec:
    """`plan` with every width clipped into [low, high]: a step never regrows a dimension
    (`high` = the current model) nor cuts below the final plan (`low`), so the final plan is
    always reachable even where an intermediate plan rounded its heads differently."""
    def clip(value: int, lo: int, hi: int) -> int:
        return max(lo, min(value, hi))

    blocks = [b.model_copy(update={"num_heads": clip(b.num_heads, lo.num_heads, hi.num_heads),
                                   "mlp_hidden": clip(b.mlp_hidden, lo.mlp_hidden, hi.mlp_hidden)})
              for b, lo, hi in zip(plan.blocks, low.blocks, high.blocks, strict=True)]
    return plan.model_copy(update={"embed_dim": clip(plan.embed_dim, low.embed_dim, high.embed_dim),
                                   "blocks": blocks})


def _check_budget(spec: VitSpec, base: VitSpec, budget: Budget) -> None:
    for name, (measure, maximum) in budget.limits(base).items():
        if measure(spec) > maximum:
            raise EdgeError(f"pruned model breaks its budget: {name} {measure(spec):,} > {maximum:,.0f}",
                            where="prune", hint="this is a bug in the pruning planner; please report it")


def run_stage(run: StageRun, config: RunConfig) -> None:
    """Prune the run's trained model and record the pruned model, its steps and plot."""
    from edge.training.dataset import load_dataset

    set_threads(config.train.threads)
    data = load_dataset(run.input("data", "dataset"))
    model, spec = load_model(run.input("train", "weights"), run.input("train", "spec"))
    train = (to_input(data.train.x, spec.input_mean, spec.input_std), torch.as_tensor(data.train.y))
    val = (to_input(data.val.x, spec.input_mean, spec.input_std), torch.as_tensor(data.val.y))
    cfg = config.prune
    if cfg.enabled:
        from edge.training.stages.train import epochs_for, mirroring

        result = iterative_prune(model, spec, train, val, cfg, epochs_for(config.train, len(data.train)),
                                 mirroring(run, config.train))
    else:
        result = PruneResult(model, spec, [_record(0, spec, None, evaluate(model, *val)[0], 0, 0.0)])
        run.notes.append("prune.enabled is false: the trained model is passed through unchanged")
    weights = run.output("weights", run.dir / "model.safetensors")
    spec_path = run.output("spec", run.dir / "model_spec.json")
    save_model(result.model, result.spec, weights, spec_path)
    _verify_rebuild(result.model, weights, spec_path, val[0][:16])
    atomic_write_json(run.output("steps", run.dir / "steps.json"), result.steps)
    plot_size_vs_accuracy(result.steps, run.output("plot", run.dir / "size_vs_accuracy.png"),
                          max_drop=cfg.max_drop if cfg.enabled else None)
    run.metrics.update(stage_metrics(result.steps, evaluate(result.model, *val)[0]))
    run.metrics["dropped_blocks"] = result.dropped_blocks
    run.metrics["reached_size_budget"] = result.reached_budget
    run.metrics["stop_reason"] = result.stop_reason or "pruning disabled"
    if not result.reached_budget:
        run.notes.append(f"accuracy-aware pruning: {result.stop_reason}")
    run.metrics["test_top1"] = round(evaluate(result.model, to_input(data.test.x, spec.input_mean, spec.input_std),
                                              torch.as_tensor(data.test.y))[0], 4)


def _verify_rebuild(model: VitLite, weights: Any, spec_path: Any, x: torch.Tensor) -> None:
    rebuilt, _ = load_model(weights, spec_path)
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        if not torch.equal(model(x), rebuilt(x)):
            raise EdgeError("the saved pruned model does not reproduce the pruned model's outputs",
                            where=str(weights), hint="this is a bug in the prune stage; please report it")


def stage_metrics(steps: list[dict[str, Any]], val_top1: float) -> dict[str, Any]:
    """Manifest metrics from the step records (first = unpruned, last = pruned)."""
    before, after = steps[0], [step for step in steps if step.get("accepted", True)][-1]
    return {
        "params": after["params"], "macs": after["macs"], "float32_bytes": after["float32_bytes"],
        "int8_bytes_estimate": after["int8_bytes_estimate"], "ram_bytes_estimate": after["ram_bytes_estimate"],
        "val_top1": round(val_top1, 4), "val_top1_before": before["val_top1"],
        "params_before": before["params"], "macs_before": before["macs"],
        "params_ratio": round(after["params"] / before["params"], 4),
        "macs_ratio": round(after["macs"] / before["macs"], 4),
        "embed_dim": after["embed_dim"], "heads": after["heads"], "mlp_hidden": after["mlp_hidden"],
        "steps": len(steps) - 1, "kept_step": after["step"],
    }
