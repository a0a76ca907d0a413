"""The search space: one declarative row per dimension, each a categorical over config values.

Adding a dimension is one row of SPACE: the Optuna parameter name, the config key it sets, the
choices, and the default pipeline's value (trial 0, the warm start, is the default config). A choice
Optuna cannot store (a list, None) goes in as a label -> value mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Choice = str | int | float | bool


@dataclass(frozen=True)
class Dim:
    """One searched dimension: Optuna parameter `name` sets config key `key` to one of `choices`."""

    name: str
    key: str
    choices: tuple[Choice, ...] | Mapping[str, Any]
    default: Choice

    def labels(self) -> tuple[Choice, ...]:
        """What Optuna sees: the choices, or their labels."""
        return tuple(self.choices) if isinstance(self.choices, Mapping) else self.choices

    def value(self, label: Choice) -> Any:
        """The config value of a choice."""
        return self.choices[str(label)] if isinstance(self.choices, Mapping) else label


SPACE: tuple[Dim, ...] = (
    Dim("image_size", "data.image_size", (32, 48, 64), 64),
    Dim("patch_size", "model.patch_size", (4, 8, 16), 8),
    Dim("embed_dim", "model.embed_dim", (24, 48, 72, 96, 120), 96),  # each a multiple of every head count
    Dim("depth", "model.depth", (2, 3, 4, 6), 4),
    Dim("num_heads", "model.num_heads", (1, 2, 3, 4), 3),
    Dim("mlp_ratio", "model.mlp_ratio", (1.0, 2.0, 3.0), 2.0),
    Dim("max_drop", "prune.max_drop", (0.0, 0.01, 0.02, 0.03), 0.01),
    Dim("activation_bits", "qat.activation_bits", (8, 16), 8),
    Dim("tokenizer", "model.name", {"patches": "vit_lite_s", "conv": "cct_lite_s"}, "patches"),  # conv: stem + seq pool
)


def suggest(trial: Any, space: tuple[Dim, ...] = SPACE) -> dict[str, Choice]:
    """Ask an Optuna trial for one value of every dimension; returns the parameters (name -> label)."""
    return {dim.name: trial.suggest_categorical(dim.name, list(dim.labels())) for dim in space}


def settings_of(params: Mapping[str, Choice], space: tuple[Dim, ...] = SPACE) -> list[str]:
    """The `--set key=value` overrides of a trial's parameters (unknown parameters are ignored)."""
    import json

    out = []
    for dim in space:
        if dim.name in params:
            value = dim.value(params[dim.name])
            text = value if isinstance(value, str) else "null" if value is None else json.dumps(value)
            out.append(f"{dim.key}={text}")  # a text field's value is taken literally (edge.config)
    return out


def default_params(space: tuple[Dim, ...] = SPACE) -> dict[str, Choice]:
    """The default pipeline as parameters: trial 0 of every study (the warm start)."""
    return {dim.name: dim.default for dim in space}
