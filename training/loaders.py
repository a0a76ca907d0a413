"""Real data sets: an ImageFolder tree (`imagefolder:PATH`) and Visual Wake Words (`vww:COCO_ROOT`).

ImageFolder: one sub-folder per class (sorted names = label order), images of any size and
mode, found recursively; centre-cropped and resized; a stratified, seeded train/val/test split.

Visual Wake Words (Chowdhery et al. 2019, the MLPerf Tiny person-detection set) from a local
COCO copy: an image is 'person' when at least one person annotation covers at least
`data.vww_min_area_fraction` (0.5 %) of the image, measured like the reference TF-slim script
(`annotation['area'] / (width * height)`, the COCO 'area' field, falling back to the box
w*h when it is missing). COCO train -> train + val (`val_fraction`, stratified, like MLPerf
Tiny's 10 % validation split); COCO val -> test (it stands in for the 'minival' evaluation set).
Images are resized whole (no crop), because a crop could cut away the person that sets the label.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import DataConfig
from edge.errors import DataError
from edge.training.dataset import Built, Dataset, Split
from edge.training.images import IMAGE_SUFFIXES, Fit, corrupt_error, load_images
from edge.training.splits import calib_indices, stratified_split

VWW_LABELS = ["no_person", "person"]


def fingerprint(root: Path, rel_paths: list[str]) -> str:
    """SHA-256 over sorted 'relative path, size, mtime' lines: cheap change detection for big trees."""
    digest = hashlib.sha256()
    for rel in sorted(rel_paths):
        try:
            st = (root / rel).stat()
            digest.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{rel}\tmissing\n".encode())
    return digest.hexdigest()


def _check_folder(root: Path, what: str) -> None:
    if not root.exists():
        raise DataError(f"{what} not found", where=str(root),
                        hint="check the path (relative paths count from the directory you run edge in)")
    if not root.is_dir():
        raise DataError(f"{what} is a file, not a folder", where=str(root))


def _decode(root: Path, rel_paths: list[str], cfg: DataConfig, fit: Fit, progress: bool,
            desc: str) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Decode images: (x, mask of readable ones, [(relative path, reason) of unreadable ones])."""
    x, bad = load_images([root / rel for rel in rel_paths], cfg.image_size, cfg.channels, fit, progress, desc)
    keep = np.ones(len(rel_paths), dtype=bool)
    keep[[i for i, _ in bad]] = False
    return x, keep, [(rel_paths[i], reason) for i, reason in bad]


def _kept(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """`x[keep]` without a copy of a possibly huge array when nothing is dropped."""
    return x if keep.all() else x[keep]


def _settle_corrupt(bad: list[tuple[str, str]], total: int, cfg: DataConfig, root: Path) -> list[dict[str, str]]:
    """Fail with the list of unreadable files, or (data.skip_corrupt) return it for the record."""
    if bad and not cfg.skip_corrupt:
        raise corrupt_error(bad, total, where=str(root))
    return [{"file": rel, "reason": reason} for rel, reason in bad]


def _finish(splits: dict[str, Split], labels: list[str], cfg: DataConfig, notes: list[str]) -> Dataset:
    """Add the calibration subset (clamped to the training set, with a note) and check the splits."""
    n_calib = min(cfg.n_calib, len(splits["train"]))
    if n_calib < cfg.n_calib:
        notes.append(f"calibration subset cut to {n_calib} images (the training split has only that many)")
    pick = calib_indices(splits["train"].y, n_calib, cfg.seed)
    splits["calib"] = Split(splits["train"].x[pick], splits["train"].y[pick])
    for name in ("val", "test"):
        if len(splits[name]) == 0:
            raise DataError(f"the {name} split is empty", where="data.source",
                            hint="add images (each class needs at least 3) or raise data.val_fraction/test_fraction")
    return Dataset.from_splits(splits, labels)


def build_imagefolder(cfg: DataConfig, root: Path, progress: bool = True) -> Built:
    """Load ROOT/<class>/**/<image> into a stratified train/val/test split."""
    _check_folder(root, "image folder")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        found = f" ({', '.join(classes)})" if classes else ""
        raise DataError(f"found {len(classes)} class folder(s){found}, need at least 2", where=str(root),
                        hint="put each class's images in its own sub-folder: ROOT/cat/*.jpg, ROOT/dog/*.jpg")
    rel_paths: list[str] = []
    labels: list[int] = []
    ignored = 0
    empty = []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        ignored += len(files) - len(images)
        if not images:
            empty.append(name)
        rel_paths += [p.relative_to(root).as_posix() for p in images]
        labels += [index] * len(images)
    if empty:
        raise DataError(f"class folder(s) without images: {', '.join(empty)}", where=str(root),
                        hint=f"add images ({', '.join(sorted(IMAGE_SUFFIXES))}) or remove the empty folders")
    x, keep, bad = _decode(root, rel_paths, cfg, "crop", progress, "imagefolder")
    skipped = _settle_corrupt(bad, len(rel_paths), cfg, root)
    y = np.asarray(labels, dtype=np.int64)
    x, y = _kept(x, keep), y[keep]
    notes = []
    if skipped:
        notes.append(f"{len(skipped)} unreadable images left out (data.skip_corrupt): see data/source.json")
    counts = np.bincount(y, minlength=len(classes))
    if (counts == 0).any():
        lost = [classes[i] for i in np.flatnonzero(counts == 0)]
        raise DataError(f"no readable images left in class(es): {', '.join(lost)}", where=str(root))
    notes += [f"class '{classes[i]}' has only {counts[i]} images: all in train"
              for i in np.flatnonzero(counts < 3)]
    parts = stratified_split(y, {"val": cfg.val_fraction, "test": cfg.test_fraction}, cfg.seed)
    splits = {name: Split(x[idx], y[idx]) for name, idx in parts.items()}
    info: dict[str, Any] = {
        "source": "imagefolder",
        "path": str(root.resolve()),
        "classes": classes,
        "files": len(rel_paths),
        "ignored_non_images": ignored,
        "fingerprint": fingerprint(root, rel_paths),
        "corrupt_skipped": skipped,
    }
    return Built(_finish(splits, classes, cfg, notes), info, notes)


def vww_labels(annotations: Path, min_area_fraction: float) -> list[tuple[str, int]]:
    """(file_name, label) per image of a COCO instances file, labelled the Visual Wake Words way."""
    try:
        coco = json.loads(annotations.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read annotations: {exc.strerror}", where=str(annotations)) from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", where=f"{annotations}:{exc.lineno}:{exc.colno}") from exc
    try:
        person_ids = {c["id"] for c in coco["categories"] if c["name"] == "person"}
        if not person_ids:
            raise DataError("no 'person' category", where=f"{annotations}: categories",
                            hint="this does not look like a COCO instances file")
        images = {img["id"]: img for img in coco["images"]}
        positive: set[Any] = set()
        for ann in coco.get("annotations", []):
            if ann["category_id"] not in person_ids or ann["image_id"] in positive:
                continue
            img = images.get(ann["image_id"])
            if img is None:
                continue
            area = ann.get("area")
            if area is None:
                area = float(ann["bbox"][2]) * float(ann["bbox"][3])
            if area / (float(img["width"]) * float(img["height"])) >= min_area_fraction:
                positive.add(ann["image_id"])
        return [(img["file_name"], int(img_id in positive)) for img_id, img in sorted(images.items())]
    except (KeyError, TypeError, IndexError, ZeroDivisionError) as exc:
        raise DataError(f"malformed COCO annotations ({type(exc).__name__}: {exc})", where=str(annotations),
                        hint="expected 'images' (id, file_name, width, height), 'annotations' "
                        "(image_id, category_id, area or bbox) and 'categories' (id, name)") from exc


def _find_coco(root: Path) -> tuple[str, Path]:
    for year in ("2017", "2014"):
        ann = root / "annotations" / f"instances_train{year}.json"
        if ann.is_file():
            return year, ann
    raise DataError("no COCO annotations found", where=str(root / "annotations"),
                    hint="expected annotations/instances_train2017.json (+ instances_val2017.json) and the "
                    "image folders train2017/ and val2017/ under COCO_ROOT (2014 names work too)")


def build_vww(cfg: DataConfig, root: Path, progress: bool = True) -> Built:
    """Visual Wake Words from COCO_ROOT: person / no_person by annotation area fraction."""
    _check_folder(root, "COCO folder")
    year, train_ann = _find_coco(root)
    val_ann = root / "annotations" / f"instances_val{year}.json"
    notes: list[str] = []
    records = {"train": vww_labels(train_ann, cfg.vww_min_area_fraction)}
    if val_ann.is_file():
        records["test"] = vww_labels(val_ann, cfg.vww_min_area_fraction)
    else:
        notes.append(f"{val_ann.name} not found: the test split is cut from COCO train (data.test_fraction)")
    loaded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    bad: list[tuple[str, str]] = []
    rel_all: list[str] = []
    for part, recs in records.items():
        folder = f"{'train' if part == 'train' else 'val'}{year}"
        rels = [f"{folder}/{name}" for name, _ in recs]
        rel_all += rels
        x, keep, unreadable = _decode(root, rels, cfg, "stretch", progress, f"vww {folder}")
        bad += unreadable
        loaded[part] = (_kept(x, keep), np.array([label for _, label in recs], dtype=np.int64)[keep])
    skipped = _settle_corrupt(bad, len(rel_all), cfg, root)
    if skipped:
        notes.append(f"{len(skipped)} unreadable images left out (data.skip_corrupt): see data/source.json")
    x, y = loaded["train"]
    fractions = {"val": cfg.val_fraction} if "test" in loaded else {"val": cfg.val_fraction, "test": cfg.test_fraction}
    parts = stratified_split(y, fractions, cfg.seed)
    splits = {name: Split(x[idx], y[idx]) for name, idx in parts.items()}
    if "test" in loaded:
        splits["test"] = Split(*loaded["test"])
    annotation_files = [p.relative_to(root).as_posix() for p in (train_ann, val_ann) if p.is_file()]
    info: dict[str, Any] = {
        "source": "vww",
        "path": str(root.resolve()),
        "coco_year": year,
        "min_area_fraction": cfg.vww_min_area_fraction,
        "files": len(rel_all),
        "fingerprint": fingerprint(root, annotation_files + rel_all),
        "corrupt_skipped": skipped,
    }
    return Built(_finish(splits, VWW_LABELS, cfg, notes), info, notes)
