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
from edge.training.data import build, parse_source
from edge.training.images import load_image

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
