"""The measured quality checks: the exported int8 model run with LiteRT on the test split (numpy only).

No torch, no TensorFlow: `ai_edge_litert` runs the .tflite file the export stage wrote. The graph
takes one image at a time (its class-token concatenation fixes the batch at 1), so images are fed
one by one through one interpreter; the perturbation sweep uses a fixed, seeded subset of the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.export.pixels import centred_pixels

SWEEP_IMAGES = 256  # test images per perturbation level (seeded subset); the clean pass uses the whole split
ECE_BINS = 10


@dataclass(frozen=True)
class Perturbation:
    """A family of image corruptions: name, strengths (in its own unit), the one judged, and the function."""

    name: str
    unit: str
    strengths: tuple[float, ...]
    judged: float  # the moderate strength the pass/warn mark is taken at
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    identity: float = 0.0  # the strength that leaves the image as it is (the clean point of the curve)


def _pixels(f: np.ndarray) -> np.ndarray:
    """Float pixels back to uint8: rounded and clipped (never wrapped)."""
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def _brightness(x: np.ndarray, s: float, _: np.random.Generator) -> np.ndarray:
    return _pixels(x.astype(np.float32) + s * 255.0)


def _contrast(x: np.ndarray, s: float, _: np.random.Generator) -> np.ndarray:
    f = x.astype(np.float32)
    mean = f.mean(axis=(1, 2, 3), keepdims=True)
    return _pixels(mean + (f - mean) * s)


def _noise(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    return _pixels(x.astype(np.float32) + rng.normal(0.0, s * 255.0, x.shape))


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of uint8 NHWC images (sigma in pixels, edges repeated)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    f = np.pad(x.astype(np.float32), ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
    h, w = x.shape[1:3]
    f = sum(k[i] * f[:, i:i + h, :, :] for i in range(k.size))
    f = sum(k[i] * f[:, :, i:i + w, :] for i in range(k.size))
    return _pixels(f)


def _blur(x: np.ndarray, s: float, _: np.random.Generator) -> np.ndarray:
    return gaussian_blur(x, s)


PERTURBATIONS: tuple[Perturbation, ...] = (
    Perturbation("brightness", "offset, fraction of full scale", (-0.4, -0.2, 0.2, 0.4), -0.2, _brightness),
    Perturbation("contrast", "factor around the image mean", (0.75, 0.5, 0.25), 0.5, _contrast, identity=1.0),
    Perturbation("noise", "Gaussian sigma, fraction of full scale", (0.05, 0.1, 0.2), 0.1, _noise),
    Perturbation("blur", "Gaussian sigma, pixels", (0.5, 1.0, 2.0), 1.0, _blur),
)


class Int8Runner:
    """The exported .tflite in LiteRT: uint8 NHWC images in, dequantised logits out."""

    def __init__(self, model: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(model), num_threads=1)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]

    def inputs(self, images: np.ndarray) -> np.ndarray:
        """uint8 images as the model's input tensor (int8 `pixel - 128` for the exported model)."""
        return self._input(images)

    def _input(self, images: np.ndarray) -> np.ndarray:
        x = centred_pixels(images)
        scale, zero = self.inp["quantization"]
        if self.inp["dtype"] == np.float32 or not scale:
            return x.astype(np.float32)
        info = np.iinfo(self.inp["dtype"])
        return np.clip(np.rint(x / scale + zero), info.min, info.max).astype(self.inp["dtype"])

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Dequantised logits [N, K] of uint8 images [N, H, W, C]."""
        x = self._input(images)
        out = []
        for sample in x:
            self.interp.set_tensor(self.inp["index"], sample[None])
            self.interp.invoke()
            out.append(self.interp.get_tensor(self.out["index"]).reshape(-1).copy())
        q = np.stack(out)
        scale, zero = self.out["quantization"]
        return q.astype(np.float32) if not scale else (q.astype(np.float32) - zero) * scale


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error and the reliability diagram's bins."""

    ece: float
    bin_confidence: list[float]
    bin_accuracy: list[float]
    bin_count: list[int]


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> Calibration:
    """ECE over `bins` equal-width confidence bins (top-1 confidence vs top-1 correctness)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    bc, ba, bn, ece = [], [], [], 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        bn.append(n)
        bc.append(float(conf[sel].mean()) if n else float("nan"))
        ba.append(float(correct[sel].mean()) if n else float("nan"))
        if n:
            ece += n / len(labels) * abs(bc[-1] - ba[-1])
    return Calibration(float(ece), bc, ba, bn)


def confusion(labels: np.ndarray, preds: np.ndarray, classes: int) -> np.ndarray:
    """Confusion matrix [true, predicted] of counts."""
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (labels, preds), 1)
    return m


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall per class from a confusion matrix (NaN for a class with no test images)."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)


def sweep_subset(n: int, size: int = SWEEP_IMAGES, seed: int = 0) -> np.ndarray:
    """Sorted indices of the seeded test subset the perturbation sweep uses."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def robustness(runner: Int8Runner, images: np.ndarray, labels: np.ndarray,
               seed: int = 0) -> dict[str, list[tuple[float, float]]]:
    """Top-1 per perturbation and strength on `images`; each curve starts from the clean top-1 at its identity."""
    clean = float((runner.logits(images).argmax(axis=1) == labels).mean())
    curves: dict[str, list[tuple[float, float]]] = {}
    for p in PERTURBATIONS:
        rng = np.random.default_rng(seed)
        points = [(p.identity, clean)]
        for s in p.strengths:
            acc = float((runner.logits(p.apply(images, s, rng)).argmax(axis=1) == labels).mean())
            points.append((s, acc))
        curves[p.name] = sorted(points)
    return curves


def tflm_top1(model: Path, inputs: np.ndarray, arena_bytes: int) -> np.ndarray:
    """Top-1 of the TFLite Micro interpreter on model inputs, in forked workers (an interpreter that aborts takes
    its worker, not this process, and raises ExportError)."""
    from edge.export.tflm_check import run_images

    outputs, _ = run_images(model.read_bytes(), arena_bytes, inputs, workers=2)
    return outputs.argmax(axis=1)
