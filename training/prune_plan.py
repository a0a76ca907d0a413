"""Pruning arithmetic on a `VitSpec` (no torch): size figures, budgets, and the keep fraction.

Everything here is exact arithmetic on the per-block widths of a spec, so a plan can be checked
against a budget before any weight is touched:

- `spec_params`, `spec_macs`: the same figures `count_params` / `count_macs` give for the model.
- `int8_bytes_estimate`: flash of a full-integer TFLite file, estimated as 1 byte per weight,
  +3 bytes per bias (int32) and +25 bytes per output channel of every conv/linear layer
  (per-channel scale and zero point, folded LayerNorm terms) plus a fixed flatbuffer overhead of
  `OVERHEAD_BASE_BYTES + OVERHEAD_PER_BLOCK_BYTES * depth`. Calibrated on four trained models
  (vit_lite_s at 64 and 32 px, unpruned and pruned to 20 %) converted by the export stage's
  converter: within 0.5 % of the real files (docs/compression.md); the export stage measures it.
- `ram_bytes_estimate`: the int8 activation scratch TFLite Micro needs at the widest point of
  the network (live tensors of the attention or MLP sub-block, attention maps included). It does
  not include TFLM's persistent per-op structures; the export stage measures the real arena.

A plan keeps the same share `k` of every prunable dimension: embedding channels, attention heads
of every block (whole heads only, at least one per block) and MLP hidden units of every block
(at least one). `solve_plan` finds the largest plan that meets every budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge.errors import ConfigError
from edge.vit_spec import BlockSpec, VitSpec

OVERHEAD_BASE_BYTES = 5 * 1024
OVERHEAD_PER_BLOCK_BYTES = 6 * 1024
QUANT_BYTES_PER_CHANNEL = 25


def _stem_layers(spec: VitSpec) -> list[tuple[int, int, int]]:
    """(in channels, out channels, output side) of each 3x3 stride-2 stem conv."""
    chans = [spec.in_chans, *spec.stem_channels]
    return list(zip(chans[:-1], chans[1:], spec.stem_sizes, strict=True))


def spec_params(spec: VitSpec) -> int:
    """Parameter count of the model `spec` describes."""
    e, t = spec.embed_dim, spec.num_tokens
    total = sum(9 * c_in * c_out + c_out for c_in, c_out, _ in _stem_layers(spec))
    total += e * spec.embed_in_chans * spec.patch_size**2 + e + t * e  # patch conv, pos embed
    total += e if spec.class_token else e + 1  # cls token, or the sequence pooling's score FC
    for b in spec.blocks:
        inner = b.num_heads * b.head_dim
        total += 4 * e  # norm1, norm2
        total += 3 * (e * inner + inner) + inner * e + e  # q, k, v, proj
        total += e * b.mlp_hidden + b.mlp_hidden + b.mlp_hidden * e + e  # fc1, fc2
    return total + 2 * e + e * spec.num_classes + spec.num_classes  # final norm, head


def spec_biases(spec: VitSpec) -> int:
    """Bias values of the conv/linear layers (stored as int32 in a full-integer TFLite model)."""
    e = spec.embed_dim
    per_block = sum(3 * b.num_heads * b.head_dim + e + b.mlp_hidden + e for b in spec.blocks)
    return sum(spec.stem_channels) + e + per_block + int(spec.pool == "seq") + spec.num_classes


def spec_macs(spec: VitSpec) -> int:
    """Multiply-accumulates of one forward pass (convs and matmuls, as `count_macs` counts them)."""
    e, t = spec.embed_dim, spec.num_tokens
    total = sum(side**2 * 9 * c_in * c_out for c_in, c_out, side in _stem_layers(spec))
    total += spec.grid**2 * e * spec.embed_in_chans * spec.patch_size**2
    total += 0 if spec.class_token else 2 * t * e  # sequence pooling: the score FC and the weighted mean
    for b in spec.blocks:
        inner = b.num_heads * b.head_dim
        total += 3 * t * e * inner + 2 * b.num_heads * t * t * b.head_dim + t * inner * e
        total += 2 * t * e * b.mlp_hidden
    return total + e * spec.num_classes


def int8_bytes_estimate(spec: VitSpec) -> int:
    """Estimated size of the full-integer TFLite file (see the module docstring)."""
    channels = sum(spec.stem_channels) + int(spec.pool == "seq") + spec.embed_dim + spec.num_classes + sum(
        3 * b.num_heads * b.head_dim + 2 * spec.embed_dim + b.mlp_hidden for b in spec.blocks
    )
    overhead = OVERHEAD_BASE_BYTES + OVERHEAD_PER_BLOCK_BYTES * len(spec.blocks)
    return spec_params(spec) + 3 * spec_biases(spec) + QUANT_BYTES_PER_CHANNEL * channels + overhead


def ram_bytes_estimate(spec: VitSpec) -> int:
    """Estimated int8 activation scratch at the widest point of the network (see module docstring)."""
    e, t = spec.embed_dim, spec.num_tokens
    sides = [spec.img_size, *spec.stem_sizes]
    maps = [c * side**2 for c, side in zip([spec.in_chans, *spec.stem_channels], sides, strict=True)]  # image, stems
    widest = max(a + b for a, b in zip(maps, [*maps[1:], spec.grid**2 * e], strict=True))  # a conv's input + output
    for b in spec.blocks:
        attn = 2 * t * e + 3 * t * b.num_heads * b.head_dim + 2 * b.num_heads * t * t  # x, norm, qkv, maps
        mlp = 2 * t * e + 2 * t * b.mlp_hidden  # x, norm, fc1, act
        widest = max(widest, attn, mlp)
    return widest


Limits = dict[str, tuple[Callable[[VitSpec], int], float]]


@dataclass(frozen=True)
class Budget:
    """What the pruned model must fit; None means no limit.

    `params_ratio`: params <= ratio x the unpruned model's; `int8_ratio`: estimated int8 bytes <=
    ratio x the unpruned model's float32 bytes; the others are absolute.
    """

    params_ratio: float | None = None
    int8_ratio: float | None = None
    max_macs: int | None = None
    flash_bytes: int | None = None
    ram_bytes: int | None = None

    def check(self) -> None:
        """Reject budgets that make no sense, naming the config field."""
        if self.params_ratio is not None and not 0 < self.params_ratio <= 1:
            raise ConfigError(
                f"params_ratio must be in (0, 1], got {self.params_ratio}", where="prune.params_ratio",
                hint="it is the share of the trained model's parameters to keep, e.g. 0.3",
            )
        if self.int8_ratio is not None and not 0 < self.int8_ratio <= 1:
            raise ConfigError(f"int8_ratio must be in (0, 1], got {self.int8_ratio}", where="prune.int8_ratio",
                              hint="it is the int8 size as a share of the trained model's float32 bytes, e.g. 0.09")
        for field, value in (("max_macs", self.max_macs), ("flash_bytes", self.flash_bytes),
                             ("ram_bytes", self.ram_bytes)):
            if value is not None and value <= 0:
                raise ConfigError(f"{field} must be positive, got {value}", where=f"prune.{field}")
        if all(v is None for v in (self.params_ratio, self.int8_ratio, self.max_macs, self.flash_bytes,
                                   self.ram_bytes)):
            raise ConfigError("no pruning target given", where="prune",
                              hint="set prune.params_ratio, prune.int8_ratio, prune.max_macs, prune.flash_bytes "
                              "or prune.ram_bytes")

    def limits(self, base: VitSpec) -> Limits:
        """The active limits as name -> (measure, maximum), for a model pruned from `base`."""
        out: Limits = {}
        if self.params_ratio is not None:
            out["params"] = (spec_params, self.params_ratio * spec_params(base))
        if self.max_macs is not None:
            out["macs"] = (spec_macs, self.max_macs)
        flash = [b for b in (self.flash_bytes, self.int8_ratio and self.int8_ratio * 4 * spec_params(base)) if b]
        if flash:
            out["int8_bytes_estimate"] = (int8_bytes_estimate, min(flash))
        if self.ram_bytes is not None:
            out["ram_bytes_estimate"] = (ram_bytes_estimate, self.ram_bytes)
        return out

    def at_step(self, base: VitSpec, step: int, steps: int) -> Limits:
        """Limits of an intermediate step: geometric interpolation from the unpruned value."""
        frac = step / steps
        stepped = {}
        for name, (measure, final) in self.limits(base).items():
            start = measure(base)
            stepped[name] = (measure, final if final >= start else start * (final / start) ** frac)
        return stepped


@dataclass(frozen=True)
class Dims:
    """Which dimensions may shrink, and the floor of the embedding width."""

    heads: bool = True
    mlp: bool = True
    embed: bool = True
    min_embed: int = 16


def plan_spec(base: VitSpec, keep: float, dims: Dims, keep_fine: float | None = None) -> VitSpec:
    """`base` with share `keep` of its heads and `keep_fine` (default `keep`) of its embedding
    channels and MLP units left, rounded to whole heads/channels, at least one of each per block."""
    fine = keep if keep_fine is None else keep_fine

    def shrink(n: int, share: float, enabled: bool, floor: int = 1) -> int:
        return max(min(floor, n), min(n, round(share * n))) if enabled else n

    blocks = [
        BlockSpec(num_heads=shrink(b.num_heads, keep, dims.heads), head_dim=b.head_dim,
                  mlp_hidden=shrink(b.mlp_hidden, fine, dims.mlp))
        for b in base.blocks
    ]
    embed = shrink(base.embed_dim, fine, dims.embed, dims.min_embed)
    return base.model_copy(update={"embed_dim": embed, "blocks": blocks})


def _fits(spec: VitSpec, limits: Limits) -> bool:
    return all(measure(spec) <= maximum for measure, maximum in limits.values())


def _bisect(fits: Callable[[float], bool], lo: float) -> float:
    hi = 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def solve_plan(base: VitSpec, limits: Limits, dims: Dims) -> VitSpec:
    """The largest plan meeting every limit.

    First the largest common keep fraction `k` (bisection; plans grow with `k`); heads are coarse
    (whole heads), so the budget left after rounding heads down is then spent on embedding
    channels and MLP units (a second, larger fraction for those, heads fixed at `k`).
    """
    if _fits(base, limits):
        return base
    smallest = plan_spec(base, 0.0, dims)
    if not _fits(smallest, limits):
        over = [f"{name} {measure(smallest):,} > {maximum:,.0f}" for name, (measure, maximum) in limits.items()
                if measure(smallest) > maximum]
        raise ConfigError(
            "pruning budget cannot be met: even the smallest allowed model "
            f"(embed {smallest.embed_dim}, 1 head and 1 MLP unit per block) has {'; '.join(over)}",
            where="prune",
            hint="raise the budget, allow more dimensions to shrink (prune.heads/mlp/embed) "
            "or lower prune.min_embed_dim",
        )
    keep = _bisect(lambda k: _fits(plan_spec(base, k, dims), limits), 0.0)
    fine = _bisect(lambda f: _fits(plan_spec(base, keep, dims, f), limits), keep)
    return plan_spec(base, keep, dims, fine)


def size_figures(spec: VitSpec) -> dict[str, int]:
    """The size metrics recorded for a model: params, MACs, float32 and int8 bytes, RAM estimate."""
    params = spec_params(spec)
    return {
        "params": params,
        "macs": spec_macs(spec),
        "float32_bytes": 4 * params,
        "int8_bytes_estimate": int8_bytes_estimate(spec),
        "ram_bytes_estimate": ram_bytes_estimate(spec),
    }

