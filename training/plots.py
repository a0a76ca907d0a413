"""Plots of training curves (matplotlib, headless)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from edge.atomic import atomic_path


def plot_history(history: Sequence[dict[str, float]], path: str | os.PathLike[str], title: str) -> Path:
    """Loss and validation accuracy per epoch, saved atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] + 1 for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{title}: loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [r["val_top1"] for r in history], color="tab:green")
    ax_acc.set(xlabel="epoch", ylabel="val top-1", title=f"{title}: accuracy", ylim=(0, 1))
    ax_acc.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
