"""The ViT-lite family: timm VisionTransformers in the form TFLite Micro can run.

Differences from timm's stock ViT, each one something TFLite Micro needs (docs/export.md), so
that what is trained is what is exported: separate q/k/v projections and at most 4-D tensors in
attention (no 5-D qkv reshape), tanh-approximated GELU (no Erf), the class token taken by slice
(no GATHER).
Head counts and MLP widths are read from the layers' shapes at run time, so a structurally
pruned model (torch-pruning shrinks the Linear layers) keeps working without patching.
"""

from __future__ import annotations

import functools
import itertools
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from edge.vit_spec import FAMILY, BlockSpec, VitSpec, family_spec

_ACT_LAYERS: dict[str, Any] = {
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "hardswish": nn.Hardswish,
}


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): a GELU approximation made of MUL and LOGISTIC."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


_ACT_LAYERS["quick_gelu"] = QuickGELU


class LiteAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v Linear layers and 4-D tensors only."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        head_dim: int | None = None,
        **_: Any,
    ) -> None:
        super().__init__()
        self.head_dim = head_dim or dim // num_heads
        inner = num_heads * self.head_dim
        self.q = nn.Linear(dim, inner, bias=qkv_bias)
        self.k = nn.Linear(dim, inner, bias=qkv_bias)
        self.v = nn.Linear(dim, inner, bias=qkv_bias)
        self.proj = nn.Linear(inner, dim, bias=proj_bias)

    @property
    def num_heads(self) -> int:
        """Heads, derived from q's width (changes when heads are pruned)."""
        return self.q.out_features // self.head_dim

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        batch, tokens, _ = x.shape
        heads, width = self.num_heads, self.head_dim

        def split(t: torch.Tensor) -> torch.Tensor:  # [B, N, H*D] -> [B, H, N, D]
            return t.reshape(batch, tokens, heads, width).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        attn = torch.matmul(q * width**-0.5, k.transpose(-2, -1))
        if attn_mask is not None:
            attn = attn + attn_mask
        attn = attn.softmax(dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(batch, tokens, heads * width)
        return self.proj(out)


class StemConv(nn.Module):
    """3x3 stride-2 convolution + ReLU with TensorFlow's SAME padding (one row/column after, none
    before), padded with `pad_value`: the value that the int8 graph's zero padding stands for."""

    def __init__(self, in_chans: int, out_chans: int, pad_value: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, 3, stride=2)
        self.pad_value = pad_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(F.pad(x, (0, 1, 0, 1), value=self.pad_value)))


class ConvTokenizer(PatchEmbed):
    """Stride-2 conv stem (`stem_channels`) then timm's patch embedding on the stem's output."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, *,
                 stem_channels: list[int], pad_value: float, **kwargs: Any) -> None:
        super().__init__(img_size=img_size // 2 ** len(stem_channels), patch_size=patch_size,
                         in_chans=stem_channels[-1] if stem_channels else in_chans, embed_dim=embed_dim, **kwargs)
        chans = [in_chans, *stem_channels]
        self.stem = nn.Sequential(*(StemConv(a, b, pad_value if i == 0 else 0.0)
                                    for i, (a, b) in enumerate(itertools.pairwise(chans))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.stem(x))


class SeqPool(nn.Module):
    """Sequence pooling: a softmax over the tokens of one linear score each, then the tokens' weighted mean,
    [B, N, E] -> [B, E] (one module, so that pruning sees E channels in and the same E out)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.score(x).softmax(dim=1)  # [B, N, 1]
        return torch.matmul(weights.transpose(1, 2), x).flatten(1)


class VitLite(VisionTransformer):
    """timm VisionTransformer with LiteAttention and a TFLite-friendly head: the class token by slice, or
    sequence pooling (a softmax over the tokens of one linear score, then the weighted mean)."""

    def __init__(self, *args: Any, pool: str = "token", **kwargs: Any) -> None:
        super().__init__(*args, class_token=pool == "token", global_pool="token" if pool == "token" else "avg",
                         **kwargs)
        self.seq_pool = SeqPool(self.embed_dim) if pool == "seq" else None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the model input."""
        embed = self.patch_embed  # a ConvTokenizer (build_model), its stem possibly empty
        first = embed.stem[0].conv if len(embed.stem) else embed.proj
        side = embed.img_size[0] * 2 ** len(embed.stem)
        return first.in_channels, side, side

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # the class token by slice (STRIDED_SLICE, not GATHER), or sequence pooling
        x = x[:, 0:1, :].flatten(1) if self.seq_pool is None else self.seq_pool(x)
        x = self.fc_norm(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)


def build_model(spec: VitSpec) -> VitLite:
    """A freshly initialised model exactly as `spec` describes (per-block widths included)."""
    first = spec.blocks[0]
    model = VitLite(
        img_size=spec.img_size,
        patch_size=spec.patch_size,
        in_chans=spec.in_chans,
        num_classes=spec.num_classes,
        embed_dim=spec.embed_dim,
        depth=len(spec.blocks),
        num_heads=first.num_heads,
        mlp_ratio=first.mlp_hidden / spec.embed_dim,
        qkv_bias=True,
        pool=spec.pool,
        act_layer=_ACT_LAYERS[spec.act],
        norm_layer=functools.partial(nn.LayerNorm, eps=spec.norm_eps),
        attn_layer=LiteAttention,
        embed_layer=functools.partial(ConvTokenizer, stem_channels=spec.stem_channels,
                                      pad_value=spec.centred_input_map[1]),
    )
    for block, block_spec in zip(model.blocks, spec.blocks, strict=True):
        _resize_block(block, spec.embed_dim, block_spec)
    return model


def _resize_block(block: nn.Module, dim: int, spec: BlockSpec) -> None:
    if block.attn.q.out_features != spec.num_heads * spec.head_dim or block.attn.head_dim != spec.head_dim:
        block.attn = LiteAttention(dim, spec.num_heads, head_dim=spec.head_dim)
    if block.mlp.fc1.out_features != spec.mlp_hidden:
        block.mlp.fc1 = nn.Linear(dim, spec.mlp_hidden)
        block.mlp.fc2 = nn.Linear(spec.mlp_hidden, dim)


def spec_of(model: VitLite, like: VitSpec) -> VitSpec:
    """The spec of `model` as it is now (after pruning), keeping `like`'s name and labels."""
    blocks = [
        BlockSpec(num_heads=b.attn.num_heads, head_dim=b.attn.head_dim, mlp_hidden=b.mlp.fc1.out_features)
        for b in model.blocks
    ]
    return like.model_copy(update={"embed_dim": model.embed_dim, "blocks": blocks})


def save_model(
    model: nn.Module, spec: VitSpec, weights: str | os.PathLike[str], spec_path: str | os.PathLike[str]
) -> None:
    """Write weights as safetensors and the spec as JSON, both atomically."""
    from safetensors.torch import save_file

    from edge.atomic import atomic_path

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp))
    spec.save(spec_path)


def load_model(weights: str | os.PathLike[str], spec_path: str | os.PathLike[str]) -> tuple[VitLite, VitSpec]:
    """Rebuild a model from a spec JSON and safetensors weights (strict key and shape match)."""
    from safetensors.torch import load_file

    spec = VitSpec.load(spec_path)
    model = build_model(spec)
    model.load_state_dict(load_file(str(Path(weights))), strict=True)
    return model, spec


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass (matmuls and convs, via torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return counter.get_total_flops() // 2


def _make_registered(name: str):
    def create(pretrained: bool = False, **kwargs: Any) -> VitLite:
        if pretrained:
            raise ValueError("ViT-lite has no pretrained weights; train one with `edge train`")
        spec = family_spec(
            name,
            img_size=int(kwargs.pop("img_size", 64)),
            in_chans=int(kwargs.pop("in_chans", 1)),
            num_classes=int(kwargs.pop("num_classes", 2)),
        )
        overrides = {k: v for k, v in kwargs.items() if k in VitSpec.model_fields}  # not timm's own kwargs
        if overrides:
            spec = VitSpec.model_validate({**spec.model_dump(), **overrides})
        return build_model(spec)

    create.__name__ = name
    create.__doc__ = f"ViT-lite '{name}' ({FAMILY[name]}), TFLite-Micro friendly."
    return create


for _name in FAMILY:
    register_model(_make_registered(_name))


class SmallCNN(nn.Module):
    """A small conv net used as a distillation teacher (fast to train on a CPU)."""

    def __init__(self, in_chans: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_chans
        for out in (width, width * 2, width * 4, width * 4):
            conv = nn.Conv2d(channels, out, 3, padding=1, bias=False)
            layers += [conv, nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))
