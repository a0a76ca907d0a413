"""Deterministic, stratified split and calibration-subset choices (numpy only)."""

from __future__ import annotations

import numpy as np

from edge.errors import DataError


def stratified_split(y: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Indices per split name; each class is shuffled with `seed` and cut by `fractions`.

    Every split named in `fractions` gets round(n * fraction) images of each class (at least one
    when the class has 3 or more images); 'train' gets the rest. Indices come back sorted.
    """
    parts: dict[str, list[np.ndarray]] = {"train": [], **{name: [] for name in fractions}}
    rng = np.random.default_rng(np.random.SeedSequence([0x5B17, seed % 2**32]))
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        members = members[rng.permutation(len(members))]
        start = 0
        for name, fraction in fractions.items():
            count = round(len(members) * fraction)
            if len(members) >= 3:
                count = max(count, 1)
            parts[name].append(members[start: start + count])
            start += count
        parts["train"].append(members[start:])
    return {name: np.sort(np.concatenate(chunks)).astype(np.int64) for name, chunks in parts.items()}


def calib_indices(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A fixed, class-balanced choice of `n` indices of `y` (sorted), e.g. the calibration subset."""
    if n > len(y):
        raise DataError(f"calibration subset of {n} images asked for, but train has only {len(y)}",
                        where="data.n_calib", hint=f"set data.n_calib to at most {len(y)}")
    rng = np.random.default_rng(np.random.SeedSequence([0xCA1B, seed % 2**32]))
    classes = np.unique(y)
    pools = {int(c): list(np.flatnonzero(y == c)[rng.permutation(int((y == c).sum()))]) for c in classes}
    chosen: list[int] = []
    while len(chosen) < n:  # round-robin over classes until n are taken
        for c in classes:
            if pools[int(c)] and len(chosen) < n:
                chosen.append(int(pools[int(c)].pop()))
    return np.sort(np.array(chosen, dtype=np.int64))
