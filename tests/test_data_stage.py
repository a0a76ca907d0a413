"""The data stage through the real manifest: npz + samples + source.json, hashes, reproducible bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.atomic import sha256_file
from edge.config import RunConfig, load_config
from edge.errors import DataError
from edge.manifest import Manifest
from edge.pipeline import config_fingerprint, stage_spec
from edge.training.dataset import load_dataset
from edge.training.stages.data import run_stage

SMALL = ["data.n_train=24", "data.n_val=10", "data.n_test=12", "data.n_calib=8", "data.image_size=32"]


def _run_data(run_dir: Path, config: RunConfig) -> Manifest:
    manifest = Manifest(run_dir)
    manifest.config = config.model_dump(mode="json")
    fingerprint = config_fingerprint(config, stage_spec("data"))
    run = manifest.begin("data", fingerprint)
    run_stage(run, config)
    manifest.commit(run.finish(stage_spec("data").tools))
    return Manifest(run_dir)


def test_stage_writes_hashed_outputs_and_metrics(tmp_path: Path) -> None:
    config = load_config(overrides=SMALL)
    manifest = _run_data(tmp_path / "run", config)
    record = manifest.stages["data"]
    assert set(record.outputs) == {"dataset", "samples", "source"}
    for ref in record.outputs.values():
        assert sha256_file(manifest.resolve(ref.path)) == ref.sha256
    assert record.outputs["dataset"].path == "data/dataset.npz"
    assert manifest.resolve(record.outputs["samples"].path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = record.metrics
    assert (m["n_train"], m["n_val"], m["n_test"], m["n_calib"]) == (24, 10, 12, 8)
    assert m["class_counts"]["train"] == {"no_person": 12, "person": 12}
    assert m["class_counts"]["calib"] == {"no_person": 4, "person": 4}
    assert (m["image_size_px"], m["channels"], m["source"], m["corrupt_files"]) == (32, 1, "synthetic", 0)
    assert len(m["source_fingerprint"]) == 64
    assert manifest.staleness("data", config_fingerprint(config, stage_spec("data"))) is None
    assert record.tools["numpy"] != "not installed"

    ds = load_dataset(manifest.artifact("data", "dataset"))
    assert ds.labels == ["no_person", "person"]
    assert (ds.image_size, ds.channels) == (32, 1)
    assert ds.train.x.shape == (24, 32, 32, 1) and ds.train.x.dtype == np.uint8 and ds.train.y.dtype == np.int64
    # the calibration subset is a part of train
    train_rows = {row.tobytes() for row in ds.train.x}
    assert all(row.tobytes() in train_rows for row in ds.calib.x)


def test_same_config_same_bytes(tmp_path: Path) -> None:
    """Rebuilding gives byte-identical files, so later stages are not invalidated needlessly."""
    config = load_config(overrides=SMALL)
    first = _run_data(tmp_path / "a", config).stages["data"].outputs
    second = _run_data(tmp_path / "b", config).stages["data"].outputs
    for key in ("dataset", "samples", "source"):
        assert first[key].sha256 == second[key].sha256, key
    other = _run_data(tmp_path / "c", load_config(overrides=[*SMALL, "data.seed=1"])).stages["data"].outputs
    assert other["dataset"].sha256 != first["dataset"].sha256


def test_rgb_stage_and_imagefolder_record(tmp_path: Path) -> None:
    from test_data_imagefolder import make_tree

    root = make_tree(tmp_path / "tree", {"a": 5, "b": 5})
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    overrides = [f"data.source=imagefolder:{root}", "data.image_size=16", "data.channels=3", "data.n_calib=4",
                 "data.val_fraction=0.2", "data.test_fraction=0.2", "data.skip_corrupt=true"]
    manifest = _run_data(tmp_path / "run", load_config(overrides=overrides))
    record = manifest.stages["data"]
    assert record.metrics["corrupt_files"] == 1
    assert record.metrics["source"] == "imagefolder"
    info = json.loads(manifest.resolve(record.outputs["source"].path).read_text())
    assert [item["file"] for item in info["corrupt_skipped"]] == ["b/broken.png"]
    assert info["fingerprint"] == record.metrics["source_fingerprint"]
    assert any("1 unreadable images left out" in note for note in record.notes)
    ds = load_dataset(manifest.artifact("data", "dataset"))
    assert ds.train.x.shape[1:] == (16, 16, 3) and ds.labels == ["a", "b"]


def test_load_dataset_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, train_x=np.zeros((2, 4, 4, 1), np.uint8))
    with pytest.raises(DataError) as err:
        load_dataset(path)
    assert f"{path}: not a data set file: missing arrays train_y, val_x" in str(err.value)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot read the data set"):
        load_dataset(tmp_path / "junk.npz")


def test_calibration_larger_than_train_is_an_error(tmp_path: Path) -> None:
    config = load_config(overrides=[*SMALL, "data.n_calib=30"])
    with pytest.raises(DataError) as err:
        _run_data(tmp_path / "run", config)
    assert str(err.value).startswith("data.n_calib: calibration subset of 30 images asked for, but train has only 24")


def test_cli_reports_a_bad_source_with_exit_2(tmp_path: Path) -> None:
    """Through `edge data` and the pipeline's child process: the message and exit code reach the user."""
    cmd = [sys.executable, "-m", "edge", "data", "--run", "bad", "--runs-dir", str(tmp_path), "--data", "imagefoldr:/x"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2
    assert "error: data.source: unknown data source 'imagefoldr:/x'" in done.stderr
    assert "did you mean 'imagefolder'?" in done.stderr
