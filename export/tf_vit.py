"""The ViT-lite forward pass in plain TensorFlow ops, rebuilt from a VitSpec and numpy weights.

No torch here: weights come from safetensors via `safetensors.numpy`. The graph is written in the
form TensorFlow Lite Micro runs (docs/export.md): tanh GELU, <= 4-D tensors, class token by slice
(or sequence pooling: FC score, SOFTMAX over the tokens, BATCH_MATMUL), a convolutional tokenizer's
stem as 3x3 stride-2 SAME CONV_2D + ReLU, LayerNorm as d * rsqrt(mean(d*d) + eps).
Two exact rewrites make the int8 model cheaper:

* The graph input is *centred pixels* `x_in = (pixel - 128) / 127.5`, so the int8 input tensor
  (scale 1/127.5, zero point 0) is exactly `pixel - 128` (a firmware XORs each byte with 0x80).
  The affine map to the model's own normalisation `(pixel/255 - mean)/std` is folded into the
  weights and bias of the convolution that sees the input (`first_conv`: the stem's or the patch
  embedding's); SAME padding pads the int8 zero, pixel 128, which the torch stem pads with too.
* The attention scale D^-0.5 is folded into the q projection (and into q's learned range).

`ranges` (point name -> (min, max), names of the int8 graph: `quant_ranges.json` format 2, see
`graph_ranges` in export/apply_ranges.py for format 1) inserts
`tf.quantization.fake_quant_with_min_max_vars` at the named points (`integer_points` in
edge/quant_ranges.py lists them; `points` records those this graph has); the TFLite converter keeps
those ranges and calibrates every other tensor on the representative data set. LayerNorm is
`d = x - mean(x); d * rsqrt(mean(d*d) + eps)` with a point on every tensor, then `* gain + shift`,
which the converter folds into the FULLY_CONNECTED layers that follow (no point there).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from edge.export.pixels import INPUT_POINT, INPUT_RANGE
from edge.vit_spec import VitSpec

# The int8 SOFTMAX kernel fixes its output to scale 1/256, zero point -128; a FakeQuant with any other
# range there would make the converter requantise through float. QAT ranges for it are not applied.
KERNEL_FIXED_SUFFIX = "softmax"  # attn.softmax of every block, and pool.softmax


def load_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """safetensors file -> {name: float32 array} (numpy only)."""
    from safetensors.numpy import load_file

    return {k: np.asarray(v, dtype=np.float32) for k, v in load_file(str(path)).items()}


class TfVit:
    """Builds the TensorFlow forward pass of one ViT-lite (weights held as tf constants)."""

    def __init__(self, spec: VitSpec, weights: dict[str, np.ndarray],
                 ranges: dict[str, tuple[float, float]] | None = None, quantize_input: bool = True) -> None:
        self.spec = spec
        self.w = _prepare_weights(spec, weights)
        self.ranges = dict(ranges or {})
        if quantize_input:
            self.ranges[INPUT_POINT] = INPUT_RANGE
        self.used_points: list[str] = []
        self.points: list[str] = []  # every point of the graph, in order (after a call)

    # -- building blocks -------------------------------------------------------------------
    def _fq(self, x: tf.Tensor, point: str) -> tf.Tensor:
        """Fake-quantise `x` with the learned range of `point`, if there is one."""
        if point not in self.points:
            self.points.append(point)
        if point not in self.ranges or point.endswith(KERNEL_FIXED_SUFFIX):
            return x
        lo, hi = self.ranges[point]
        lo, hi = min(lo, 0.0), max(hi, 0.0)  # a quantised range must contain 0
        if hi - lo < 1e-8:
            hi = lo + 1e-8
        if point not in self.used_points:
            self.used_points.append(point)
        return tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8, narrow_range=False,
                                                            name=f"fq/{point}")

    def _dense(self, x: tf.Tensor, name: str) -> tf.Tensor:
        """Linear layer on [B, N, E] (as a 2-D FULLY_CONNECTED) or [B, E]."""
        kernel, bias = self.w[f"{name}.weight"], self.w[f"{name}.bias"]
        shape = x.shape
        flat = tf.reshape(x, [-1, shape[-1]]) if len(shape) == 3 else x
        out = tf.matmul(flat, kernel) + bias
        return tf.reshape(out, [-1, shape[1], kernel.shape[-1]]) if len(shape) == 3 else out

    def _norm(self, x: tf.Tensor, name: str, weights: str | None = None) -> tf.Tensor:
        """LayerNorm as TFLite runs it, a point on every tensor (gain and shift, the weights `weights`
        (default `name`), fold into the next FC)."""
        d = self._fq(x - self._fq(tf.reduce_mean(x, axis=-1, keepdims=True), f"{name}.mean"), f"{name}.centred")
        var = self._fq(tf.reduce_mean(self._fq(d * d, f"{name}.square"), axis=-1, keepdims=True), f"{name}.var")
        rstd = self._fq(tf.math.rsqrt(self._fq(var + self.spec.norm_eps, f"{name}.var_eps")), f"{name}.rstd")
        key = weights or name
        return self._fq(d * rstd, name) * self.w[f"{key}.weight"] + self.w[f"{key}.bias"]

    def _act(self, x: tf.Tensor) -> tf.Tensor:
        act = self.spec.act
        if act == "gelu_tanh":  # 0.5 x (1 + tanh(c (x + 0.044715 x^3))), with no x^3 tensor: in int8 its
            # range would swamp small values; x * (1 + 0.044715 x^2) keeps every intermediate well scaled
            c = math.sqrt(2.0 / math.pi)
            inner = x * (c + (c * 0.044715) * (x * x))
            return x * (0.5 + 0.5 * tf.tanh(inner))
        if act == "relu":
            return tf.nn.relu(x)
        if act == "hardswish":
            return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)
        return x * tf.sigmoid(1.702 * x)  # quick_gelu

    def _attention(self, x: tf.Tensor, i: int) -> tf.Tensor:
        b = f"blocks.{i}.attn"
        block = self.spec.blocks[i]
        heads, width, tokens = block.num_heads, block.head_dim, x.shape[1]

        def split(t: tf.Tensor) -> tf.Tensor:  # [B, N, H*D] -> [B, H, N, D]
            return tf.transpose(tf.reshape(t, [-1, tokens, heads, width]), [0, 2, 1, 3])

        q = self._fq(self._dense(x, f"{b}.q"), f"{b}.q")  # D^-0.5 is folded into q's weights
        k = self._fq(self._dense(x, f"{b}.k"), f"{b}.k")
        v = self._fq(self._dense(x, f"{b}.v"), f"{b}.v")
        scores = self._fq(tf.matmul(split(q), split(k), transpose_b=True), f"{b}.scores")
        probs = self._fq(tf.nn.softmax(scores, axis=-1), f"{b}.softmax")
        context = self._fq(tf.matmul(probs, split(v)), f"{b}.context")
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [-1, tokens, heads * width])
        return self._fq(self._dense(context, f"{b}.proj"), f"{b}.proj")

    def _seq_pool(self, x: tf.Tensor) -> tf.Tensor:
        """Sequence pooling: a softmax over the tokens of one FC score each, then the tokens' weighted mean
        by BATCH_MATMUL: [B, N, E] -> [B, E]."""
        score = self._fq(self._dense(x, "seq_pool.score"), "pool.score")  # [B, N, 1]
        weights = self._fq(tf.nn.softmax(tf.reshape(score, [-1, 1, x.shape[1]]), axis=-1), "pool.softmax")
        return tf.reshape(self._fq(tf.matmul(weights, x), "pool.context"), [-1, self.spec.embed_dim])

    # -- the whole model -------------------------------------------------------------------
    def _tokens(self, x_in: tf.Tensor) -> tf.Tensor:
        """Centred pixels -> stem convs -> patch embedding -> (class token) + position embedding."""
        spec = self.spec
        x = self._fq(x_in, INPUT_POINT)  # range fixed by construction (see module doc)
        for i in range(len(spec.stem_channels)):  # SAME padding pads the int8 zero: pixel 128 at the input
            x = tf.nn.conv2d(x, self.w[f"patch_embed.stem.{i}.conv.weight"], strides=2, padding="SAME")
            x = self._fq(tf.nn.relu(x + self.w[f"patch_embed.stem.{i}.conv.bias"]), f"stem.{i}")
        x = tf.nn.conv2d(x, self.w["patch_embed.proj.weight"], strides=spec.patch_size, padding="VALID")
        x = self._fq(x + self.w["patch_embed.proj.bias"], "patch_embed")
        x = tf.reshape(x, [-1, spec.grid * spec.grid, spec.embed_dim])
        if spec.class_token:
            cls = tf.broadcast_to(self.w["cls_token"], [x_in.shape[0], 1, spec.embed_dim])
            x = tf.concat([cls, x], axis=1)
        return self._fq(x + self.w["pos_embed"], "tokens")

    def __call__(self, x_in: tf.Tensor) -> tf.Tensor:
        """Centred pixels [B, H, W, C] -> logits [B, K]."""
        spec = self.spec
        x = self._tokens(x_in)
        for i in range(len(spec.blocks)):
            b = f"blocks.{i}"
            x = self._fq(x + self._attention(self._norm(x, f"{b}.norm1"), i), f"{b}.add1")
            h = self._dense(self._norm(x, f"{b}.norm2"), f"{b}.mlp.fc1")
            if spec.act != "relu":  # a ReLU is fused into the FULLY_CONNECTED: fc1 has no tensor of its own
                h = self._fq(h, f"{b}.mlp.fc1")
            h = self._fq(self._dense(self._fq(self._act(h), f"{b}.mlp.act"), f"{b}.mlp.fc2"), f"{b}.mlp.fc2")
            x = self._fq(x + h, f"{b}.add2")
        if spec.pool == "seq":  # timm's fc_norm: the final LayerNorm after pooling
            return self._fq(self._dense(self._norm(self._seq_pool(x), "norm", "fc_norm"), "head"), "head")
        x = tf.reshape(x[:, 0:1, :], [-1, spec.embed_dim])  # class token by slice (no GATHER)
        return self._fq(self._dense(self._norm(x, "norm"), "head"), "head")

    def concrete(self, batch: int = 1) -> Any:
        """A traced tf.function with a static input shape [batch, H, W, C]."""
        spec = self.spec
        signature = [tf.TensorSpec([batch, spec.img_size, spec.img_size, spec.in_chans], tf.float32, name="image")]
        fn: Callable[[tf.Tensor], tf.Tensor] = tf.function(lambda image: {"logits": self(image)},
                                                           input_signature=signature)
        return fn.get_concrete_function()


def first_conv(spec: VitSpec) -> str:
    """The layer that sees the input (the first stem conv, or the patch embedding): the input
    normalisation is folded into it."""
    return "patch_embed.stem.0.conv" if spec.stem_channels else "patch_embed.proj"


def _prepare_weights(spec: VitSpec, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Torch layouts -> TF layouts, with the input normalisation and q scale folded in."""
    out: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        if name.endswith(".weight") and value.ndim == 2:
            out[name] = np.ascontiguousarray(value.T)
        elif name.endswith(".weight") and value.ndim == 4:  # [O, I, kh, kw] -> [kh, kw, I, O]
            out[name] = np.ascontiguousarray(np.transpose(value, (2, 3, 1, 0)))
        else:
            out[name] = value
    first = first_conv(spec)
    conv = weights[f"{first}.weight"].astype(np.float64)  # [O, C, k, k]
    gain, offset = spec.centred_input_map  # x = gain * x_in + offset (module doc)
    out[f"{first}.weight"] = np.transpose(conv * gain, (2, 3, 1, 0)).astype(np.float32)
    out[f"{first}.bias"] = (weights[f"{first}.bias"] + offset * conv.sum(axis=(1, 2, 3))).astype(np.float32)
    for i, block in enumerate(spec.blocks):
        scale = np.float32(block.head_dim**-0.5)
        out[f"blocks.{i}.attn.q.weight"] = out[f"blocks.{i}.attn.q.weight"] * scale
        out[f"blocks.{i}.attn.q.bias"] = out[f"blocks.{i}.attn.q.bias"] * scale
    return out

