"""SMP requests over a serial link: sequence matching, adaptive timeouts, resync, bounded retries.

Each request carries a sequence number; a response is accepted only for the request it answers.
A request whose response is lost or corrupt is sent again. Timeouts follow the measured round
trip (TCP-style, bounded below by the wire time of the packet). On a framing without markers or
CRC (raw, smp_serial.py) the client keeps the line quiet for the device's input timeout before
resending, so the device drops any half packet, and believes an error answer only when it comes
twice in a row (it may be the device refusing a corrupted request).
"""

from __future__ import annotations

import collections
import secrets
import time
from dataclasses import dataclass, field

from edge.errors import DeviceError
from edge.firmware_bridge import smp_serial as sp
from edge.firmware_bridge.transport import SerialLink, wire_seconds

INITIAL_RTO_S = 0.25  # response timeout before a round trip was measured (plus wire time)
HOST_MAX_PACKET = 1 << 16


class UploadError(DeviceError):
    """The upload did not complete with a device-confirmed hash."""


class NoResponse(UploadError):
    """Every try of one request was lost or mangled."""


class DeviceRefused(UploadError):
    """The device answered with an error code: retrying the same request will not help."""


@dataclass
class UploadStats:
    """What one upload did, for the CLI and the benchmark."""

    bytes: int = 0
    chunk_bytes: int = 0
    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    bad_frames: int = 0
    reconnects: int = 0
    restarts: int = 0
    resumed_from: int = 0
    crc_checks: int = 0
    wall_s: float = 0.0
    wire_bytes_out: int = 0
    device_sha256: str = ""
    log: list[str] = field(default_factory=list)

    @property
    def goodput_Bps(self) -> float:
        """Model bytes per second over the whole upload (including the hash check)."""
        return self.bytes / self.wall_s if self.wall_s > 0 else 0.0


class SmpClient:
    """SMP requests over a SerialLink: sequence matching, adaptive timeouts, pipelining.

    Every transmission gets a fresh sequence number, so a response names exactly the request
    it answers and every round trip is a clean RTT sample (no retransmission ambiguity).
    """

    def __init__(
        self,
        link: SerialLink,
        *,
        framing: sp.Framing | None = None,
        retries: int = 8,
        min_timeout_s: float = 0.005,
        max_timeout_s: float = 5.0,
    ):
        self.link = link
        self.framing = framing or sp.framing("console")
        self.retries = retries
        self.min_timeout_s = min_timeout_s
        self.max_timeout_s = max_timeout_s
        self.decoder = self.framing.new_decoder(HOST_MAX_PACKET)
        self._line_free_at = 0.0
        self.stats = UploadStats()
        self._seq = secrets.randbelow(256)  # like a TCP initial sequence number: old answers rarely match
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._sent_at: dict[int, tuple[float, int]] = {}
        self._packets: collections.deque[bytes] = collections.deque()

    def reset_link_state(self) -> None:
        """Forget half-received packets and queued answers (after reopening the port)."""
        self.decoder = self.framing.new_decoder(HOST_MAX_PACKET)
        self._packets.clear()

    def resync(self) -> None:
        """Before resending after a loss: on a framing without markers (raw), stay quiet until our
        bytes have left the wire and the device's input timeout has dropped any half packet."""
        if self.framing.quiet_s > 0:
            time.sleep(max(0.0, self._line_free_at - time.monotonic()) + self.framing.quiet_s * 1.2 + 0.005)

    def timeout(self, wire_bytes: int) -> float:
        """Response timeout: smoothed RTT + 4 deviations, plus the wire time of `wire_bytes`."""
        wire = wire_seconds(wire_bytes, self.link.baud)
        rto = min(self.link.timeout_s, INITIAL_RTO_S) if self._srtt is None else self._srtt + 4 * self._rttvar
        return min(self.max_timeout_s, max(self.min_timeout_s, rto)) + wire

    def _observe_rtt(self, sample: float) -> None:
        sample = max(0.0, sample)
        if self._srtt is None:
            self._srtt, self._rttvar = sample, sample / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - sample)
            self._srtt = 0.875 * self._srtt + 0.125 * sample

    def send(self, op: int, group: int, command: int, payload: dict) -> tuple[int, int]:
        """Transmit one request without waiting; return (sequence number, wire bytes)."""
        self._seq = (self._seq + 1) & 0xFF
        frames = self.framing.encode(sp.SmpMessage(op, group, command, self._seq, payload).encode())
        self.link.write(frames)
        now = time.monotonic()
        self._line_free_at = max(self._line_free_at, now) + wire_seconds(len(frames), self.link.baud)
        self.stats.requests += 1
        self.stats.wire_bytes_out += len(frames)
        self._sent_at[self._seq] = (time.monotonic(), len(frames))
        return self._seq, len(frames)

    def receive(self, group: int, timeout_s: float) -> tuple[sp.SmpMessage | None, bool]:
        """(next response of `group`, broken) within `timeout_s`; broken = a mangled frame arrived."""
        deadline = time.monotonic() + timeout_s
        errors_before = self.decoder.errors
        while True:
            if not self._packets:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.stats.timeouts += 1
                    return None, False
                self._packets.extend(self.decoder.feed(self.link.read_some(min(remaining, 0.05))))
            while self._packets:  # several answers can arrive in one read: keep the rest for later
                packet = self._packets.popleft()
                try:
                    reply = sp.decode_message(packet)
                except sp.SmpDecodeError:
                    self.stats.bad_frames += 1
                    return None, True
                if reply.is_response and reply.group == group and reply.sequence in self._sent_at:
                    sent_at, wire = self._sent_at.pop(reply.sequence)
                    self._observe_rtt(time.monotonic() - sent_at - wire_seconds(wire, self.link.baud))
                    return reply, False
            self.decoder.take_other()
            if self.decoder.errors != errors_before:
                self.stats.bad_frames += self.decoder.errors - errors_before
                return None, True

    def barrier(self) -> None:
        """Echo a random nonce and wait for it: the device answers in order, so every answer to
        anything sent before (including stale retransmissions, earlier sessions) is behind us.

        Devices without the echo command (rc 8, not supported) still answer in order, so their
        error reply is accepted as the barrier too.
        """
        nonce = secrets.token_hex(8)
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                self.resync()
            _, wire = self.send(sp.OP_WRITE, sp.GROUP_OS, sp.CMD_OS_ECHO, {"d": nonce})
            deadline = time.monotonic() + self.timeout(wire) * (1 + (attempt >= 4))
            while True:
                reply, _ = self.receive(sp.GROUP_OS, max(0.0, deadline - time.monotonic()))
                if reply is None:
                    break
                if reply.command == sp.CMD_OS_ECHO and (reply.payload.get("r") == nonce or reply.error()):
                    return
        raise NoResponse(
            f"no answer to an mcumgr echo after {self.retries + 1} tries",
            where=self.link.url,
            hint="the line is too noisy or the device is not running an mcumgr SMP server on this port",
        )

    def request(self, op: int, group: int, command: int, payload: dict, tries: int | None = None) -> sp.SmpMessage:
        """Send one request and return its response; resend on loss; raise NoResponse when spent.

        On a framing without CRC an error answer may be the device refusing a corrupted request,
        so it is returned only once the same error came twice in a row.
        """
        tries = self.retries + 1 if tries is None else tries
        mine: set[int] = set()  # a late answer to an earlier try of this request is as good
        lost = False
        refused: tuple[int, int] | None = None
        for attempt in range(tries):
            if attempt:
                self.stats.retries += 1
                if lost:
                    self.resync()
            seq, wire = self.send(op, group, command, payload)
            mine.add(seq)
            deadline = time.monotonic() + self.timeout(wire) * (1 + (attempt >= 4))
            while True:
                reply, _ = self.receive(group, max(0.0, deadline - time.monotonic()))
                if reply is not None and reply.sequence in mine and reply.command == command:
                    error = reply.error()
                    if error is None or self.framing.crc or error == refused or attempt + 1 == tries:
                        return reply
                    refused, lost = error, False
                    break  # confirm the refusal with a clean copy of the request
                if reply is None:
                    lost = True
                    break  # timed out or mangled: send again
        raise NoResponse(
            f"no valid response to SMP group {group} command {command} after {tries} tries",
            where=self.link.url,
            hint="the line is too noisy or the device is not running an mcumgr SMP server on this port",
        )


def check_reply(reply: sp.SmpMessage, what: str, allow: tuple[int, ...] = ()) -> None:
    """Raise DeviceRefused if `reply` reports an error (other than those in `allow`)."""
    error = reply.error()
    if error is not None and error[1] not in allow:
        group, rc = error
        raise DeviceRefused(f"device refused {what}: group {group} rc {rc}", where="SMP response")


def count_value(value: object) -> int | None:
    """`value` if it is a non-negative integer (not a bool), else None: offsets, lengths, sizes."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def int_field(reply: sp.SmpMessage, key: str, what: str) -> int:
    """The non-negative integer `key` of `reply`'s payload; UploadError if missing or invalid."""
    value = count_value(reply.payload.get(key))
    if value is None:
        raise UploadError(f"{what}: response has no valid '{key}' (got {reply.payload.get(key)!r})",
                          where="SMP response")
    return value


def device_params(client: SmpClient) -> tuple[int, int]:
    """(buf_size, buf_count) from OS management 'MCUmgr parameters'; (384, 4) if unsupported."""
    reply = client.request(sp.OP_READ, sp.GROUP_OS, sp.CMD_OS_PARAMS, {})
    if reply.error() is not None:
        return 384, 4
    return int_field(reply, "buf_size", "mcumgr parameters"), int_field(reply, "buf_count", "mcumgr parameters")
