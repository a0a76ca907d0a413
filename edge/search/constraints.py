"""The hard limits of a search, as the numbers Optuna's constrained samplers read (<= 0: satisfied).

Every trial records its values with `Trial.set_constraint` (Optuna 5's replacement for the deprecated
`constraints_func`: TPE and NSGA-II read them from the trial) and in the user attribute `constraints`
(for the search's own files), before it is told; measured after a full run, or estimated when the trial
was rejected before training:

    flash      flash needed / flash of the target - 1            (export's fit; estimate: int8 bytes)
    ram        RAM needed / RAM of the target - 1                (TFLM arena + frame + runtime)
    tflm       0 when TFLite Micro ran the int8 model, else 1    (export's op and interpreter checks)
    agreement  min agreement - TFLM agreement with the QAT model (export's gate, its basis)
    export     0 when every export gate passed (export.max_size_fraction too), else 1
    lifetime   1 - P5 lifetime / target                          (battery simulator, cost-model band sampled)
    valid      0, or 1 when the settings cannot make a model     (bad combination, impossible prune budget)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NAMES: tuple[str, ...] = ("flash", "ram", "tflm", "agreement", "export", "lifetime", "valid")


def vector(values: Mapping[str, float]) -> list[float]:
    """The constraint values in NAMES order (a missing one counts as satisfied: 0)."""
    return [float(values.get(name, 0.0)) for name in NAMES]


def record(trial: Any, values: Mapping[str, float]) -> None:
    """Store a trial's constraint values: for Optuna's samplers (set_constraint) and for the search's files."""
    trial.set_user_attr("constraints", dict(values))
    for name, value in zip(NAMES, vector(values), strict=True):
        trial.set_constraint(name, value)


def feasible(values: Mapping[str, float]) -> bool:
    """True when every constraint holds."""
    return all(v <= 0 for v in vector(values))


def violated(values: Mapping[str, float]) -> list[str]:
    """The names of the constraints that do not hold."""
    return [name for name, v in zip(NAMES, vector(values), strict=True) if v > 0]


def ratio(needed: float, available: float) -> float:
    """needed / available - 1, rounded (<= 0: fits)."""
    return round(needed / available - 1.0, 6)


def measured(fit: Mapping[str, Any], tflm_ran: bool, agreement_gap: float, p5_days: float | None,
             target_days: float) -> dict[str, float]:
    """The constraint values of a trial that ran to the battery stage (or failed in export)."""
    values = {
        "flash": ratio(fit["flash_needed_bytes"], fit["flash_available_bytes"]),
        "ram": ratio(fit["ram_needed_bytes"], fit["ram_available_bytes"]),
        "tflm": 0.0 if tflm_ran else 1.0,
        "agreement": round(agreement_gap, 6),
        "export": 0.0,
        "lifetime": 1.0 if p5_days is None else round(1.0 - p5_days / target_days, 6),
        "valid": 0.0,
    }
    return values
