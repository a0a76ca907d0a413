"""Plots of a lifetime simulation: state of charge over time and the energy breakdown."""

from __future__ import annotations

from pathlib import Path

from edge.atomic import atomic_path
from edge.power.simulate import SimResult


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_soc(sim: SimResult, path: Path, title: str, target_days: float | None = None) -> Path:
    """State of charge (P5/P50/P95 over Monte Carlo runs) against time in years."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4))
    years = sim.soc_days / 365.25
    ax.fill_between(years, 100 * sim.soc_p5, 100 * sim.soc_p95, alpha=0.3, label="P5-P95 of runs")
    ax.plot(years, 100 * sim.soc_p50, label="median run")
    if target_days:
        ax.axvline(target_days / 365.25, color="k", linestyle="--", label="target")
    if sim.brownout_soc > 0.02:
        ax.axhline(100 * sim.brownout_soc, color="r", linestyle=":", label="brown-out under peak load")
    ax.set_xlabel("years")
    ax.set_ylabel("state of charge (% of capacity at this load)")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_breakdown(sim: SimResult, path: Path, title: str) -> Path:
    """Where the battery's charge went over the lifetime, by state (mean over runs)."""
    plt = _figure()
    items = sorted(sim.breakdown_mAh.items(), key=lambda kv: kv[1])
    total = sum(v for _, v in items) or 1.0
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh([k for k, _ in items], [v for _, v in items])
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v:.1f} mAh ({100 * v / total:.0f} %)", va="center")
    ax.set_xlabel("charge over the lifetime (mAh)")
    ax.set_xlim(0, max(v for _, v in items) * 1.45 + 1e-9)
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
