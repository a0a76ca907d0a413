"""The pipeline through the real CLI: skipping unchanged stages, user data, interrupt + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from edge_cli import run_edge
from PIL import Image

TINY = [
    "--set", "data.n_train=64", "--set", "data.n_val=20", "--set", "data.n_test=20", "--set", "data.n_calib=8",
    "--set", "data.image_size=32", "--set", "model.name=vit_lite_xs", "--set", "train.threads=1",
    "--set", "train.batch_size=16",
]


def edge(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`edge ARGS` run in tmp_path on the runs folder tmp_path/runs."""
    return run_edge(*args, "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)


def manifest(tmp_path: Path, run: str) -> dict:
    return json.loads((tmp_path / "runs" / run / "manifest.json").read_text())


def test_unchanged_stage_is_skipped_and_a_changed_config_reruns(tmp_path):
    first = edge(tmp_path, "data", *TINY)
    assert first.returncode == 0, first.stderr
    assert "[edge] data: running (not run yet)" in first.stderr
    again = edge(tmp_path, "data")  # the run remembers its explicit settings, not the defaults
    assert "[edge] data: up to date, skipped" in again.stderr
    saved = manifest(tmp_path, "default")
    assert saved["settings"]["data"]["n_train"] == 64 and "qat" not in saved["settings"]
    assert saved["config"]["qat"]["epochs"] >= 0  # the resolved config has every key
    changed = edge(tmp_path, "data", "--set", "data.seed=1")
    assert "[edge] data: running (its config changed)" in changed.stderr


def test_tampered_artifact_is_refused_by_a_stage_and_rebuilt_by_the_pipeline(tmp_path):
    assert edge(tmp_path, "data", *TINY).returncode == 0
    npz = tmp_path / "runs/default/data/dataset.npz"
    good = npz.read_bytes()
    npz.write_bytes(good[:-10] + b"0123456789")
    direct = run_edge("stage", "train", "--run-dir", "runs/default", cwd=tmp_path)
    assert direct.returncode == 2
    assert "output 'dataset' of stage 'data' changed after it was written" in direct.stderr
    rebuilt = edge(tmp_path, "data")
    assert "[edge] data: running (output 'dataset' is missing or changed)" in rebuilt.stderr
    assert npz.read_bytes() == good  # deterministic: the same bytes again


def test_train_on_a_user_imagefolder_with_three_classes_and_odd_sizes(tmp_path):
    rng = np.random.default_rng(0)
    for k, name in enumerate(["cat", "dog", "fox"]):
        folder = tmp_path / "photos" / name
        folder.mkdir(parents=True)
        for i in range(24):
            pixels = rng.integers(0, 40, (30, 41, 3), dtype=np.uint8)
            pixels[:, 12 * k : 12 * k + 12] = 220  # a class-specific bright band
            Image.fromarray(pixels).save(folder / f"{i}.png")
    result = edge(tmp_path, "train", "--data", f"imagefolder:{tmp_path / 'photos'}", "--epochs", "12",
                  "--set", "data.image_size=24", "--set", "model.name=vit_lite_xs", "--set", "train.threads=1",
                  "--set", "train.batch_size=16", "--set", "train.lr=0.005", "--set", "train.warmup_epochs=1",
                  "--set", "data.channels=3", "--set", "data.n_calib=6")
    assert result.returncode == 0, result.stderr
    assert "[edge] train: up to date, skipped" in edge(tmp_path, "data").stderr + edge(tmp_path, "train").stderr
    Image.fromarray(np.zeros((30, 41, 3), dtype=np.uint8)).save(tmp_path / "photos/cat/new.png")
    assert "[edge] data: running (its source changed)" in edge(tmp_path, "data").stderr
    stages = manifest(tmp_path, "default")["stages"]
    metrics = stages["train"]["metrics"]
    spec = json.loads((tmp_path / "runs/default/train/model_spec.json").read_text())
    assert spec["labels"] == ["cat", "dog", "fox"] and spec["num_classes"] == 3
    assert (spec["img_size"], spec["in_chans"]) == (24, 3)
    assert metrics["val_top1"] >= 0.8
    assert {"val_top1", "params", "macs", "wall_s"} <= set(metrics)


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_model(tmp_path):
    resumable = [*TINY, "--epochs", "6", "--set", "train.early_stop_patience=20"]
    straight = edge(tmp_path, "train", "--run", "straight", *resumable)
    assert straight.returncode == 0, straight.stderr

    proc = subprocess.Popen([sys.executable, "-m", "edge", "train", "--run", "cut", "--runs-dir",
                             str(tmp_path / "runs"), *resumable], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "runs/cut/train/checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "continue with `edge train --resume`" in stderr
    assert "train" not in manifest(tmp_path, "cut")["stages"]

    resumed = edge(tmp_path, "train", "--run", "cut", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = tmp_path / "runs/straight/train/model.safetensors"
    b = tmp_path / "runs/cut/train/model.safetensors"
    assert a.read_bytes() == b.read_bytes()
    assert manifest(tmp_path, "cut")["stages"]["train"]["metrics"]["epochs_run"] == 6
