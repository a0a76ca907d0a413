"""Numeric inputs that cannot lie: finite, in range, and named when they are not.

Used by the `edge profile` / `edge battery` options (argparse types: a bad value exits 2 with
the option named) and by the battery evaluation for values that come from a run's config or
from a measurement file (ConfigError naming the field and where it came from).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

from edge.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """Allowed values of one number: finite, above `low` (or at it when `low_ok`), at most `high`."""

    low: float | None = None
    low_ok: bool = False
    high: float | None = None

    def problem(self, value: float) -> str | None:
        """Why `value` is not allowed, or None."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number (got {value!r})"
        if not math.isfinite(value):
            return f"must be a finite number (got {value!r})"
        if self.low is not None and (value < self.low or (value == self.low and not self.low_ok)):
            return f"must be {'at least' if self.low_ok else 'greater than'} {self.low:g} (got {value:g})"
        if self.high is not None and value > self.high:
            return f"must be at most {self.high:g} (got {value:g})"
        return None


POSITIVE = Range(0.0)
NON_NEGATIVE = Range(0.0, low_ok=True)


def check(value: float, field: str, where: str, allowed: Range = POSITIVE) -> float:
    """`value` if allowed; else a ConfigError (exit 2) naming the field and where it came from."""
    problem = allowed.problem(value)
    if problem:
        raise ConfigError(f"field '{field}' {problem}", where=where)
    return float(value)


def option(kind: type = float, allowed: Range = POSITIVE) -> Callable[[str], float]:
    """An argparse `type=` that parses `kind` and rejects NaN, infinity and values outside `allowed`."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from exc
        problem = allowed.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
