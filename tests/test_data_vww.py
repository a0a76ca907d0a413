"""vww:COCO_ROOT on a tiny COCO-format sample made here: labels by person area fraction, splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.config import DataConfig
from edge.errors import DataError
from edge.training.loaders import vww_labels
from edge.training.stages.data import build

W, H = 80, 60  # image area 4800 px; 0.5 % of it is 24 px


def _person(image_id: int, ann_id: int, w: float, h: float, area: float | None = None) -> dict:
    ann = {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": [5.0, 5.0, w, h], "iscrowd": 0}
    if area is not None:
        ann["area"] = area
    return ann


def make_coco(root: Path, year: str = "2017", with_val: bool = True, per_split: int = 12) -> Path:
    """A COCO copy in miniature: JPEGs plus instances_{train,val}YEAR.json with assorted person areas.

    Image i of a split: i % 4 == 0 a person of area fraction 0.02 (person); 1: a person of 0.004
    (too small: no_person); 2: a 'dog' box covering half the image (no_person); 3: a person
    exactly at 0.005 with no 'area' field, so the box w*h is used (person, the threshold is >=).
    """
    rng = np.random.default_rng(0)
    splits = ["train", "val"] if with_val else ["train"]
    (root / "annotations").mkdir(parents=True)
    for split in splits:
        folder = root / f"{split}{year}"
        folder.mkdir()
        images, anns = [], []
        for i in range(per_split):
            image_id = 1000 * (split == "val") + i + 1
            name = f"{image_id:012d}.jpg"
            Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(folder / name)
            images.append({"id": image_id, "file_name": name, "width": W, "height": H})
            kind = i % 4
            if kind == 0:
                anns.append(_person(image_id, len(anns) + 1, 12, 8, area=96.0))
            elif kind == 1:
                anns.append(_person(image_id, len(anns) + 1, 6, 4, area=19.2))
            elif kind == 2:
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 18,
                             "bbox": [0, 0, 40, 60], "area": 2400.0, "iscrowd": 0})
            else:
                anns.append(_person(image_id, len(anns) + 1, 6, 4))
        coco = {"images": images, "annotations": anns,
                "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]}
        (root / "annotations" / f"instances_{split}{year}.json").write_text(json.dumps(coco))
    return root


def _cfg(root: Path, **kw: object) -> DataConfig:
    base = {"source": f"vww:{root}", "image_size": 32, "channels": 3, "n_calib": 4, "val_fraction": 0.25}
    return DataConfig(**{**base, **kw})


def test_labels_follow_the_area_threshold(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco")
    labels = vww_labels(root / "annotations" / "instances_train2017.json", 0.005)
    assert [label for _, label in labels] == [1, 0, 0, 1] * 3
    stricter = vww_labels(root / "annotations" / "instances_train2017.json", 0.01)
    assert [label for _, label in stricter] == [1, 0, 0, 0] * 3


def test_vww_splits_train_val_from_train_and_test_from_val(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco")
    built = build(_cfg(root), progress=False)
    ds = built.dataset
    assert ds.labels == ["no_person", "person"]
    assert (len(ds.train), len(ds.val), len(ds.test)) == (8, 4, 12)
    assert np.bincount(ds.test.y).tolist() == [6, 6]
    assert np.bincount(ds.val.y).tolist() == [2, 2] and np.bincount(ds.train.y).tolist() == [4, 4]
    assert ds.train.x.shape[1:] == (32, 32, 3) and ds.train.x.dtype == np.uint8
    assert built.info["coco_year"] == "2017" and built.info["files"] == 24
    # the whole frame is resized (no crop): the test image equals the stretched JPEG
    jpeg = Image.open(root / "val2017" / "000000001001.jpg").convert("RGB")
    first = np.asarray(jpeg.resize((32, 32), Image.Resampling.BILINEAR))
    assert np.abs(ds.test.x[0].astype(int) - first.astype(int)).max() <= 1


def test_vww_without_val_file_cuts_test_from_train(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco", year="2014", with_val=False, per_split=20)
    built = build(_cfg(root, test_fraction=0.2, channels=1), progress=False)
    ds = built.dataset
    assert len(ds.train) + len(ds.val) + len(ds.test) == 20 and len(ds.test) == 4
    assert any("instances_val2014.json not found" in note for note in built.notes)


def test_vww_missing_image_is_reported(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco")
    (root / "train2017" / "000000000003.jpg").unlink()
    (root / "val2017" / "000000001002.jpg").write_bytes(b"GIF89a")
    expected = r"2 of 24 images cannot be read: train2017/000000000003.jpg \(file not found\); val2017/000000001002.jpg"
    with pytest.raises(DataError, match=expected):
        build(_cfg(root), progress=False)
    built = build(_cfg(root, skip_corrupt=True), progress=False)
    assert [item["file"] for item in built.info["corrupt_skipped"]] == ["train2017/000000000003.jpg",
                                                                        "val2017/000000001002.jpg"]
    assert len(built.dataset.test) == 11


def test_vww_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="COCO folder not found"):
        build(_cfg(tmp_path / "nope"), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no COCO annotations found"):
        build(_cfg(tmp_path / "empty"), progress=False)
    root = make_coco(tmp_path / "coco")
    bad = root / "annotations" / "instances_train2017.json"
    bad.write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(DataError, match=r"instances_train2017.json:2:\d+: not valid JSON"):
        build(_cfg(root), progress=False)
