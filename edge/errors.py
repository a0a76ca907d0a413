"""Errors meant for people: what went wrong, where, and what to do.

Every error carries the process exit code the CLI returns for it (docs/architecture.md):
0 ok, 1 gate failed, 2 bad input/config, 3 device/serial, 4 export/verify, 5 internal error (an
unexpected exception: a bug in edge, never a verdict; `edge --debug` shows its traceback), 130 interrupted.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DEVICE = 3
EXIT_EXPORT = 4
EXIT_INTERNAL = 5
EXIT_INTERRUPTED = 130


class EdgeError(Exception):
    """Base error: a message, an optional location (file, line, field) and a hint."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        """One or two lines: `where: message` and, if known, what to do about it."""
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(EdgeError):
    """Bad input or configuration (exit 2)."""

    exit_code = 2


class DataError(ConfigError):
    """Unreadable or inconsistent data set (exit 2)."""


class GateFailed(EdgeError):
    """A budget gate did not pass (exit 1)."""

    exit_code = 1


class DeviceError(EdgeError):
    """Serial port or device problem (exit 3)."""

    exit_code = 3


class ExportError(EdgeError):
    """Export or verification failed (exit 4)."""

    exit_code = 4


class StaleInputError(ConfigError):
    """An artifact changed after the stage that wrote it recorded its hash."""
