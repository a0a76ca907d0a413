"""Build a small, real full-integer (int8) .tflite for tests, demos and the upload benchmark.

Run it as its own process (it imports TensorFlow, which must never share a process with torch):

    python -m edge.firmware_bridge.sample_model OUT.tflite [--kb 100] [--seed 0]

The model is a tiny CNN on a 16x16x1 image with 3 classes (`--tiny`: one dense layer); `--kb` grows a dense layer so the
file reaches roughly that size (the upload benchmark uses ~100 KB when the exported model
is not built yet). Calibration uses seeded random images, so the output is reproducible.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

INPUT_SHAPE = (16, 16, 1)
N_CLASSES = 3


def build_int8_tflite(kb: int = 8, seed: int = 0, tiny: bool = False) -> bytes:
    """Return the bytes of a full-integer int8 TFLite model of roughly `kb` kilobytes.

    `tiny`: a single dense layer on 4 inputs (about 1.2 KB), for tests that upload it many times.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

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


def main(argv: list[str] | None = None) -> int:
    """Command line: write the model to the given path."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--kb", type=int, default=8, help="approximate model size in kilobytes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="one dense layer on 4 inputs (~1.2 KB)")
    args = parser.parse_args(argv)
    from edge.atomic import atomic_write_bytes

    data = build_int8_tflite(args.kb, args.seed, args.tiny)
    atomic_write_bytes(args.out, data)
    print(f"{args.out}: {len(data)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
