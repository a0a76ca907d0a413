"""imagefolder:PATH — odd sizes and modes, stratified deterministic splits, corrupt files, clear errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.config import DataConfig
from edge.errors import DataError
from edge.training.images import load_image
from edge.training.stages.data import build, parse_source

MODES = ("RGB", "L", "RGBA", "P")


def _image(rng: np.random.Generator, mode: str, size: tuple[int, int]) -> Image.Image:
    rgb = Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8), "RGB")
    if mode == "P":
        return rgb.quantize(colors=16)
    return rgb.convert(mode)


def make_tree(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """ROOT/<class>/img_<i>.{png,jpg} with assorted sizes and modes (JPEG only for RGB and L)."""
    rng = np.random.default_rng(seed)
    for cls, count in per_class.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            mode = MODES[i % len(MODES)]
            size = (int(rng.integers(20, 90)), int(rng.integers(15, 70)))
            img = _image(rng, mode, size)
            suffix = ".jpg" if mode in ("RGB", "L") and i % 3 == 0 else ".png"
            img.save(root / cls / f"img_{i:02d}{suffix}")
    return root


def _cfg(root: Path, **kw: object) -> DataConfig:
    base = {"source": f"imagefolder:{root}", "image_size": 24, "channels": 3, "n_calib": 6,
            "val_fraction": 0.2, "test_fraction": 0.2}
    return DataConfig(**{**base, **kw})


def test_three_classes_odd_sizes_and_modes(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree", {"cat": 10, "dog": 12, "fox": 8})
    (root / "cat" / "notes.txt").write_text("not an image")
    built = build(_cfg(root), progress=False)
    ds = built.dataset
    assert ds.labels == ["cat", "dog", "fox"]
    assert (ds.image_size, ds.channels) == (24, 3)
    total = len(ds.train) + len(ds.val) + len(ds.test)
    assert total == 30
    # stratified: 20 % of each class in val and in test (rounded), the rest in train
    assert np.bincount(ds.val.y).tolist() == [2, 2, 2]
    assert np.bincount(ds.test.y).tolist() == [2, 2, 2]
    assert np.bincount(ds.train.y).tolist() == [6, 8, 4]
    assert len(ds.calib) == 6 and np.bincount(ds.calib.y).tolist() == [2, 2, 2]
    for split in (ds.train, ds.val, ds.test, ds.calib):
        assert split.x.dtype == np.uint8 and split.x.shape[1:] == (24, 24, 3)
        assert split.y.dtype == np.int64
    assert built.info["ignored_non_images"] == 1
    assert built.info["files"] == 30


def test_gray_output_and_deterministic_split(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree", {"a": 9, "b": 9})
    first = build(_cfg(root, channels=1), progress=False).dataset
    again = build(_cfg(root, channels=1), progress=False).dataset
    other_seed = build(_cfg(root, channels=1, seed=5), progress=False).dataset
    assert first.train.x.shape[1:] == (24, 24, 1)
    assert np.array_equal(first.train.x, again.train.x) and np.array_equal(first.test.x, again.test.x)
    assert not np.array_equal(first.test.x, other_seed.test.x)


def test_modes_convert_exactly(tmp_path: Path) -> None:
    """RGBA is composited over black, palette images expand, 16-bit gray is scaled to 8 bits."""
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128  # red at half opacity over black -> 100
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png", 8, 3)[0, 0].tolist() == [100, 0, 0]
    deep = Image.fromarray(np.full((8, 8), 65535, np.uint16))
    deep.save(tmp_path / "d.png")
    assert load_image(tmp_path / "d.png", 8, 1)[0, 0, 0] == 255
    pal = Image.fromarray(np.full((8, 8, 3), (10, 200, 30), np.uint8), "RGB").quantize(colors=2)
    pal.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png", 4, 3)[0, 0].tolist() == [10, 200, 30]


def test_centre_crop_keeps_the_middle(tmp_path: Path) -> None:
    arr = np.zeros((10, 30), np.uint8)
    arr[:, 10:20] = 255  # a white centre square between black side bands
    Image.fromarray(arr).save(tmp_path / "wide.png")
    assert load_image(tmp_path / "wide.png", 10, 1, "crop").min() == 255
    assert load_image(tmp_path / "wide.png", 10, 1, "stretch")[:, 0].max() == 0


def _corrupt(root: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(buf, format="JPEG")
    (root / "dog" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "fox" / "noise.png").write_bytes(np.random.default_rng(1).bytes(300))


def test_corrupt_files_fail_by_name(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree", {"cat": 6, "dog": 6, "fox": 6})
    _corrupt(root)
    with pytest.raises(DataError) as err:
        build(_cfg(root), progress=False)
    text = str(err.value)
    assert "2 of 20 images cannot be read" in text
    assert "dog/truncated.jpg" in text and "fox/noise.png (not a recognised image format)" in text
    assert "data.skip_corrupt=true" in text
    assert err.value.exit_code == 2


def test_skip_corrupt_records_the_list(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree", {"cat": 6, "dog": 6, "fox": 6})
    _corrupt(root)
    built = build(_cfg(root, skip_corrupt=True), progress=False)
    skipped = sorted(item["file"] for item in built.info["corrupt_skipped"])
    assert skipped == ["dog/truncated.jpg", "fox/noise.png"]
    ds = built.dataset
    assert len(ds.train) + len(ds.val) + len(ds.test) == 18
    assert any("2 unreadable images left out" in note for note in built.notes)
    json.dumps(built.info)  # the record is plain JSON


def test_fingerprint_follows_the_tree(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree", {"a": 4, "b": 4})
    first = build(_cfg(root), progress=False).info["fingerprint"]
    assert build(_cfg(root), progress=False).info["fingerprint"] == first
    _image(np.random.default_rng(3), "RGB", (30, 30)).save(root / "b" / "new.png")
    assert build(_cfg(root), progress=False).info["fingerprint"] != first


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (None, "image folder not found"),
        ({"only": 3}, "found 1 class folder(s) (only), need at least 2"),
        ({}, "found 0 class folder(s), need at least 2"),
        ({"a": 3, "b": 0}, "class folder(s) without images: b"),
    ],
)
def test_folder_errors(tmp_path: Path, layout: dict[str, int] | None, message: str) -> None:
    root = tmp_path / "tree"
    if layout is not None:
        root.mkdir()
        make_tree(root, {k: v for k, v in layout.items() if v})
        for name in layout:
            (root / name).mkdir(exist_ok=True)
    with pytest.raises(DataError) as err:
        build(_cfg(root), progress=False)
    assert message in str(err.value)
    assert str(root) in str(err.value)


def test_unknown_scheme_suggests() -> None:
    with pytest.raises(DataError) as err:
        parse_source("imagefoldr:/data")
    assert str(err.value).startswith("data.source: unknown data source 'imagefoldr:/data'")
    assert "did you mean 'imagefolder'?" in str(err.value)
    with pytest.raises(DataError, match="'vww' needs a folder"):
        parse_source("vww:")
    assert parse_source("imagefolder:~/x")[1].endswith("/x") and "~" not in parse_source("imagefolder:~/x")[1]


def test_users_own_split_is_kept(tmp_path: Path) -> None:
    """train/ val/ test/ on top (any case, 'valid' too): each split read from its folder, nothing re-split."""
    root = tmp_path / "tree"
    make_tree(root / "train", {"cat": 7, "dog": 5})
    make_tree(root / "Valid", {"cat": 2, "dog": 3}, seed=1)
    make_tree(root / "test", {"cat": 4, "dog": 1}, seed=2)
    built = build(_cfg(root), progress=False)
    ds = built.dataset
    assert ds.labels == ["cat", "dog"]
    assert np.bincount(ds.train.y).tolist() == [7, 5]
    assert np.bincount(ds.val.y).tolist() == [2, 3]
    assert np.bincount(ds.test.y).tolist() == [4, 1]
    assert built.info["split"] == "user folders: train=train/, val=Valid/, test=test/"
    assert built.info["files"] == 22


def test_missing_val_folder_is_cut_from_train(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    make_tree(root / "train", {"a": 10, "b": 10})
    make_tree(root / "test", {"a": 2, "b": 2}, seed=1)
    built = build(_cfg(root, val_fraction=0.2), progress=False)
    ds = built.dataset
    assert np.bincount(ds.val.y).tolist() == [2, 2] and np.bincount(ds.train.y).tolist() == [8, 8]
    assert np.bincount(ds.test.y).tolist() == [2, 2]
    assert any("no val/ folder: val split cut from train/ (data.val_fraction=0.2)" in n for n in built.notes)


@pytest.mark.parametrize(
    ("folders", "message"),
    [
        (["train", "val", "cat"], "folder names look like splits (train/, val/) but the tree is not a split tree "
                                  "(other top-level folders: cat)"),
        (["val", "test"], "folder names look like splits (test/, val/) but the tree is not a split tree "
                          "(no train/ folder)"),
        (["train", "training"], "two folders for the train split: train/ and training/"),
    ],
)
def test_split_like_class_names_are_refused(tmp_path: Path, folders: list[str], message: str) -> None:
    """A class tree whose classes are named like splits is never read silently as classes 'train', 'val'."""
    root = tmp_path / "tree"
    for name in folders:
        make_tree(root / name, {"x": 2, "y": 2})
    with pytest.raises(DataError) as err:
        build(_cfg(root), progress=False)
    assert message in str(err.value)
    assert str(root) in str(err.value) and err.value.exit_code == 2


def test_image_size_is_proposed_from_the_data(tmp_path: Path) -> None:
    """data.image_size null: the median short side, rounded down to a multiple of 8, 16..64, recorded."""
    root = tmp_path / "tree"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i, side in enumerate((30, 37, 41, 200)):
            Image.fromarray(np.full((side, side + 5), 60 * i, np.uint8)).save(root / cls / f"{i}.png")
    built = build(_cfg(root, image_size=None, val_fraction=0.25, test_fraction=0.25, n_calib=2), progress=False)
    assert built.dataset.image_size == 32  # median of 30, 37, 41, 200 is 39 -> 32
    assert built.info["image_size"]["px"] == 32
    assert "median short side of 8 sampled images is 39 px -> 32 px" in built.info["image_size"]["from"]
    assert any(note.startswith("image size 32 px proposed from the data") for note in built.notes)
    assert build(_cfg(root, val_fraction=0.25, test_fraction=0.25, n_calib=2), progress=False).dataset.image_size == 24


def test_digits_tree_is_a_users_split(tmp_path: Path) -> None:
    """scikit-learn's digits written as an ImageFolder tree: 1,797 real images, 10 classes, split kept."""
    from edge.training.digits import write_digits_imagefolder

    root = write_digits_imagefolder(tmp_path / "digits", size=16)
    built = build(DataConfig(source=f"imagefolder:{root}", channels=1, n_calib=50), progress=False)
    ds = built.dataset
    assert ds.labels == [str(d) for d in range(10)] and ds.image_size == 16
    assert (len(ds.train), len(ds.val), len(ds.test)) == (1259, 269, 269)
    assert built.info["split"].startswith("user folders: train=train/")
