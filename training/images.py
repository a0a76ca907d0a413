"""Decode user images of any size and mode into fixed-size uint8 arrays; collect the unreadable ones.

Nothing is skipped silently: every file that cannot be decoded is returned with its reason,
and the caller decides (fail with a list, or leave them out and record the list).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from edge.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})
Fit = Literal["crop", "stretch"]
_HIGH_DEPTH = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


def _to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """uint8 from a 16-bit, 32-bit integer ('I') or float ('F') image.

    The white point is the format's (16-bit: 65535), else the smallest of 1.0 (float only), 255 and
    65535 that holds the data (float TIFFs are usually 0..1; 'I' often carries 8- or 16-bit data),
    else the data's maximum; data with negative values is stretched from its minimum to its maximum.
    """
    values = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if mode in _HIGH_DEPTH:
        low, top = 0.0, _HIGH_DEPTH[mode]
    elif low >= 0:
        tops = (1.0, 255.0, 65535.0) if mode == "F" else (255.0, 65535.0)
        low, top = 0.0, next((t for t in tops if high <= t), high)
    else:
        top = high
    if top <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.clip((values - low) * (255.0 / (top - low)) + 0.5, 0, 255).astype(np.uint8)


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    """8-bit 'L' or 'RGB' from any PIL mode (palette, alpha, 16-bit, float, CMYK, 1-bit)."""
    if img.mode in _HIGH_DEPTH or img.mode in ("I", "F"):
        img = Image.fromarray(_to_8bit(np.asarray(img), img.mode), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):  # drop alpha by compositing over black
        img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), img.convert("RGBA"))
    return img.convert("L" if channels == 1 else "RGB")


def load_image(path: str | os.PathLike[str], size: int, channels: int, fit: Fit = "crop") -> np.ndarray:
    """One image as uint8 [size, size, channels]: EXIF-rotated, cropped or stretched, resized.

    `fit='crop'` takes the centred square then resizes; 'stretch' resizes the whole frame
    (used for Visual Wake Words, whose labels count the whole image). Raises OSError,
    ValueError or PIL errors for unreadable files; see `load_images`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            if img.format == "JPEG":  # decode at a reduced scale when much bigger than needed
                img.draft("L" if channels == 1 else "RGB", (size, size))
            img.load()
            img = ImageOps.exif_transpose(img)
            img = _to_mode(img, channels)
    if fit == "crop":
        img = ImageOps.fit(img, (size, size), Image.Resampling.BILINEAR)
    else:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if channels == 1 else arr


def _try(args: tuple[Path, int, int, Fit]) -> np.ndarray | str:
    path, size, channels, fit = args
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # another library may have turned this on globally
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        return load_image(path, size, channels, fit)
    except FileNotFoundError:
        return "file not found"
    except UnidentifiedImageError:
        return "not a recognised image format"
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        return f"{type(exc).__name__}: {exc}"


def load_images(paths: Sequence[Path], size: int, channels: int, fit: Fit = "crop", progress: bool = True,
                desc: str = "images") -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decode `paths` in a few threads: (uint8 [N, size, size, channels], [(index, reason), ...]).

    Rows of unreadable files are left zero; their indices and reasons are returned.
    """
    from tqdm import tqdm

    out = np.zeros((len(paths), size, size, channels), dtype=np.uint8)
    bad: list[tuple[int, str]] = []
    workers = max(1, min(4, os.cpu_count() or 1))
    jobs = ((Path(p), size, channels, fit) for p in paths)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(_try, jobs)
        for i, result in enumerate(tqdm(results, total=len(paths), desc=desc, unit="img", disable=not progress)):
            if isinstance(result, str):
                bad.append((i, result))
            else:
                out[i] = result
    return out, bad


def corrupt_error(bad: list[tuple[str, str]], total: int, where: str, shown: int = 10) -> DataError:
    """The error raised when unreadable images are found and `data.skip_corrupt` is off."""
    lines = [f"{name} ({reason})" for name, reason in bad[:shown]]
    more = f"; and {len(bad) - shown} more" if len(bad) > shown else ""
    return DataError(
        f"{len(bad)} of {total} images cannot be read: " + "; ".join(lines) + more,
        where=where,
        hint="repair or delete these files, or set data.skip_corrupt=true (--set data.skip_corrupt=true) "
        "to leave them out; the list is then recorded in data/source.json and the manifest",
    )
