"""Apply the weight ranges of `quant_ranges.json` (read by `edge/quant_ranges.py`) to float weights.

Activation ranges become FakeQuant ops in the TensorFlow graph (tf_vit.py); weight ranges are
applied by clipping each output channel of the float weights to its learned range, after which
the converter's symmetric per-channel int8 quantisation sees exactly the QAT range (numpy only).
"""

from __future__ import annotations

import numpy as np

from edge.quant_ranges import QuantRangesFile


def clip_weights(weights: dict[str, np.ndarray], ranges: QuantRangesFile,
                 where: str = "quant_ranges.json") -> list[str]:
    """Clip every weight with a learned range to it, per channel along its axis; returns the names."""
    ranges.check_shapes({name: value.shape for name, value in weights.items()}, where=where)
    clipped = []
    for name, item in ranges.weights.items():
        lo = np.asarray(item.min, dtype=np.float32)
        hi = np.asarray(item.max, dtype=np.float32)
        value = weights[name]
        shape = [1] * value.ndim
        shape[item.axis] = lo.size
        weights[name] = np.clip(value, lo.reshape(shape), hi.reshape(shape)).astype(np.float32)
        clipped.append(name)
    return clipped
