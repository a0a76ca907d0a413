"""The chunk loop shared by file upload (file_upload.py, group 8) and image upload (image.py, group 1).

`run_upload` sends a `ChunkTarget`'s data with up to MAX_WINDOW requests in flight, goes back
to the device's offset on loss (go-back-N), halves the chunk on a noisy line and doubles it
again after a clean run, reconnects with back-off when the port goes silent, resumes where the
device stands, and rewrites from offset 0 when the device's check of the stored bytes fails.
Everything is bounded by `UploadOptions`. It reports success only when the target's `confirm`
(the device's own hash of what it stored) agrees.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from edge.errors import DeviceError
from edge.firmware_bridge import smp_serial as sp
from edge.firmware_bridge.smp_client import (
    DeviceRefused,
    NoResponse,
    SmpClient,
    UploadError,
    UploadStats,
    count_value,
    device_params,
)
from edge.firmware_bridge.transport import SerialLink

SMP_OVERHEAD = 64  # header (8) + CBOR keys/ints of an upload request, generous
MIN_CHUNK = 32  # the smallest data chunk tried on a noisy line
FAST_TRIES = 3  # tries per chunk before halving the chunk size
GROW_AFTER = 8  # clean chunks in a row before doubling it again
SMALLEST_TRIES = 40  # tries per chunk once the chunk is as small as it gets
MAX_WINDOW = 3  # requests in flight; also bounded by the device's buf_count - 1
VERIFY_EVERY = 32 * 1024  # raw framing: bytes between device CRC32 checks of the stored data


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
    upload = _Pass.begin(client, data, target, chunk, resume, progress)
    windows = target.windows and not client.framing.crc
    while upload.acked < len(data) or not upload.done_empty:
        limit = min(len(data), upload.verified + verify_every) if windows else len(data)
        if upload.acked == limit and limit > upload.verified:
            target.verify(client, data, upload.verified, limit)
            upload.verified = limit
            continue
        upload.fill(limit)
        answer = upload.receive()
        if answer is None:
            continue  # mangled, late or already given up on: the next answer (or the timeout) tells more
        reply, error = answer
        if reply is None:
            upload.lost()
        else:
            upload.answered(reply, error)


@dataclass
class _Pass:
    """One pass of the chunk loop: what the device confirmed, what is in flight, the chunk size now."""

    client: SmpClient
    data: bytes
    target: ChunkTarget
    progress: Callable[[int], None] | None
    largest: int  # the chunk size the device's buffer allows (and --chunk)
    size: int  # the chunk size now: halved on a noisy line, doubled after a clean run
    window: int  # requests in flight at most
    acked: int  # bytes the device confirmed
    next_off: int = 0  # where the next request's data starts
    verified: int = 0  # bytes the device's checksum confirmed (unchecked framing)
    in_flight: dict[int, int] = field(default_factory=dict)  # seq -> offset the request's data ends at
    failures: int = 0
    streak: int = 0
    last_refusal: tuple[int, int] | None = None
    done_empty: bool = False  # an empty upload still sends one (empty) request

    @classmethod
    def begin(cls, client: SmpClient, data: bytes, target: ChunkTarget, chunk: int | None, resume: bool,
              progress: Callable[[int], None] | None) -> _Pass:
        """Ask the device for its buffers and where it stands; the pass starts there."""
        client.barrier()  # answers to requests of an earlier pass or session are flushed
        buf_size, buf_count = device_params(client)
        largest = min(chunk or 1 << 30, target.chunk_size(buf_size))
        client.stats.chunk_bytes = largest
        acked = target.start(client, data, resume, largest)
        client.stats.resumed_from = max(client.stats.resumed_from, acked)
        if progress is not None and acked:
            progress(acked)
        return cls(client, data, target, progress, largest, largest, max(1, min(MAX_WINDOW, buf_count - 1)), acked,
                   next_off=acked, verified=acked, done_empty=bool(data))

    def fill(self, limit: int) -> None:
        """Send requests until the window is full or every byte up to `limit` is in flight."""
        while len(self.in_flight) < self.window and (self.next_off < limit or not self.done_empty):
            piece = self.data[self.next_off:min(limit, self.next_off + self.size)]
            payload = self.target.request(self.next_off, piece, len(self.data))
            seq, _ = self.client.send(sp.OP_WRITE, self.target.group, self.target.command, payload)
            self.next_off += len(piece)
            self.in_flight[seq] = self.next_off
            self.done_empty = True

    def receive(self) -> tuple[sp.SmpMessage | None, tuple[int, int] | None] | None:
        """The next answer to a request in flight and its error; (None, None) when lost; None to ignore."""
        client = self.client
        wire = client.framing.wire_bytes(self.size + SMP_OVERHEAD) * len(self.in_flight)
        reply, broken = client.receive(self.target.group, client.timeout(wire))
        if broken:
            return None  # some response was mangled
        if reply is not None and (reply.command != self.target.command or reply.sequence not in self.in_flight):
            return None  # a late answer to another request of this group, or to one we gave up on
        error = None if reply is None else reply.error()
        if reply is not None and not client.framing.crc and self.failures < client.retries \
                and self.target.suspect(reply, error):
            self.last_refusal = error or self.last_refusal  # maybe a corrupted request or answer on the unchecked link
            return None, None  # so treat it as lost
        return reply, error

    def lost(self) -> None:
        """Nothing came back: resend from the last confirmed offset; halve the chunk after a few tries."""
        self.failures += 1
        self.client.stats.retries += len(self.in_flight)
        self.in_flight.clear()
        self.next_off = self.acked  # go back: resend from the last confirmed offset
        self.client.resync()
        if self.failures < (SMALLEST_TRIES if self.size <= MIN_CHUNK else FAST_TRIES):
            return
        if self.size <= MIN_CHUNK:
            refusal = f" (last device error: group {self.last_refusal[0]} rc {self.last_refusal[1]})" \
                if self.last_refusal else ""
            raise NoResponse(
                f"upload stalled at byte {self.acked} of {len(self.data)} after {self.failures} lost requests{refusal}",
                where=f"{self.client.link.url}:{self.target.label}",
                hint="the line is too noisy or the device stopped answering; flash again to resume",
            )
        self.size, self.failures, self.streak = max(MIN_CHUNK, self.size // 2), 0, 0
        self.client.stats.chunk_bytes = min(self.client.stats.chunk_bytes, self.size)

    def answered(self, reply: sp.SmpMessage, error: tuple[int, int] | None) -> None:
        """The device answered a request in flight: settle it and every earlier one, go on from its offset."""
        sent_end = self.in_flight[reply.sequence]
        for seq in list(self.in_flight):  # in-order device: this answer settles every earlier request
            del self.in_flight[seq]
            if seq == reply.sequence:
                break
        new, refused = self.target.device_offset(reply, error, sent_end)
        if refused:
            new = count_value(new)
            new = new if new is not None and new <= len(self.data) else 0
            self.in_flight.clear()
            self.failures += 1
            self.streak = 0
        else:
            assert isinstance(new, int)
            if new > len(self.data):
                raise UploadError(f"device acknowledged offset {new} beyond the {len(self.data)}-byte upload",
                                  where=self.target.label)
            self.failures = 0
            self.streak += 1
            if self.streak >= GROW_AFTER and self.size < self.largest:
                self.size, self.streak = min(self.largest, self.size * 2), 0
        if self.progress is not None and new != self.acked:
            self.progress(new - self.acked)
        if new < self.acked or not self.in_flight:
            self.next_off = new  # the device has less than we thought (or nothing is in flight): go on from there
        if new < self.verified:
            self.verified = 0  # the upload shrank (a corrupt offset 0 restarts it): check it all again
        self.acked = new
