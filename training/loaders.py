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

from edge.config import DEFAULT_IMAGE_SIZE, DataConfig
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
            desc: str, size: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Decode images: (x, mask of readable ones, [(relative path, reason) of unreadable ones])."""
    x, bad = load_images([root / rel for rel in rel_paths], size, cfg.channels, fit, progress, desc)
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


#: Top-level folder names that mean "the user's own split" (any case); value = our split name.
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}


def _subfolders(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def split_layout(root: Path) -> dict[str, Path] | None:
    """The user's own split folders (`train/`, `val/`, `test/` on top, any case), or None for a plain tree.

    A tree whose top-level folders are partly split names and partly other names is refused: it is
    either a split tree with a stray folder or a class tree with classes named like splits, and
    guessing would silently train on the wrong labels.
    """
    top = _subfolders(root)
    named = [d for d in top if d.lower() in SPLIT_FOLDERS]
    if not named:
        return None
    others = [d for d in top if d.lower() not in SPLIT_FOLDERS]
    splits: dict[str, Path] = {}
    for d in named:
        split = SPLIT_FOLDERS[d.lower()]
        if split in splits:
            raise DataError(f"two folders for the {split} split: {splits[split].name}/ and {d}/", where=str(root),
                            hint="keep one folder per split (train/, val/, test/)")
        splits[split] = root / d
    if others or "train" not in splits:
        names = ", ".join(f"{d}/" for d in named)
        raise DataError(
            f"folder names look like splits ({names}) but the tree is not a split tree"
            + (f" (other top-level folders: {', '.join(others)})" if others else " (no train/ folder)"),
            where=str(root),
            hint="for your own split put train/ (and val/, test/) on top with one folder per class inside each; "
            "for a class-per-folder tree rename the classes that are named like splits")
    return {name: splits[name] for name in ("train", "val", "test") if name in splits}


def _list_class_images(folder: Path, classes: list[str], prefix: str) -> tuple[list[str], list[int], int, list[str]]:
    """(relative paths, labels, non-image files, classes without images) of folder/<class>/**/<image>."""
    rel_paths: list[str] = []
    labels: list[int] = []
    ignored = 0
    empty = []
    for index, name in enumerate(classes):
        files = sorted(p for p in (folder / name).rglob("*")  # nothing when a split lacks the class
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        ignored += len(files) - len(images)
        if not images:
            empty.append(name)
        rel_paths += [prefix + p.relative_to(folder).as_posix() for p in images]
        labels += [index] * len(images)
    return rel_paths, labels, ignored, empty


def _classes_of(root: Path, folders: list[Path]) -> list[str]:
    classes = sorted({name for folder in folders for name in _subfolders(folder)})
    if len(classes) < 2:
        found = f" ({', '.join(classes)})" if classes else ""
        where = ", ".join(str(f) for f in folders)
        raise DataError(f"found {len(classes)} class folder(s){found}, need at least 2", where=where,
                        hint="put each class's images in its own sub-folder: ROOT/cat/*.jpg, ROOT/dog/*.jpg "
                        "(or ROOT/train/cat/*.jpg ... for your own split)")
    return classes


def proposed_image_size(paths: list[Path], sample: int = 200, cap: int = 64) -> tuple[int, str]:
    """(image side, reason): the median short side of up to `sample` images (headers only), rounded
    down to a multiple of 8 (the patch size), between 16 and `cap`."""
    from PIL import Image

    step = max(1, len(paths) // sample)
    sides = []
    for path in paths[::step][:sample]:
        try:
            with Image.open(path) as img:
                sides.append(min(img.size))
        except (OSError, ValueError):
            continue  # unreadable files are reported by the decoder
    if not sides:
        return cap, f"no readable image header; {cap} px"
    median = int(np.median(sides))
    size = int(min(cap, max(16, median // 8 * 8)))
    return size, f"median short side of {len(sides)} sampled images is {median} px -> {size} px " \
                 f"(multiple of 8, 16..{cap}; set data.image_size to choose)"


def build_imagefolder(cfg: DataConfig, root: Path, progress: bool = True) -> Built:
    """Load ROOT/<class>/**/<image> (stratified train/val/test split), or the user's own split
    ROOT/{train,val,test}/<class>/**/<image> (missing val/test are cut from train)."""
    _check_folder(root, "image folder")
    layout = split_layout(root)
    folders = dict(layout) if layout else {"all": root}
    classes = _classes_of(root, list(folders.values()))
    rel_paths: list[str] = []
    part_of: list[str] = []
    labels: list[int] = []
    ignored = 0
    for part, folder in folders.items():
        prefix = "" if part == "all" else folder.name + "/"
        rels, ys, skipped_files, empty = _list_class_images(folder, classes, prefix)
        if part in ("all", "train") and empty:
            raise DataError(f"class folder(s) without images: {', '.join(empty)}", where=str(folder),
                            hint=f"add images ({', '.join(sorted(IMAGE_SUFFIXES))}) or remove the empty folders")
        rel_paths += rels
        labels += ys
        part_of += [part] * len(rels)
        ignored += skipped_files
    notes = []
    size, size_reason = (cfg.image_size, "data.image_size") if cfg.image_size else \
        proposed_image_size([root / rel for rel in rel_paths])
    if not cfg.image_size:
        notes.append(f"image size {size} px proposed from the data: {size_reason}")
    x, keep, bad = _decode(root, rel_paths, cfg, "crop", progress, "imagefolder", size)
    skipped = _settle_corrupt(bad, len(rel_paths), cfg, root)
    y = np.asarray(labels, dtype=np.int64)
    parts_arr = np.asarray(part_of)
    x, y, parts_arr = _kept(x, keep), y[keep], parts_arr[keep]
    if skipped:
        notes.append(f"{len(skipped)} unreadable images left out (data.skip_corrupt): see data/source.json")
    train_mask = np.isin(parts_arr, ["all", "train"])
    counts = np.bincount(y[train_mask], minlength=len(classes))
    if (counts == 0).any():
        lost = [classes[i] for i in np.flatnonzero(counts == 0)]
        raise DataError(f"no readable training images left in class(es): {', '.join(lost)}", where=str(root))
    splits = _split(x, y, parts_arr, cfg, notes)
    notes += [f"class '{classes[i]}' has only {counts[i]} images: all in train"
              for i in np.flatnonzero(counts < 3) if not layout]
    info: dict[str, Any] = {
        "source": "imagefolder",
        "path": str(root.resolve()),
        "classes": classes,
        "split": "user folders: " + ", ".join(f"{k}={v.name}/" for k, v in folders.items()) if layout
        else f"stratified, seed {cfg.seed}",
        "image_size": {"px": size, "from": size_reason},
        "files": len(rel_paths),
        "ignored_non_images": ignored,
        "fingerprint": fingerprint(root, rel_paths),
        "corrupt_skipped": skipped,
    }
    return Built(_finish(splits, classes, cfg, notes), info, notes)


def _split(x: np.ndarray, y: np.ndarray, parts: np.ndarray, cfg: DataConfig, notes: list[str]) -> dict[str, Split]:
    """The train/val/test splits: the user's folders where given, the rest cut (stratified) from train."""
    given = {name: np.flatnonzero(parts == name) for name in ("val", "test") if (parts == name).any()}
    pool = np.flatnonzero(np.isin(parts, ["all", "train"]))
    wanted = {name: getattr(cfg, f"{name}_fraction") for name in ("val", "test") if name not in given}
    if "all" not in parts:
        for name in wanted:
            notes.append(f"no {name}/ folder: {name} split cut from train/ (data.{name}_fraction={wanted[name]})")
    cut = stratified_split(y[pool], wanted, cfg.seed)
    index = {name: pool[idx] for name, idx in cut.items()} | given
    return {name: Split(x[idx], y[idx]) for name, idx in index.items()}


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
    size = cfg.image_size or DEFAULT_IMAGE_SIZE
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
        x, keep, unreadable = _decode(root, rels, cfg, "stretch", progress, f"vww {folder}", size)
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
