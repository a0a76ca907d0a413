"""The report's charts as PNG bytes (matplotlib figures without pyplot; small and print-friendly)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.report.measure import PERTURBATIONS, Calibration

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

DPI = 100


def _fig(width: float = 5.2, height: float = 3.0, ncols: int = 1, **kw: Any) -> tuple[MplFigure, Any]:
    """A figure not tied to pyplot's global state (nothing to close, safe in any backend)."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=DPI)
    return fig, fig.subplots(1, ncols, **kw)


def _png(fig: MplFigure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def bars(labels: Sequence[str], values: Sequence[float], xlabel: str, title: str,
         reference: tuple[str, float] | None = None, xlim: tuple[float, float] | None = None) -> bytes:
    """Horizontal bars with values written at their ends (and an optional reference line)."""
    fig, ax = _fig(5.2, 0.5 + 0.32 * len(labels))
    y = np.arange(len(labels))
    ax.barh(y, values, color="#4c78a8")
    for yi, v in zip(y, values, strict=True):
        ax.text(v, yi, f" {v:.3g}", va="center", fontsize=8)
    if reference:
        ax.axvline(reference[1], color="#e45756", ls="--", lw=1, label=reference[0])
        ax.legend(fontsize=8, loc="lower right")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    if xlim:
        ax.set_xlim(*xlim)
    return _png(fig)


def confusion_plot(matrix: np.ndarray, labels: Sequence[str], title: str) -> bytes:
    """Confusion matrix, rows true class, columns predicted, counts written in the cells."""
    k = len(labels)
    size = min(6.0, 2.2 + 0.35 * k)
    fig, ax = _fig(size, size * 0.85)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), labels, rotation=45 if k > 4 else 0, fontsize=8, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted", fontsize=9)
    ax.set_ylabel("true", fontsize=9)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def robustness_plot(curves: dict[str, list[tuple[float, float]]], title: str) -> bytes:
    """Top-1 vs perturbation strength, one panel per perturbation."""
    fig, axes = _fig(8.0, 2.4, len(PERTURBATIONS), sharey=True)
    for ax, p in zip(np.atleast_1d(axes), PERTURBATIONS, strict=True):
        pts = curves.get(p.name, [])
        ax.plot([s for s, _ in pts], [a for _, a in pts], "o-", color="#4c78a8", ms=4)
        ax.axvline(p.judged, color="#999", ls=":", lw=1)
        ax.set_title(p.name, fontsize=9)
        ax.set_xlabel(p.unit, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, 1.02)
    np.atleast_1d(axes)[0].set_ylabel("top-1", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def reliability_plot(cal: Calibration, title: str) -> bytes:
    """Reliability diagram: accuracy per confidence bin against the diagonal."""
    fig, ax = _fig(3.6, 3.2)
    bins = len(cal.bin_count)
    centres = (np.arange(bins) + 0.5) / bins
    acc = np.nan_to_num(np.array(cal.bin_accuracy, dtype=float))
    ax.bar(centres, acc, width=1.0 / bins, edgecolor="#333", color="#4c78a8", alpha=0.8, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="#e45756", lw=1, label="perfect calibration")
    ax.set_xlabel("confidence (top-1 softmax)", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"{title}: ECE {cal.ece:.3f}", fontsize=9)
    ax.tick_params(labelsize=7)
    return _png(fig)


def grouped_bars(groups: Sequence[str], series: dict[str, Sequence[float]], ylabel: str, title: str,
                 log: bool = False) -> bytes:
    """Bars per group, one colour per series (e.g. float vs int8 per op class)."""
    fig, ax = _fig(6.0, 3.0)
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if log:
        from matplotlib.ticker import LogLocator, NullLocator

        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(numticks=6))
        ax.yaxis.set_minor_locator(NullLocator())  # minor log ticks cost seconds in tight_layout
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)
    return _png(fig)


def usage_plot(items: Sequence[tuple[str, float, float]], title: str) -> bytes:
    """Used vs available (fraction bars with the budget at 1.0), e.g. flash and RAM."""
    labels = [f"{name} ({used / 1024:,.0f} / {avail / 1024:,.0f} KiB)" for name, used, avail in items]
    fractions = [used / avail if avail else 0.0 for _, used, avail in items]
    return bars(labels, fractions, "fraction of the budget", title, ("budget", 1.0),
                (0, max(1.1, max(fractions, default=0) * 1.15)))


def lifetime_plot(percentiles: dict[str, float], target_days: float, horizon_days: float | None, title: str) -> bytes:
    """Lifetime percentiles in years against the target (and the simulated horizon)."""
    fig, ax = _fig(5.2, 1.9)
    names = list(percentiles)
    years = [d / 365.25 for d in percentiles.values()]
    ax.barh(names, years, color="#54a24b")
    ax.axvline(target_days / 365.25, color="#e45756", ls="--", lw=1, label="target")
    if horizon_days:
        ax.axvline(horizon_days / 365.25, color="#999", ls=":", lw=1, label="simulated horizon")
    for name, y in zip(names, years, strict=True):
        ax.text(y, name, f" {y:.1f} y", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("years", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    return _png(fig)
