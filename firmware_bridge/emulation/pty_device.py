"""Serve an EmulatedDevice on a pseudo-terminal (or loopback TCP), with line rate and faults.

A pty ignores the baud rate (bytes move as fast as the kernel copies them), so throughput over
a pty says nothing about a UART. With `baud` set, every byte in either direction is paced to
10 bits / baud (8N1) on a virtual wire clock, which is what a real UART at that rate allows.

Faults are applied to the bytes the device receives and sends: each byte is dropped with
probability `drop` or has one random bit flipped with probability `flip`; `stall_every`
bytes the line goes quiet for `stall_s`; after `disconnect_after` bytes the device drops off
(stops answering, forgets half-received frames, keeps its flash) for `disconnect_s`, once.
A device with a `poll()` method (the emulated LPM01A) is polled about every 50 ms for output
it sends unasked.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import select
import socket
import termios
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge.firmware_bridge.emulation.board import EmulatedDevice
from edge.firmware_bridge.smp_serial import Framing
from edge.firmware_bridge.transport import wire_seconds
from edge.paths import DEFAULT_MCU


class Board(Protocol):
    """What a PtyDevice serves: the emulated board, an IO manager in front of it, or an energy monitor."""

    def boot(self) -> bytes:
        """The bytes it sends on power-up."""
        ...

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the host; return the reply."""
        ...

    def reset_link_state(self) -> None:
        """Forget half-received input (the cable was unplugged)."""
        ...


@dataclass
class Faults:
    """Fault injection settings (all off by default)."""

    drop: float = 0.0
    flip: float = 0.0
    stall_every: int = 0
    stall_s: float = 0.0
    disconnect_after: int = 0
    disconnect_s: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("drop", "flip"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"fault rate '{name}' must be in [0, 1), got {value}")
        self._rng = random.Random(self.seed)
        self._count = 0
        self.dropped = 0
        self.flipped = 0

    @property
    def active(self) -> bool:
        """True if any byte-level fault is configured."""
        return self.drop > 0 or self.flip > 0

    def mangle(self, data: bytes) -> bytes:
        """Drop and flip bytes at the configured rates."""
        if not self.active:
            return data
        out = bytearray()
        rng = self._rng
        for byte in data:
            roll = rng.random()
            if roll < self.drop:
                self.dropped += 1
                continue
            if roll < self.drop + self.flip:
                byte ^= 1 << rng.randrange(8)
                self.flipped += 1
            out.append(byte)
        return bytes(out)

    def stall_due(self, nbytes: int) -> float:
        """Seconds to stall after `nbytes` more bytes (0 if none is due)."""
        if not self.stall_every:
            return 0.0
        before = self._count // self.stall_every
        self._count += nbytes
        return self.stall_s if self._count // self.stall_every > before else 0.0


class WireClock:
    """Paces bytes to a UART's rate: `wait(n)` sleeps until n more bytes could have passed."""

    def __init__(self, baud: int | None) -> None:
        self.baud = baud
        self._free_at = 0.0

    def wait(self, nbytes: int) -> None:
        """Block until `nbytes` have had time to cross the wire after the previous ones."""
        if not self.baud:
            return
        now = time.monotonic()
        self._free_at = max(self._free_at, now) + wire_seconds(nbytes, self.baud)
        delay = self._free_at - now
        if delay > 0:
            time.sleep(delay)


class PtyDevice:
    """The emulated board behind a pty; `path` is what a host opens (`/dev/pts/N`)."""

    def __init__(
        self,
        device: Board | None = None,
        *,
        baud: int | None = None,
        faults: Faults | None = None,
        store: Path | None = None,
        target: str = DEFAULT_MCU,
        framing: Framing | None = None,
    ) -> None:
        self.device: Board = device or EmulatedDevice(store=store, target=target, framing=framing)
        self.faults = faults or Faults()
        self.rx_clock = WireClock(baud)
        self.tx_clock = WireClock(baud)
        self.path = self._open()
        self.received = 0
        self.disconnects = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self._offline_until = 0.0

    def start(self) -> PtyDevice:
        """Run the device loop and the paced transmitter in daemon threads."""
        self._writer = threading.Thread(target=self._transmit, name="edge-emulator-tx", daemon=True)
        self._writer.start()
        self._thread = threading.Thread(target=self.serve, name="edge-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loops and close the pty."""
        self._stop.set()
        self._outbox.put(None)
        for thread in (self._thread, self._writer):
            if thread is not None:
                thread.join(timeout=2)
        self._close()

    def _open(self) -> str:
        """Create the host-facing endpoint; return what the host opens."""
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave, termios.TCSANOW)  # no echo, no CR/LF translation, 8-bit clean
        return os.ttyname(self.slave)

    def _close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _read(self, wait_s: float) -> bytes | None:
        """Bytes from the host (b'' if none within `wait_s`); None when the endpoint is gone."""
        ready, _, _ = select.select([self.master], [], [], wait_s)
        if not ready:
            return b""
        try:
            return os.read(self.master, 4096)
        except OSError:
            return None

    def _write(self, data: bytes | memoryview) -> int:
        """Write towards the host; return the bytes taken."""
        return os.write(self.master, data)

    def serve(self) -> None:
        """The device loop: read, pace, inject faults, process, reply (until stop())."""
        self._send(self.device.boot())
        while not self._stop.is_set():
            data = self._read(0.05)
            if data is None:
                break
            self._poll()
            if not data:
                continue
            self.rx_clock.wait(len(data))
            self._tick(len(data))
            if time.monotonic() < self._offline_until:
                continue  # unplugged: bytes go nowhere
            reply = self.device.feed(self.faults.mangle(data))
            if reply:
                self._send(self.faults.mangle(reply))

    def _poll(self) -> None:
        """A device that talks unasked (an energy monitor streaming samples) has `poll() -> bytes`."""
        poll = getattr(self.device, "poll", None)
        if poll is None or time.monotonic() < self._offline_until:
            return
        out = poll()
        if out:
            self._send(self.faults.mangle(out))

    def _tick(self, nbytes: int) -> None:
        stall = self.faults.stall_due(nbytes)
        if stall:
            time.sleep(stall)
        before = self.received
        self.received += nbytes
        after = self.faults.disconnect_after
        if after and before < after <= self.received:
            self.disconnects += 1
            self._offline_until = time.monotonic() + self.faults.disconnect_s
            self.device.reset_link_state()

    def _send(self, data: bytes) -> None:
        """Queue bytes for the transmitter (so pacing replies never delays reading requests)."""
        self._outbox.put(data)

    def _transmit(self) -> None:
        while True:
            data = self._outbox.get()
            if data is None or self._stop.is_set():
                return
            self._write_paced(data)

    def _write_paced(self, data: bytes) -> None:
        view = memoryview(data)
        step = 256 if self.tx_clock.baud else len(view) or 1
        for i in range(0, len(view), step):
            piece = view[i:i + step]
            self.tx_clock.wait(len(piece))
            while piece:
                try:
                    written = self._write(piece)
                except BlockingIOError:
                    time.sleep(0.001)
                    continue
                except OSError:
                    return
                piece = piece[written:]

    def __enter__(self) -> PtyDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TcpDevice(PtyDevice):
    """The same board on a loopback TCP port, for `socket://127.0.0.1:PORT` (or where no pty exists).

    One host connection at a time; a closed connection is like an unplugged cable (the flash
    is kept) and the next connection is accepted.
    """

    def __init__(self, device: Board | None = None, *, port: int = 0, **kwargs: object) -> None:
        self._port = port
        self._conn: socket.socket | None = None
        super().__init__(device, **kwargs)  # type: ignore[arg-type]

    def _open(self) -> str:
        self._listener = socket.create_server(("127.0.0.1", self._port))
        return f"socket://127.0.0.1:{self._listener.getsockname()[1]}"

    def _close(self) -> None:
        for sock in (self._conn, self._listener):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def _read(self, wait_s: float) -> bytes | None:
        if self._conn is None:
            ready, _, _ = select.select([self._listener], [], [], wait_s)
            if ready:
                self._conn, _ = self._listener.accept()
                self.device.reset_link_state()
            return b""
        ready, _, _ = select.select([self._conn], [], [], wait_s)
        if not ready:
            return b""
        try:
            data = self._conn.recv(4096)
        except OSError:
            data = b""
        if not data:  # the host closed the connection
            self._conn.close()
            self._conn = None
        return data

    def _write(self, data: bytes | memoryview) -> int:
        conn = self._conn
        if conn is None:
            return len(data)  # nobody listening: the bytes are lost, as on an unplugged UART
        try:
            return conn.send(data)
        except OSError:
            return len(data)
