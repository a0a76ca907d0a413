"""The data set file between stages: `data/dataset.npz` (docs/artifacts.md), numpy only.

Written as an uncompressed npz whose zip entries carry a fixed timestamp, so the same data
gives the same bytes (and the same sha256 in the manifest) on every run.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.atomic import atomic_path
from edge.errors import DataError

SPLITS = ("train", "val", "test", "calib")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Split:
    """Images `x` uint8 [N, H, W, C] (NHWC) and labels `y` int64 [N]."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    """The four splits, the class names (index = label) and the image geometry."""

    train: Split
    val: Split
    test: Split
    calib: Split
    labels: list[str]
    image_size: int
    channels: int

    @classmethod
    def from_splits(cls, splits: dict[str, Split], labels: list[str]) -> Dataset:
        """Build and check: shapes, dtypes, label range; image geometry read from train."""
        _, h, w, c = splits["train"].x.shape
        for name in SPLITS:
            split = splits[name]
            if split.x.dtype != np.uint8 or split.x.ndim != 4 or split.x.shape[1:] != (h, w, c):
                raise DataError(f"split '{name}' images are {split.x.dtype} {split.x.shape}, "
                                f"expected uint8 [N, {h}, {w}, {c}]")
            if split.y.dtype != np.int64 or split.y.shape != (len(split.x),):
                raise DataError(f"split '{name}' labels are {split.y.dtype} {split.y.shape}, "
                                f"expected int64 [{len(split.x)}]")
            if len(split.y) and (split.y.min() < 0 or split.y.max() >= len(labels)):
                raise DataError(f"split '{name}' has labels outside 0..{len(labels) - 1}")
        if h != w:
            raise DataError(f"images are {h}x{w}, expected square")
        return cls(**{name: splits[name] for name in SPLITS}, labels=list(labels), image_size=h, channels=c)

    def split(self, name: str) -> Split:
        """A split by name ('train', 'val', 'test' or 'calib')."""
        return getattr(self, name)


@dataclass
class Built:
    """A data set and how it was made: `info` goes to data/source.json, `notes` to the manifest."""

    dataset: Dataset
    info: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def save_dataset(dataset: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write `dataset` to `path` atomically as a byte-reproducible, uncompressed npz."""
    arrays: dict[str, np.ndarray] = {}
    for name in SPLITS:
        arrays[f"{name}_x"] = dataset.split(name).x
        arrays[f"{name}_y"] = dataset.split(name).y
    arrays["labels"] = np.array(dataset.labels, dtype=str)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            zf.writestr(info, buffer.getvalue())
    return Path(path)


def load_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Read a `dataset.npz` written by the data stage (numpy only, no torch)."""
    path = Path(path)
    hint = "rebuild it with `edge data --force data`"
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in [*(f"{s}_{v}" for s in SPLITS for v in "xy"), "labels"] if key not in npz]
            if missing:
                raise DataError(f"not a data set file: missing arrays {', '.join(missing)}", where=str(path), hint=hint)
            splits = {name: Split(npz[f"{name}_x"], npz[f"{name}_y"]) for name in SPLITS}
            labels = [str(label) for label in npz["labels"]]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read the data set: {exc}", where=str(path), hint=hint) from exc
    try:
        return Dataset.from_splits(splits, labels)
    except DataError as exc:
        raise DataError(exc.message, where=str(path), hint=hint) from exc
