"""`quant_ranges.json` (formats `edge-quant-ranges/1` and `/2`, docs/artifacts.md): the one schema, reader and writer.

The qat stage (torch) writes the file and the export's TensorFlow child reads it, so this module
imports neither: pydantic and the standard library only. Naming NNCF's quantizers lives in
`training/nncf_points.py`, applying weight ranges to float weights in `export/apply_ranges.py`.

Format 1 (`qat.scheme=nncf`) names the tensors of the torch model: `attn.q` before the D^-0.5
scale, `norm*` after the LayerNorm's gain and shift. Format 2 (`qat.scheme=tflite`) names the
tensors of the int8 TFLite graph (`integer_points`): `attn.q` with the scale folded in, `norm*`
the normalised tensor `d * rsqrt(var + eps)` whose gain and shift the converter folds into the
next FULLY_CONNECTED, plus the LayerNorm's internal tensors (`NORM_INTERNALS`).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.atomic import atomic_write_json
from edge.errors import ConfigError

if TYPE_CHECKING:
    from edge.vit_spec import VitSpec

FORMAT_V1: Final = "edge-quant-ranges/1"
FORMAT: Final = "edge-quant-ranges/2"
FORMATS = (FORMAT_V1, FORMAT)

#: The activation points of one transformer block, in graph order (docs/artifacts.md).
BLOCK_POINTS = ("norm1", "attn.q", "attn.k", "attn.v", "attn.scores", "attn.softmax", "attn.context",
                "attn.proj", "add1", "norm2", "mlp.fc1", "mlp.act", "mlp.fc2", "add2")
_HEAD_POINTS = ("input", "patch_embed", "tokens")
_TAIL_POINTS = ("norm", "head")
#: Sequence pooling (pool 'seq'), before the final norm: the FULLY_CONNECTED score per token, its
#: SOFTMAX over the tokens (fixed by the kernel: 1/256, -128), the BATCH_MATMUL weighted mean.
POOL_POINTS = ("pool.score", "pool.softmax", "pool.context")
#: The tensors of one LayerNorm as TFLite runs it, in graph order: mean(x), d = x - mean, d*d,
#: mean(d*d), + eps, rsqrt; the norm's own point is d * rsqrt (format 2).
NORM_INTERNALS = ("mean", "centred", "square", "var", "var_eps", "rstd")
_NORMS = r"(blocks\.\d+\.norm[12]|norm)"

#: Every activation point name the contract documents, for any number of blocks.
POINT_RE = re.compile(
    rf"^({'|'.join(map(re.escape, _HEAD_POINTS + _TAIL_POINTS + POOL_POINTS))}|stem\.\d+|"
    rf"blocks\.\d+\.({'|'.join(map(re.escape, BLOCK_POINTS))})|"
    rf"{_NORMS}\.({'|'.join(NORM_INTERNALS)}))$"
)


def activation_points(spec: VitSpec) -> list[str]:
    """Every activation quantisation point of `spec`, in graph order (docs/artifacts.md)."""
    blocks = [f"blocks.{i}.{point}" for i in range(len(spec.blocks)) for point in BLOCK_POINTS]
    return [*_head_points(spec), *blocks, *_tail_points(spec)]


def _head_points(spec: VitSpec) -> list[str]:
    """input, one point per stem layer (CONV_2D with ReLU fused), patch_embed, tokens."""
    return ["input", *(f"stem.{i}" for i in range(len(spec.stem_channels))), "patch_embed", "tokens"]


def _tail_points(spec: VitSpec, norm: tuple[str, ...] = ("norm",)) -> list[str]:
    """Sequence pooling's points (pool 'seq'), the final norm's and the logits."""
    return [*(POOL_POINTS if spec.pool == "seq" else ()), *norm, "head"]


def integer_points(spec: VitSpec) -> list[str]:
    """Every tensor the int8 TFLite model of `spec` quantises, in graph order (format 2 names).

    `input` (fixed: pixel - 128) and every softmax (fixed by the kernel: 1/256, -128) included;
    with the ReLU MLP, `mlp.fc1` is absent (ReLU is fused into the FULLY_CONNECTED: `mlp.act`).
    """

    def norm(name: str) -> list[str]:
        return [*(f"{name}.{part}" for part in NORM_INTERNALS), name]

    points = _head_points(spec)
    for i in range(len(spec.blocks)):
        b = f"blocks.{i}"
        points += norm(f"{b}.norm1")
        points += [f"{b}.attn.{p}" for p in ("q", "k", "v", "scores", "softmax", "context", "proj")]
        points += [f"{b}.add1", *norm(f"{b}.norm2")]
        points += [f"{b}.mlp.fc1"] if spec.act != "relu" else []
        points += [f"{b}.mlp.act", f"{b}.mlp.fc2", f"{b}.add2"]
    return [*points, *_tail_points(spec, tuple(norm("norm")))]


def _documented(name: str) -> str:
    if not POINT_RE.match(name):
        raise ValueError(f"undocumented activation point {name!r} (docs/artifacts.md lists the names)")
    return name


class ActivationRange(BaseModel):
    """The learned range of one activation tensor."""

    model_config = ConfigDict(extra="forbid")
    min: float
    max: float

    @model_validator(mode="after")
    def _check(self) -> ActivationRange:
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError(f"range must be finite, got [{self.min}, {self.max}]")
        if not self.min < self.max:
            raise ValueError(f"min {self.min} is not below max {self.max}")
        return self


class WeightRange(BaseModel):
    """Per-output-channel ranges of one weight (`axis` 0 of the torch weight); one entry = per tensor."""

    model_config = ConfigDict(extra="forbid")
    axis: int = Field(0, ge=0)
    min: list[float] = Field(min_length=1)
    max: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> WeightRange:
        if len(self.min) != len(self.max):
            raise ValueError(f"{len(self.min)} mins but {len(self.max)} maxs")
        for channel, (lo, hi) in enumerate(zip(self.min, self.max, strict=True)):
            if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
                raise ValueError(f"channel {channel}: range [{lo}, {hi}] must be finite with min < max")
        return self


class QuantRangesFile(BaseModel):
    """The whole `quant_ranges.json` (format `edge-quant-ranges/1` or `/2`, see the module doc)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["edge-quant-ranges/1", "edge-quant-ranges/2"] = FORMAT
    activation_bits: Literal[8, 16] = 8
    weight_bits: Literal[8] = 8
    activations: dict[Annotated[str, AfterValidator(_documented)], ActivationRange] = Field(default_factory=dict)
    weights: dict[str, WeightRange] = Field(default_factory=dict)

    def activation_pairs(self) -> dict[str, tuple[float, float]]:
        """Activation point -> (min, max), in file order."""
        return {name: (item.min, item.max) for name, item in self.activations.items()}

    def check_shapes(self, shapes: dict[str, tuple[int, ...]], where: str = "quant_ranges.json") -> None:
        """Raise ConfigError unless every weight range names a weight and has one entry per channel."""
        for name, item in self.weights.items():
            if name not in shapes:
                raise ConfigError(f"field 'weights.{name}' names no weight of the model", where=where,
                                  hint="ranges and weights come from different runs; rerun the qat stage")
            shape = tuple(shapes[name])
            if item.axis >= len(shape) or len(item.min) not in (1, shape[item.axis]):
                raise ConfigError(f"field 'weights.{name}' has {len(item.min)} channels, the weight {list(shape)} "
                                  f"has {shape[item.axis] if item.axis < len(shape) else 'no'} on axis {item.axis}",
                                  where=where)


def write_ranges(path: str | os.PathLike[str], ranges: QuantRangesFile) -> Path:
    """Write the ranges JSON atomically."""
    return atomic_write_json(path, ranges.model_dump(mode="json"))


def read_ranges(path: str | os.PathLike[str]) -> QuantRangesFile:
    """Read and validate a ranges JSON; errors name the file and the field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read quantisation ranges: {exc}", where=str(path)) from exc
    if isinstance(data, dict) and data.get("format") not in FORMATS:
        raise ConfigError(f"invalid quantisation ranges, field 'format' is {data.get('format')!r}, expected "
                          f"{' or '.join(map(repr, FORMATS))}", where=str(path),
                          hint="the qat stage writes this file; rerun it")
    try:
        return QuantRangesFile.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        field = ".".join(str(p) for p in errors[0]["loc"] if p != "[key]")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        place = f"field '{field}'" if field else "top level"
        raise ConfigError(f"invalid quantisation ranges, {place}: {errors[0]['msg']}{more}", where=str(path),
                          hint="the qat stage writes this file; rerun it") from exc
