"""Serial transport: one pyserial port opened by URL, with payload-scaled timeouts and reopen.

`serial_for_url` accepts a real port (`/dev/ttyACM0`, `COM3`), a pty (`/dev/pts/7`),
`socket://host:port`, `rfc2217://host:port` and `loop://`. Timeouts grow with the bytes on
the wire at the configured baud rate (8N1: 10 bits per byte), so a 100 KB transfer at 9600
baud is not cut off by a timeout sized for a 20-byte command.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from types import TracebackType
from typing import TextIO

import serial

from edge.errors import DeviceError

BITS_PER_BYTE = 10  # 8N1: start bit + 8 data bits + stop bit
_ESCAPES = {10: "\\n", 13: "\\r", 9: "\\t", 92: "\\\\"}  # how a wire log writes LF, CR, TAB and backslash


def wire_seconds(nbytes: int, baud: int) -> float:
    """Seconds that `nbytes` take on a UART at `baud` (8N1)."""
    return nbytes * BITS_PER_BYTE / baud


class WireLog:
    r"""A timestamped transcript of the wire, both directions, one line per message:

        `   0.001234 > name%`          bytes the host wrote
        `   0.004567 < m-ready\r\n`    bytes the device sent (split after each LF)

    Seconds since the log opened; bytes outside printable ASCII are escaped (`\r`, `\n`, `\xNN`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        try:
            self.handle: TextIO = open(path, "w", encoding="ascii", newline="\n")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise DeviceError(f"cannot write the wire log: {exc.strerror}", where=str(path)) from exc
        self.path = Path(path)
        self.start = time.monotonic()
        self._rx = bytearray()
        self._rx_at = 0.0

    def sent(self, data: bytes) -> None:
        """Record bytes the host wrote (after any device bytes still pending)."""
        self._flush_rx()
        self._line(time.monotonic(), ">", data)

    def received(self, data: bytes) -> None:
        """Record bytes the device sent; a line is written per LF (partial lines wait for more)."""
        if not self._rx:
            self._rx_at = time.monotonic()
        self._rx += data
        while b"\n" in self._rx:
            line, _, rest = bytes(self._rx).partition(b"\n")
            self._line(self._rx_at, "<", line + b"\n")
            self._rx[:] = rest
            self._rx_at = time.monotonic()

    def close(self) -> None:
        """Write what is pending and close the file."""
        if not self.handle.closed:
            self._flush_rx()
            self.handle.close()

    def __enter__(self) -> WireLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _flush_rx(self) -> None:
        if self._rx:
            self._line(self._rx_at, "<", bytes(self._rx))
            self._rx.clear()

    def _line(self, at: float, direction: str, data: bytes) -> None:
        text = "".join(_ESCAPES.get(b, chr(b) if 32 <= b < 127 else f"\\x{b:02x}") for b in data)
        self.handle.write(f"{at - self.start:11.6f} {direction} {text}\n")
        self.handle.flush()


class SerialLink:
    """A serial port opened by URL; use as a context manager so Ctrl-C still closes it."""

    def __init__(
        self,
        url: str,
        baud: int = 115200,
        *,
        timeout_s: float = 5.0,
        open_retries: int = 3,
        retry_delay_s: float = 0.5,
        log: WireLog | None = None,
    ) -> None:
        if baud <= 0:
            raise DeviceError(f"baud rate must be positive, got {baud}", where="--baud")
        self.url = url
        self.baud = baud
        self.timeout_s = timeout_s
        self.open_retries = open_retries
        self.retry_delay_s = retry_delay_s
        self.port: serial.SerialBase | None = None
        self.bytes_written = 0
        self.bytes_read = 0
        self.log = log  # a WireLog records every byte both ways (`--log FILE`)

    def open(self) -> SerialLink:
        """Open the port, retrying a few times (a board that is re-enumerating after a reset)."""
        last: Exception | None = None
        for attempt in range(max(1, self.open_retries)):
            try:
                self.port = serial.serial_for_url(
                    self.url, baudrate=self.baud, timeout=0.02, write_timeout=None, exclusive=None
                )
                return self
            except (serial.SerialException, OSError, ValueError) as exc:
                last = exc
                if attempt + 1 < self.open_retries:
                    time.sleep(self.retry_delay_s)
        raise DeviceError(
            f"cannot open serial port: {last}",
            where=self.url,
            hint="check the cable and the port name (`edge devices` lists ports); "
            "on Linux add yourself to the 'dialout' group",
        )

    def reopen(self) -> None:
        """Close and open again (after the device dropped off the bus)."""
        self.close()
        self.open()

    def close(self) -> None:
        """Close the port; safe to call twice."""
        if self.port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self.port.close()
            self.port = None

    def __enter__(self) -> SerialLink:
        return self.open() if self.port is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _require(self) -> serial.SerialBase:
        if self.port is None:
            raise DeviceError("serial port is not open", where=self.url)
        return self.port

    def payload_timeout(self, nbytes: int, base_s: float | None = None) -> float:
        """Base timeout (default: this link's) plus twice the wire time of `nbytes` at this baud rate."""
        return (self.timeout_s if base_s is None else base_s) + 2.0 * wire_seconds(nbytes, self.baud)

    def write(self, data: bytes) -> None:
        """Write all of `data` (blocks until handed to the OS)."""
        port = self._require()
        try:
            port.write(data)
            port.flush()
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"write failed: {exc}", where=self.url, hint="the device disconnected?") from exc
        self.bytes_written += len(data)
        if self.log is not None:
            self.log.sent(data)

    def read_some(self, wait_s: float) -> bytes:
        """Whatever arrives within `wait_s` seconds (possibly b''), without blocking longer."""
        port = self._require()
        deadline = time.monotonic() + max(0.0, wait_s)
        try:
            while True:
                waiting = port.in_waiting
                if waiting:
                    return self._got(port.read(waiting))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return b""
                port.timeout = min(remaining, 0.05)
                data = port.read(1)
                if data:
                    return self._got(data)
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"read failed: {exc}", where=self.url, hint="the device disconnected?") from exc

    def _got(self, data: bytes) -> bytes:
        self.bytes_read += len(data)
        if self.log is not None:
            self.log.received(data)
        return data

    def drain_input(self, quiet_s: float = 0.05, max_s: float = 1.0) -> bytes:
        """Read and return pending input until the line is quiet for `quiet_s` seconds."""
        out = bytearray()
        end = time.monotonic() + max_s
        while time.monotonic() < end:
            chunk = self.read_some(quiet_s)
            if not chunk:
                break
            out.extend(chunk)
        return bytes(out)
