"""The int8 SOFTMAX and RSQRT of TFLite's reference kernels (and TFLite Micro's), bit for bit, on torch int64.

`reference_ops::Softmax` for int8 works in gemmlowp fixed point: each input's difference from its
row's maximum is rescaled to Q5.26 by `beta x input_scale`, exponentiated by a Taylor polynomial
on [-1/4, 0) and a barrel shifter of exp(-2^k) constants, summed in Q12.19, inverted by three
Newton-Raphson steps, and the product rescaled to the output scale 1/256, zero point -128.
Differences below `diff_min` (where exp is negligible) give -128. The int8 RSQRT takes the input's
code minus its zero point through `GetInvSqrtQuantizedMultiplierExp` (five Newton-Raphson steps in
Q3.28) and two requantisations. A float softmax or rsqrt fake-quantised differs from these by a
step on a few elements; those steps grow in the tensors after them (the LayerNorm means most), so
QAT's integer reference runs these instead.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from edge.training.fake_quant import INT32_MAX, INT32_MIN, divide_by_pot, high_mul, multiply_q31, quantize_multiplier

SCALED_DIFF_INTEGER_BITS = 5  # Q5.26 input of exp()
ACCUMULATION_INTEGER_BITS = 12  # Q12.19 sum of the exps
# gemmlowp's exp(-2^k) multipliers in Q0.31, k = -2 .. 4 (exp_on_negative_values' barrel shifter)
EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401),
              (4, 242))


def _multiply_by_pot(x: torch.Tensor, exponent: int) -> torch.Tensor:
    """gemmlowp SaturatingRoundingMultiplyByPOT: x * 2^exponent, saturating (up) or rounding (down)."""
    if exponent <= 0:
        return divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    shifted = x << exponent
    return torch.where(x > threshold, INT32_MAX, torch.where(x < -threshold, INT32_MIN, shifted))


def _bit_length(x: torch.Tensor) -> torch.Tensor:
    """Bits of non-negative int32 values (32 - CountLeadingZeros)."""
    return (x.unsqueeze(-1) >= (1 << torch.arange(32))).sum(dim=-1)


def _wrap(x: torch.Tensor) -> torch.Tensor:
    """int32 wrap-around of an int64 sum (gemmlowp's raw + and -)."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _exp_quarter(a: torch.Tensor) -> torch.Tensor:
    """exp(a) for Q0.31 `a` in [-1/4, 0): Taylor expansion around -1/8 (Q0.31 result)."""
    constant_term, one_third = 1895147668, 715827883  # exp(-1/8), 1/3 in Q0.31
    x = _wrap(a + (1 << 28))
    x2 = high_mul(x, x)
    x3 = high_mul(x2, x)
    x4 = high_mul(x2, x2)
    x4_over_4 = divide_by_pot(x4, 2)
    poly = divide_by_pot(_wrap(high_mul(_wrap(x4_over_4 + x3), one_third) + x2), 1)
    return _wrap(constant_term + high_mul(constant_term, _wrap(x + poly)))


def exp_on_negative_values(a: torch.Tensor) -> torch.Tensor:
    """gemmlowp exp_on_negative_values of Q5.26 `a` <= 0, as Q0.31."""
    fractional = 31 - SCALED_DIFF_INTEGER_BITS
    quarter = 1 << (fractional - 2)
    mod_quarter = _wrap((a & (quarter - 1)) - quarter)
    result = _exp_quarter(_multiply_by_pot(mod_quarter, SCALED_DIFF_INTEGER_BITS))
    remainder = _wrap(mod_quarter - a)
    for exponent, multiplier in EXP_BARREL:
        bit = 1 << (fractional + exponent)
        result = torch.where((remainder & bit) != 0, high_mul(result, multiplier), result)
    return torch.where(a == 0, torch.tensor(INT32_MAX), result)


def _one_over_one_plus_x(a: torch.Tensor) -> torch.Tensor:
    """gemmlowp one_over_one_plus_x_for_x_in_0_1 of Q0.31 `a` (Newton-Raphson), as Q0.31."""
    half_denominator = torch.div(a + INT32_MAX + torch.where(a + INT32_MAX >= 0, 1, -1), 2, rounding_mode="trunc")
    one_q2 = 1 << 29
    x = _wrap(1515870810 + high_mul(half_denominator, -1010580540))  # 48/17 - 32/17 d, Q2.29
    for _ in range(3):
        error = _wrap(one_q2 - high_mul(half_denominator, x))
        x = _wrap(x + _multiply_by_pot(high_mul(x, error), 2))
    return _multiply_by_pot(x, 1)  # ExactMulByPot<-1> (Q2.29 -> Q1.30, same raw), then Rescale<0>


def _reciprocal(total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """TFLite GetReciprocal of a Q12.19 sum: (Q0.31 scale, num_bits_over_unit)."""
    leading = 32 - _bit_length(total)  # CountLeadingZeros
    bits_over_unit = ACCUMULATION_INTEGER_BITS - leading
    shifted_minus_one = _wrap(((total << leading) & 0xFFFFFFFF) - (1 << 31))
    return _one_over_one_plus_x(shifted_minus_one), bits_over_unit


def softmax_params(input_scale: float, beta: float = 1.0) -> tuple[int, int, int]:
    """TFLite PreprocessSoftmaxScaling and CalculateInputRadius: (multiplier, left shift, diff_min)."""
    real = min(beta * input_scale * (1 << (31 - SCALED_DIFF_INTEGER_BITS)), (1 << 31) - 1.0)
    multiplier, shift = quantize_multiplier(real)  # QuantizeMultiplierGreaterThanOne
    radius = ((1 << SCALED_DIFF_INTEGER_BITS) - 1) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)) / (1 << shift)
    return multiplier, shift, -math.floor(radius)


def softmax_codes(codes: torch.Tensor, input_scale: float) -> torch.Tensor:
    """int8 SOFTMAX over the last axis of int8 `codes` (any zero point: only differences count) with
    input scale `input_scale`: output codes at scale 1/256, zero point -128."""
    multiplier, left_shift, diff_min = softmax_params(input_scale)
    diff = codes.long() - codes.long().amax(dim=-1, keepdim=True)
    used = diff >= diff_min
    exps = exp_on_negative_values(high_mul(diff * (1 << left_shift), multiplier))
    total = torch.where(used, divide_by_pot(exps, ACCUMULATION_INTEGER_BITS), 0).sum(dim=-1, keepdim=True)
    scale, bits_over_unit = _reciprocal(total)
    out = high_mul(scale, exps)
    out = divide_by_pot(out, bits_over_unit + 31 - 8) - 128
    return torch.where(used, out.clamp(-128, 127), -128)


def _inv_sqrt(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """TFLite GetInvSqrtQuantizedMultiplierExp of int32 `value` (< 2^29) with reverse shift -1:
    (Q0.31 multiplier, shift)."""
    small = value <= 1  # 0 and 1: INT32_MAX, shift 0
    value = torch.where(small, torch.tensor(4), value)
    pairs = (31 - _bit_length(value)) // 2 - 1  # (CountLeadingZeros - 1) / 2 - 1
    shift = 11 - pairs
    fixed = (value << (2 * pairs)) >> 1  # Q3.28
    half = divide_by_pot(fixed, 1)
    half_three = (1 << 28) + (1 << 27)
    x = torch.full_like(value, 1 << 28)
    for _ in range(5):
        x3 = _multiply_by_pot(high_mul(high_mul(x, x), x), 6)
        x = _multiply_by_pot(_wrap(high_mul(half_three, x) - high_mul(half, x3)), 3)
    x = high_mul(x, 1518500250)  # x sqrt(2) / 2
    x = torch.where(shift < 0, x << (-shift).clamp(min=0), x)
    shift = torch.where(shift < 0, 0, shift)
    return torch.where(small, INT32_MAX, x), torch.where(small, 0, -shift)


def rsqrt_codes(codes: torch.Tensor, in_quant: tuple[float, float], out_quant: tuple[float, float]) -> torch.Tensor:
    """int8 RSQRT of int8 `codes` (`in_quant`, `out_quant`: scale and zero point) as TFLite's kernel
    computes it; an input at the zero point gives 127."""
    (s_in, z_in), (s_out, z_out) = in_quant, out_quant
    scale = 1.0 / float(np.sqrt(np.float32(s_in)) * np.float32(s_out))  # SetRsqrtOutputMultiplier: float32
    multiplier, shift = quantize_multiplier(scale)
    table_in = torch.arange(-128, 128, dtype=torch.long)
    value = table_in - int(z_in)
    inv, inv_shift = _inv_sqrt(value.clamp(min=0))
    data = multiply_q31(torch.ones_like(value), inv, inv_shift + 20)
    out = multiply_q31(data, multiplier, shift - 20) + int(z_out)
    table = torch.where(value == 0, 127, out.clamp(-128, 127))
    return table[codes.long() + 128]
