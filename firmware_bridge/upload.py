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
from dataclasses import dataclass
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
            new = count_value(new)
            new = new if new is not None and new <= len(data) else 0
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
