"""TensorFlow child process: VitSpec + safetensors (+ QAT ranges) -> float and full-integer TFLite.

Run as `python -m edge.export.tflite_convert JOB.json` (the export stage does this; TensorFlow must
not load in the stage process). JOB.json holds:

    spec, weights          model files (edge/vit_spec.py)
    ranges                 quant_ranges.json or null (then every point is calibrated)
    calib                  .npy of uint8 NHWC calibration images
    out_dir                where model_float.tflite / model_int8.tflite / convert.json go
    int16                  true: int16 activations, int8 weights (TFLM "16x8"), int16 in/out
    strip                  drop tensor names from the integer model (default true, tflite_strip.py)
    probe, probe_out       optional: .npy uint8 images -> .npy float logits of the TF graph

Integer mode: optimizations DEFAULT, representative data set, TFLITE_BUILTINS_INT8 only, int8
input and output. The converter keeps FakeQuant ranges (the QAT points) and calibrates the rest.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.atomic import atomic_write_bytes, atomic_write_json
from edge.export.apply_ranges import clip_weights, graph_ranges
from edge.export.child import child_main
from edge.export.pixels import INPUT_POINT, centred_pixels
from edge.export.tf_vit import KERNEL_FIXED_SUFFIX, TfVit, load_weights
from edge.export.tflite_strip import strip_for_mcu
from edge.paths import MODEL_INT8
from edge.quant_ranges import read_ranges
from edge.vit_spec import VitSpec


def convert(job: dict[str, Any]) -> dict[str, Any]:
    """Do one conversion job (see module doc); returns what convert.json records."""
    import tensorflow as tf

    spec = VitSpec.load(job["spec"])
    weights = load_weights(job["weights"])
    out_dir = Path(job["out_dir"])
    int16 = bool(job.get("int16", False))
    ranges = read_ranges(job["ranges"]) if job.get("ranges") else None
    int_weights = dict(weights)  # QAT weight ranges clip the integer model's weights only
    clipped = clip_weights(int_weights, ranges, where=str(job["ranges"])) if ranges and not int16 else []
    learned, folded = graph_ranges(ranges, spec) if ranges and not int16 else ({}, [])
    calib = _calibration_images(job["calib"], int16)
    info: dict[str, Any] = {"timings_s": {}}

    float_model = TfVit(spec, weights, quantize_input=False)
    if job.get("probe"):
        _probe_logits(float_model, job["probe"], job["probe_out"])
    started = time.perf_counter()
    atomic_write_bytes(out_dir / "model_float.tflite", _float_tflite(float_model))
    info["timings_s"]["convert_float"] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    model = TfVit(spec, int_weights, ranges=learned, quantize_input=not int16)
    int_model = _integer_tflite(model, calib, int16)
    if job.get("strip", True):
        int_model = strip_for_mcu(int_model)
    atomic_write_bytes(out_dir / MODEL_INT8, int_model)
    info["timings_s"]["convert_int"] = round(time.perf_counter() - started, 3)

    info.update(
        quantization="int16x8" if int16 else "int8",
        ranges_format=ranges.format if ranges else None,
        **_point_report(model, int16),
        folded_points=folded,
        unknown_points=sorted(set(learned) - {p for p in model.points if p != INPUT_POINT}),
        clipped_weights=clipped,
        calibration_images=len(calib) - (0 if int16 else 1),
        tensorflow=tf.__version__,
    )
    atomic_write_json(out_dir / "convert.json", info)
    return info


def _calibration_images(path: str, int16: bool) -> np.ndarray:
    """The centred calibration images; for int8, led by a probe that spans the input range, so the calibrated
    input range equals the fixed one (else a float requantise appears)."""
    calib = centred_pixels(np.load(path))
    return calib if int16 else np.concatenate([_range_probe(calib.shape[1:]), calib])


def _probe_logits(float_model: TfVit, probe_path: str, out_path: str) -> None:
    """Save the TF graph's float logits on the probe images (uint8 NHWC .npy) to `out_path`."""
    import tensorflow as tf

    probe = centred_pixels(np.load(probe_path))
    np.save(out_path, float_model.concrete(len(probe))(tf.constant(probe))["logits"].numpy())


def _float_tflite(float_model: TfVit) -> bytes:
    """The float TFLite model."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([float_model.concrete(1)], float_model)
    return bytes(converter.convert())


def _integer_tflite(model: TfVit, calib: np.ndarray, int16: bool) -> bytes:
    """The full-integer TFLite model: int8 (or int16x8) builtins only, integer input and output, the points
    without a FakeQuant range calibrated on `calib`."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([model.concrete(1)], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample[None]] for sample in calib)
    if int16:
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int16
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def _point_report(model: TfVit, int16: bool) -> dict[str, Any]:
    """Which quantisation points took a QAT range, which were calibrated, which are fixed by construction."""
    points = [p for p in model.points if p != INPUT_POINT]
    return {
        "qat_points": [p for p in points if p in model.used_points],
        "calibrated_points": [p for p in points if p not in model.used_points
                              and not (p.endswith(KERNEL_FIXED_SUFFIX) and not int16)],
        "fixed_points": _fixed_points(points, INPUT_POINT in model.used_points, int16),
    }


def _fixed_points(points: list[str], input_fixed: bool, int16: bool) -> dict[str, str]:
    """Points whose range is fixed by construction, neither learned nor calibrated."""
    fixed = {"input": "pixel - 128 (scale 1/127.5, zero point 0)"} if input_fixed else {}
    if not int16:
        fixed.update({p: "int8 SOFTMAX output (scale 1/256, zero point -128)" for p in points
                      if p.endswith(KERNEL_FIXED_SUFFIX)})
    return fixed


def _range_probe(shape: tuple[int, ...]) -> np.ndarray:
    """One image of mid-grey with a single black and a single white pixel: spans the input range."""
    probe = np.full((1, *shape), 128, dtype=np.uint8)
    probe.reshape(-1)[:2] = (0, 255)
    return centred_pixels(probe)


def main(argv: list[str] | None = None) -> int:
    """Child-process entry point: run the job file named on the command line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = sys.argv[1:] if argv is None else argv
    return child_main(lambda: convert(json.loads(Path(args[0]).read_text(encoding="utf-8"))))


if __name__ == "__main__":
    sys.exit(main())
