"""The edge command line in a child process, as a user runs it: the one way tests start `python -m edge`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_edge(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`python -m edge ARGS` in a child process (in `cwd`), output captured as text; unbuffered and with a fixed
    hash seed, so what it prints and in which order repeats. Raises subprocess.TimeoutExpired after `timeout` s."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONHASHSEED": "0"}
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env, check=False)
