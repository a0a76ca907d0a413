"""scikit-learn's handwritten digits as an ImageFolder tree: a small real data set that needs no download.

1,797 images of 8x8 pixels (grey levels 0-16, 10 classes, from the UCI ML repository's optical
recognition of handwritten digits) written as `ROOT/{train,val,test}/<digit>/<n>.png`, upscaled to
`size` x `size` 8-bit grayscale. The tree is the user's own split (`edge data --data imagefolder:ROOT`
keeps it), so checks and benchmarks run the same path a user's photos take.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge.training.splits import stratified_split


def digits_arrays(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, size, size], labels [N]) of scikit-learn's digits, bilinear-upscaled."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = np.clip(digits.images * (255.0 / 16.0) + 0.5, 0, 255).astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))
                    for img in small])
    return big, digits.target.astype(np.int64)


def write_digits_imagefolder(root: str | os.PathLike[str], size: int = 32, val_fraction: float = 0.15,
                             test_fraction: float = 0.15, seed: int = 0) -> Path:
    """Write the digits as `root/{train,val,test}/<digit>/<index>.png` (stratified split); returns root."""
    from PIL import Image

    root = Path(root)
    x, y = digits_arrays(size)
    parts = stratified_split(y, {"val": val_fraction, "test": test_fraction}, seed)
    for split, indices in parts.items():
        for i in indices:
            folder = root / split / str(int(y[i]))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i], mode="L").save(folder / f"{int(i):04d}.png")
    return root
