"""Host side of the ST X-NUCLEO-LPM01A (STM32 Power Shield) energy monitor, as the MLPerf Tiny runner drives it.

Sources: mlcommons/tiny `benchmark/runner/power_manager.py` and `power_manager/power_manager_lpm.py`
(commands, acknowledgement and stream parsing, the Power Shield command table), `main.py`
(`run_test`: `pwr on`, 1 s for the DUT to boot, `start`; `print_energy_results`: the window),
`script.py` (`_gather_power_results`: samples, `event N ris` and `TimeStamp` lines) and the
recorded session `sessions/20250612_122741/log.txt` (the exact command sequence on the wire).

Wire format: one command per line, `<command>\\r\\n`, at 3686400 baud. Each is answered
`PowerShield > ack <command>[ <value>]`, or `PowerShield > error <command>` and then
`PowerShield > Error detail: <text>`. After `start` the board streams, without prompt, one
ascii_dec sample per line (`DDDD[+-]EE` = DDDD x 10^[+-]EE; joules per sample period with
`output energy`), `event N ris` when the DUT's timestamp GPIO (D7) falls, and `TimeStamp:
SSSs MMMms, buff NN%` every second. `stop` is not acknowledged; it ends with `Acquisition
completed`.

Energy per inference (as `print_energy_results`): the samples between the last two D7 events
of the `infer N W` command, summed, divided by N. The sum goes through `trace.summarize` (the
samples as a step-shaped current trace at the set voltage, D7 high in the window), so the result
has the same JSON fields as an imported PPK2/Otii trace.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import math
import re
import threading
import time
from collections.abc import Iterator
from types import TracebackType

import numpy as np

from edge.errors import ConfigError, DeviceError
from edge.firmware_bridge.trace import Trace, summarize
from edge.firmware_bridge.transport import SerialLink

DEFAULT_BAUD = 3_686_400  # PowerManager(baud_rate=3686400); the LPM01A's virtual COM port rate
DEFAULT_VOLTAGE_V = 3.3  # PowerManager(voltage=3.3)
DEFAULT_FREQ = "1k"  # configure_output('energy', 'ascii_dec', '1k')
POWER_ON_WAIT_S = 1.0  # run_test: time.sleep(1) "let the DUT boot up" between `pwr on` and `start`
PROMPT = "PowerShield > "
FREQUENCIES_HZ = {"100k": 100_000, "50k": 50_000, "20k": 20_000, "10k": 10_000, "5k": 5_000, "2k": 2_000,
                  "1k": 1_000, "500": 500, "200": 200, "100": 100, "50": 50, "20": 20, "10": 10, "5": 5,
                  "2": 2, "1": 1}
MIN_WINDOW_S = 10.0  # print_energy_results: a window under 10 s is "not valid for submission"
D7 = 7  # the event input: Arduino connector D7, wired to the DUT's timestamp GPIO
MAX_LINE = 4096
MAX_MESSAGES = 1000
_SAMPLE = re.compile(r"\d{4}[-+]\d{2}")
_STAMP = re.compile(r"^TimeStamp:[ ><]([0-9]{3})s ([0-9]{3})ms, buff ([0-9]{2})%$")
_EVENT = re.compile(r"^event ([0-9]{1,9}) ris")


def volt_argument(voltage_V: float) -> str:
    """`volt` argument in millivolts, e.g. 3.0 -> `3000m` (the runner: `f"{int(1000*voltage)}m"`)."""
    return f"{round(voltage_V * 1000)}m"


def decode_samples(line: str) -> list[float]:
    """Samples of one data line; a cut-off sample before the first or after the last is NaN (as the runner)."""
    matches = list(_SAMPLE.finditer(line))
    if not matches:
        return [math.nan]
    values = [math.nan] if matches[0].start() > 0 else []
    values += [float(m.group().replace("+", "e+").replace("-", "e-")) for m in matches]
    if matches[-1].end() < len(line):
        values.append(math.nan)
    return values


class StreamParser:
    """Sorts the monitor's output into samples, D7 events, TimeStamps and messages; never raises.

    `events` and `stamps` hold (number or seconds, samples received before it), as the runner's
    `_gather_power_results`. Damaged samples are NaN; lines that fit nothing go to `messages`.
    """

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.events: list[tuple[int, int]] = []
        self.stamps: list[tuple[float, int]] = []
        self.messages: list[str] = []
        self.dropped_bytes = 0
        self._pending = bytearray()

    def feed(self, data: bytes) -> None:
        """Add received bytes; complete lines are sorted at once."""
        self._pending += data
        while True:
            end = self._pending.find(b"\n")
            if end < 0:
                break
            raw = bytes(self._pending[:end])
            del self._pending[:end + 1]
            self.line(raw.decode("latin-1"))
        if len(self._pending) > MAX_LINE:  # no line end in sight: noise, not a line
            self.dropped_bytes += len(self._pending)
            self._pending.clear()

    def line(self, raw: str) -> None:
        """Sort one line (without its `\\n`)."""
        line = raw.strip("\r\0 \t")
        if not line:
            return
        if line.startswith("TimeStamp"):
            match = _STAMP.match(line)
            if match is not None:
                self.stamps.append((int(match.group(1)) + int(match.group(2)) / 1000, len(self.samples)))
                return
        elif _SAMPLE.match(line):
            self.samples += decode_samples(line)
            return
        else:
            match = _EVENT.match(line)
            if match is not None:
                self.events.append((int(match.group(1)), len(self.samples)))
                return
        message = line.replace(PROMPT, "").strip()
        if message:
            self.messages.append(message)
            del self.messages[:-MAX_MESSAGES]


@dataclasses.dataclass(frozen=True)
class Reply:
    """The answer to one command: acknowledged or not, the value after the command, the error detail."""

    ok: bool
    value: str
    detail: str


def find_reply(messages: list[str], command: str) -> tuple[int, Reply] | None:
    """(messages consumed, reply) once `ack <command>` or `error <command>` + `Error detail:` has arrived."""
    for index, message in enumerate(messages):
        for word in ("ack", "error"):
            prefix = f"{word} {command}"
            if message == prefix or message.startswith(prefix + " "):
                value = message[len(prefix):].strip()
                if word == "ack":
                    return index + 1, Reply(True, value, "")
                for later, detail in enumerate(messages[index + 1:], start=index + 2):
                    if detail.startswith("Error detail"):
                        return later, Reply(False, value, detail.removeprefix("Error detail").lstrip(": "))
                return None
    return None


class Lpm01a:
    """An LPM01A on a SerialLink; `with Lpm01a(link) as lpm:` configures, powers the DUT and acquires.

    Use as the `energy_probe` of `bench.run_bench`: `before_infer` marks the stream and
    `after_infer(N)` returns the measured energy per inference of that `infer N W`.
    """

    def __init__(
        self,
        link: SerialLink,
        *,
        voltage_V: float = DEFAULT_VOLTAGE_V,
        freq: str = DEFAULT_FREQ,
        power_on_wait_s: float = POWER_ON_WAIT_S,
    ) -> None:
        if freq not in FREQUENCIES_HZ:
            raise ConfigError(f"sampling frequency '{freq}' is not one the LPM01A offers", where="--monitor-freq",
                              hint=f"one of {', '.join(FREQUENCIES_HZ)} (the MLPerf Tiny runner uses 1k)")
        if not voltage_V > 0:
            raise ConfigError(f"supply voltage must be positive, got {voltage_V}", where="--voltage")
        self.link = link
        self.voltage_V = voltage_V
        self.freq = freq
        self.rate_Hz = FREQUENCIES_HZ[freq]
        self.power_on_wait_s = power_on_wait_s
        self.parser = StreamParser()
        self.board_id = ""
        self.version = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._read_error: DeviceError | None = None
        self._mark = (0, 0)

    # --- the wire ---------------------------------------------------------------------------
    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.link.read_some(0.05)
            except DeviceError as exc:
                self._read_error = exc
                return
            if data:
                with self._lock:
                    self.parser.feed(data)

    def _check_reader(self) -> None:
        if self._read_error is not None:
            raise self._read_error

    def command(self, text: str, timeout_s: float | None = None) -> str:
        """Send `text\\r\\n`; return the value after `ack <text>`; DeviceError on `error` or timeout."""
        timeout_s = self.link.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            self.parser.messages.clear()  # the runner's _purge_messages
        self.link.write((text + "\r\n").encode("latin-1"))
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_reader()
            with self._lock:
                found = find_reply(self.parser.messages, text)
                if found is not None:
                    del self.parser.messages[:found[0]]
            if found is not None:
                reply = found[1]
                if not reply.ok:
                    raise DeviceError(f"the power monitor rejected '{text}': {reply.detail or 'no detail'}",
                                      where=f"{self.link.url} (LPM01A)", hint=_hint(text))
                return reply.value
            if time.monotonic() > deadline:
                raise DeviceError(f"no 'ack {text}' from the power monitor within {timeout_s:.1f} s",
                                  where=f"{self.link.url} (LPM01A)",
                                  hint="is this the LPM01A's port (STLink virtual COM, 3686400 baud)?")
            time.sleep(0.005)

    # --- session ----------------------------------------------------------------------------
    def setup(self) -> None:
        """The runner's PowerManager setup, in the recorded order, then the voltage."""
        self.command("htc")
        self.board_id = self.command("powershield")
        self.version = self.command("version")
        self.command("status")
        self.command('lcd 1 "MLPerf Tiny"')
        self.command('lcd 2 "     monitor    "')
        self.command("pwr off")
        for text in ("acqtime inf", "trigdelay 0", "trigsrc sw", "eventsrc d7 fal",
                     "output energy", "format ascii_dec", f"freq {self.freq}"):
            self.command(text)
        self.command(f"volt {volt_argument(self.voltage_V)}")

    def start(self) -> None:
        """`pwr on nostatus` (the DUT boots), wait, `start` (run_test)."""
        self.command(f'lcd 2 "{self.voltage_V: >14}V "')
        self.command("pwr on nostatus")
        time.sleep(self.power_on_wait_s)
        self.command("start")

    def finish(self) -> None:
        """`pwr off`, `stop` (until `Acquisition completed`), `pwr off`, `hrc` (summarize_result, tear_down)."""
        self.command("pwr off")
        with self._lock:
            self.parser.messages.clear()
        self.link.write(b"stop\r\n")
        deadline = time.monotonic() + self.link.timeout_s
        while True:
            self._check_reader()
            with self._lock:
                done = any("Acquisition completed" in m for m in self.parser.messages)
                failed = find_reply(self.parser.messages, "stop")
            if done:
                break
            if failed is not None and not failed[1].ok:
                raise DeviceError(f"the power monitor rejected 'stop': {failed[1].detail}", where=self.link.url)
            if time.monotonic() > deadline:
                raise DeviceError("no 'Acquisition completed' after 'stop'", where=f"{self.link.url} (LPM01A)")
            time.sleep(0.005)
        self.command("pwr off")
        self.command("hrc")

    def __enter__(self) -> Lpm01a:
        self.link.drain_input()
        self._reader = threading.Thread(target=self._read_loop, name="lpm01a-reader", daemon=True)
        self._reader.start()
        try:
            self.setup()
            self.start()
        except BaseException:
            with contextlib.suppress(DeviceError):  # leave the DUT unpowered and the board standalone
                self.command("pwr off", timeout_s=1.0)
                self.command("hrc", timeout_s=1.0)
            self._close_reader()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self.finish()
            else:  # leave the board unpowered and standalone, but do not hide the first error
                with contextlib.suppress(DeviceError):
                    self.finish()
        finally:
            self._close_reader()

    def _close_reader(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=2)

    # --- the inference window ---------------------------------------------------------------
    def before_infer(self) -> None:
        """Mark the stream: the window is searched in what arrives after this."""
        self._check_reader()
        with self._lock:
            self._mark = (len(self.parser.samples), len(self.parser.events))

    def after_infer(self, runs: int, timeout_s: float | None = None) -> dict:
        """Energy per inference of the `infer N W` since `before_infer`, as TraceEnergy JSON plus monitor fields."""
        timeout_s = self.link.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_reader()
            with self._lock:
                events = self.parser.events[self._mark[1]:]
                if len(events) >= 2:
                    samples = list(self.parser.samples)
                    stamps = list(self.parser.stamps)
                    break
            if time.monotonic() > deadline:
                raise DeviceError(
                    f"{len(events)} D7 event(s) from the power monitor during 'infer {runs}' (need 2)",
                    where=f"{self.link.url} (LPM01A)",
                    hint="wire the DUT's timestamp GPIO to the LPM01A's D7 (energy-mode firmware pulls it at the "
                    "start and end of the timed runs)",
                )
            time.sleep(0.01)
        return window_energy(samples, events, stamps, runs=runs, rate_Hz=self.rate_Hz, voltage_V=self.voltage_V,
                             source=f"{self.link.url} (LPM01A)")


@contextlib.contextmanager
def monitor_session(args: argparse.Namespace) -> Iterator[Lpm01a | None]:
    """`edge bench --power-monitor PORT`: an acquiring LPM01A for the whole bench, or None without the flag."""
    if args.power_monitor is None:
        yield None
        return
    if not args.io_manager:
        raise ConfigError("--power-monitor needs --io-manager", where="edge bench",
                          hint="the energy monitor powers the DUT, which the host reaches through an IO manager")
    if args.trace is not None:
        raise ConfigError("--power-monitor and --trace both measure energy; pass one", where="edge bench")
    voltage = DEFAULT_VOLTAGE_V if args.voltage is None else args.voltage
    with SerialLink(args.power_monitor, args.monitor_baud, timeout_s=args.timeout) as link, \
            Lpm01a(link, voltage_V=voltage, freq=args.monitor_freq, power_on_wait_s=args.power_on_wait) as lpm:
        yield lpm


def window_energy(
    samples: list[float],
    events: list[tuple[int, int]],
    stamps: list[tuple[float, int]],
    *,
    runs: int,
    rate_Hz: int,
    voltage_V: float,
    source: str,
) -> dict:
    """Energy samples (J per period) between the last two D7 events, per inference, via `trace.summarize`."""
    (first, start), (last, stop) = events[-2], events[-1]
    if last != first + 1:
        raise DeviceError(f"D7 events are not consecutive: {first} then {last} (one was lost)", where=source)
    window = np.asarray(samples[start:stop], dtype=float)
    if window.size == 0:
        raise DeviceError(f"no samples between D7 events {first} and {last}", where=source,
                          hint="the inference window is shorter than one sample: raise --runs or --monitor-freq")
    bad = int(np.count_nonzero(~np.isfinite(window)))
    if bad:
        raise DeviceError(f"{bad} damaged sample(s) in the inference window", where=source,
                          hint="bytes were lost on the monitor's port; lower --monitor-freq")
    period = 1.0 / rate_Hz
    current = window / (voltage_V * period)
    edges = np.arange(window.size + 1) * period
    trace = Trace(np.column_stack([edges[:-1], edges[1:]]).ravel(), np.repeat(current, 2), None,
                  np.full(2 * window.size, 1 << D7))
    result = summarize(trace, source, voltage_V=voltage_V, marker=D7, runs_per_window=runs)
    result = dataclasses.replace(result, samples=int(window.size),
                                 method=f"LPM01A D7 events {first}-{last} ({runs} inferences)")
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(stamps) if b[1] - a[1] != rate_Hz]
    return {**result.to_json(), "monitor": "LPM01A", "sample_rate_Hz": rate_Hz, "voltage_V": voltage_V,
            "window_s": window.size * period, "timestamp_gaps": len(gaps),
            "window_below_10s": window.size * period < MIN_WINDOW_S}


def _hint(command: str) -> str:
    if command.startswith("volt"):
        return "the LPM01A supplies 1.8 V to 3.3 V: pass --voltage in that range"
    if command.startswith(("freq", "start")):
        return (f"ascii_dec streams at most 5k without limit (10k for 1 s, 20k for 0.5 s); "
                f"the runner uses {DEFAULT_FREQ}")
    return "see the LPM01A command list (UM2269, or `help` on its port)"
