"""Model upload over mcumgr SMP file management (group 8), with resume and the device's hash check.

Why file upload (group 8, command 0) rather than image upload (group 1): a .tflite model is
data the application reads from its file system (e.g. LittleFS at `/lfs/model.tflite`), not a
signed MCUboot firmware image for a slot. Group 8 also has the command that makes the success
claim honest: file hash/checksum (command 2, type `sha256`) makes the device hash the stored
file itself; `flash` reports success only when that hash equals the local file's sha256 (the
one recorded in the run manifest).

A dropped connection resumes from the length the device reports, once the device's hash of
that prefix matched ours.

On the `raw` framing (smp_serial.py) nothing on the wire is checked, so every VERIFY_EVERY bytes
the host asks the device for the CRC32 of what it stored since the last check (file
hash/checksum, type `crc32`, `off`/`len`); a mismatch rewrites the file from offset 0 at once
(fs_mgmt cannot rewrite the middle of a file) instead of finding out at the final sha256.
After a lost answer the host keeps the line quiet for the device's input timeout, so the
device drops any half packet before the next request starts.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable

from edge.firmware_bridge import smp_serial as sp
from edge.firmware_bridge.smp_client import (
    SmpClient,
    UploadError,
    UploadStats,
    check_reply,
    count_value,
    int_field,
)
from edge.firmware_bridge.transport import SerialLink
from edge.firmware_bridge.upload import SMP_OVERHEAD, StoredDataWrong, UploadOptions, run_upload

DEFAULT_NAME = "/lfs/model.tflite"


def device_file_len(client: SmpClient, name: str) -> int:
    """Length of `name` on the device (0 if absent)."""
    reply = client.request(sp.OP_READ, sp.GROUP_FS, sp.CMD_FS_STATUS, {"name": name})
    error = reply.error()
    if error is not None:
        if error[1] in (sp.FS_ERR_FILE_NOT_FOUND, sp.MGMT_ERR_ENOENT):
            return 0
        check_reply(reply, "file status")
    return int_field(reply, "len", "file status")


def _device_hash(client: SmpClient, name: str, kind: str, off: int | None, length: int | None) -> sp.SmpMessage:
    """The device's answer to file hash/checksum `kind` over `length` bytes at `off` (all if None)."""
    payload: dict = {"name": name, "type": kind}
    if length is not None:
        payload.update(off=off or 0, len=length)
    reply = client.request(sp.OP_READ, sp.GROUP_FS, sp.CMD_FS_HASH, payload)
    check_reply(reply, f"file {kind}")
    if reply.payload.get("type") != kind:
        raise UploadError(f"file hash response is not a {kind}: {reply.payload!r:.120}", where="SMP response")
    return reply


def device_sha256(client: SmpClient, name: str, length: int | None = None) -> tuple[bytes, int]:
    """(sha256 digest, hashed length) of `name` (its first `length` bytes) computed by the device."""
    reply = _device_hash(client, name, "sha256", 0, length)
    output = reply.payload.get("output")
    if not isinstance(output, bytes) or len(output) != 32:
        raise UploadError(f"file hash response is not a sha256 digest: {reply.payload!r:.120}", where="SMP response")
    return output, int_field(reply, "len", "file hash")


def device_crc32(client: SmpClient, name: str, off: int, length: int) -> tuple[int, int]:
    """(IEEE CRC32, checked length) of `length` bytes of `name` at `off`, computed by the device."""
    reply = _device_hash(client, name, "crc32", off, length)
    return int_field(reply, "output", "file crc32"), int_field(reply, "len", "file crc32")


def chunk_size_for(buf_size: int, name: str) -> int:
    """Largest data chunk whose upload request fits the device's SMP buffer."""
    return max(16, buf_size - SMP_OVERHEAD - len(name.encode()))


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
        check_reply(reply, "file upload")
        return int_field(reply, "off", "file upload"), False

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


def _suspect(reply: sp.SmpMessage, error: tuple[int, int] | None) -> bool:
    """An upload answer that a corrupted request or answer explains: a refusal other than a wrong
    offset, or no valid `off`."""
    if error is not None:
        return error[1] != sp.FS_ERR_OFFSET_NOT_VALID
    return count_value(reply.payload.get("off")) is None


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
