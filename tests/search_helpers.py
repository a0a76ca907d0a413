"""Shared by the search tests: the CLI in a child process, tiny trial settings, the study of a run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: A data set and schedule small enough for a trial of about a minute on one busy core.
TINY = [
    "--set", "data.n_train=64", "--set", "data.n_val=20", "--set", "data.n_test=20", "--set", "data.n_calib=8",
    "--set", "train.batch_size=16", "--set", "train.epochs=2", "--set", "prune.steps=1", "--set", "qat.epochs=1",
    "--set", "battery.runs=100",
]


def search_cmd(tmp_path: Path, *args: str) -> list[str]:
    """`python -m edge search ... --runs-dir tmp/runs`."""
    return [sys.executable, "-m", "edge", "search", *args, "--runs-dir", str(tmp_path / "runs")]


def run_search(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `edge search` to its end."""
    env = {**os.environ, "NNCF_EXTENSION_LOAD_TIMEOUT": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(search_cmd(tmp_path, *args), capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=timeout)


def study_of(tmp_path: Path, run: str) -> Any:
    """The Optuna study of `edge search --run RUN` (default journal storage)."""
    import optuna

    from edge.search.storage import open_storage

    storage, _ = open_storage(None, tmp_path / "runs" / run / "search")
    return optuna.load_study(study_name=f"edge-search-{run}", storage=storage)
