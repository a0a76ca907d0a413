"""Speed of the data sources: synthetic frames per second, and decoding of an ImageFolder tree.

Prints figures and ratios against a baseline measured in the same run (numpy filling the same
array with random bytes), so the numbers mean something on a loaded machine too. Target
(issue 2): the default 5,600 synthetic 64x64 frames in well under 30 s on one core.

    .venv/bin/python bench/bench_data.py [--frames 1000] [--size 64] [--channels 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from edge.config import DataConfig
from edge.training.loaders import build_imagefolder
from edge.training.synthetic import generate


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cpu_time(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): CPU time is what one free core would take."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    """Measure and print; exit 1 when the default set would take 30 s or more of CPU time."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    args = parser.parse_args()
    n, size, ch = args.frames, args.size, args.channels

    rng = np.random.default_rng(0)
    baseline = _time(lambda: rng.integers(0, 256, size=(n, size, size, ch), dtype=np.uint8))
    synth, cpu = _cpu_time(lambda: generate("train", n, size, ch, progress=False))
    per_frame_ms = cpu / n * 1e3
    default_s = per_frame_ms * 5600 / 1e3
    print(f"synthetic {size}x{size}x{ch}: {per_frame_ms:.2f} ms CPU/frame ({synth / n * 1e3:.2f} ms wall on this "
          f"machine now), {synth / max(baseline, 1e-9):.0f}x the time of filling the array with random bytes")
    print(f"default set (5,600 frames) on one free core: {default_s:.1f} s (target < 30 s)")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for cls in ("a", "b"):
            (root / cls).mkdir()
            for i in range(200):
                img = Image.fromarray(rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8))
                img.save(root / cls / f"{i}.jpg", quality=85)
        cfg = DataConfig(source=f"imagefolder:{root}", image_size=size, channels=ch)
        load = _time(lambda: build_imagefolder(cfg, root, progress=False))
        print(f"imagefolder, 400 JPEGs 320x240 -> {size}x{size}x{ch}: {load / 400 * 1e3:.2f} ms/image")
    return 0 if default_s < 30 else 1


if __name__ == "__main__":
    raise SystemExit(main())
