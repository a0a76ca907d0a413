"""The search's answer: every trial as a row, the Pareto front of the feasible ones, the recommended
trial (the most accurate feasible one, ties to lower energy) and the files: pareto.json, pareto.csv,
trials.csv and pareto.png in `runs/<run>/search/`."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from edge.atomic import atomic_path, atomic_write_json, atomic_write_text
from edge.search import constraints as cons
from edge.search.space import SPACE

CSV_FIELDS = ("number", "state", "feasible", "val_int8_top1", "energy_uJ", "energy_basis", "test_int8_top1",
              "tflite_int8_bytes", "lifetime_p5_days", "violated", "why", *(d.name for d in SPACE))


def trial_row(trial: Any) -> dict[str, Any]:
    """One trial as plain data: state, objectives (None where nothing was measured), constraints, figures."""
    attrs = trial.user_attrs
    state = trial.state.name
    values = trial.values if state == "COMPLETE" else None
    measured = values is not None and "rejected" not in attrs
    constraints = attrs.get("constraints") or {}
    figures = attrs.get("figures") or {}
    return {
        "number": trial.number, "state": state, "params": dict(trial.params),
        "feasible": bool(measured and cons.feasible(constraints)),
        "val_int8_top1": values[0] if measured and values else None,
        "energy_uJ": values[1] if values else None,
        "energy_basis": figures.get("energy_basis", "MAC-only estimate" if values else None),
        "constraints": constraints, "violated": cons.violated(constraints) if values else [],
        "why": attrs.get("rejected") or attrs.get("pruned") or attrs.get("failed") or attrs.get("note"),
        "rejected_before_training": "rejected" in attrs, "warm_start": "warm_start" in attrs,
        "retry_of": attrs.get("retry_of"), "figures": figures, "estimate": attrs.get("estimate") or {},
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
    }


def rows_of(study: Any) -> list[dict[str, Any]]:
    """Every trial of the study as a row, in trial order."""
    return [trial_row(t) for t in study.get_trials(deepcopy=False)]


def _dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    better_or_equal = a["val_int8_top1"] >= b["val_int8_top1"] and a["energy_uJ"] <= b["energy_uJ"]
    return better_or_equal and (a["val_int8_top1"] > b["val_int8_top1"] or a["energy_uJ"] < b["energy_uJ"])


def front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The feasible trials no other feasible trial beats on both accuracy and energy, by energy."""
    ok = [r for r in rows if r["feasible"]]
    return sorted((r for r in ok if not any(_dominates(o, r) for o in ok)), key=lambda r: r["energy_uJ"])


def recommended(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most accurate feasible trial, ties to lower energy (None: no feasible trial)."""
    ok = [r for r in rows if r["feasible"]]
    return min(ok, key=lambda r: (-r["val_int8_top1"], r["energy_uJ"], r["number"])) if ok else None


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        flat = {**r, **r["params"], **{k: r["figures"].get(k) for k in ("test_int8_top1", "tflite_int8_bytes",
                                                                         "lifetime_p5_days")},
                "violated": " ".join(r["violated"])}
        writer.writerow({k: ("" if flat.get(k) is None else flat[k]) for k in CSV_FIELDS})
    return out.getvalue()


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Accuracy vs energy: feasible, infeasible (measured), the front and the recommended trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    measured = [r for r in rows if r["val_int8_top1"] is not None]
    for feasible, style, label in ((True, "o", "feasible"), (False, "x", "infeasible")):
        pts = [r for r in measured if r["feasible"] == feasible]
        ax.scatter([r["energy_uJ"] / 1000 for r in pts], [r["val_int8_top1"] for r in pts], marker=style,
                   label=f"{label} ({len(pts)})", alpha=0.8)
    line = front(rows)
    if line:
        ax.step([r["energy_uJ"] / 1000 for r in line], [r["val_int8_top1"] for r in line], where="post",
                label="Pareto front", color="tab:green")
    best = recommended(rows)
    if best:
        ax.scatter([best["energy_uJ"] / 1000], [best["val_int8_top1"]], marker="*", s=250, color="tab:red",
                   label=f"recommended: trial {best['number']}", zorder=5)
    ax.set_xlabel("energy per inference, mJ (estimated: cost model, see docs/power.md)")
    ax.set_ylabel("val top-1, int8 (measured)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def write_outputs(rows: list[dict[str, Any]], out_dir: Path, title: str, meta: dict[str, Any]) -> dict[str, Path]:
    """pareto.json (front, recommended, every trial), pareto.csv (the front), trials.csv and pareto.png."""
    line, best = front(rows), recommended(rows)
    files = {"json": out_dir / "pareto.json", "csv": out_dir / "pareto.csv", "trials_csv": out_dir / "trials.csv",
             "png": out_dir / "pareto.png"}
    atomic_write_json(files["json"], {
        **meta, "objectives": {"val_int8_top1": "maximise (measured on val, int8 graph of the qat stage)",
                               "energy_uJ": "minimise (estimated per inference on the battery's MCU, cost model)"},
        "constraints": list(cons.NAMES), "recommended": best, "front": line, "trials": rows})
    atomic_write_text(files["csv"], _csv(line))
    atomic_write_text(files["trials_csv"], _csv(rows))
    plot(rows, files["png"], title)
    return files
