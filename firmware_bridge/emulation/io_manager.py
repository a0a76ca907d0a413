"""An emulated IO manager: the host's port to a DUT behind it, as in the MLPerf Tiny energy setup.

In energy mode the DUT is powered by an energy monitor and electrically isolated from the host;
the host talks to an IO manager (EEMBC's Arduino io-manager, or the MLPerf Tiny interface board),
which forwards commands to the DUT over a second UART. Behaviour follows mlcommons/tiny
`benchmark/interface/Application/CLI/{Menu,InterfaceMenu}.cpp` and `Test/DeviceUnderTest.cpp`:

* a command is everything up to `%`; it selects a menu entry by prefix: the entry alone runs it
  with no argument, the entry + space + text runs it with the text, the entry followed by
  anything else gets no answer at all; an unknown command (or an empty one) answers `m-ready`;
* `dut <cmd>` answers `m-dut-passthrough(<cmd>)`, `m-ready`, sends `<cmd>%` to the DUT and
  forwards each DUT line (up to `\\r\\n`) as `[dut]: <line>` until the DUT's `m-ready`;
  DUT output that arrives between commands stays queued and goes out with the next `dut`;
* `name` answers the board name; `checkbaud` / `setbaud N` read / set the DUT UART's rate
  (the board then resets); `enable-timer` / `disable-timer` come from the EEMBC io-manager's
  command list (quoted in mlcommons/tiny `benchmark/runner/io_manager.py`): with the timer on,
  each falling edge of the DUT's timestamp GPIO prints an (unprefixed) `m-lap-us-<us>`.

The DUT is an `EmulatedDevice` (`board.py`). With `energy_mode=True` (the default) it acts
as energy-mode firmware (`EE_CFG_ENERGY_MODE 1`): `th_timestamp` pulls the GPIO low instead of
printing, so its `m-lap-us-` lines become edges (`edges_us`) and never reach the serial line.
Serve it on a pty with `PtyDevice(EmulatedIoManager(...))` (`edge emulator --io-manager`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from edge.firmware_bridge.emulation.board import EmulatedDevice
from edge.firmware_bridge.emulation.flash import Flash
from edge.firmware_bridge.transport import wire_seconds

NAME = "tinyML Enhanced Interface Board"  # InterfaceMenu::Name
DUT_PREFIX = b"[dut]: "
DEFAULT_DUT_BAUD = 9600  # interface usart.c huart3; energy-mode DUTs run at 9600 (EEMBC runner README)
MAX_COMMAND_BYTES = 1024  # the interface board's std::string is unbounded; keep the emulation bounded
_LAP = re.compile(rb"^m-lap-us-([0-9]{1,20})$")


class EmulatedIoManager:
    """Bytes from the host in, bytes to the host out; a DUT (`EmulatedDevice`) on the other UART."""

    def __init__(
        self,
        dut: EmulatedDevice | None = None,
        *,
        energy_mode: bool = True,
        dut_baud: int = DEFAULT_DUT_BAUD,
        pace_dut: bool = False,
        boot_banner_queued: bool = False,
        record: bool = False,
    ) -> None:
        """`pace_dut`: sleep for the DUT UART's wire time at `dut_baud`; `boot_banner_queued`: the DUT
        booted after the IO manager, so its banner waits in the queue; `record`: keep every byte
        from the host (`host_received`) and to the DUT (`dut_received`), for tests."""
        self.dut = dut or EmulatedDevice()
        self.energy_mode = energy_mode
        self.dut_baud = dut_baud
        self.pace_dut = pace_dut
        self.record = record
        self.timer_enabled = False
        self.edges_us: list[int] = []
        self.host_received = bytearray()
        self.dut_received = bytearray()
        self._command = bytearray()
        self._dut_rx = bytearray(self.dut.boot() if boot_banner_queued else b"")
        self._menu: list[tuple[str, Callable[[str], bytes]]] = [
            ("dut", self._passthrough), ("name", self._name), ("setbaud", self._setbaud),
            ("checkbaud", self._checkbaud), ("enable-timer", self._timer(True)), ("disable-timer", self._timer(False)),
        ]

    @property
    def flash(self) -> Flash:
        """The DUT's flash (so `edge emulator --model` can pre-flash it)."""
        return self.dut.flash

    def boot(self) -> bytes:
        """The IO manager prints nothing at boot (Menu::Run only reads)."""
        return b""

    def reset_link_state(self) -> None:
        """Forget a half-received host command (after a disconnect)."""
        self._command.clear()

    def feed(self, data: bytes) -> bytes:
        """Process bytes from the host; return what the IO manager sends back."""
        if self.record:
            self.host_received += data
        out = bytearray()
        for byte in data:
            if byte == ord("%"):
                command = self._command.decode("latin-1")
                self._command.clear()
                out += self._handle(command)
            elif len(self._command) < MAX_COMMAND_BYTES:
                self._command.append(byte)
        return bytes(out)

    def _handle(self, command: str) -> bytes:
        """Menu::HandleCommand: the first entry that prefixes the command."""
        for name, action in self._menu:
            if command.startswith(name):
                if len(command) == len(name):
                    return action("")
                if len(command) > len(name) + 1 and command[len(name)] == " ":
                    return action(command[len(name) + 1:])
                return b""  # e.g. `dutx` or `dut `: the reference menu answers nothing
        return b"m-ready\r\n"  # Menu::Default

    def _name(self, _args: str) -> bytes:
        return f"{NAME}\r\nm-ready\r\n".encode()

    def _checkbaud(self, _args: str) -> bytes:
        return f"checkbaud({self.dut_baud})\r\nm-ready\r\n".encode()

    def _setbaud(self, args: str) -> bytes:
        """Store the DUT UART rate and reset (InterfaceMenu::SetBaud); a non-number gets no answer
        (std::stoi would throw on the board)."""
        try:
            baud = int(args)
        except ValueError:
            return b""
        if baud <= 0:
            return b""
        self.dut_baud = baud
        self._dut_rx.clear()
        self.timer_enabled = False
        return f"setbaud({args})\r\nm-ready\r\n".encode("latin-1")

    def _timer(self, enabled: bool) -> Callable[[str], bytes]:
        def action(_args: str) -> bytes:
            self.timer_enabled = enabled
            return b"m-ready\r\n"  # the io-manager's exact text here is not public; the host only needs m-ready

        return action

    def _passthrough(self, args: str) -> bytes:
        """InterfaceMenu::Passthrough + DeviceUnderTest::IndirectSendCommand."""
        out = bytearray(f"m-dut-passthrough({args})\r\nm-ready\r\n".encode("latin-1"))
        sent = (args + "%").encode("latin-1")
        if self.record:
            self.dut_received += sent
        self._pace(len(sent))
        reply = self.dut.feed(sent)
        self._pace(len(reply))
        self._dut_rx += reply
        for line in self._take_reply():
            lap = _LAP.match(line) if self.energy_mode else None
            if lap is not None:  # an energy-mode DUT pulses its timestamp GPIO instead of printing
                self.edges_us.append(int(lap.group(1)))
                if self.timer_enabled:
                    out += b"m-lap-us-" + lap.group(1) + b"\r\n"
                continue
            if self.energy_mode and line == b"m-timestamp-mode-performance":
                line = b"m-timestamp-mode-energy"
            out += DUT_PREFIX + line + b"\r\n"
        return bytes(out)

    def _take_reply(self) -> list[bytes]:
        """Queued DUT lines up to and including the first `m-ready` (fewer if the DUT has not finished)."""
        lines: list[bytes] = []
        while True:
            end = self._dut_rx.find(b"\r\n")
            if end < 0:
                return lines
            line = bytes(self._dut_rx[:end])
            del self._dut_rx[:end + 2]
            lines.append(line)
            if line == b"m-ready":
                return lines

    def _pace(self, nbytes: int) -> None:
        if self.pace_dut and nbytes:
            time.sleep(wire_seconds(nbytes, self.dut_baud))
