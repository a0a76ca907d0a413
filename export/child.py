"""Run export work in a child process (torch, TensorFlow and TFLM each get their own).

A child that fails with an EdgeError prints `error: ...` and exits with its code; a child that
dies (a native crash, SIGABRT from TFLM, out of memory) is turned into an ExportError that names
the signal and quotes the end of its stderr.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from edge.errors import EdgeError, ExportError


def child_main(func: Callable[..., Any], *args: Any) -> int:
    """Run a child's work: an EdgeError becomes `error: ...` on stderr and its exit code."""
    try:
        func(*args)
    except EdgeError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    return 0


def run_module(module: str, args: list[str], *, what: str, timeout_s: float = 600.0) -> str:
    """Run `python -m module args...`; return its stdout + stderr, or raise ExportError on failure."""
    env = os.environ.copy()
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
    cmd = [sys.executable, "-m", module, *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ExportError(f"{what} did not finish within {timeout_s:.0f} s", where=module,
                          hint="the model may be far larger than intended; check the spec") from exc
    if proc.returncode == 0:
        return proc.stdout + proc.stderr
    tail = "\n    ".join(line for line in proc.stderr.strip().splitlines()[-8:])
    errors = [line[len("error: "):] for line in proc.stderr.splitlines() if line.startswith("error: ")]
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise ExportError(f"{what} crashed (killed by {name}); last output:\n    {tail}", where=module,
                          hint="a native library aborted; the lines above usually name the op or tensor")
    message = errors[-1] if errors else f"{what} failed (exit {proc.returncode}); last output:\n    {tail}"
    raise ExportError(message, where=None if errors else module)
