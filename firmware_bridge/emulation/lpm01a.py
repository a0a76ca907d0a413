"""An emulated ST X-NUCLEO-LPM01A (STM32 Power Shield) powering an emulated MLPerf Tiny DUT.

The command set, acknowledgements and ASCII stream are those the MLPerf Tiny runner uses and
parses (mlcommons/tiny `benchmark/runner/power_manager.py`, `power_manager/power_manager_lpm.py`,
a recorded session `benchmark/runner/sessions/20250612_122741/log.txt`): one command per line
(`htc\\r\\n`), answered `PowerShield > ack <command>[ <value>]` or `PowerShield > error <command>`
followed by `PowerShield > Error detail: <text>`. After `start` it streams, with no prompt:

    4321-09              one sample: 4321 x 10^-9 (ascii_dec); joules per sample period with
                         `output energy`, amperes with `output current`
    event 3 ris          a D7 event (`eventsrc d7 fal`: the DUT's timestamp GPIO falling edge),
                         placed after the samples completed before the edge
    TimeStamp: 002s 000ms, buff 00%     after every `freq` samples (each acquired second)

and after `stop` (no ack, as the runner notes) `PowerShield > Acquisition completed`.

The current comes from the DUT (`DutActivity`, the explicit hook `MlperfFirmware.activity`):
the MCU profile's sleep current while idle and, during the timed runs of `infer N W`, the
power that gives the cost model's energy per inference (so energy is V-independent and a
measured/model ratio of 1.0 is expected). Time is the DUT's own clock, which jumps by the
modelled run time at each `infer`, so a 10 s window costs no wall time.

What is not emulated (see docs/firmware_bridge.md): `format bin_hexa` streaming, `trigsrc d7`,
`currthres`, `targrst`, `temp`, `autotest`, `calib`; the exact `Error detail` texts are ours.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable

from edge.firmware_bridge.emulation.mlperf_firmware import MlperfFirmware
from edge.firmware_bridge.power_monitor import FREQUENCIES_HZ, PROMPT

BOARD_ID = "000000001-000000002-0000003"  # a made-up unique ID (the real one is per board)
VERSION = "1.0.7"  # the firmware revision in the runner's recorded session
VOLT_RANGE_V = (1.8, 3.3)
ASCII_MAX_ACQ_S = {10_000: 1.0, 20_000: 0.5}  # ascii_dec above 5 kHz: the acquisition must be this short
MAX_LINE = 256
_NUMBER = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(?:([umk])|([-+][0-9]{1,2}))?$")
_LCD = re.compile(r'^([12]) "(.{0,16})"$')


def parse_value(text: str) -> float | None:
    """A Power Shield number: `3300m`, `2-3` (2 x 10^-3), `100u`, `1k`, `10`; None if not one."""
    match = _NUMBER.match(text)
    if match is None:
        return None
    value = float(match.group(1))
    if match.group(2):
        value *= {"u": 1e-6, "m": 1e-3, "k": 1e3}[match.group(2)]
    elif match.group(3):
        value *= 10.0 ** int(match.group(3))
    return value


def encode_sample(value: float) -> str:
    """ascii_dec: four digits and a signed two-digit power of ten (`6409-07` = 640.9e-6)."""
    if not value > 0:
        return "0000+00"
    exponent = math.floor(math.log10(value)) - 3
    mantissa = round(value / 10.0 ** exponent)
    if mantissa >= 10_000:
        mantissa, exponent = mantissa // 10, exponent + 1
    return f"{mantissa:04d}{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


class DutActivity:
    """The emulated DUT's side of the coupling: its clock, timestamp edges and inference windows.

    The DUT (`MlperfFirmware.activity = this`) calls `edge` and `inference`; the monitor reads.
    """

    def __init__(self, clock_us: Callable[[], int], *, idle_current_A: float, run_power_W: float) -> None:
        self.clock_us = clock_us
        self.idle_current_A = idle_current_A
        self.run_power_W = run_power_W
        self._lock = threading.RLock()
        self._edges: list[int] = []
        self._busy: list[tuple[int, int, float]] = []

    @classmethod
    def attach(cls, firmware: MlperfFirmware) -> DutActivity:
        """Hook a monitor onto `firmware`, with idle current and fallback run power from its MCU profile."""
        from edge.power.profiles import load_mcu

        mcu = load_mcu(firmware.target)
        activity = cls(firmware.now_us, idle_current_A=mcu.sleep_current_uA * 1e-6,
                       run_power_W=mcu.run_current_uA * 1e-6 * mcu.supply_V)
        firmware.activity = activity
        return activity

    def hold(self) -> threading.RLock:
        """The DUT holds this while it reads its clock and reports an inference; the monitor while it streams."""
        return self._lock

    def edge(self, t_us: int) -> None:
        """A th_timestamp falling edge."""
        with self._lock:
            self._edges.append(t_us)

    def inference(self, start_us: int, end_us: int, power_W: float | None) -> None:
        """The timed runs of one `infer`: busy at `power_W` in [start, end), an edge at each end."""
        with self._lock:
            self._busy.append((start_us, end_us, self.run_power_W if power_W is None else power_W))
            self._edges += [start_us, end_us]

    def take_edges(self, before_us: float) -> list[int]:
        """Remove and return the edges earlier than `before_us`, in time order."""
        with self._lock:
            self._edges.sort()
            taken = [t for t in self._edges if t < before_us]
            self._edges = self._edges[len(taken):]
            return taken

    def busy_energy_J(self, start_us: float, end_us: float, idle_power_W: float) -> float:
        """Energy above idle in [start, end) from the inference windows; windows over before start are dropped."""
        with self._lock:
            self._busy = [w for w in self._busy if w[1] > start_us]
            extra = 0.0
            for begin, end, power in self._busy:
                overlap = min(end, end_us) - max(begin, start_us)
                if overlap > 0:
                    extra += (power - idle_power_W) * overlap * 1e-6
            return extra


class EmulatedLpm01a:
    """Bytes from the host in, bytes out; `poll()` streams the samples acquired since the last call."""

    def __init__(self, activity: DutActivity) -> None:
        self.activity = activity
        self.received = bytearray()  # every byte from the host, for tests
        self.host_control = False
        self.voltage_V = 3.3
        self.freq = "100"
        self.acqtime_s: float | None = 10.0  # None: infinite
        self.output = "current"
        self.format = "ascii_dec"
        self.trigsrc = "sw"
        self.pwr_mode = "auto"
        self.powered = False
        self.lcd = ["", ""]
        self.acquiring = False
        self._line = bytearray()
        self._t0_us = 0.0
        self._sent = 0
        self._events = 0

    def boot(self) -> bytes:
        """Nothing is printed at power-up on the host port."""
        return b""

    def reset_link_state(self) -> None:
        """Forget a half-received command line."""
        self._line.clear()

    def feed(self, data: bytes) -> bytes:
        """Commands end at `\\n` (a `\\r` before it is ignored)."""
        self.received += data
        out = bytearray()
        for byte in data:
            if byte == ord("\n"):
                command = self._line.decode("latin-1").strip("\r\0 ")
                self._line.clear()
                if command:
                    out += self.poll() + self._handle(command).encode("latin-1")
            elif len(self._line) < MAX_LINE:
                self._line.append(byte)
        return bytes(out)

    def poll(self) -> bytes:
        """The stream up to the DUT's clock now (samples, D7 events, per-second TimeStamp lines)."""
        if not self.acquiring:
            return b""
        with self.activity.hold():
            return self._stream(self.activity.clock_us()).encode()

    def _stream(self, now_us: float) -> str:
        rate = FREQUENCIES_HZ[self.freq]
        period_us = 1e6 / rate
        limit = math.inf if self.acqtime_s is None else self.acqtime_s * rate
        available = min(int((now_us - self._t0_us) / period_us), limit)
        idle_power = self.activity.idle_current_A * self.voltage_V if self.powered else 0.0
        lines = []
        while self._sent < available:
            start = self._t0_us + self._sent * period_us
            end = start + period_us
            for _ in self.activity.take_edges(end):
                self._events += 1
                lines.append(f"event {self._events} ris")
            energy = idle_power * period_us * 1e-6
            if self.powered:
                energy += self.activity.busy_energy_J(start, end, idle_power)
            value = energy if self.output == "energy" else energy / (self.voltage_V * period_us * 1e-6)
            lines.append(encode_sample(value))
            self._sent += 1
            if self._sent % rate == 0:
                ms = round(self._sent * 1000 / rate)
                lines.append(f"TimeStamp: {ms // 1000:03d}s {ms % 1000:03d}ms, buff 00%")
        text = "".join(line + "\r\n" for line in lines)
        if self._sent >= limit:
            self.acquiring = False
            text += PROMPT + "Acquisition completed\r\n"
        return text

    def _handle(self, command: str) -> str:
        head, _, args = command.partition(" ")
        if head == "stop":
            if not self.acquiring:
                return self._error(command, "no acquisition in progress")
            with self.activity.hold():
                text = self._stream(self.activity.clock_us())
            self.acquiring = False
            return text + PROMPT + "Acquisition completed\r\n"
        if self.acquiring and head != "pwr":
            return self._error(command, "acquisition in progress, send 'stop' first")
        if head in ("powershield", "version", "status", "htc"):
            if args:
                return self._error(command, "no argument expected")
            if head == "htc":
                self.host_control = True
            value = {"powershield": BOARD_ID, "version": VERSION, "status": "ok"}.get(head)
            return self._ack(command, value)
        if not self.host_control:
            return self._error(command, "host control required: send 'htc' first")
        handler = {
            "hrc": self._hrc, "lcd": self._lcd, "volt": self._volt, "freq": self._freq, "acqtime": self._acqtime,
            "trigdelay": self._number(0.0, 30.0), "trigsrc": self._choice("trigsrc", ("sw", "d7")),
            "eventsrc": self._eventsrc, "output": self._choice("output", ("current", "energy")),
            "format": self._choice("format", ("ascii_dec", "bin_hexa")), "pwr": self._pwr, "start": self._start,
        }.get(head)
        if handler is None:
            return self._error(command, f"unknown command '{head[:20]}'")
        return handler(command, args)

    def _ack(self, command: str, value: str | None = None) -> str:
        return f"{PROMPT}ack {command}" + (f" {value}" if value else "") + "\r\n"

    def _error(self, command: str, detail: str) -> str:
        return f"{PROMPT}error {command}\r\n{PROMPT}Error detail: {detail}\r\n"

    def _hrc(self, command: str, args: str) -> str:
        self.host_control = False
        return self._ack(command)

    def _lcd(self, command: str, args: str) -> str:
        match = _LCD.match(args)
        if match is None:
            return self._error(command, 'expected: lcd <1|2> "<up to 16 characters>"')
        self.lcd[int(match.group(1)) - 1] = match.group(2)
        return self._ack(command)

    def _volt(self, command: str, args: str) -> str:
        if args == "get":
            return self._ack(command, encode_sample(self.voltage_V))
        value = parse_value(args)
        low, high = VOLT_RANGE_V
        if value is None or not low - 1e-9 <= value <= high + 1e-9:
            return self._error(command, f"voltage out of range [{low * 1000:.0f}m; {high * 1000:.0f}m]")
        self.voltage_V = value
        return self._ack(command)

    def _freq(self, command: str, args: str) -> str:
        if args not in FREQUENCIES_HZ:
            return self._error(command, f"frequency not in list {{{', '.join(FREQUENCIES_HZ)}}}")
        self.freq = args
        return self._ack(command)

    def _acqtime(self, command: str, args: str) -> str:
        value = None if args == "inf" else parse_value(args)
        if args != "inf" and (value is None or not (value == 0 or 100e-6 <= value <= 100)):
            return self._error(command, "acquisition time out of range [100u; 100] or 0 / inf")
        self.acqtime_s = value or None
        return self._ack(command)

    def _eventsrc(self, command: str, args: str) -> str:
        if args not in ("d7 fal", "d7 ris"):
            return self._error(command, "expected: eventsrc d7 <ris|fal>")
        return self._ack(command)

    def _pwr(self, command: str, args: str) -> str:
        parts = args.split(" ")
        if parts[0] == "get" and len(parts) == 1:
            return self._ack(command, "on" if self.powered else "off")
        if parts[0] not in ("on", "off", "auto") or len(parts) > 2 or parts[1:] not in ([], ["status"], ["nostatus"]):
            return self._error(command, "expected: pwr <on|off|auto|get> [status|nostatus]")
        self.pwr_mode = parts[0]
        if parts[0] != "auto":
            self.powered = parts[0] == "on"
        return self._ack(command)

    def _start(self, command: str, args: str) -> str:
        rate = FREQUENCIES_HZ[self.freq]
        if args:
            return self._error(command, "no argument expected")
        if self.format == "bin_hexa":
            return self._error(command, "bin_hexa streaming is not emulated, use format ascii_dec")
        if self.trigsrc != "sw":
            return self._error(command, "trigsrc d7 is not emulated, use trigsrc sw")
        if self.output == "energy" and rate > 10_000:
            return self._error(command, "output energy is limited to freq 10k")
        if rate > 5_000:
            longest = ASCII_MAX_ACQ_S.get(rate)
            if longest is None or self.acqtime_s is None or self.acqtime_s > longest:
                allowed = f"acqtime <= {longest:g} s" if longest else "format bin_hexa"
                return self._error(command, f"freq {self.freq} with ascii_dec needs {allowed}")
        if self.pwr_mode == "auto":
            self.powered = True  # pwr auto: power-on when the acquisition starts
        self.acquiring = True
        self._t0_us = float(self.activity.clock_us())
        self._sent = 0
        self._events = 0
        self.activity.take_edges(self._t0_us)  # edges before the acquisition are not events
        return self._ack(command)

    def _number(self, low: float, high: float) -> Callable[[str, str], str]:
        def handler(command: str, args: str) -> str:
            value = parse_value(args)
            if value is None or not low <= value <= high:
                return self._error(command, f"value out of range [{low:g}; {high:g}]")
            return self._ack(command)

        return handler

    def _choice(self, name: str, options: tuple[str, ...]) -> Callable[[str, str], str]:
        def handler(command: str, args: str) -> str:
            if args not in options:
                return self._error(command, f"expected one of {{{', '.join(options)}}}")
            setattr(self, name, args)
            return self._ack(command)

        return handler
