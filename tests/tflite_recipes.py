"""The TensorFlow side of tflite_models.py: run only as its child, `python tests/tflite_recipes.py OUT NAME...`.

Power models (random weights from one generator seeded 0, in the order asked: the cost model only
needs the graph): `tiny_int8`, `tiny_float` (conv + depthwise + pool + dense), `attn_int8` (dense +
batch matmul + softmax), `mobilenet_v1_025_int8` (MLPerf Tiny VWW architecture, 96x96x3),
`vit_pruned_int8` (a ViT-lite shaped like a pruned vit_lite_s: 64x64x1, patch 8, dim 64, 4 blocks,
~11 M MACs) and `vit_float` (the unpruned shape, dim 96, float32, ~23 M MACs).
Bridge models (`int8_cnn`, seeded by their own seed): a tiny CNN on a 16x16x1 image with 3 classes
whose dense layer grows the file to about `kb` kilobytes, or (`tiny`) one dense layer on 4 inputs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf
from tflite_models import BRIDGE_MODELS

INPUT_SHAPE = (16, 16, 1)
N_CLASSES = 3
RNG = np.random.default_rng(0)  # the power models' weights and calibration data, drawn in build order


def var(*shape: int, scale: float = 0.2) -> tf.Variable:
    """A weight of `shape` drawn from RNG."""
    return tf.Variable(RNG.normal(0, scale, shape).astype(np.float32))


class Tiny(tf.Module):
    def __init__(self) -> None:
        self.w1, self.b1 = var(3, 3, 1, 8), var(8)
        self.dw, self.b2 = var(3, 3, 8, 1), var(8)
        self.fc, self.b3 = var(8, 4), var(4)

    @tf.function
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.nn.relu(tf.nn.conv2d(x, self.w1, 1, "SAME") + self.b1)  # 32x32x8: 32*32*8*9 MACs
        x = tf.nn.relu(tf.nn.depthwise_conv2d(x, self.dw, [1, 2, 2, 1], "SAME") + self.b2)  # 16x16x8x9
        x = tf.nn.avg_pool2d(x, 16, 16, "VALID")
        return tf.matmul(tf.reshape(x, (1, 8)), self.fc) + self.b3

class Attn(tf.Module):
    def __init__(self) -> None:
        self.q, self.k, self.v = var(16, 16), var(16, 16), var(16, 16)

    @tf.function
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        x2 = tf.reshape(x, (10, 16))
        q = tf.reshape(tf.matmul(x2, self.q), (1, 10, 16))
        k = tf.reshape(tf.matmul(x2, self.k), (1, 10, 16))
        v = tf.reshape(tf.matmul(x2, self.v), (1, 10, 16))
        a = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * 0.25)
        return tf.matmul(a, v)

class MobileNetV1(tf.Module):
    def __init__(self, alpha: float = 0.25) -> None:
        def c(n: int) -> int:
            return int(n * alpha)

        self.stem = var(3, 3, 3, c(32), scale=0.1)
        plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
        self.blocks = []
        cin = c(32)
        for cout, stride in plan:
            self.blocks.append((var(3, 3, cin, 1, scale=0.1), var(1, 1, cin, c(cout), scale=0.1), stride))
            cin = c(cout)
        self.fc, self.fb = var(cin, 2, scale=0.1), var(2)

    @tf.function
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.nn.relu6(tf.nn.conv2d(x, self.stem, 2, "SAME"))
        for dw, pw, stride in self.blocks:
            x = tf.nn.relu6(tf.nn.depthwise_conv2d(x, dw, [1, stride, stride, 1], "SAME"))
            x = tf.nn.relu6(tf.nn.conv2d(x, pw, 1, "SAME"))
        x = tf.reduce_mean(x, axis=(1, 2))
        return tf.nn.softmax(tf.matmul(x, self.fc) + self.fb)

class VitLike(tf.Module):
    def __init__(self, dim: int, heads: int, mlp: int, depth: int = 4) -> None:
        self.dim, self.heads, self.hd = dim, heads, dim // heads
        self.patch, self.cls, self.pos = var(8, 8, 1, dim, scale=0.05), var(1, 1, dim), var(1, 65, dim)
        self.blocks = [
            {k: var(*shape, scale=0.05) for k, shape in
             {"q": (dim, dim), "k": (dim, dim), "v": (dim, dim), "o": (dim, dim),
              "f1": (dim, mlp), "f2": (mlp, dim)}.items()}
            for _ in range(depth)
        ]
        self.head = var(dim, 2, scale=0.05)

    def norm(self, x: tf.Tensor) -> tf.Tensor:
        d = x - tf.reduce_mean(x, axis=-1, keepdims=True)
        return d * tf.math.rsqrt(tf.reduce_mean(d * d, axis=-1, keepdims=True) + 1e-6)

    def split(self, t: tf.Tensor) -> tf.Tensor:
        return tf.transpose(tf.reshape(t, (1, 65, self.heads, self.hd)), (0, 2, 1, 3))

    @tf.function
    def __call__(self, img: tf.Tensor) -> tf.Tensor:
        x = tf.reshape(tf.nn.conv2d(img, self.patch, 8, "VALID"), (1, 64, self.dim))
        x = tf.concat([self.cls, x], axis=1) + self.pos
        for b in self.blocks:
            h = self.norm(x)
            q, k, v = (self.split(tf.matmul(h, b[n])) for n in ("q", "k", "v"))
            a = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * self.hd**-0.5)
            ctx = tf.reshape(tf.transpose(tf.matmul(a, v), (0, 2, 1, 3)), (1, 65, self.dim))
            x = x + tf.matmul(ctx, b["o"])
            h = tf.matmul(self.norm(x), b["f1"])
            h = 0.5 * h * (1 + tf.tanh(0.7978845608 * (h + 0.044715 * h * h * h)))
            x = x + tf.matmul(h, b["f2"])
        return tf.matmul(tf.reshape(self.norm(x)[:, 0:1], (1, self.dim)), self.head)


POWER_RECIPES: dict[str, tuple[Callable[[], tf.Module], tuple[int, ...], bool]] = {
    "tiny_int8": (Tiny, (1, 32, 32, 1), True),
    "tiny_float": (Tiny, (1, 32, 32, 1), False),
    "attn_int8": (Attn, (1, 10, 16), True),
    "mobilenet_v1_025_int8": (MobileNetV1, (1, 96, 96, 3), True),
    "vit_pruned_int8": (lambda: VitLike(64, 2, 128), (1, 64, 64, 1), True),
    "vit_float": (lambda: VitLike(96, 3, 192), (1, 64, 64, 1), False),
}


def convert(module: tf.Module, shape: tuple[int, ...], int8: bool) -> bytes:
    """`module` traced at `shape`, converted to TFLite (full-integer, calibrated on RNG draws, when `int8`)."""
    concrete = module.__call__.get_concrete_function(tf.TensorSpec(shape, tf.float32))
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    if int8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: (
            [RNG.uniform(-1, 1, shape).astype(np.float32)] for _ in range(8)
        )
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def int8_cnn(kb: int = 8, seed: int = 0, tiny: bool = False) -> bytes:
    """Return the bytes of a full-integer int8 TFLite model of roughly `kb` kilobytes.

    `tiny`: a single dense layer on 4 inputs (about 1.2 KB), for tests that upload it many times.
    """
    tf.random.set_seed(seed)
    rng = np.random.default_rng(seed)
    shape = (4,) if tiny else INPUT_SHAPE
    # conv(3x3x1x8) -> pool -> flatten (8*8*8=512) -> dense(hidden) -> dense(3); int8 weights ~1 B each
    hidden = max(4, int(kb * 1024 / 520))
    layers = [tf.keras.layers.Dense(N_CLASSES)] if tiny else [
        tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        tf.keras.layers.MaxPooling2D(2),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(hidden, activation="relu"),
        tf.keras.layers.Dense(N_CLASSES),
    ]
    model = tf.keras.Sequential([tf.keras.Input(shape=shape), *layers])
    calib = rng.uniform(-1, 1, size=(32, *shape)).astype("float32")

    def representative():
        for image in calib:
            yield [image[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def model_bytes(name: str) -> bytes:
    """The .tflite of one named model."""
    if name in BRIDGE_MODELS:
        return int8_cnn(*BRIDGE_MODELS[name])
    make, shape, int8 = POWER_RECIPES[name]
    return convert(make(), shape, int8)


def main(argv: list[str]) -> int:
    """Write OUT/<name>.tflite for each name in argv[1:]."""
    tf.random.set_seed(0)
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name in argv[1:]:
        (out / f"{name}.tflite").write_bytes(model_bytes(name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
