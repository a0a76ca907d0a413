"""The model check before anything goes to a board: a sound TFLite flatbuffer that TFLite Micro can run."""

from __future__ import annotations

import sys
from pathlib import Path

from edge.errors import ConfigError


def read_model(path: Path) -> bytes:
    """A model file's bytes: missing, unreadable and oversized files are refused unread (exit 2)."""
    from edge.export.tflite_inspect import read_model_bytes

    return read_model_bytes(path, ConfigError)


def checked_model(path: Path, force: bool = False) -> bytes:
    """The bytes of a .tflite that TFLite Micro can run, checked before anything goes to a board.

    Refuses (ConfigError, exit 2) a file that is not a sound TFLite flatbuffer (magic, size, bounds) or
    has ops/types TFLM has no kernel for. `force` skips the checks after the file is read.
    """
    from edge.export.tflite_inspect import read_tflite
    from edge.export.tflm_check import unsupported

    data = read_model(path)
    if force:
        print(f"warning: --force: {path} is sent without checking that it is a TFLite model", file=sys.stderr)
        return data
    hint = "nothing was sent to the board; pass a .tflite from `edge export` (or --force to send it anyway)"
    try:
        model = read_tflite(path, data, error=ConfigError)
    except ConfigError as exc:
        raise ConfigError(exc.message, where=exc.where, hint=hint) from exc
    problems = unsupported(model)
    if problems:
        raise ConfigError(f"TFLite Micro cannot run this model: {'; '.join(problems[:4])}"
                          + (f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""),
                          where=str(path), hint=hint)
    return data
