"""Durations for lifetime targets: `1y`, `18mo`, `400d`, `2w`, `36h`, `1.5y`."""

from __future__ import annotations

import re

from edge.errors import ConfigError

DAYS_PER = {"y": 365.25, "mo": 30.4375, "w": 7.0, "d": 1.0, "h": 1.0 / 24.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(y|mo|w|d|h)\s*$")


def parse_duration_days(text: str, where: str = "--min-lifetime") -> float:
    """Days in a duration like `1y` (365.25 d), `18mo` (30.44 d each), `400d`, `2w`, `36h`."""
    match = _PATTERN.match(str(text).lower())
    if not match:
        raise ConfigError(
            f"cannot read duration {text!r}",
            where=where,
            hint="a number and a unit: y (years), mo (months), w (weeks), d (days), h (hours); e.g. 1y, 18mo, 400d",
        )
    value = float(match.group(1))
    if value <= 0:
        raise ConfigError(f"duration {text!r} must be positive", where=where, hint="e.g. 1y")
    return value * DAYS_PER[match.group(2)]


def format_days(days: float) -> str:
    """`400 d (1.10 y)`-style text."""
    return f"{days:.0f} d ({days / 365.25:.2f} y)"
