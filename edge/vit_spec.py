"""The ViT-lite architecture as plain data: the contract between the torch and TensorFlow sides.

The train/prune/qat stages write a `VitSpec` as JSON next to safetensors weights; the export
stage rebuilds the same forward pass in TensorFlow from it without importing torch. Per-block
head counts and MLP widths are explicit because structured pruning changes them block by block.

Weight names (safetensors keys) are the torch state_dict keys of `edge.training.models.VitLite`:

    patch_embed.proj.weight [E, C, P, P]    patch_embed.proj.bias [E]
    cls_token [1, 1, E]                     pos_embed [1, T, E]
    blocks.{i}.norm1.weight/.bias [E]
    blocks.{i}.attn.{q,k,v}.weight [H*D, E] blocks.{i}.attn.{q,k,v}.bias [H*D]
    blocks.{i}.attn.proj.weight [E, H*D]    blocks.{i}.attn.proj.bias [E]
    blocks.{i}.norm2.weight/.bias [E]
    blocks.{i}.mlp.fc1.weight [M_i, E]      blocks.{i}.mlp.fc1.bias [M_i]
    blocks.{i}.mlp.fc2.weight [E, M_i]      blocks.{i}.mlp.fc2.bias [E]
    norm.weight/.bias [E]                   head.weight [K, E]   head.bias [K]

With a convolutional tokenizer (`stem_channels` [C1, C2, ...]) the patch embedding sees the last
stem layer's output (C = C_last) and there are also
    patch_embed.stem.{j}.conv.weight [C_j, C_{j-1}, 3, 3]   patch_embed.stem.{j}.conv.bias [C_j]
With sequence pooling (`pool` "seq") there is no cls_token, T = N, the final norm is timm's
`fc_norm` (after pooling) instead of `norm`, and
    seq_pool.score.weight [1, E]            seq_pool.score.bias [1]

The forward pass (pre-norm ViT, class token taken by slice `x[:, 0:1]`):
    x = conv(img, patch_embed, stride P) -> [B, N, E]; x = concat(cls, x) + pos_embed
    per block: x += proj(softmax(q k^T * D^-0.5) v) on norm1(x);  x += fc2(act(fc1(norm2(x))))
    logits = head(norm(x)[:, 0:1])
or, with a convolutional tokenizer and sequence pooling (the cct_lite_* members):
    img -> per stem layer: relu(conv3x3(pad SAME, stride 2)) -> patch conv -> [B, N, E] + pos_embed
    blocks as above; w = softmax over tokens of score(x) [B, N, 1]; logits = head(fc_norm(w^T x))
LayerNorm is exact (biased variance, eps `norm_eps`); `act` is one of ACTIVATIONS.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.errors import ConfigError

ACTIVATIONS = ("gelu_tanh", "relu", "hardswish", "quick_gelu")
Activation = Literal["gelu_tanh", "relu", "hardswish", "quick_gelu"]
Pool = Literal["token", "seq"]


class BlockSpec(BaseModel):
    """One transformer block: attention heads x head width, and MLP hidden width."""

    model_config = ConfigDict(extra="forbid")
    num_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    mlp_hidden: int = Field(ge=1)


class VitSpec(BaseModel):
    """A ViT-lite, fully described: enough to rebuild it in any framework."""

    model_config = ConfigDict(extra="forbid")
    name: str
    img_size: int = Field(ge=8)
    in_chans: Literal[1, 3]
    patch_size: int = Field(ge=1)
    embed_dim: int = Field(ge=1)
    num_classes: int = Field(ge=2)
    blocks: list[BlockSpec] = Field(min_length=1)
    act: Activation = "gelu_tanh"
    norm_eps: float = Field(1e-6, gt=0)
    labels: list[str] = Field(default_factory=list)
    stem_channels: list[int] = Field(
        default_factory=list,
        description="convolutional tokenizer: one 3x3 stride-2 CONV_2D + ReLU per entry (its output channels) "
        "before the patch embedding; empty = patches of the image itself")
    pool: Pool = Field("token", description="'token': a class token, taken by slice; 'seq': sequence pooling "
                       "(softmax-weighted mean of the tokens, no class token)")
    input_mean: float = Field(0.5, description="model input = (pixel/255 - mean) / std")
    input_std: float = Field(0.5, gt=0)

    @model_validator(mode="after")
    def _check(self) -> VitSpec:
        if self.img_size % self.stride:
            raise ValueError(f"img_size {self.img_size} is not a multiple of {self.stride} (patch_size "
                             f"{self.patch_size} x 2 per stem layer)")
        if any(c < 1 for c in self.stem_channels):
            raise ValueError(f"stem_channels must be positive, got {self.stem_channels}")
        if self.labels and len(self.labels) != self.num_classes:
            raise ValueError(f"{len(self.labels)} labels for {self.num_classes} classes")
        return self

    @property
    def centred_input_map(self) -> tuple[float, float]:
        """(gain, offset) with model input = gain * x_in + offset, where x_in = (pixel - 128) / 127.5 is the
        graph input the export builds: folded into the first conv, and `offset` is what a zero x_in
        (the int8 graph's zero padding) stands for."""
        return 0.5 / self.input_std, (128.0 / 255.0 - self.input_mean) / self.input_std

    @property
    def stride(self) -> int:
        """Input pixels per token side: the patch size times 2 per stride-2 stem layer."""
        return self.patch_size * 2 ** len(self.stem_channels)

    @property
    def grid(self) -> int:
        """Patches per image side."""
        return self.img_size // self.stride

    @property
    def embed_in_chans(self) -> int:
        """Channels the patch embedding sees: the image's, or the last stem layer's."""
        return self.stem_channels[-1] if self.stem_channels else self.in_chans

    @property
    def class_token(self) -> bool:
        """True when the model has a class token (pool 'token')."""
        return self.pool == "token"

    @property
    def num_tokens(self) -> int:
        """Sequence length: patches plus the class token, if any."""
        return self.grid * self.grid + int(self.class_token)

    @property
    def stem_sizes(self) -> list[int]:
        """Output side of each stem layer (SAME padding, stride 2)."""
        return [self.img_size // 2 ** (i + 1) for i in range(len(self.stem_channels))]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the spec as JSON atomically."""
        from edge.atomic import atomic_write_json

        return atomic_write_json(path, self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VitSpec:
        """Read a spec JSON with a clear error naming the file and field."""
        try:
            return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read model spec: {exc}", where=str(path)) from exc
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"invalid model spec, field '{field}': {err['msg']}", where=str(path)) from exc


@dataclass(frozen=True)
class Member:
    """A named family member's shape; the input size and class count come from the data.

    `stem`: the convolutional tokenizer's channels (3x3 stride-2 CONV_2D + ReLU each); a member uses as
    many of them as keep at least `MIN_GRID` tokens per image side (fewer for small images).
    """

    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 2.0
    stem: tuple[int, ...] = ()
    pool: Pool = "token"

    def stem_for(self, img_size: int) -> list[int]:
        """The stem layers used at `img_size`: the most that leave a whole grid of >= MIN_GRID tokens a side."""
        for layers in range(len(self.stem), 0, -1):
            stride = self.patch_size * 2**layers
            if img_size % stride == 0 and img_size // stride >= MIN_GRID:
                return list(self.stem[:layers])
        return []


MIN_GRID = 4

# Named, MCU-sized members of the family. vit_lite_*: patches of the image and a class token, as in the
# ViT. cct_lite_*: a convolutional tokenizer and sequence pooling, as in Hassani et al. 2021 ("Escaping
# the Big Data Paradigm with Compact Transformers"), with stride-2 convs so that a 64 px image makes
# 16 tokens: about 4x fewer cycles on a Cortex-M at the same accuracy (docs/models.md).
FAMILY: dict[str, Member] = {
    "vit_lite_xs": Member(patch_size=8, embed_dim=64, depth=4, num_heads=2),
    "vit_lite_s": Member(patch_size=8, embed_dim=96, depth=4, num_heads=3),
    "vit_lite_m": Member(patch_size=8, embed_dim=128, depth=6, num_heads=4),
    "cct_lite_xs": Member(patch_size=4, embed_dim=64, depth=4, num_heads=2, stem=(16, 32), pool="seq"),
    "cct_lite_s": Member(patch_size=4, embed_dim=96, depth=4, num_heads=3, stem=(16, 32), pool="seq"),
    "cct_lite_m": Member(patch_size=4, embed_dim=128, depth=6, num_heads=4, stem=(16, 32), pool="seq"),
}


def family_spec(
    name: str, img_size: int, in_chans: int, num_classes: int, labels: list[str] | None = None,
    act: Activation = "relu",
) -> VitSpec:
    """The spec of a named family member for a given input and class count."""
    if name not in FAMILY:
        import difflib

        close = difflib.get_close_matches(name, FAMILY, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of {', '.join(FAMILY)}"
        raise ConfigError(f"unknown ViT-lite model '{name}'", where="model.name", hint=hint)
    member = FAMILY[name]
    embed, heads = member.embed_dim, member.num_heads
    block = BlockSpec(num_heads=heads, head_dim=embed // heads, mlp_hidden=int(embed * member.mlp_ratio))
    return VitSpec(
        name=name,
        img_size=img_size,
        in_chans=in_chans,
        patch_size=member.patch_size,
        embed_dim=embed,
        num_classes=num_classes,
        blocks=[block] * member.depth,
        act=act,
        labels=labels or [],
        stem_channels=member.stem_for(img_size),
        pool=member.pool,
    )
