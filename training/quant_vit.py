"""QAT that is the integer graph: a torch mirror of the int8 TFLite model of a ViT-lite.

`QuantVit` wraps a plain `VitLite` (whose float weights are what QAT trains and what the qat stage
saves) and runs the forward pass op by op as `export/tf_vit.py` builds it and the TFLite converter
quantises it (checked against the converted model tensor by tensor, tests/test_qat_integer.py):

* input: centred pixels `(pixel - 128) / 127.5`, int8 scale 1/127.5 zero point 0 (fixed); the
  model's input normalisation folded into the patch convolution;
* every CONV_2D / FULLY_CONNECTED: per-output-channel symmetric int8 weights (max|w| / 127), int32
  bias on the grid in_scale * w_scale; the LayerNorm's gain and shift folded into the layers after
  it and D^-0.5 folded into q, as the converter folds them;
* the class token quantised with the patch embedding's scale (CONCATENATION shares it), pos_embed
  as an int8 constant over its own range;
* LayerNorm as mean, x - mean, d*d, mean, + eps, rsqrt, d * rsqrt, each tensor quantised;
* attention scores, the SOFTMAX output at its fixed scale 1/256 zero point -128, context, proj,
  both residual adds, fc1 with its ReLU fused, fc2, the final norm and the logits.

Every activation point of `integer_points(spec)` has an `ActQuant`; `calibrate` sets their ranges
from a float pass (min/max, as the converter would), after which they are learned with the weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edge.quant_ranges import FORMAT, ActivationRange, QuantRangesFile, integer_points
from edge.training.fake_quant import (
    EXPORT,
    ActQuant,
    add_codes,
    bias_fake_quant,
    const_fake_quant,
    const_quant,
    int_codes,
    integer_accumulator,
    linear_codes,
    mean_codes,
    product_codes,
    scalar_quant,
    weight_fake_quant,
)
from edge.training.int_kernels import rsqrt_codes, softmax_codes
from edge.training.models import VitLite
from edge.vit_spec import VitSpec

INPUT_SCALE = 1.0 / 127.5  # the int8 input is pixel - 128 (export/pixels.py)
SOFTMAX_QUANT = (1.0 / 256.0, -128)  # the int8 SOFTMAX kernel's output scale and zero point
FIXED = {"input": (INPUT_SCALE, 0)}


def _key(point: str) -> str:
    return point.replace(".", "/")  # module names cannot contain dots


class QuantVit(nn.Module):
    """Fake-quantised int8 forward pass of `model` (a VitLite with ReLU MLP), as TFLite runs it."""

    def __init__(self, model: VitLite, spec: VitSpec) -> None:
        super().__init__()
        if spec.act != "relu":
            raise ValueError(f"the integer-graph QAT (qat.scheme=tflite) mirrors the ReLU MLP only, the model "
                             f"has act={spec.act!r}")
        self.model = model
        self.spec = spec
        self.points = integer_points(spec)
        self.quant = nn.ModuleDict({_key(p): ActQuant(fixed=self._fixed(p)) for p in self.points})
        self._record: dict[str, torch.Tensor] | None = None  # set during forward(record=...)

    @staticmethod
    def _fixed(point: str) -> tuple[float, int] | None:
        return SOFTMAX_QUANT if point.endswith(".softmax") else FIXED.get(point)

    # -- modes and ranges -------------------------------------------------------------------
    def quantiser(self, point: str) -> ActQuant:
        """The quantiser of one activation point."""
        return self.quant[_key(point)]

    @property
    def observing(self) -> bool:
        """True while calibrating: a float forward pass that records min/max at every point."""
        return self.quantiser("input").observing

    def set_observing(self, on: bool) -> None:
        """Switch calibration on (float pass, ranges observed) or off (fake quantisation)."""
        for module in self.quant.values():
            module.observing = on

    def learned_points(self) -> list[str]:
        """The points whose range is learned (not fixed by construction or by the kernel)."""
        return [p for p in self.points if self.quantiser(p).fixed is None]

    def ranges_file(self) -> QuantRangesFile:
        """quant_ranges.json (format 2): the learned range of every learned point.

        Weights carry no ranges: they are quantised per channel by max|w| in QAT exactly as the
        converter quantises them, so there is nothing to clip.
        """
        activations = {}
        for point in self.learned_points():
            lo, hi = self.quantiser(point).learned_range()
            activations[point] = ActivationRange(min=lo, max=hi)
        return QuantRangesFile(format=FORMAT, activation_bits=8, activations=activations)

    def load_ranges(self, ranges: QuantRangesFile) -> None:
        """Set the learned ranges from a format-2 `quant_ranges.json` (e.g. to inspect a finished run)."""
        if ranges.format != FORMAT:
            raise ValueError(f"ranges of format {ranges.format!r} name other tensors; {FORMAT!r} is needed")
        with torch.no_grad():
            for name, item in ranges.activations.items():
                self.quantiser(name).lo.fill_(item.min)
                self.quantiser(name).hi.fill_(item.max)

    # -- building blocks ---------------------------------------------------------------------
    def _q(self, point: str, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantise `x` at `point` (recording its codes when asked)."""
        return self.quantiser(point)(x, self._record, point)

    def _quants(self, *points: str) -> list[tuple[float, float]]:
        """(scale, zero point) of each point, as plain floats."""
        with torch.no_grad():
            return [tuple(float(t) for t in self.quantiser(p).scale_zero_point()) for p in points]

    def _exact(self, point: str, x: torch.Tensor, codes: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Fake-quantise `x` at `point`; in eval mode the value is replaced by `codes()`, the int8 result of
        TFLite's reference kernel (which rounds differently from float). Training steps keep the float
        simulation (at most a step apart on a few elements, several times cheaper); evaluation, model
        selection and the reference logits use the integer arithmetic."""
        y = self.quantiser(point)(x)
        if self.observing or EXPORT.onnx or self.training:
            return y
        with torch.no_grad():
            exact = codes()
            scale, zero = self._quants(point)[0]
        if self._record is not None:
            self._record[point] = exact.to(torch.int32)
        return y + (((exact - zero) * scale).to(y.dtype) - y).detach()

    def _mul(self, point: str, a: torch.Tensor, b: torch.Tensor, a_point: str, b_point: str,
             matmul: bool = False) -> torch.Tensor:
        """MUL or BATCH_MATMUL of two quantised tensors (TFLite requantises them with two roundings)."""
        return self._exact(point, torch.matmul(a, b) if matmul else a * b,
                           lambda: product_codes(a, b, *self._quants(a_point, b_point, point), matmul=matmul))

    def _add(self, point: str, a: torch.Tensor, b: torch.Tensor, a_quant: tuple[float, float],
             b_quant: tuple[float, float], subtract: bool = False) -> torch.Tensor:
        """ADD or SUB of two quantised tensors (`a_quant`, `b_quant`: their scale and zero point)."""
        return self._exact(point, a - b if subtract else a + b,
                           lambda: add_codes(a, b, a_quant, b_quant, self._quants(point)[0], subtract))

    def _mean(self, point: str, x: torch.Tensor, in_point: str) -> torch.Tensor:
        """MEAN over the last axis (the reference kernel's integer arithmetic)."""
        return self._exact(point, x.mean(dim=-1, keepdim=True), lambda: mean_codes(x, *self._quants(in_point, point)))

    def _softmax(self, point: str, x: torch.Tensor, in_point: str) -> torch.Tensor:
        """SOFTMAX over the last axis at the kernel's fixed output scale (the reference kernel's fixed-point
        arithmetic, `int_kernels`)."""
        return self._exact(point, x.softmax(dim=-1),
                           lambda: softmax_codes(self._codes(in_point, x), self._quants(in_point)[0][0]))

    def _codes(self, point: str, x: torch.Tensor) -> torch.Tensor:
        """The int8 codes of `x`, already fake-quantised at `point`."""
        with torch.no_grad():
            return int_codes(x, *self.quantiser(point).scale_zero_point())

    def _linear(self, x: torch.Tensor, in_point: str, out_point: str, layer: nn.Linear,
                norm: nn.LayerNorm | None = None, scale: float = 1.0, relu: bool = False) -> torch.Tensor:
        """FULLY_CONNECTED (+ fused ReLU) with the preceding LayerNorm's gain/shift (and `scale`) folded
        in, its output quantised at `out_point`."""
        weight, bias = layer.weight * scale, layer.bias * scale  # first, in float32, as export/tf_vit.py folds it
        if norm is not None:
            bias = bias + weight @ norm.bias
            weight = weight * norm.weight[None, :]
        if self.observing:
            y = F.linear(x, weight, bias)
            return self._q(out_point, F.relu(y) if relu else y)
        weight_q, w_scale = weight_fake_quant(weight)
        in_scale = self.quantiser(in_point).scale_zero_point()[0]
        bias_q = bias_fake_quant(bias, in_scale, w_scale)
        y = F.linear(x, weight_q, bias_q)

        def codes() -> torch.Tensor:
            acc = integer_accumulator(x, float(in_scale), weight_q, w_scale, bias_q, lambda a, w: a @ w.T)
            return linear_codes(acc, float(in_scale), w_scale, self._quants(out_point)[0], relu)

        return self._exact(out_point, F.relu(y) if relu else y, codes)

    def _conv(self, x: torch.Tensor, in_point: str, out_point: str, conv: nn.Conv2d, stride: int,
              layout: Callable[[torch.Tensor], torch.Tensor], same_pad: bool = False,
              relu: bool = False) -> torch.Tensor:
        """CONV_2D (+ fused ReLU) of a quantised NCHW tensor, its output quantised at `out_point` in the
        channels-last `layout` (tokens [B, N, E] or NHWC); the input normalisation is folded into the
        layer that sees the input. `same_pad`: TensorFlow's SAME padding for a 3x3 stride-2 conv (one
        row and column after), padded with the int8 zero point (real value 0), as TFLite pads."""
        weight, bias = conv.weight, conv.bias
        if in_point == "input":
            gain, offset = self.spec.centred_input_map  # model input = gain * x_in + offset
            weight, bias = weight * gain, bias + offset * weight.sum(dim=(1, 2, 3))

        def conv_op(a: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            return layout(F.conv2d(F.pad(a, (0, 1, 0, 1)) if same_pad else a, w, b, stride=stride))

        if self.observing:
            y = conv_op(x, weight, bias)
            return self._q(out_point, F.relu(y) if relu else y)
        in_scale = self.quantiser(in_point).scale_zero_point()[0]
        weight, w_scale = weight_fake_quant(weight)
        bias = bias_fake_quant(bias, in_scale, w_scale)
        y = conv_op(x, weight, bias)

        def codes() -> torch.Tensor:
            acc = integer_accumulator(x, float(in_scale), weight, w_scale, bias, conv_op)
            return linear_codes(acc, float(in_scale), w_scale, self._quants(out_point)[0], relu)

        return self._exact(out_point, F.relu(y) if relu else y, codes)

    def _tokens(self, x_in: torch.Tensor) -> torch.Tensor:
        """Stem convs (NHWC codes, ReLU fused), the patch embedding, the class token (quantised with the
        patch embedding's scale: CONCATENATION shares it) and pos_embed (an int8 constant over its own
        range) added: the `tokens` point."""
        spec, model = self.spec, self.model
        x, in_point = x_in, "input"
        for i, layer in enumerate(model.patch_embed.stem):
            nhwc = self._conv(x, in_point, f"stem.{i}", layer.conv, 2, lambda t: t.permute(0, 2, 3, 1),
                              same_pad=True, relu=True)
            x, in_point = nhwc.permute(0, 3, 1, 2), f"stem.{i}"
        x = self._conv(x, in_point, "patch_embed", model.patch_embed.proj, spec.patch_size,
                       lambda t: t.flatten(2).transpose(1, 2))  # [B, E, g, g] -> [B, N, E], TF's NHWC order
        if spec.class_token:
            cls = self.quantiser("patch_embed")(model.cls_token.expand(x.shape[0], -1, -1), observe=False)
            x = torch.cat([cls, x], dim=1)
        pos = model.pos_embed if self.observing else const_fake_quant(model.pos_embed)
        return self._add("tokens", x, pos, self._quants("patch_embed")[0], const_quant(model.pos_embed))

    def _norm(self, x: torch.Tensor, name: str, in_point: str) -> torch.Tensor:
        """LayerNorm without its gain and shift (folded into the next layers), every tensor quantised."""
        mean = self._mean(f"{name}.mean", x, in_point)
        centred = self._add(f"{name}.centred", x, mean, *self._quants(in_point, f"{name}.mean"), subtract=True)
        square = self._mul(f"{name}.square", centred, centred, f"{name}.centred", f"{name}.centred")
        var = self._mean(f"{name}.var", square, f"{name}.square")
        eps = self.spec.norm_eps
        var_eps = self._add(f"{name}.var_eps", var, torch.full_like(var, eps), self._quants(f"{name}.var")[0],
                            scalar_quant(eps))
        rstd = self._exact(f"{name}.rstd", torch.rsqrt(var_eps.clamp(min=1e-30)),  # int8 RSQRT of 0 saturates
                           lambda: rsqrt_codes(self._codes(f"{name}.var_eps", var_eps),
                                               *self._quants(f"{name}.var_eps", f"{name}.rstd")))
        return self._mul(name, centred, rstd, f"{name}.centred", f"{name}.rstd")

    def _block(self, x: torch.Tensor, i: int) -> torch.Tensor:
        b, block = f"blocks.{i}", self.model.blocks[i]
        attn = block.attn
        batch, tokens, _ = x.shape
        heads, width = attn.num_heads, attn.head_dim

        def split(t: torch.Tensor) -> torch.Tensor:  # [B, N, H*D] -> [B, H, N, D]
            return t.reshape(batch, tokens, heads, width).transpose(1, 2)

        in_point = f"blocks.{i - 1}.add2" if i else "tokens"
        n1 = self._norm(x, f"{b}.norm1", in_point)
        qh = self._linear(n1, f"{b}.norm1", f"{b}.attn.q", attn.q, block.norm1, scale=width**-0.5)
        kh = self._linear(n1, f"{b}.norm1", f"{b}.attn.k", attn.k, block.norm1)
        vh = self._linear(n1, f"{b}.norm1", f"{b}.attn.v", attn.v, block.norm1)
        scores = self._mul(f"{b}.attn.scores", split(qh), split(kh).transpose(-2, -1), f"{b}.attn.q",
                           f"{b}.attn.k", matmul=True)
        probs = self._softmax(f"{b}.attn.softmax", scores, f"{b}.attn.scores")
        context = self._mul(f"{b}.attn.context", probs, split(vh), f"{b}.attn.softmax", f"{b}.attn.v", matmul=True)
        context = context.transpose(1, 2).reshape(batch, tokens, heads * width)
        proj = self._linear(context, f"{b}.attn.context", f"{b}.attn.proj", attn.proj)
        x = self._add(f"{b}.add1", x, proj, *self._quants(in_point, f"{b}.attn.proj"))
        n2 = self._norm(x, f"{b}.norm2", f"{b}.add1")
        hidden = self._linear(n2, f"{b}.norm2", f"{b}.mlp.act", block.mlp.fc1, block.norm2, relu=True)
        fc2 = self._linear(hidden, f"{b}.mlp.act", f"{b}.mlp.fc2", block.mlp.fc2)
        return self._add(f"{b}.add2", x, fc2, *self._quants(f"{b}.add1", f"{b}.mlp.fc2"))

    def _seq_pool(self, x: torch.Tensor, in_point: str) -> torch.Tensor:
        """Sequence pooling: a softmax over the tokens of one FC score each, then the tokens' weighted mean
        by BATCH_MATMUL: [B, N, E] -> [B, E] (the `pool.context` point)."""
        score = self._linear(x, in_point, "pool.score", self.model.seq_pool.score)  # [B, N, 1]
        weights = self._softmax("pool.softmax", score.transpose(1, 2), "pool.score")  # [B, 1, N]
        return self._mul("pool.context", weights, x, "pool.softmax", in_point, matmul=True).flatten(1)

    # -- the whole model ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor, record: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Model input `(pixel/255 - mean)/std` NCHW -> logits; `record` collects every point's int8 codes."""
        self._record = record
        try:
            return self._forward(x)
        finally:
            self._record = None

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        spec, model, q = self.spec, self.model, self._q
        x = self._tokens(q("input", ((x * spec.input_std + spec.input_mean) * 255.0 - 128.0) * INPUT_SCALE))
        for i in range(len(model.blocks)):
            x = self._block(x, i)
        last = f"blocks.{len(model.blocks) - 1}.add2"
        if spec.pool == "seq":  # timm's fc_norm: the final LayerNorm after pooling
            normed = self._norm(self._seq_pool(x, last), "norm", "pool.context")
            return self._linear(normed, "norm", "head", model.head, model.fc_norm)
        normed = self._norm(x[:, 0], "norm", last)  # class token by slice
        return self._linear(normed, "norm", "head", model.head, model.norm)


@torch.no_grad()
def calibrate(qvit: QuantVit, calib_x: torch.Tensor, batch_size: int = 25) -> None:
    """Set every learned range to the min/max of a float pass over `calib_x` (the converter's rule)."""
    was_training = qvit.training
    qvit.eval()
    qvit.set_observing(True)
    try:
        for start in range(0, len(calib_x), batch_size):
            qvit(calib_x[start : start + batch_size])
    finally:
        qvit.set_observing(False)
        qvit.train(was_training)


def weight_layers(qvit: QuantVit) -> int:
    """CONV_2D / FULLY_CONNECTED layers (each has per-channel int8 weights and an int32 bias)."""
    return sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in qvit.model.modules())


def export_qdq_onnx(qvit: QuantVit, path: str | os.PathLike[str], opset: int = 17) -> Path:
    """Write the fake-quant model as standard QuantizeLinear/DequantizeLinear ONNX (atomically)."""
    import warnings

    import onnx

    from edge.atomic import atomic_path

    spec = qvit.spec
    example = torch.zeros(1, spec.in_chans, spec.img_size, spec.img_size)
    qvit.eval()
    EXPORT.onnx = True
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # scales and zero points become constants
            torch.onnx.export(qvit, (example,), str(tmp), dynamo=False, opset_version=max(opset, 13),
                              input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
            onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
    finally:
        EXPORT.onnx = False
    return Path(path)
