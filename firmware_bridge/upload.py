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
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
    wall_s: float = 0.0
    wire_bytes_out: int = 0
    device_sha256: str = ""
    log: list[str] = field(default_factory=list)

    @property
    def goodput_Bps(self) -> float:
        """Model bytes per second over the whole upload (including the hash check)."""
        return self.bytes / self.wall_s if self.wall_s > 0 else 0.0


class SmpClient:
    """Request/response over a SerialLink with sequence matching and adaptive timeouts."""

    def __init__(self, link: SerialLink, *, retries: int = 8, min_timeout_s: float = 0.005, max_timeout_s: float = 5.0):
        self.link = link
        self.retries = retries
        self.min_timeout_s = min_timeout_s
        self.max_timeout_s = max_timeout_s
        self.decoder = sp.FrameDecoder()
        self.stats = UploadStats()
        self._seq = 0
        self._srtt: float | None = None
        self._rttvar = 0.0

    def _timeout(self, wire_bytes: int) -> float:
        wire = wire_seconds(wire_bytes, self.link.baud)
        rto = min(self.link.timeout_s, INITIAL_RTO_S) if self._srtt is None else self._srtt + 4 * self._rttvar
        return min(self.max_timeout_s + wire, max(self.min_timeout_s + wire, rto + wire))

    def _observe_rtt(self, sample: float) -> None:
        if self._srtt is None:
            self._srtt, self._rttvar = sample, sample / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - sample)
            self._srtt = 0.875 * self._srtt + 0.125 * sample

    def request(self, op: int, group: int, command: int, payload: dict, tries: int | None = None) -> sp.SmpMessage:
        """Send one request and return its response; retry on loss; raise NoResponse when spent."""
        self._seq = (self._seq + 1) & 0xFF
        message = sp.SmpMessage(op, group, command, self._seq, payload)
        frames = sp.encode_frames(message.encode())
        tries = self.retries + 1 if tries is None else tries
        for attempt in range(tries):
            if attempt:
                self.stats.retries += 1
            self.stats.requests += 1
            start = time.monotonic()
            self.link.write(frames)
            self.stats.wire_bytes_out += len(frames)
            timeout = self._timeout(len(frames)) * (1 + (attempt >= 4))
            reply = self._await(message, timeout)
            if reply is not None:
                if attempt == 0:
                    self._observe_rtt(time.monotonic() - start - wire_seconds(len(frames), self.link.baud))
                return reply
        raise NoResponse(
            f"no valid response to SMP group {group} command {command} after {tries} tries",
            where=self.link.url,
            hint="the line is too noisy or the device is not running an mcumgr SMP server on this port",
        )

    def _await(self, sent: sp.SmpMessage, timeout_s: float) -> sp.SmpMessage | None:
        deadline = time.monotonic() + timeout_s
        errors_before = self.decoder.errors
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stats.timeouts += 1
                return None
            data = self.link.read_some(min(remaining, 0.05))
            for packet in self.decoder.feed(data):
                try:
                    reply = sp.decode_message(packet)
                except sp.SmpDecodeError:
                    self.stats.bad_frames += 1
                    return None  # the response was mangled: resend now
                if reply.is_response and reply.sequence == sent.sequence and reply.group == sent.group:
                    return reply
            self.decoder.take_other()
            if self.decoder.errors != errors_before:
                self.stats.bad_frames += self.decoder.errors - errors_before
                return None  # a frame arrived broken: our response is gone, resend now


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


def device_sha256(client: SmpClient, name: str, length: int | None = None) -> tuple[bytes, int]:
    """(sha256 digest, hashed length) of `name` computed by the device."""
    payload: dict = {"name": name, "type": "sha256"}
    if length is not None:
        payload.update(off=0, len=length)
    reply = client.request(sp.OP_READ, sp.GROUP_FS, sp.CMD_FS_HASH, payload)
    _check(reply, "file hash")
    output = reply.payload.get("output")
    if not isinstance(output, bytes) or len(output) != 32 or reply.payload.get("type") != "sha256":
        raise UploadError(f"file hash response is not a sha256 digest: {reply.payload!r:.120}", where="SMP response")
    return output, _int_field(reply, "len", "file hash")


def chunk_size_for(buf_size: int, name: str) -> int:
    """Largest data chunk whose upload request fits the device's SMP buffer."""
    return max(16, buf_size - SMP_OVERHEAD - len(name.encode()))


def upload_file(
    link: SerialLink,
    data: bytes,
    *,
    name: str = DEFAULT_NAME,
    expected_sha256: str | None = None,
    chunk: int | None = None,
    resume: bool = True,
    retries: int = 8,
    max_reconnects: int = 3,
    max_restarts: int = 2,
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
    client = SmpClient(link, retries=retries)
    stats = client.stats
    stats.bytes = len(data)
    start = time.monotonic()
    reconnects = 0
    restarts = 0
    allow_resume = resume
    while True:
        try:
            _upload_pass(client, data, name, chunk, allow_resume, progress)
            digest, hashed = device_sha256(client, name)
        except DeviceRefused:
            raise
        except DeviceError as exc:
            if reconnects >= max_reconnects:
                raise
            reconnects += 1
            stats.reconnects += 1
            stats.log.append(f"reconnect {reconnects}: {exc.message}")
            link.reopen()
            client.decoder = sp.FrameDecoder()
            allow_resume = True
            continue
        if digest == local and hashed == len(data):
            stats.device_sha256 = digest.hex()
            stats.wall_s = time.monotonic() - start
            return stats
        stats.log.append(f"device hash {digest.hex()[:16]} over {hashed} B != local {local.hex()[:16]}")
        if restarts >= max_restarts:
            raise UploadError(
                f"device reports sha256 {digest.hex()[:16]}... over {hashed} bytes, expected "
                f"{local.hex()[:16]}... over {len(data)} bytes after {restarts + 1} attempts",
                where=f"{link.url}:{name}",
                hint="the stored model is NOT valid; check the cable or lower the baud rate and flash again",
            )
        restarts += 1
        stats.restarts += 1
        allow_resume = False  # the stored bytes are wrong somewhere: rewrite from offset 0


def _upload_pass(
    client: SmpClient,
    data: bytes,
    name: str,
    chunk: int | None,
    resume: bool,
    progress: Callable[[int], None] | None,
) -> None:
    buf_size, _ = device_params(client)
    largest = min(chunk or 1 << 30, chunk_size_for(buf_size, name))
    size = largest
    client.stats.chunk_bytes = size
    offset = _resume_offset(client, data, name) if resume else 0
    client.stats.resumed_from = max(client.stats.resumed_from, offset)
    if progress is not None and offset:
        progress(offset)
    first = True
    streak = 0
    while offset < len(data) or first:
        piece = data[offset:offset + size]
        payload: dict = {"off": offset, "data": piece, "name": name}
        if offset == 0:
            payload["len"] = len(data)
        smallest = size <= MIN_CHUNK
        try:
            tries = max(SMALLEST_TRIES, client.retries + 1) if smallest else FAST_TRIES
            reply = client.request(sp.OP_WRITE, sp.GROUP_FS, sp.CMD_FS_FILE, payload, tries=tries)
        except NoResponse:
            if smallest:
                raise
            size = max(MIN_CHUNK, size // 2)  # a noisy line: smaller packets get through more often
            client.stats.chunk_bytes = min(client.stats.chunk_bytes, size)
            streak = 0
            continue
        streak += 1
        if streak >= GROW_AFTER and size < largest:
            size, streak = min(largest, size * 2), 0
        error = reply.error()
        if error is not None and error[1] == sp.FS_ERR_OFFSET_NOT_VALID and offset > 0:
            new = _int_field(reply, "len", "file upload") if "len" in reply.payload else 0
            new = new if new <= len(data) else 0
            client.stats.log.append(f"device has {new} B, host was at {offset}: continuing from {new}")
        else:
            _check(reply, "file upload")
            new = _int_field(reply, "off", "file upload")
            if new > len(data):
                raise UploadError(f"device acknowledged offset {new} beyond the {len(data)}-byte file", where=name)
        if progress is not None and new > offset:
            progress(new - offset)
        offset = new
        first = False


def _resume_offset(client: SmpClient, data: bytes, name: str) -> int:
    """Bytes already on the device that match our prefix (0 if none or unverifiable)."""
    have = device_file_len(client, name)
    if have <= 0 or have >= len(data):
        return 0
    try:
        digest, hashed = device_sha256(client, name, have)
    except UploadError:
        return 0
    if hashed == have and digest == hashlib.sha256(data[:have]).digest():
        client.stats.log.append(f"resuming at {have} B (device prefix hash matches)")
        return have
    return 0
