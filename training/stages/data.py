"""The `data` stage: build the data set from `config.data.source` and write it for later stages.

Outputs (docs/artifacts.md): `dataset` (data/dataset.npz), `samples` (data/samples.png) and
`source` (data/source.json: where the images came from, a fingerprint of the user's folder,
the corrupt files left out). A user's folder is fingerprinted (sorted relative paths, sizes,
modification times) instead of hashing every image.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import numpy as np

from edge.atomic import atomic_path, atomic_write_json, sha256_json
from edge.config import DEFAULT_IMAGE_SIZE, DataConfig, RunConfig
from edge.errors import DataError
from edge.manifest import StageRun
from edge.training.dataset import Built, Dataset, Split, load_dataset, save_dataset
from edge.training.splits import calib_indices

__all__ = ["Built", "Dataset", "Split", "build", "load_dataset", "parse_source", "run_stage"]

SCHEMES = ("synthetic", "imagefolder", "vww")
SYNTHETIC_VERSION = "synthetic-motion/1"


def parse_source(text: str) -> tuple[str, str]:
    """Split 'scheme' or 'scheme:argument'; unknown schemes get a 'did you mean'."""
    scheme, _, arg = text.partition(":")
    scheme = scheme.strip().lower()
    if scheme not in SCHEMES:
        close = difflib.get_close_matches(scheme, SCHEMES, n=1)
        hint = f"did you mean '{close[0]}'?" if close else ""
        raise DataError(
            f"unknown data source '{text}'",
            where="data.source",
            hint=(hint + " " if hint else "") + "use 'synthetic', 'imagefolder:PATH' or 'vww:COCO_ROOT'",
        )
    if scheme == "synthetic" and arg:
        raise DataError(f"'synthetic' takes no argument (got '{text}')", where="data.source",
                        hint="use data.seed, data.n_train, ... to change the built-in set")
    if scheme != "synthetic" and not arg.strip():
        raise DataError(f"'{scheme}' needs a folder: '{scheme}:PATH'", where="data.source")
    return scheme, os.path.expanduser(arg.strip())


def source_fingerprint(config: RunConfig) -> str:
    """Cheap fingerprint of what `data.source` points at, checked by the pipeline before skipping.

    Synthetic: the generator version and recipe. A folder: every file's relative path, size and
    modification time, so adding, removing or editing an image makes the data stage run again.
    """
    scheme, arg = parse_source(config.data.source)
    if scheme == "synthetic":
        from edge.training.synthetic import recipe_dict

        return sha256_json({"generator": SYNTHETIC_VERSION, "recipe": recipe_dict()})
    from edge.training.loaders import fingerprint

    root = Path(arg)
    if not root.is_dir():
        return "missing"
    return fingerprint(root, [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()])


def build(cfg: DataConfig, progress: bool = True) -> Built:
    """Build the data set `cfg.source` describes."""
    scheme, arg = parse_source(cfg.source)
    if scheme == "synthetic":
        return _build_synthetic(cfg, progress)
    from edge.training import loaders  # PIL-heavy loaders only when a real data set is asked for

    return loaders.build_imagefolder(cfg, Path(arg), progress) if scheme == "imagefolder" \
        else loaders.build_vww(cfg, Path(arg), progress)


def _build_synthetic(cfg: DataConfig, progress: bool) -> Built:
    from edge.training.synthetic import LABELS, generate, recipe_dict

    splits = {}
    for name, n in (("train", cfg.n_train), ("val", cfg.n_val), ("test", cfg.n_test)):
        x, y = generate(name, n, cfg.image_size or DEFAULT_IMAGE_SIZE, cfg.channels, cfg.seed, progress=progress)
        splits[name] = Split(x, y)
    pick = calib_indices(splits["train"].y, cfg.n_calib, cfg.seed)
    splits["calib"] = Split(splits["train"].x[pick], splits["train"].y[pick])
    recipe = recipe_dict()
    info = {"source": "synthetic", "generator": SYNTHETIC_VERSION, "recipe": recipe}
    info["fingerprint"] = sha256_json({"generator": SYNTHETIC_VERSION, "recipe": recipe})
    return Built(Dataset.from_splits(splits, list(LABELS)), info)


def dataset_metrics(dataset: Dataset) -> dict[str, Any]:
    """Counts per split and per class, and the image geometry."""
    metrics: dict[str, Any] = {}
    per_class: dict[str, dict[str, int]] = {}
    for name in ("train", "val", "test", "calib"):
        y = dataset.split(name).y
        metrics[f"n_{name}"] = len(y)
        counts = np.bincount(y, minlength=len(dataset.labels))
        per_class[name] = {label: int(counts[i]) for i, label in enumerate(dataset.labels)}
    metrics["class_counts"] = per_class
    metrics["num_classes"] = len(dataset.labels)
    metrics["image_size_px"] = dataset.image_size
    metrics["channels"] = dataset.channels
    return metrics


def write_samples(dataset: Dataset, path: str | os.PathLike[str], per_class: int = 8) -> Path:
    """A PNG grid: one row per class (first 12 classes), `per_class` training images each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = dataset.labels[:12]
    fig, axes = plt.subplots(len(labels), per_class, figsize=(per_class * 1.1, len(labels) * 1.45 + 0.3), squeeze=False)
    for row, label in enumerate(labels):
        members = np.flatnonzero(dataset.train.y == row)[:per_class]
        for col in range(per_class):
            ax = axes[row, col]
            ax.set_axis_off()
            if col < len(members):
                img = dataset.train.x[members[col]]
                ax.imshow(img[..., 0] if dataset.channels == 1 else img, cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(f"{label} ({int((dataset.train.y == row).sum())} train)", loc="left", fontsize=8)
    fig.suptitle(f"{dataset.image_size}x{dataset.image_size}x{dataset.channels}, training examples", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    return Path(path)


def run_stage(run: StageRun, config: RunConfig) -> None:
    """The `data` stage: build, then write dataset.npz, samples.png and source.json."""
    cfg = config.data
    built = build(cfg, progress=True)
    dataset = built.dataset
    save_dataset(dataset, run.output("dataset", run.dir / "dataset.npz"))
    write_samples(dataset, run.output("samples", run.dir / "samples.png"))
    atomic_write_json(run.output("source", run.dir / "source.json"), built.info)
    run.metrics.update(dataset_metrics(dataset))
    run.metrics["source"] = built.info["source"]
    run.metrics["source_fingerprint"] = source_fingerprint(config)
    run.metrics["corrupt_files"] = len(built.info.get("corrupt_skipped", []))
    run.notes.extend(built.notes)
