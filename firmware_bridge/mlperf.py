"""Host side of the MLPerf Tiny / EEMBC device-under-test serial protocol.

Matches mlcommons/tiny `benchmark/api/internally_implemented.{h,cpp}` and the reference runner
(`benchmark/runner/device_under_test.py`): a command is ASCII words separated by spaces and
terminated by `%` (no CR/LF), at most 80 characters; the device answers `\\r\\n`-terminated
lines, data lines start `m-`, errors `e-[...]`, and every command ends with `m-ready`.

    name%            -> m-name-dut-[VENDOR]
    profile%         -> m-profile-[FW VERSION]  m-model-[MODEL]
    timestamp%       -> m-lap-us-<microseconds>
    db load N%       -> m-[Expecting N bytes]
    db <hex>%        -> (m-load-done after the N-th byte)
    infer N W%       -> m-warmup-start-W, m-warmup-done, m-infer-start-N, m-lap-us-<t0>,
                        m-lap-us-<t1>, m-infer-done, m-results-[f,f,...]
    results%         -> m-results-[f,f,...]

Through an IO manager (energy mode: the host talks to an EEMBC IO manager or the MLPerf Tiny
interface board, which forwards to the DUT on a second UART; mlcommons/tiny
`benchmark/runner/io_manager.py`, `benchmark/interface/Application/CLI/InterfaceMenu.cpp`):

    dut name%        -> m-dut-passthrough(name)  m-ready          (the IO manager's own answer)
                        [dut]: m-name-dut-[VENDOR]  [dut]: m-ready (the DUT's lines, prefixed)
    name%            -> <IO manager name>  m-ready
    enable-timer%    -> ... m-ready; then the IO manager prints its own (unprefixed) `m-lap-us-N`
                        at each falling edge of the DUT's timestamp GPIO

An energy-mode DUT prints no `m-lap-us-` lines (its `th_timestamp` pulls a GPIO low for the
energy monitor), so through an IO manager the latency comes from the DUT's stamps if it prints
them, else from the IO manager's timer lines, else it is unknown.

The parsers here are pure functions of the reply lines; they raise `ProtocolError` (a
DeviceError, exit 3) on anything unexpected and never anything else (fuzzed with hypothesis).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.errors import DeviceError
from edge.firmware_bridge.transport import SerialLink, wire_seconds

TERMINATOR = "%"
MAX_COMMAND = 80  # EE_CMD_SIZE: the firmware keeps at most 80 characters of a command
READY = "m-ready"
HEX_BYTES_PERFORMANCE = 31  # bytes per `db` command in the reference runner (26 in energy mode)
HEX_BYTES_ENERGY = 26
INFER_TIMEOUT_S = 30.0  # per reply line of `infer` (the warm-ups and the timed runs each end in a line)
MAX_REPLY_LINES = 10_000
REPLY_ALLOWANCE = 256  # bytes of reply a command may produce, for the wire-time part of its timeout
MAX_LINE_CHARS = 4096
PASSTHROUGH = "dut"  # IO manager command that forwards the rest of the line to the DUT
DUT_PREFIX = "[dut]: "  # the IO manager's prefix on every line it forwards from the DUT
IO_DUT_BAUD = 9600  # IO manager <-> DUT UART in energy mode (EEMBC runner README, interface usart.c)

_PREFIX = re.compile(r"^\[dut\]: ")  # energy mode: the IO manager prefixes DUT lines
_NAME = re.compile(r"^m-name-(?P<device>[^\[\]]*)-\[(?P<vendor>[^\]]+)\]$")
_PROFILE = re.compile(r"^m-(?P<key>model|profile)-\[(?P<value>[^\]]+)\]$")
_LAP = re.compile(r"^m-lap-us-(?P<us>[0-9]{1,20})$")
_RESULTS = re.compile(r"^m-results-\[(?P<values>[^\]]*)\]$")
_EXPECT = re.compile(r"^m-\[Expecting (?P<n>[0-9]{1,12}) bytes\]$")
_ERROR = re.compile(r"^e-\[(?P<text>.*)\]$")
_WARMUP = re.compile(r"^m-warmup-start-(?P<n>[0-9]{1,12})$")
_INFER = re.compile(r"^m-infer-start-(?P<n>[0-9]{1,12})$")
_TIMING = re.compile(r"^m-timing-\[(?P<value>[^\]]+)\]$")
_OVERSIZE = re.compile(r"Supplied buffer size (?P<n>-?[0-9]+) exceeds maximum of (?P<max>[0-9]+)")
SAID_LINES = 4  # reply lines quoted in an error


class ProtocolError(DeviceError):
    """The device said something the MLPerf Tiny protocol does not allow here."""


class StaleReplyError(ProtocolError):
    """An IO manager handed over DUT output queued before this session: every reply would lag."""


@dataclass(frozen=True)
class InferReply:
    """What `infer N W` reported."""

    runs: int
    warmups: int
    laps_us: tuple[int, int] | None
    results: tuple[float, ...]
    lap_source: str = "dut"  # "dut", "io-manager timer", or "none" (energy-mode DUT, no timer)

    @property
    def latency_ms(self) -> float | None:
        """Mean latency of one inference between the two timestamps (None without stamps)."""
        if self.laps_us is None:
            return None
        return (self.laps_us[1] - self.laps_us[0]) / self.runs / 1000.0


def describe_reply(lines: list[str], partial: bytes = b"") -> str:
    """What the device said, for an error message: its last lines, quoted, and any unterminated rest."""
    shown = [line.strip() for line in lines if line.strip()][-SAID_LINES:]
    text = ", ".join(repr(line[:100]) for line in shown)
    if partial:
        text += (", " if text else "") + f"unterminated {bytes(partial[:100])!r}"
    return text or "nothing"


def _missing(what: str, command: str, lines: list[str]) -> ProtocolError:
    return ProtocolError(f"no '{what}' line in the reply to '{command}'; the device said: {describe_reply(lines)}",
                         where="MLPerf Tiny DUT")


def clean_lines(lines: list[str]) -> list[str]:
    """Strip whitespace and the energy-mode `[dut]: ` prefix; drop empty lines."""
    out = []
    for raw in lines:
        line = _PREFIX.sub("", raw.strip())
        if line:
            out.append(line)
    return out


def raise_on_error(lines: list[str], command: str) -> None:
    """Raise ProtocolError if the device answered with an `e-[...]` line."""
    for line in clean_lines(lines):
        match = _ERROR.match(line)
        if match:
            raise ProtocolError(
                f"device rejected '{command}': {match.group('text')}",
                where="MLPerf Tiny DUT",
                hint="check the firmware profile (`edge bench` sends name, profile, db, infer)",
            )


def parse_name(lines: list[str]) -> str:
    """The vendor/device string from `m-name-dut-[...]`."""
    for line in clean_lines(lines):
        match = _NAME.match(line)
        if match:
            return match.group("vendor")
    error = _missing("m-name-...-[...]", "name", lines)
    error.hint = "if this port is an IO manager (energy setup, the DUT behind it), add --io-manager"
    raise ProtocolError(error.message, where=error.where, hint=error.hint)


def parse_profile(lines: list[str]) -> dict[str, str]:
    """`{'profile': ..., 'model': ...}` from the reply to `profile` (plus `timing` if sent)."""
    found: dict[str, str] = {}
    for line in clean_lines(lines):
        match = _PROFILE.match(line)
        if match:
            found[match.group("key")] = match.group("value")
        timing = _TIMING.match(line)
        if timing:
            found["timing"] = timing.group("value")
    if "profile" not in found:
        raise _missing("m-profile-[...]", "profile", lines)
    return found


def parse_lap(lines: list[str]) -> int:
    """Microseconds from the first `m-lap-us-<us>` line."""
    laps = parse_laps(lines)
    if not laps:
        raise _missing("m-lap-us-<us>", "timestamp", lines)
    return laps[0]


def parse_laps(lines: list[str]) -> list[int]:
    """Every `m-lap-us-<us>` value, in order."""
    laps = []
    for line in clean_lines(lines):
        match = _LAP.match(line)
        if match:
            laps.append(int(match.group("us")))
    return laps


def parse_results(lines: list[str]) -> tuple[float, ...]:
    """The float vector of the last `m-results-[...]` line."""
    values: tuple[float, ...] | None = None
    for line in clean_lines(lines):
        match = _RESULTS.match(line)
        if match:
            values = _parse_floats(match.group("values"))
    if values is None:
        raise _missing("m-results-[...]", "infer/results", lines)
    return values


def _parse_floats(text: str) -> tuple[float, ...]:
    if not text.strip():
        return ()
    out = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise ProtocolError(f"'{item[:40]}' in m-results is not a number", where="MLPerf Tiny DUT") from None
        if not math.isfinite(value):
            raise ProtocolError(f"m-results holds a non-finite value '{item[:40]}'", where="MLPerf Tiny DUT")
        out.append(value)
    return tuple(out)


def parse_load_expect(lines: list[str]) -> int:
    """N from `m-[Expecting N bytes]`."""
    for line in clean_lines(lines):
        match = _EXPECT.match(line)
        if match:
            return int(match.group("n"))
        over = _OVERSIZE.search(line)
        if over:  # the reference firmware's reply (no e- prefix, bare LF)
            raise ProtocolError(
                f"the device holds at most {over.group('max')} bytes per input (MAX_DB_INPUT_SIZE) and refused "
                f"{over.group('n')}: {line.strip()!r}", where="MLPerf Tiny DUT",
                hint="the model's input is larger than the firmware's buffer: rebuild the firmware with a larger "
                "MAX_DB_INPUT_SIZE, or export a model with a smaller input")
    raise _missing("m-[Expecting N bytes]", "db load", lines)


def parse_infer(
    lines: list[str], runs: int, warmups: int, *, timer_lines: list[str] | None = None, laps_required: bool = True
) -> InferReply:
    """Check the `infer N W` reply sequence and return its timestamps and results.

    `timer_lines`: the IO manager's own lines during the command (its `m-lap-us-` timer stamps
    are used when the DUT printed none); `laps_required=False` accepts a reply without stamps.
    """
    cleaned = clean_lines(lines)
    starts = [int(m.group("n")) for m in map(_INFER.match, cleaned) if m]
    warm = [int(m.group("n")) for m in map(_WARMUP.match, cleaned) if m]
    if starts != [runs] or warm != [warmups]:
        raise ProtocolError(
            f"expected m-warmup-start-{warmups} and m-infer-start-{runs}, got warmup {warm} and infer {starts}; "
            f"the device said: {describe_reply(lines)}", where="MLPerf Tiny DUT",
        )
    if "m-infer-done" not in cleaned:
        raise _missing("m-infer-done", "infer", lines)
    laps, source = parse_laps(cleaned), "dut"
    if not laps and timer_lines:
        laps, source = parse_laps(timer_lines), "io-manager timer"
    if not laps and not laps_required:
        return InferReply(runs, warmups, None, parse_results(cleaned), "none")
    if len(laps) != 2 or laps[1] < laps[0]:
        raise ProtocolError(f"expected two increasing m-lap-us stamps, got {laps[:4]}", where="MLPerf Tiny DUT")
    return InferReply(runs, warmups, (laps[0], laps[1]), parse_results(cleaned), source)


def split_passthrough(lines: list[str]) -> tuple[list[str], list[str]]:
    """(DUT lines without the `[dut]: ` prefix, the IO manager's own lines) of a passthrough reply."""
    dut, own = [], []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if line.startswith(DUT_PREFIX):
            if line[len(DUT_PREFIX):].strip():
                dut.append(line[len(DUT_PREFIX):].strip())
        elif line.strip():
            own.append(line.strip())
    return dut, own


def check_passthrough_ack(lines: list[str], command: str) -> None:
    """The IO manager's answer to `dut <command>` before the DUT's lines: one line, then `m-ready`.

    The reference runner (io_manager.py) accepts exactly two lines ending in `m-ready`; the
    interface board sends `m-dut-passthrough(<command>)`. The first line's text is not checked
    (the EEMBC Arduino io-manager's firmware is not public).
    """
    cleaned = [line.strip() for line in lines if line.strip()]
    if any(line.startswith("e-[") or line.startswith("m-name-dut-") for line in cleaned):
        raise ProtocolError(
            f"the port answered '{PASSTHROUGH} {command}' itself ({cleaned[0][:60]}): a DUT, not an IO manager",
            where="IO manager", hint="drop --io-manager when the board is connected directly",
        )
    if any(line.startswith(DUT_PREFIX) for line in cleaned):
        raise StaleReplyError(
            f"DUT lines arrived before the IO manager acknowledged '{PASSTHROUGH} {command}'",
            where="IO manager", hint="output of an earlier command is still queued; reset the IO manager",
        )
    if len(cleaned) != 2 or cleaned[-1] != READY:
        raise ProtocolError(
            f"expected the IO manager's 'm-dut-passthrough({command})' and 'm-ready', got {cleaned[:4]}",
            where="IO manager", hint="is the IO manager (or interface board) firmware running on this port?",
        )


def _bare_ready(line: str) -> bool:
    return line.strip() == READY


def _dut_ready(line: str) -> bool:
    return line.strip() == DUT_PREFIX + READY


def _any_ready(line: str) -> bool:
    return _PREFIX.sub("", line.strip()) == READY


def hex_commands(data: bytes, per_command: int = HEX_BYTES_PERFORMANCE) -> list[str]:
    """The `db <hex>` commands that load `data`, each within the 80-character limit."""
    if not 1 <= per_command <= (MAX_COMMAND - 3) // 2:
        raise ValueError(f"per_command must be 1..{(MAX_COMMAND - 3) // 2}, got {per_command}")
    return [f"db {data[i:i + per_command].hex()}" for i in range(0, len(data), per_command)]


class MlperfDut:
    """Drive a board running MLPerf Tiny-style firmware over a SerialLink.

    `io_manager=True`: the link goes to an IO manager; every DUT command is sent as
    `dut <command>%` and the DUT's `[dut]: ` lines are unwrapped, so the parsers see the DUT's
    own reply. `io_timer=True` also sends `enable-timer%` so the IO manager stamps the DUT's
    timestamp GPIO edges. `dut_baud` (IO manager <-> DUT) only widens the timeouts.
    """

    def __init__(
        self,
        link: SerialLink,
        *,
        energy_mode: bool = False,
        max_input_bytes: int | None = None,
        io_manager: bool = False,
        io_timer: bool = False,
        dut_baud: int = IO_DUT_BAUD,
    ) -> None:
        self.link = link
        # the reference runner uses 26-byte chunks in energy mode, i.e. whenever the IO manager is in the path
        self.per_command = HEX_BYTES_ENERGY if energy_mode or io_manager else HEX_BYTES_PERFORMANCE
        self.max_input_bytes = max_input_bytes
        self.io_manager = io_manager
        self.io_timer = io_timer
        self.dut_baud = dut_baud
        self.io_manager_name: str | None = None
        self.io_lines: list[str] = []  # the IO manager's own lines during the last passthrough
        self._pending = bytearray()

    def command(self, text: str, timeout_s: float | None = None, *, per_line: bool = False) -> list[str]:
        """Send `text%` and return the reply lines up to and including `m-ready`.

        The timeout (default: the link's, 5 s like the reference runner) grows with wire time; with
        `per_line` it applies to each line (the reference runner's read_line), not to the whole reply.
        """
        timeout_s = self.link.timeout_s if timeout_s is None else timeout_s
        if len(text) > MAX_COMMAND or TERMINATOR in text:
            raise ProtocolError(
                f"command '{text[:40]}...' is {len(text)} characters; the firmware keeps at most {MAX_COMMAND}",
                where="host",
            )
        nbytes = len(text) + 1 + REPLY_ALLOWANCE
        timeout_s = self.link.payload_timeout(nbytes, timeout_s)
        if not self.io_manager:
            self.link.write((text + TERMINATOR).encode("ascii"))
            return self.read_reply(text, timeout_s, per_line=per_line)
        self.link.write(f"{PASSTHROUGH} {text}{TERMINATOR}".encode("ascii"))
        return self.read_passthrough(text, timeout_s + 2.0 * wire_seconds(nbytes, self.dut_baud), per_line=per_line)

    def read_passthrough(self, command: str, timeout_s: float, *, per_line: bool = False) -> list[str]:
        """The IO manager's acknowledgement, then the DUT's lines up to `[dut]: m-ready`, unwrapped.

        The IO manager's own lines in between (timer stamps) are kept in `self.io_lines`.
        """
        deadline = time.monotonic() + timeout_s
        check_passthrough_ack(self.read_reply(f"{PASSTHROUGH} {command}", timeout_s, _bare_ready), command)
        rest = timeout_s if per_line else max(0.0, deadline - time.monotonic())
        lines = self.read_reply(command, rest, _dut_ready, per_line=per_line)
        dut, self.io_lines = split_passthrough(lines)
        return dut

    def io_command(self, text: str) -> list[str]:
        """A command for the IO manager itself (`name`, `enable-timer`): its lines before `m-ready`."""
        self.link.write((text + TERMINATOR).encode("ascii"))
        lines = self.read_reply(text, self.link.payload_timeout(REPLY_ALLOWANCE), _bare_ready)
        return [line.strip() for line in lines[:-1] if line.strip()]

    def read_reply(self, command: str, timeout_s: float, is_end: Callable[[str], bool] = _any_ready, *,
                   per_line: bool = False) -> list[str]:
        """Collect lines until `is_end` (default: `m-ready`); bounded in time (the whole reply, or each line
        with `per_line`), line length and line count."""
        lines: list[str] = []
        deadline = time.monotonic() + timeout_s
        while True:
            while b"\n" in self._pending:
                raw, _, rest = bytes(self._pending).partition(b"\n")
                self._pending[:] = rest
                line = raw.decode("utf-8", errors="replace")
                lines.append(line)
                if per_line:
                    deadline = time.monotonic() + timeout_s
                if is_end(line):
                    return lines
                if len(lines) > MAX_REPLY_LINES:
                    raise ProtocolError(f"reply to '{command}' exceeds {MAX_REPLY_LINES} lines", where=self.link.url)
            if len(self._pending) > MAX_LINE_CHARS:
                raise ProtocolError(f"reply line to '{command}' exceeds {MAX_LINE_CHARS} bytes", where=self.link.url)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._silence(command, timeout_s, lines, per_line)
            self._pending.extend(self.link.read_some(min(remaining, 0.1)))

    def _silence(self, command: str, timeout_s: float, lines: list[str], per_line: bool) -> DeviceError:
        """The error for a reply that did not end in time: what arrived, and a hint that fits it."""
        said = describe_reply(lines, bytes(self._pending))
        received = b"\n".join(line.encode("utf-8", "replace") for line in lines) + bytes(self._pending)
        if not received.strip():
            hint = ("the device sent nothing: is MLPerf Tiny firmware running on this port? A board still booting "
                    "answers later: raise --timeout (each command waits that long)")
        elif received.count("\ufffd".encode()) * 4 > len(received) or b"\x00" in received:
            hint = "the bytes are not text: is the baud rate right? try --baud"
        else:
            hint = ("the device answered but never said 'm-ready': is this MLPerf Tiny firmware? "
                    "(`--log FILE` records the wire)")
        within = f"{timeout_s:.1f} s of the previous line" if per_line else f"{timeout_s:.1f} s"
        return DeviceError(f"no 'm-ready' within {within} after '{command}'; the device said: {said}",
                           where=self.link.url, hint=hint)

    def sync(self, attempts: int = 3) -> str:
        """Flush stale input and confirm the device answers `name`; return its vendor string.

        Through an IO manager, first ask the IO manager its `name` (and `enable-timer` if asked).
        """
        self.link.drain_input()
        self._pending.clear()
        if self.io_manager:
            self.identify_io_manager()
        last: DeviceError | None = None
        for _ in range(attempts):
            try:
                return self.name()
            except StaleReplyError:
                raise
            except DeviceError as exc:
                last = exc
                self.link.drain_input()
                self._pending.clear()
        assert last is not None
        raise last

    def identify_io_manager(self) -> str:
        """`name%` to the IO manager itself (refusing a DUT that answers it), then `enable-timer%` if asked."""
        lines = self.io_command("name")
        if any(_NAME.match(line) for line in lines):
            raise ProtocolError(
                "the port answered 'name' like an MLPerf Tiny DUT, not an IO manager", where=self.link.url,
                hint="drop --io-manager when the board is connected directly",
            )
        self.io_manager_name = lines[0] if lines else "?"
        if self.io_timer:
            self.io_command("enable-timer")
        return self.io_manager_name

    def name(self) -> str:
        """`name%` -> vendor string."""
        lines = self.command("name")
        if self.io_manager and any(line in ("m-init-done",) or line.startswith("m-timestamp-mode-")
                                   for line in clean_lines(lines)):
            raise StaleReplyError(
                "the IO manager handed over the DUT's boot banner in reply to 'name': it queued the DUT's "
                "output from before this session, so every later reply would belong to the previous command",
                where=self.link.url, hint="reset the IO manager after the DUT has booted, then retry",
            )
        raise_on_error(lines, "name")
        return parse_name(lines)

    def profile(self) -> dict[str, str]:
        """`profile%` -> {'profile', 'model'[, 'timing']}."""
        lines = self.command("profile")
        raise_on_error(lines, "profile")
        return parse_profile(lines)

    def timestamp(self) -> int:
        """`timestamp%` -> microseconds."""
        lines = self.command("timestamp")
        raise_on_error(lines, "timestamp")
        return parse_lap(lines)

    def load(self, data: bytes, progress: Callable[[int], None] | None = None) -> None:
        """`db load N%` then `db <hex>%` chunks; require `m-load-done` after the last byte."""
        if not data:
            raise ProtocolError("input tensor is empty", where="host")
        if self.max_input_bytes is not None and len(data) > self.max_input_bytes:
            raise ProtocolError(
                f"input of {len(data)} bytes exceeds the device buffer of {self.max_input_bytes} bytes",
                where="host",
                hint="the firmware's MAX_DB_INPUT_SIZE limits one input tensor",
            )
        lines = self.command(f"db load {len(data)}")
        raise_on_error(lines, "db load")
        expected = parse_load_expect(lines)
        if expected != len(data):
            raise ProtocolError(f"device expects {expected} bytes, host has {len(data)}", where=self.link.url)
        commands = hex_commands(data, self.per_command)
        for index, cmd in enumerate(commands):
            lines = self.command(cmd)
            raise_on_error(lines, "db")
            done = "m-load-done" in clean_lines(lines)
            if done != (index == len(commands) - 1):
                raise ProtocolError(
                    f"'m-load-done' {'early' if done else 'missing'} at chunk {index + 1}/{len(commands)}",
                    where=self.link.url,
                    hint="bytes were lost on the line; retry at a lower baud rate",
                )
            if progress is not None:
                progress(len(cmd) // 2 - 1)

    def infer(self, runs: int, warmups: int, timeout_s: float = INFER_TIMEOUT_S) -> InferReply:
        """`infer N W%` (both numbers always sent: the firmware's default W is 10)."""
        if runs < 1 or warmups < 0:
            raise ProtocolError(f"need runs >= 1 and warmups >= 0, got {runs} and {warmups}", where="host")
        lines = self.command(f"infer {runs} {warmups}", max(timeout_s, self.link.timeout_s), per_line=True)
        raise_on_error(lines, "infer")
        if not self.io_manager:
            return parse_infer(lines, runs, warmups)
        return parse_infer(lines, runs, warmups, timer_lines=self.io_lines, laps_required=False)

    def results(self) -> tuple[float, ...]:
        """`results%` -> the last result vector."""
        lines = self.command("results")
        raise_on_error(lines, "results")
        return parse_results(lines)
