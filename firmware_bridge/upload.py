"""Model upload over mcumgr SMP (file management group 8), with retries, resume and a hash check.

Why file upload (group 8, command 0) rather than image upload (group 1): a .tflite model is
data the application reads from its file system (e.g. LittleFS at `/lfs/model.tflite`), not a
signed MCUboot firmware image for a slot. Group 8 also has the command that makes the success
claim honest: file hash/checksum (command 2, type `sha256`) makes the device hash the stored
file itself; `flash` reports success only when that hash equals the local file's sha256 (the
one recorded in the run manifest).

Reliability: each request carries a sequence number; a response is accepted only for the
request it answers. A request whose response is lost or corrupt is sent again unchanged (an
upload chunk names its offset, so a repeat is harmless: the device answers with the offset it
has, and the host continues from there). Timeouts follow the measured round trip (TCP-style,
bounded below by the wire time of the packet). A dropped connection is reopened, and the
upload resumes from the length the device reports, after the device's hash of that prefix
matched ours. Everything is bounded: retries per request, reconnects, and whole restarts.

On the `raw` framing (smp_serial.py) nothing on the wire is checked, so every VERIFY_EVERY bytes
the host asks the device for the CRC32 of what it stored since the last check (file
hash/checksum, type `crc32`, `off`/`len`); a mismatch rewrites the file from offset 0 at once
(fs_mgmt cannot rewrite the middle of a file) instead of finding out at the final sha256.
After a lost answer the host keeps the line quiet for the device's input timeout, so the
device drops any half packet before the next request starts.

The chunk loop and the reconnect/rewrite logic (`run_upload`, `_upload_pass`) are shared with the
firmware image upload (image.py, group 1): a `ChunkTarget` says where the chunks go and how the
device answers; `FileTarget` is the file system's.
"""

from __future__ import annotations

import collections
import hashlib
import secrets
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from edge.errors import DeviceError
from edge.firmware_bridge import smp_serial as sp
from edge.firmware_bridge.transport import SerialLink, wire_seconds

DEFAULT_NAME = "/lfs/model.tflite"
SMP_OVERHEAD = 64  # header (8) + CBOR keys/ints of an upload request, generous
MIN_CHUNK = 32  # the smallest data chunk tried on a noisy line
FAST_TRIES = 3  # tries per chunk before halving the chunk size
GROW_AFTER = 8  # clean chunks in a row before doubling it again
SMALLEST_TRIES = 40  # tries per chunk once the chunk is as small as it gets
INITIAL_RTO_S = 0.25  # response timeout before a round trip was measured (plus wire time)
MAX_WINDOW = 3  # requests in flight; also bounded by the device's buf_count - 1
VERIFY_EVERY = 32 * 1024  # raw framing: bytes between device CRC32 checks of the stored data
HOST_MAX_PACKET = 1 << 16


class UploadError(DeviceError):
    """The upload did not complete with a device-confirmed hash."""


class NoResponse(UploadError):
    """Every try of one request was lost or mangled."""


class DeviceRefused(UploadError):
    """The device answered with an error code: retrying the same request will not help."""


class StoredDataWrong(UploadError):
    """The device's checksum of stored bytes differs from ours: rewrite from offset 0."""


@dataclass(frozen=True)
class UploadOptions:
    """How hard an upload tries: chunking, resume, raw-framing checks, and every retry budget."""

    chunk: int | None = None  # largest data bytes per request (None: from the device's buf_size)
    resume: bool = True  # continue after the bytes the device already has (if their hash matches)
    verify_every: int = VERIFY_EVERY  # raw framing: bytes between device CRC32 checks
    retries: int = 8  # tries per request after the first
    max_reconnects: int = 3  # port reopenings after the line went silent
    max_restarts: int = 2  # rewrites from offset 0 after the device's check failed
    reconnect_delay_s: float = 0.25  # first back-off before reopening (doubles each time)


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


def _check(reply: sp.SmpMessage, what: str, allow: tuple[int, ...] = ()) -> None:
    error = reply.error()
    if error is not None and error[1] not in allow:
        group, rc = error
        raise DeviceRefused(f"device refused {what}: group {group} rc {rc}", where="SMP response")


def _int_field(reply: sp.SmpMessage, key: str, what: str) -> int:
    value = reply.payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UploadError(f"{what}: response has no valid '{key}' (got {value!r})", where="SMP response")
    return value


def device_params(client: SmpClient) -> tuple[int, int]:
    """(buf_size, buf_count) from OS management 'MCUmgr parameters'; (384, 4) if unsupported."""
    reply = client.request(sp.OP_READ, sp.GROUP_OS, sp.CMD_OS_PARAMS, {})
    if reply.error() is not None:
        return 384, 4
    return _int_field(reply, "buf_size", "mcumgr parameters"), _int_field(reply, "buf_count", "mcumgr parameters")


def device_file_len(client: SmpClient, name: str) -> int:
    """Length of `name` on the device (0 if absent)."""
    reply = client.request(sp.OP_READ, sp.GROUP_FS, sp.CMD_FS_STATUS, {"name": name})
    error = reply.error()
    if error is not None:
        if error[1] in (sp.FS_ERR_FILE_NOT_FOUND, sp.MGMT_ERR_ENOENT):
            return 0
        _check(reply, "file status")
    return _int_field(reply, "len", "file status")


def _device_hash(client: SmpClient, name: str, kind: str, off: int | None, length: int | None) -> sp.SmpMessage:
    """The device's answer to file hash/checksum `kind` over `length` bytes at `off` (all if None)."""
    payload: dict = {"name": name, "type": kind}
    if length is not None:
        payload.update(off=off or 0, len=length)
    reply = client.request(sp.OP_READ, sp.GROUP_FS, sp.CMD_FS_HASH, payload)
    _check(reply, f"file {kind}")
    if reply.payload.get("type") != kind:
        raise UploadError(f"file hash response is not a {kind}: {reply.payload!r:.120}", where="SMP response")
    return reply


def device_sha256(client: SmpClient, name: str, length: int | None = None) -> tuple[bytes, int]:
    """(sha256 digest, hashed length) of `name` (its first `length` bytes) computed by the device."""
    reply = _device_hash(client, name, "sha256", 0, length)
    output = reply.payload.get("output")
    if not isinstance(output, bytes) or len(output) != 32:
        raise UploadError(f"file hash response is not a sha256 digest: {reply.payload!r:.120}", where="SMP response")
    return output, _int_field(reply, "len", "file hash")


def device_crc32(client: SmpClient, name: str, off: int, length: int) -> tuple[int, int]:
    """(IEEE CRC32, checked length) of `length` bytes of `name` at `off`, computed by the device."""
    reply = _device_hash(client, name, "crc32", off, length)
    return _int_field(reply, "output", "file crc32"), _int_field(reply, "len", "file crc32")


def chunk_size_for(buf_size: int, name: str) -> int:
    """Largest data chunk whose upload request fits the device's SMP buffer."""
    return max(16, buf_size - SMP_OVERHEAD - len(name.encode()))


class ChunkTarget(Protocol):
    """Where the chunk loop sends data and how the device answers: a file (group 8) or an image slot
    (group 1). `run_upload` and `_upload_pass` hold the shared machinery; a target holds the rest."""

    group: int
    command: int
    label: str  # what the data becomes on the device, for messages: a file name, "image 0 slot 1"
    invalid_hint: str  # what to tell the user when the stored data stays wrong
    windows: bool  # True: on a framing without CRC, check the stored bytes every `verify_every`

    def chunk_size(self, buf_size: int) -> int:
        """Largest data chunk whose biggest request fits the device's SMP buffer."""
        ...

    def request(self, off: int, piece: bytes, total: int) -> dict:
        """The upload request payload for `piece` at `off` of a `total`-byte upload."""
        ...

    def start(self, client: SmpClient, data: bytes, resume: bool, size: int) -> int:
        """Bytes the device already holds (0: start over); may send the first chunk itself."""
        ...

    def device_offset(self, reply: sp.SmpMessage, error: tuple[int, int] | None, sent_end: int) -> tuple[object, bool]:
        """(the device's offset, refused): refused = it did not take the chunk ending at `sent_end`."""
        ...

    def suspect(self, reply: sp.SmpMessage, error: tuple[int, int] | None) -> bool:
        """True for an answer a corrupted request or answer explains (unchecked framing only)."""
        ...

    def verify(self, client: SmpClient, data: bytes, start: int, end: int) -> None:
        """Raise StoredDataWrong unless the device stored data[start:end] (only if `windows`)."""
        ...

    def confirm(self, client: SmpClient, data: bytes) -> str | None:
        """After the last chunk: None once the device proved it holds `data`, else what is wrong."""
        ...


class FileTarget:
    """A file on the device's file system (fs_mgmt, group 8, command 0)."""

    group = sp.GROUP_FS
    command = sp.CMD_FS_FILE
    windows = True
    invalid_hint = "the stored model is NOT valid; check the cable or lower the baud rate and flash again"

    def __init__(self, name: str) -> None:
        self.name = self.label = name

    def chunk_size(self, buf_size: int) -> int:
        return chunk_size_for(buf_size, self.name)

    def request(self, off: int, piece: bytes, total: int) -> dict:
        payload: dict = {"off": off, "data": piece, "name": self.name}
        if off == 0:
            payload["len"] = total
        return payload

    def start(self, client: SmpClient, data: bytes, resume: bool, size: int) -> int:
        return _resume_offset(client, data, self.name) if resume else 0

    def device_offset(self, reply: sp.SmpMessage, error: tuple[int, int] | None, sent_end: int) -> tuple[object, bool]:
        if error is not None and error[1] == sp.FS_ERR_OFFSET_NOT_VALID:
            return reply.payload.get("len"), True  # fs_mgmt refuses a chunk not at the file's end
        _check(reply, "file upload")
        return _int_field(reply, "off", "file upload"), False

    def suspect(self, reply: sp.SmpMessage, error: tuple[int, int] | None) -> bool:
        return _suspect(reply, error)

    def verify(self, client: SmpClient, data: bytes, start: int, end: int) -> None:
        _verify_stored(client, data, self.name, start, end)

    def confirm(self, client: SmpClient, data: bytes) -> str | None:
        digest, hashed = device_sha256(client, self.name)
        local = hashlib.sha256(data).digest()
        if digest == local and hashed == len(data):
            client.stats.device_sha256 = digest.hex()
            return None
        return (f"device reports sha256 {digest.hex()[:16]}... over {hashed} bytes, expected "
                f"{local.hex()[:16]}... over {len(data)} bytes")


def upload_file(
    link: SerialLink,
    data: bytes,
    *,
    name: str = DEFAULT_NAME,
    framing: sp.Framing | None = None,
    expected_sha256: str | None = None,
    options: UploadOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> UploadStats:
    """Upload `data` to file `name`; return stats only once the device's sha256 equals ours."""
    local = hashlib.sha256(data).digest()
    if expected_sha256 is not None and local.hex() != expected_sha256.lower():
        raise UploadError(
            f"the model file's sha256 {local.hex()[:16]}... differs from the manifest's {expected_sha256[:16]}...",
            where="--model",
            hint="the file changed after export; re-run `edge export`",
        )
    return run_upload(link, data, FileTarget(name), framing=framing, options=options, progress=progress)


def run_upload(
    link: SerialLink,
    data: bytes,
    target: ChunkTarget,
    *,
    framing: sp.Framing | None = None,
    options: UploadOptions | None = None,
    progress: Callable[[int], None] | None = None,
    stats: UploadStats | None = None,
) -> UploadStats:
    """Upload `data` to `target` with reconnects and rewrites; return stats once `target.confirm` agrees."""
    opts = options or UploadOptions()
    client = SmpClient(link, framing=framing, retries=opts.retries)
    if stats is not None:
        client.stats = stats
    stats = client.stats
    stats.bytes = len(data)
    start = time.monotonic()
    reconnects = 0
    restarts = 0
    allow_resume = opts.resume
    while True:
        try:
            _upload_pass(client, data, target, opts.chunk, allow_resume, opts.verify_every, progress)
            client.barrier()  # no stale answer can be taken for the final check's
            problem = target.confirm(client, data)
        except DeviceRefused:
            raise
        except StoredDataWrong as exc:
            problem = exc.message
        except DeviceError as exc:
            if reconnects >= opts.max_reconnects:
                raise
            reconnects += 1
            stats.reconnects += 1
            stats.log.append(f"reconnect {reconnects}: {exc.message}")
            time.sleep(opts.reconnect_delay_s * 2 ** (reconnects - 1))  # a re-enumerating board needs a moment
            link.reopen()
            client.reset_link_state()
            allow_resume = True
            continue
        if problem is None:
            stats.wall_s = time.monotonic() - start
            return stats
        stats.log.append(problem)
        if restarts >= opts.max_restarts:
            unchecked = "" if client.framing.crc else "; the raw framing has no CRC, so try --framing console"
            raise UploadError(f"{problem} after {restarts + 1} attempts", where=f"{link.url}:{target.label}",
                              hint=target.invalid_hint + unchecked)
        restarts += 1
        stats.restarts += 1
        allow_resume = False  # the stored bytes are wrong somewhere: rewrite from offset 0


def _upload_pass(
    client: SmpClient,
    data: bytes,
    target: ChunkTarget,
    chunk: int | None,
    resume: bool,
    verify_every: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Send every chunk with up to `window` requests in flight (go-back-N on loss).

    The device processes requests in order and accepts a chunk only at its current length, so a
    lost request shows up at once in the answer to the next one (fs_mgmt: FILE_OFFSET_NOT_VALID
    with the length it has; img_mgmt: a success naming the offset it expects): the host goes back
    there without waiting for a timeout. On a framing without CRC the window drains every
    `verify_every` bytes for a device check of the bytes stored since the last one, where the
    target has one (StoredDataWrong on a mismatch).
    """
    client.barrier()  # answers to requests of an earlier pass or session are flushed
    buf_size, buf_count = device_params(client)
    largest = min(chunk or 1 << 30, target.chunk_size(buf_size))
    window = max(1, min(MAX_WINDOW, buf_count - 1))
    size = largest
    client.stats.chunk_bytes = size
    acked = target.start(client, data, resume, size)
    client.stats.resumed_from = max(client.stats.resumed_from, acked)
    if progress is not None and acked:
        progress(acked)
    in_flight: dict[int, int] = {}  # seq -> file offset the request's data ends at
    next_off = verified = acked
    failures = streak = 0
    last_refusal: tuple[int, int] | None = None
    done_empty = bool(data)
    windows = target.windows and not client.framing.crc
    while acked < len(data) or not done_empty:
        limit = min(len(data), verified + verify_every) if windows else len(data)
        if acked == limit and limit > verified:
            target.verify(client, data, verified, limit)
            verified = limit
            continue
        while len(in_flight) < window and (next_off < limit or not done_empty):
            piece = data[next_off:min(limit, next_off + size)]
            seq, _ = client.send(sp.OP_WRITE, target.group, target.command, target.request(next_off, piece, len(data)))
            next_off += len(piece)
            in_flight[seq] = next_off
            done_empty = True
        wire = client.framing.wire_bytes(size + SMP_OVERHEAD) * len(in_flight)
        reply, broken = client.receive(target.group, client.timeout(wire))
        if broken:
            continue  # some response was mangled; the next one (or the timeout) tells us more
        if reply is not None and reply.command != target.command:
            continue  # a late answer to some other request of this group
        if reply is not None and reply.sequence not in in_flight:
            continue  # an answer to a request we already gave up on
        error = None if reply is None else reply.error()
        if reply is not None and not client.framing.crc and failures < client.retries \
                and target.suspect(reply, error):
            last_refusal = error or last_refusal  # maybe a corrupted request or answer on the unchecked link
            reply = None  # so treat it as lost
        if reply is None:
            failures += 1
            client.stats.retries += len(in_flight)
            in_flight.clear()
            next_off = acked  # go back: resend from the last confirmed offset
            client.resync()
            if failures >= (SMALLEST_TRIES if size <= MIN_CHUNK else FAST_TRIES):
                if size <= MIN_CHUNK:
                    refusal = f" (last device error: group {last_refusal[0]} rc {last_refusal[1]})" \
                        if last_refusal else ""
                    raise NoResponse(
                        f"upload stalled at byte {acked} of {len(data)} after {failures} lost requests{refusal}",
                        where=f"{client.link.url}:{target.label}",
                        hint="the line is too noisy or the device stopped answering; flash again to resume",
                    )
                size, failures, streak = max(MIN_CHUNK, size // 2), 0, 0
                client.stats.chunk_bytes = min(client.stats.chunk_bytes, size)
            continue
        sent_end = in_flight[reply.sequence]
        for seq in list(in_flight):  # in-order device: this answer settles every earlier request
            del in_flight[seq]
            if seq == reply.sequence:
                break
        new, refused = target.device_offset(reply, error, sent_end)
        if refused:
            new = new if isinstance(new, int) and not isinstance(new, bool) and 0 <= new <= len(data) else 0
            in_flight.clear()
            failures += 1
            streak = 0
        else:
            assert isinstance(new, int)
            if new > len(data):
                raise UploadError(f"device acknowledged offset {new} beyond the {len(data)}-byte upload",
                                  where=target.label)
            failures = 0
            streak += 1
            if streak >= GROW_AFTER and size < largest:
                size, streak = min(largest, size * 2), 0
        if progress is not None and new != acked:
            progress(new - acked)
        if new < acked or not in_flight:
            next_off = new  # the device has less than we thought (or nothing is in flight): go on from there
        if new < verified:
            verified = 0  # the upload shrank (a corrupt offset 0 restarts it): check it all again
        acked = new


def _suspect(reply: sp.SmpMessage, error: tuple[int, int] | None) -> bool:
    """An upload answer that a corrupted request or answer explains: a refusal other than a wrong
    offset, or no valid `off`."""
    if error is not None:
        return error[1] != sp.FS_ERR_OFFSET_NOT_VALID
    off = reply.payload.get("off")
    return not isinstance(off, int) or isinstance(off, bool) or off < 0


def _verify_stored(client: SmpClient, data: bytes, name: str, start: int, end: int) -> None:
    """Raise StoredDataWrong unless the device's CRC32 of its bytes [start, end) equals ours."""
    crc, checked = device_crc32(client, name, start, end - start)
    client.stats.crc_checks += 1
    if checked != end - start or crc != zlib.crc32(data[start:end]):
        raise StoredDataWrong(
            f"device CRC32 of bytes {start}-{end} is {crc:08x} over {checked} B, expected "
            f"{zlib.crc32(data[start:end]):08x}: bytes were corrupted on the unchecked raw link",
            where=f"{client.link.url}:{name}",
        )


def _resume_offset(client: SmpClient, data: bytes, name: str) -> int:
    """Bytes already on the device that match our prefix (0 if none or unverifiable)."""
    have = device_file_len(client, name)
    if have <= 0 or have > len(data):
        return 0
    try:
        digest, hashed = device_sha256(client, name, have)
    except UploadError:
        return 0
    if hashed == have and digest == hashlib.sha256(data[:have]).digest():
        client.stats.log.append(f"resuming at {have} B (device prefix hash matches)" if have < len(data)
                                else "the device already holds this exact file")
        return have
    return 0
