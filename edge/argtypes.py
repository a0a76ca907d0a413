"""argparse types shared by the subcommands: a bad number or name is a usage error (exit 2) that
names the option, before any work starts."""

from __future__ import annotations

import argparse
import math

from edge.config import PROFILE_NAME


def run_name(text: str) -> str:
    """A run name: one plain folder name inside the runs folder (no '/', no '..', not absolute)."""
    if not PROFILE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a run name: use letters, digits, '.', '_' and '-' (no '/', no '..'); "
            "to keep runs elsewhere pass --runs-dir DIR")
    return text


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value
