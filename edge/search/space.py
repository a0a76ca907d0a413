"""The search space: one declarative row per dimension, each a categorical over config values.

Adding a dimension is one row of SPACE: the Optuna parameter name, the config key it sets and the
choices. A choice Optuna cannot store (a list, None, a long name) goes in as a label -> value mapping.
Trial 0, the warm start, is the default config: `default_params` reads each key's default from
`RunConfig()` (a width key that is null there from the default model's spec), so the choices must
hold the defaults (tests/test_search.py checks it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge.errors import ConfigError

Choice = str | int | float | bool


@dataclass(frozen=True)
class Dim:
    """One searched dimension: Optuna parameter `name` sets config key `key` to one of `choices`."""

    name: str
    key: str
    choices: tuple[Choice, ...] | Mapping[str, Any]

    def labels(self) -> tuple[Choice, ...]:
        """What Optuna sees: the choices, or their labels."""
        return tuple(self.choices) if isinstance(self.choices, Mapping) else self.choices

    def value(self, label: Choice) -> Any:
        """The config value of a choice."""
        return self.choices[str(label)] if isinstance(self.choices, Mapping) else label

    def label(self, value: Any) -> Choice:
        """The choice whose config value is `value` (ConfigError when the table does not hold it)."""
        for label in self.labels():
            if self.value(label) == value:
                return label
        raise ConfigError(f"the default {self.key}={value!r} is not among the choices of dimension '{self.name}'",
                          where="edge/search/space.py", hint="add it to that row of SPACE")


SPACE: tuple[Dim, ...] = (
    Dim("image_size", "data.image_size", (32, 48, 64)),
    Dim("patch_size", "model.patch_size", (4, 8, 16)),
    Dim("embed_dim", "model.embed_dim", (24, 48, 72, 96, 120)),  # each a multiple of every head count
    Dim("depth", "model.depth", (2, 3, 4, 6)),
    Dim("num_heads", "model.num_heads", (1, 2, 3, 4)),
    Dim("mlp_ratio", "model.mlp_ratio", (1.0, 2.0, 3.0)),
    Dim("max_drop", "prune.max_drop", (0.0, 0.01, 0.02, 0.03)),
    Dim("activation_bits", "qat.activation_bits", (8, 16)),
    Dim("tokenizer", "model.name", {"patches": "vit_lite_s", "conv": "cct_lite_s"}),  # conv: stem + seq pooling
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
    from edge.config import DEFAULT_IMAGE_SIZE, RunConfig

    config = RunConfig()
    image = config.data.image_size or DEFAULT_IMAGE_SIZE
    spec = config.model.spec(image, config.data.channels, 2)
    block = spec.blocks[0]
    values: dict[str, Any] = {"data.image_size": image, "model.patch_size": spec.patch_size,
                              "model.embed_dim": spec.embed_dim, "model.depth": len(spec.blocks),
                              "model.num_heads": block.num_heads, "model.mlp_ratio": block.mlp_hidden / spec.embed_dim}
    dumped = config.model_dump()
    out = {}
    for dim in space:
        if dim.key not in values:
            node: Any = dumped
            for part in dim.key.split("."):
                node = node[part]
            values[dim.key] = node
        out[dim.name] = dim.label(values[dim.key])
    return out
