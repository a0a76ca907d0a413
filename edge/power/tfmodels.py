"""Small reference .tflite models for tests and benchmarks, built with TensorFlow in a CHILD process.

Run as `python -m edge.power.tfmodels OUT_DIR [NAME ...]`; TensorFlow is imported only inside
`main`, so importing this module (e.g. from pytest) never loads TensorFlow. Names:
`tiny_int8`, `tiny_float` (conv + depthwise + pool + dense), `attn_int8` (dense + batch
matmul + softmax), `mobilenet_v1_025_int8` (MLPerf Tiny VWW architecture, 96x96x3),
`vit_pruned_int8` (a ViT-lite shaped like a pruned vit_lite_s: 64x64x1, patch 8, dim 64, 4 blocks,
~11 M MACs) and `vit_float` (the unpruned shape, dim 96, float32, ~23 M MACs). Random weights:
the cost model only needs the graph.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

NAMES = ("tiny_int8", "tiny_float", "attn_int8", "mobilenet_v1_025_int8", "vit_pruned_int8", "vit_float")


def build(out_dir: Path, names: tuple[str, ...] = NAMES, timeout_s: float = 600) -> dict[str, Path]:
    """Build the named models in a child process; returns name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "edge.power.tfmodels", str(out_dir), *names]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"building reference models failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {name: out_dir / f"{name}.tflite" for name in names}


def main(argv: list[str]) -> int:  # pragma: no cover - runs in a child process
    """Build models into argv[0]."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    tf.random.set_seed(0)
    rng = np.random.default_rng(0)
    out = Path(argv[0])
    names = tuple(argv[1:]) or NAMES

    def var(*shape: int, scale: float = 0.2) -> tf.Variable:
        return tf.Variable(rng.normal(0, scale, shape).astype(np.float32))

    def convert(module: tf.Module, fn, shape: tuple[int, ...], int8: bool) -> bytes:
        concrete = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))
        conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
        if int8:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: (
                [rng.uniform(-1, 1, shape).astype(np.float32)] for _ in range(8)
            )
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        return conv.convert()

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

    recipes: dict[str, tuple[Callable[[], tf.Module], tuple[int, ...], bool]] = {
        "tiny_int8": (Tiny, (1, 32, 32, 1), True),
        "tiny_float": (Tiny, (1, 32, 32, 1), False),
        "attn_int8": (Attn, (1, 10, 16), True),
        "mobilenet_v1_025_int8": (MobileNetV1, (1, 96, 96, 3), True),
        "vit_pruned_int8": (lambda: VitLike(64, 2, 128), (1, 64, 64, 1), True),
        "vit_float": (lambda: VitLike(96, 3, 192), (1, 64, 64, 1), False),
    }
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        cls, shape, int8 = recipes[name]
        module = cls()
        (out / f"{name}.tflite").write_bytes(convert(module, module.__call__, shape, int8))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
