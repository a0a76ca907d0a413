"""One agreement table across runtimes: top-1 agreement and logit error against a reference.

Runtimes (when present): PyTorch float, PyTorch fake-quant (the qat stage's reference logits),
onnxruntime float and QDQ, LiteRT (ai-edge-litert) float and int8, TFLite Micro int8.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np

from edge.export.pixels import centred_pixels
from edge.export.tflite_inspect import dequantize, quantize, read_tflite


@dataclass
class ParityRow:
    """One runtime compared with the reference (and with the labels, when known)."""

    runtime: str
    top1_agreement: float
    max_logit_error: float
    mean_logit_error: float
    accuracy: float | None


def run_litert(path: str | os.PathLike[str], images_u8: np.ndarray) -> np.ndarray:
    """Logits of a .tflite (float or integer) in LiteRT, one image at a time."""
    from ai_edge_litert.interpreter import Interpreter

    info = read_tflite(path)
    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    in_t, out_t = info.io("input"), info.io("output")
    x = centred_pixels(images_u8)
    if in_t.dtype in ("INT8", "INT16"):
        x = quantize(x, in_t)
    in_index = interp.get_input_details()[0]["index"]
    out_index = interp.get_output_details()[0]["index"]
    outs = []
    for sample in x:
        interp.set_tensor(in_index, sample[None])
        interp.invoke()
        outs.append(interp.get_tensor(out_index).reshape(-1).copy())
    q = np.stack(outs)
    return dequantize(q, out_t) if out_t.dtype in ("INT8", "INT16") else q.astype(np.float32)


def compare(runtime: str, logits: np.ndarray, reference: np.ndarray, labels: np.ndarray | None = None) -> ParityRow:
    """Agreement of `logits` with `reference` (same images, same order)."""
    if logits.shape != reference.shape:
        raise ValueError(f"{runtime}: logits {logits.shape} vs reference {reference.shape}")
    err = np.abs(logits.astype(np.float64) - reference.astype(np.float64))
    pred = logits.argmax(axis=1)
    return ParityRow(
        runtime=runtime,
        top1_agreement=round(float(np.mean(pred == reference.argmax(axis=1))), 4),
        max_logit_error=round(float(err.max()), 6),
        mean_logit_error=round(float(err.mean()), 6),
        accuracy=None if labels is None else round(float(np.mean(pred == labels)), 4),
    )


def parity_table(logits: dict[str, np.ndarray], reference: str,
                 labels: np.ndarray | None = None) -> list[dict[str, object]]:
    """Rows (as dicts) for every runtime in `logits`, compared with `logits[reference]`."""
    ref = logits[reference]
    return [asdict(compare(name, value, ref, labels)) for name, value in logits.items()]


def markdown_table(rows: list[dict[str, object]], reference: str) -> str:
    """The parity rows as a Markdown table."""
    lines = [f"| runtime | top-1 agreement vs {reference} | max logit error | mean logit error | accuracy |",
             "|---|---:|---:|---:|---:|"]
    for row in rows:
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
        lines.append(f"| {row['runtime']} | {row['top1_agreement']:.4f} | {row['max_logit_error']:.4g} | "
                     f"{row['mean_logit_error']:.4g} | {acc} |")
    return "\n".join(lines)


def plot_parity(logits: dict[str, np.ndarray], reference: str, path: str | os.PathLike[str]) -> None:
    """Scatter of each integer runtime's logits against the reference's (the diagonal is perfect)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = logits[reference].reshape(-1)
    names = [n for n in logits if n != reference and ("int8" in n or "QDQ" in n or "fake-quant" in n)]
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    for name in names:
        ax.scatter(ref, logits[name].reshape(-1), s=6, alpha=0.5, label=name)
    lo, hi = float(ref.min()), float(ref.max())
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="identity")
    ax.set_xlabel(f"{reference} logit")
    ax.set_ylabel("integer runtime logit")
    ax.set_title("Logits on the test split")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    from edge.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def tie_analysis(logits: np.ndarray, reference: np.ndarray, threshold: float) -> dict[str, object]:
    """Where `logits` and `reference` disagree, and how close to a tie the reference was there.

    The margin is the reference's top-1 minus top-2 logit. Disagreements with a margin below
    `threshold` (a few int8 output steps) are near-ties an int8 output cannot resolve; agreement
    on the images with a larger margin is reported as `decisive_top1_agreement`.
    """
    top2 = np.sort(reference, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    differ = logits.argmax(axis=1) != reference.argmax(axis=1)
    decisive = margin >= threshold
    agree = int((~differ).sum())
    return {
        "images": len(differ),
        "agreeing_images": agree,
        "agreement_ci95": [round(v, 4) for v in wilson_interval(agree, len(differ))],
        "near_tie_threshold": round(float(threshold), 6),
        "disagreements": [{"index": int(i), "reference_margin": round(float(margin[i]), 6)}
                          for i in np.flatnonzero(differ)[:50]],
        "near_tie_images": int((~decisive).sum()),
        "decisive_top1_agreement": round(float(1 - differ[decisive].mean()), 4) if decisive.any() else None,
    }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % for z = 1.96); (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
