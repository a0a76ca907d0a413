"""Structured pruning of a ViT-lite with torch-pruning's dependency graph.

`tp.DependencyGraph` traces the model once and returns, for a channel of one layer, every
coupled slice elsewhere. Traced on `VitLite` (checked in tests/test_prune.py) it gives:
- an attention group per block: q, k and v output channels and the proj input channels
  (coupled through q k^T and attn v); whole heads are removed by passing all `head_dim`
  channel indices of the chosen heads, so `head_dim` never changes;
- an MLP group per block: fc1 output units and fc2 input units;
- one embedding group: patch_embed conv outputs, cls_token and pos_embed (registered as
  unwrapped parameters), every LayerNorm, the q/k/v/fc1/head inputs and proj/fc2 outputs
  (every residual add), and the sequence pooling's score inputs (`SeqPoolPruner`) when the
  model pools that way. A convolutional tokenizer's stem convs are never pruned.
Importance is torch-pruning's group importance (`GroupTaylorImportance`: |w * dL/dw| summed
over the group's slices, gradients from a few training batches; or `GroupMagnitudeImportance`,
L2), without normalisation so that blocks compare with each other. Which units go is decided
here: per block the least important whole heads and MLP units, globally the least important
embedding channels, down to the widths of a plan (`edge.training.prune_plan`). The result is
a dense model with smaller Linear/Conv/LayerNorm layers. `drop_blocks` removes whole blocks
(opt-in), choosing the block whose removal moves the predictions least (KL divergence).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
import torch_pruning as tp

from edge.errors import ConfigError
from edge.training.models import SeqPool, VitLite, spec_of
from edge.vit_spec import VitSpec

Importance = Literal["taylor", "magnitude"]


class SeqPoolPruner(tp.pruner.function.BasePruningFunc):
    """Sequence pooling maps embedding channel i in to channel i out: pruning one prunes its score weight."""

    def prune_out_channels(self, layer: SeqPool, idxs: list[int]) -> SeqPool:
        keep = torch.tensor(sorted(set(range(layer.score.in_features)) - set(idxs)))
        layer.score.weight = self._prune_parameter_and_grad(layer.score.weight, keep, 1)
        layer.score.in_features = len(keep)
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: SeqPool) -> int:
        return layer.score.in_features

    get_in_channels = get_out_channels


def dependency_graph(model: VitLite) -> tp.DependencyGraph:
    """torch-pruning's dependency graph of `model` (cls_token and pos_embed as unwrapped params)."""
    example = torch.zeros(1, *model.input_shape)
    was_training = model.training
    model.eval()
    unwrapped = [(p, 2) for p in (model.cls_token, model.pos_embed) if p is not None]
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, unwrapped_parameters=unwrapped,
                                                  customized_pruners={SeqPool: SeqPoolPruner()})
    model.train(was_training)
    return graph


def _scorer(kind: Importance) -> tp.importance.Importance:
    if kind == "taylor":
        return tp.importance.GroupTaylorImportance(group_reduction="sum", normalizer=None)
    return tp.importance.GroupMagnitudeImportance(p=2, group_reduction="sum", normalizer=None)


def accumulate_gradients(model: VitLite, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Sum cross-entropy gradients over `batches` into the parameters' .grad (for Taylor importance)."""
    model.zero_grad(set_to_none=True)
    was_training = model.training
    model.eval()  # no dropout; the gradient of the deployed function
    for x, y in batches:
        F.cross_entropy(model(x), y).backward()
    model.train(was_training)


def _channels(graph: tp.DependencyGraph, layer: torch.nn.Module, fn, width: int, kind: Importance) -> torch.Tensor:
    group = graph.get_pruning_group(layer, fn, idxs=list(range(width)))
    return _scorer(kind)(group).detach().clone()


def unit_importance(model: VitLite, graph: tp.DependencyGraph, kind: Importance) -> dict[str, list[torch.Tensor]]:
    """Importance of every head (per block), MLP unit (per block) and embedding channel.

    For "taylor" the parameters' .grad must hold loss gradients (`accumulate_gradients`).
    """
    heads, mlp = [], []
    for block in model.blocks:
        attn = block.attn
        per_channel = _channels(graph, attn.q, tp.prune_linear_out_channels, attn.q.out_features, kind)
        heads.append(per_channel.view(attn.num_heads, attn.head_dim).sum(1))
        mlp.append(_channels(graph, block.mlp.fc1, tp.prune_linear_out_channels, block.mlp.fc1.out_features, kind))
    embed = _channels(graph, model.patch_embed.proj, tp.prune_conv_out_channels, model.embed_dim, kind)
    return {"heads": heads, "mlp": mlp, "embed": [embed]}


def _least(scores: torch.Tensor, keep: int) -> list[int]:
    """Indices of the `len(scores) - keep` lowest scores (ties broken by index, deterministic)."""
    order = sorted(range(len(scores)), key=lambda i: (float(scores[i]), i))
    return sorted(order[: len(scores) - keep])


def prune_to(model: VitLite, target: VitSpec, kind: Importance = "taylor",
             batches: Iterable[tuple[torch.Tensor, torch.Tensor]] = ()) -> dict[str, list[list[int]]]:
    """Shrink `model` in place to the widths of `target`, removing the least important units.

    `target` must have the model's depth and head_dim and no wider dimension than the model.
    Returns the removed indices (heads per block, MLP units per block, embedding channels).
    """
    _check_target(model, target)
    if kind == "taylor":
        accumulate_gradients(model, batches)
    graph = dependency_graph(model)
    scores = unit_importance(model, graph, kind)
    removed: dict[str, list[list[int]]] = {"heads": [], "mlp": [], "embed": []}
    for block, block_spec, head_scores, mlp_scores in zip(
        model.blocks, target.blocks, scores["heads"], scores["mlp"], strict=True
    ):
        attn, width = block.attn, block.attn.head_dim
        gone = _least(head_scores, block_spec.num_heads)
        removed["heads"].append(gone)
        if gone:
            idxs = [h * width + d for h in gone for d in range(width)]
            graph.get_pruning_group(attn.q, tp.prune_linear_out_channels, idxs=idxs).prune()
        gone = _least(mlp_scores, block_spec.mlp_hidden)
        removed["mlp"].append(gone)
        if gone:
            graph.get_pruning_group(block.mlp.fc1, tp.prune_linear_out_channels, idxs=gone).prune()
    gone = _least(scores["embed"][0], target.embed_dim)
    removed["embed"].append(gone)
    if gone:
        graph.get_pruning_group(model.patch_embed.proj, tp.prune_conv_out_channels, idxs=gone).prune()
        model.embed_dim = model.num_features = target.embed_dim
        if hasattr(model, "head_hidden_size"):
            model.head_hidden_size = target.embed_dim
    model.zero_grad(set_to_none=True)
    return removed


def _divergence(model: VitLite, inputs: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """Mean KL(reference || model) over batches: how much the model's predictions moved."""
    with torch.no_grad():
        return sum(F.kl_div(F.log_softmax(model(x), 1), F.log_softmax(ref, 1), log_target=True,
                            reduction="batchmean").item() for x, ref in zip(inputs, reference, strict=True))


def drop_blocks(model: VitLite, count: int, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[int]:
    """Remove `count` whole blocks in place, one at a time the one whose removal moves the
    predictions least (KL divergence from the model's outputs before dropping, on `batches`).

    Returns the removed blocks' original indices. A pre-norm block is a residual branch, so
    removing it leaves a working model; its widths and weights go entirely.
    """
    if not 0 <= count < len(model.blocks):
        raise ConfigError(f"cannot drop {count} of {len(model.blocks)} blocks", where="prune.drop_blocks",
                          hint=f"use 0 to {len(model.blocks) - 1}")
    inputs = [x for x, _ in batches]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        reference = [model(x) for x in inputs]
    original = list(model.blocks)
    for _ in range(count):
        blocks = list(model.blocks)
        moved = []
        for i in range(len(blocks)):
            model.blocks = torch.nn.Sequential(*blocks[:i], *blocks[i + 1:])
            moved.append(_divergence(model, inputs, reference))
        gone = min(range(len(blocks)), key=lambda i: (moved[i], i))
        model.blocks = torch.nn.Sequential(*blocks[:gone], *blocks[gone + 1:])
    model.train(was_training)
    return [i for i, block in enumerate(original) if not any(block is kept for kept in model.blocks)]


def _check_target(model: VitLite, target: VitSpec) -> None:
    now = spec_of(model, target)
    if len(target.blocks) != len(now.blocks) or target.embed_dim > now.embed_dim:
        raise ValueError(f"target {target.embed_dim}x{len(target.blocks)} does not fit inside "
                         f"{now.embed_dim}x{len(now.blocks)}")
    for i, (want, have) in enumerate(zip(target.blocks, now.blocks, strict=True)):
        if want.head_dim != have.head_dim or want.num_heads > have.num_heads or want.mlp_hidden > have.mlp_hidden:
            raise ValueError(f"block {i}: target {want} is not a sub-shape of {have}")
