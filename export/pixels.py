"""The model's graph input: centred pixels, chosen so the int8 input is `pixel - 128` (numpy only).

The ViT expects `(pixel/255 - mean)/std`; the exported graph instead takes
`x_in = (pixel - 128) / 127.5` and folds the affine difference into the patch embedding
(tf_vit.py). With scale 1/127.5 and zero point 0 the int8 input is exactly `pixel - 128`, which
a firmware computes as `(int8_t)(pixel ^ 0x80)`.
"""

from __future__ import annotations

import numpy as np

INPUT_SCALE = 1.0 / 127.5
INPUT_ZERO_POINT = 0
INPUT_RANGE = (-128.0 * INPUT_SCALE, 127.0 * INPUT_SCALE)
INPUT_POINT = "input_centred"


def centred_pixels(images_u8: np.ndarray) -> np.ndarray:
    """uint8 NHWC images -> the graph's float input `(pixel - 128) / 127.5`."""
    return (images_u8.astype(np.float32) - 128.0) * np.float32(INPUT_SCALE)


def int8_pixels(images_u8: np.ndarray) -> np.ndarray:
    """uint8 NHWC images -> the int8 model input `pixel - 128`."""
    return (images_u8.astype(np.int16) - 128).astype(np.int8)
