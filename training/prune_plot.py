"""The prune stage's picture: validation accuracy against model size across pruning steps."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.atomic import atomic_path


def plot_size_vs_accuracy(steps: Sequence[dict[str, Any]], path: str | os.PathLike[str],
                          title: str = "pruning: accuracy vs size", max_drop: float | None = None) -> Path:
    """val_top1 after pruning and after fine-tuning against params (and int8 KB), saved as PNG; with
    `max_drop`, the accepted band below the trained model, the kept step ringed and undone steps crossed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = [s["params"] / 1000 for s in steps]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(params, [s["val_top1"] for s in steps], "o-", color="tab:green", label="after fine-tuning")
    pruned = [(p, s["val_top1_pruned"]) for p, s in zip(params, steps, strict=True)
              if s.get("val_top1_pruned") is not None]
    if pruned:
        ax.plot(*zip(*pruned, strict=True), "x", color="tab:red", label="right after pruning")
    if max_drop is not None:
        floor = steps[0]["val_top1"] - max_drop
        ax.axhline(floor, color="tab:gray", linestyle="--", linewidth=1,
                   label=f"trained - prune.max_drop ({floor:.3f})")
    undone = [(p, s["val_top1"]) for p, s in zip(params, steps, strict=True) if s.get("accepted") is False]
    if undone:
        ax.plot(*zip(*undone, strict=True), "s", markersize=10, markerfacecolor="none", color="tab:red",
                label="undone (lost more than max_drop)")
    kept = [(p, s["val_top1"]) for p, s in zip(params, steps, strict=True) if s.get("accepted", True)][-1]
    ax.plot(*kept, "o", markersize=13, markerfacecolor="none", color="black", label="kept")
    for p, s in zip(params, steps, strict=True):
        ax.annotate(f"step {s['step']}\n{s['int8_bytes_estimate'] / 1024:.0f} KB int8",
                    (p, s["val_top1"]), textcoords="offset points", xytext=(4, -22), fontsize=7)
    ax.set(xlabel="parameters (thousands)", ylabel="val top-1", title=title)
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
