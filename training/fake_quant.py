"""Fake quantisers that round the way TFLite's int8 kernels do (straight-through gradients).

* `ActQuant`: one asymmetric int8 activation tensor. Its range (`lo`, `hi`) is observed (min/max,
  like the TFLite converter's calibration), then learned; the range itself is written to
  `quant_ranges.json` and the forward pass uses the scale and zero point that the converter derives
  from it (`converter_scale_zero_point`: to the last bit, or a requantisation multiplier would differ
  and a few elements round the other way). A fixed quantiser (the int8 SOFTMAX output: scale 1/256,
  zero point -128) has no parameters.
* `weight_fake_quant`: symmetric per-output-channel int8 with scale max|w| / 127, as the converter
  quantises CONV_2D / FULLY_CONNECTED weights; `bias_fake_quant`: the int32 grid of scale
  in_scale * w_scale; `const_fake_quant`: a constant operand (pos_embed) over its own min/max.

Rounding is half away from zero, as TFLite's requantisation. With `EXPORT.onnx` set, the same
quantisers are written with torch's fake-quantise ops, which torch.onnx exports as standard
QuantizeLinear/DequantizeLinear pairs.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

QMIN, QMAX = -128, 127
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
MIN_WIDTH = 1e-8  # the narrowest range (TfVit uses the same)


class _ExportFlag(threading.local):
    onnx: bool = False


EXPORT = _ExportFlag()


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, ties away from zero, with a straight-through gradient."""
    rounded = torch.sign(x) * torch.floor(x.abs() + 0.5)
    return x + (rounded - x).detach()


def widened(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The quantised range of [lo, hi]: widened to contain 0 and at least MIN_WIDTH wide."""
    lo = lo.clamp(max=0.0)
    return lo, torch.maximum(hi.clamp(min=0.0), lo + MIN_WIDTH)


def scale_zero_point(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """TensorFlow FakeQuant nudging of [lo, hi] (widened to contain 0): (scale, int8 zero point)."""
    lo, hi = widened(lo, hi)
    scale = (hi - lo) / (QMAX - QMIN)
    zero = round_half_away(QMIN - lo / scale).clamp(QMIN, QMAX)
    return scale, zero


def converter_scale_zero_point(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero point) the TFLite converter gives a FakeQuant of the float32 range [lo, hi] (widened to
    contain 0): (hi - lo) / 255 computed in double and stored as float32, which is one float32 step away
    from the float32 quotient on some ranges; the zero point from whichever end of the range has the
    smaller rounding error, rounded half away (MLIR's fakeQuantAttrsToType). The values are the
    converter's, the gradients those of `scale_zero_point`."""
    lo, hi = widened(lo, hi)
    scale, zero = scale_zero_point(lo, hi)
    with torch.no_grad():
        lo64, hi64 = lo.double(), hi.double()
        wide = (hi64 - lo64) / (QMAX - QMIN)
        use_min = QMAX + (hi64 / wide).abs() > -QMIN + (lo64 / wide).abs()
        exact = round_half_away(torch.where(use_min, QMIN - lo64 / wide, QMAX - hi64 / wide)).clamp(QMIN, QMAX)
    return scale + (wide.float() - scale).detach(), zero + (exact.float() - zero).detach()


def fake_quant(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: int = QMIN,
               qmax: int = QMAX) -> torch.Tensor:
    """Per-tensor affine fake quantisation (gradients to x inside the range, and to scale/zero)."""
    if EXPORT.onnx:
        return torch.fake_quantize_per_tensor_affine(x, float(scale.detach()), int(zero.detach()), qmin, qmax)
    q = (round_half_away(x / scale) + zero).clamp(qmin, qmax)
    return (q - zero) * scale


def int_codes(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """The int8 codes of an (already fake-quantised) tensor."""
    return (round_half_away(x / scale) + zero).clamp(QMIN, QMAX).detach().to(torch.int32)


class ActQuant(nn.Module):
    """An int8 activation quantiser: observes min/max, then fake-quantises with a learned range."""

    def __init__(self, fixed: tuple[float, int] | None = None) -> None:
        super().__init__()
        self.fixed = fixed
        self.lo = nn.Parameter(torch.tensor(0.0), requires_grad=fixed is None)
        self.hi = nn.Parameter(torch.tensor(0.0), requires_grad=fixed is None)
        self.observing = False
        self.seen = False

    def scale_zero_point(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero point) as the int8 model will have them."""
        if self.fixed is not None:
            return torch.tensor(self.fixed[0]), torch.tensor(float(self.fixed[1]))
        return converter_scale_zero_point(self.lo, self.hi)

    def learned_range(self) -> tuple[float, float]:
        """The range to write for TensorFlow's FakeQuant (float32 values, exact in JSON): the converter
        turns it into exactly `scale_zero_point()`, and loading it back gives the same quantiser."""
        with torch.no_grad():
            lo, hi = widened(self.lo, self.hi)
        return float(lo), float(hi)

    def observe(self, x: torch.Tensor) -> None:
        """Widen the range to cover `x` (calibration)."""
        with torch.no_grad():
            lo, hi = x.min(), x.max()
            if self.seen:
                lo, hi = torch.minimum(lo, self.lo), torch.maximum(hi, self.hi)
            self.lo.copy_(lo)
            self.hi.copy_(hi)
        self.seen = True

    def forward(self, x: torch.Tensor, record: dict[str, torch.Tensor] | None = None, name: str = "",
                observe: bool = True) -> torch.Tensor:
        if self.observing:  # calibration is a float pass, as the converter's
            if observe and self.fixed is None:
                self.observe(x)
            return x
        scale, zero = self.scale_zero_point()
        out = fake_quant(x, scale, zero)
        if record is not None and name:
            record[name] = int_codes(out, scale, zero)
        return out


def weight_fake_quant(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel (axis 0) int8 weights, scale max|w| / 127: (weights, scales)."""
    wide = (w.detach().abs().amax(dim=tuple(range(1, w.ndim))).double() / 127.0).clamp(min=1e-12)
    scale = wide.float()  # stored as float32; the converter rounds w / the double scale
    if EXPORT.onnx:
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, QMIN, QMAX), scale
    shape = (-1,) + (1,) * (w.ndim - 1)
    return _exact_round(w / scale.reshape(shape), w.detach().double() / wide.reshape(shape)).clamp(-127, 127) \
        * scale.reshape(shape), scale


def _exact_round(ratio: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """`ratio` rounded half away from zero, the rounding done on `exact` (the same ratio in double, as the
    converter computes it: in float32 a ratio a hair from .5 rounds the other way), gradient straight
    through."""
    with torch.no_grad():
        rounded = round_half_away(exact).to(ratio.dtype)
    return ratio + (rounded - ratio).detach()


def bias_fake_quant(b: torch.Tensor, in_scale: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """Bias on the int32 grid of scale in_scale * w_scale (per output channel)."""
    step = (in_scale.detach() * w_scale).clamp(min=1e-20)
    wide = (in_scale.detach().double() * w_scale.double()).clamp(min=1e-20)
    return _exact_round(b / step, b.detach().double() / wide) * step


def const_fake_quant(t: torch.Tensor) -> torch.Tensor:
    """A constant operand quantised per tensor over its own [min, max] (how the converter stores it)."""
    scale, zero = scale_zero_point(t.detach().min(), t.detach().max())
    return fake_quant(t, scale, zero)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: `real` = multiplier * 2^(shift - 31), multiplier a Q31 int32."""
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)
    multiplier = int(math.copysign(math.floor(abs(fraction) * (1 << 31) + 0.5), fraction))  # TfLiteRound: ties away
    if multiplier == 1 << 31:
        multiplier, shift = multiplier // 2, shift + 1
    return multiplier, shift


def multiply_by_quantized_multiplier(x: torch.Tensor, real: float) -> torch.Tensor:
    """TFLite's MultiplyByQuantizedMultiplier on int64 `x` by the real multiplier `real`."""
    return multiply_q31(x, *quantize_multiplier(real))


def high_mul(a: torch.Tensor | int, b: torch.Tensor | int) -> torch.Tensor:
    """gemmlowp SaturatingRoundingDoublingHighMul of int32 values held in int64: a * b * 2^-31, rounded."""
    a, b = torch.as_tensor(a, dtype=torch.long), torch.as_tensor(b, dtype=torch.long)
    product = a * b
    nudge = torch.where(product >= 0, 1 << 30, 1 - (1 << 30))
    high = torch.div(product + nudge, 1 << 31, rounding_mode="trunc")
    return torch.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, high)


def divide_by_pot(x: torch.Tensor, exponent: int | torch.Tensor) -> torch.Tensor:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero (per element
    when `exponent` is a tensor)."""
    mask = (torch.ones_like(torch.as_tensor(exponent)) << exponent) - 1
    threshold = (mask >> 1) + (x < 0).long()
    return (x >> exponent) + ((x & mask) > threshold).long()


def multiply_q31(x: torch.Tensor, multiplier: int | torch.Tensor, shift: int | torch.Tensor) -> torch.Tensor:
    """TFLite's MultiplyByQuantizedMultiplier: x * multiplier * 2^(shift - 31) as a rounding doubling high
    multiply by the Q31 multiplier, then a rounding right shift (two roundings, as TFLite Micro's
    reference kernels do). Multipliers and shifts may be per channel or per element (tensors
    broadcasting against `x`)."""
    shift = torch.as_tensor(shift, dtype=torch.long)
    return divide_by_pot(high_mul(x << shift.clamp(min=0), multiplier), (-shift).clamp(min=0))


def _steps(x: torch.Tensor, scale: float) -> torch.Tensor:
    """code - zero point of a fake-quantised tensor, as exact integers (int64)."""
    return torch.round(x.detach().double() / scale).long()


def product_codes(a: torch.Tensor, b: torch.Tensor, a_quant: tuple[float, float], b_quant: tuple[float, float],
                  out_quant: tuple[float, float], matmul: bool) -> torch.Tensor:
    """int8 codes of MUL (a * b) or BATCH_MATMUL (a @ b) of two fake-quantised tensors, requantised
    to `out_quant` exactly as TFLite's reference kernels (and TFLite Micro) do. Quants: (scale, zero)."""
    (sa, _), (sb, _), (so, zo) = a_quant, b_quant, out_quant
    ia, ib = _steps(a, sa).double(), _steps(b, sb).double()
    acc = torch.round(torch.matmul(ia, ib) if matmul else ia * ib).long()  # exact in float64 at these sizes
    # BATCH_MATMUL multiplies the two scales in float32 (GetQuantizedConvolutionMultipler), MUL in double
    product = float(np.float32(sa) * np.float32(sb)) if matmul else sa * sb
    return (multiply_by_quantized_multiplier(acc, product / so) + int(zo)).clamp(QMIN, QMAX)


def mean_codes(x: torch.Tensor, in_quant: tuple[float, float], out_quant: tuple[float, float]) -> torch.Tensor:
    """int8 codes of MEAN over the last axis (keepdim) of a fake-quantised tensor, as TFLite's reference
    kernel (QuantizedMeanOrSum) computes it: the multiplier of in_scale/out_scale divided by the element
    count in integers, then MultiplyByQuantizedMultiplier of the zero-point-free sum."""
    (s_in, _), (s_out, z_out) = in_quant, out_quant
    count = x.shape[-1]
    multiplier, shift = quantize_multiplier(s_in / s_out)
    extra = min(count.bit_length() - 1, 32, 31 + shift)
    total = _steps(x, s_in).sum(dim=-1, keepdim=True)
    out = multiply_q31(total, (multiplier << extra) // count, shift - extra) + int(z_out)
    return out.clamp(QMIN, QMAX)


def linear_codes(acc: torch.Tensor, in_scale: float, w_scales: torch.Tensor, out_quant: tuple[float, float],
                 relu: bool = False) -> torch.Tensor:
    """int8 codes of a CONV_2D / FULLY_CONNECTED from its int32 accumulator `acc` (channels last):
    per-channel Q31 multipliers of in_scale * w_scale / out_scale, applied with two roundings (TFLite
    Micro's reference kernels; LiteRT's reference FULLY_CONNECTED rounds once); a fused ReLU clamps at
    the zero point."""
    s_out, z_out = out_quant
    pairs = [quantize_multiplier(in_scale * float(w) / s_out) for w in w_scales]
    multipliers = torch.tensor([m for m, _ in pairs], dtype=torch.long)
    shifts = torch.tensor([e for _, e in pairs], dtype=torch.long)
    out = multiply_q31(acc, multipliers, shifts)
    return (out + int(z_out)).clamp(int(z_out) if relu else QMIN, QMAX)


def integer_accumulator(x: torch.Tensor, in_scale: float, weight: torch.Tensor, w_scales: torch.Tensor,
                        bias: torch.Tensor, op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The int32 accumulator of a layer: `op`(input codes - zero point, weight codes) + bias codes, all
    fake-quantised tensors turned back into exact integers (computed in float64, exact at these sizes)."""
    shape = (-1,) + (1,) * (weight.ndim - 1)
    w_codes = torch.round(weight.detach().double() / w_scales.double().reshape(shape))
    b_codes = torch.round(bias.detach().double() / (in_scale * w_scales.double()))
    return torch.round(op(_steps(x, in_scale).double(), w_codes)).long() + b_codes.long()


def add_codes(a: torch.Tensor, b: torch.Tensor, a_quant: tuple[float, float], b_quant: tuple[float, float],
              out_quant: tuple[float, float], subtract: bool = False) -> torch.Tensor:
    """int8 codes of ADD (or SUB) of two fake-quantised tensors as TFLite's reference kernel computes them:
    both inputs shifted left by 20 bits and rescaled to twice the larger input scale, summed, then
    rescaled to the output (each rescale a MultiplyByQuantizedMultiplier)."""
    (sa, _), (sb, _), (so, zo) = a_quant, b_quant, out_quant
    twice = 2.0 * max(sa, sb)
    scaled_a = multiply_q31(_steps(a, sa) << 20, *quantize_multiplier(sa / twice))
    scaled_b = multiply_q31(_steps(b, sb) << 20, *quantize_multiplier(sb / twice))
    total = scaled_a - scaled_b if subtract else scaled_a + scaled_b
    return (multiply_q31(total, *quantize_multiplier(twice / ((1 << 20) * so))) + int(zo)).clamp(QMIN, QMAX)


def const_quant(t: torch.Tensor) -> tuple[float, float]:
    """(scale, zero point) the converter gives a constant operand (per tensor, over its own min/max)."""
    scale, zero = scale_zero_point(t.detach().min(), t.detach().max())
    return float(scale), float(zero)


def scalar_quant(value: float) -> tuple[float, float]:
    """(scale, zero point) the converter gives a positive scalar constant such as LayerNorm's eps: the
    range [-value/2, value] (read off converted models: eps 1e-6 -> scale 1.5e-6/255, zero point -43)."""
    scale, zero = scale_zero_point(torch.tensor(-value / 2), torch.tensor(value))
    return float(scale), float(zero)
