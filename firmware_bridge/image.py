"""Firmware upload over mcumgr SMP image management (group 1): an MCUboot image into slot 1.

When the model is compiled into the firmware (the exported C array), "flashing the model"
means flashing a firmware image through MCUboot. This module does that with the same machinery
as the file upload (upload.py: SmpClient, the pipelined chunk loop, reconnects, rewrites); what
differs is Zephyr's img_mgmt protocol (`doc/services/device_mgmt/smp_groups/smp_group_1.rst`,
`subsys/mgmt/mcumgr/grp/img_mgmt/src/img_mgmt.c`):

* the first chunk (`off` 0) carries `image`, `len`, `sha` (sha256 of the whole file) and
  optionally `upgrade`; with the `sha` of an upload it has in progress, the device answers with
  the offset it reached, so sending the first chunk again *is* the resume;
* a chunk at the wrong offset is answered with success and the offset the device expects: the
  host goes back there (as fs_mgmt's FILE_OFFSET_NOT_VALID in the file upload);
* the answer to the last chunk carries `match` when the device has CONFIG_IMG_ENABLE_IMAGE_CHECK:
  its own sha256 of the stored bytes equals `sha`.

Success needs `match` true (where the device sends it; on the raw framing, which checks nothing
on the wire, it is required) AND `image state` (cmd 0) listing the slot with `hash` equal to
the file's SHA256 TLV. Then, optionally, `image state` write marks it for a test boot or
permanently (`mark`). The file is parsed first (mcuboot.py), so a bad file never reaches the board.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from edge.errors import DeviceError
from edge.firmware_bridge import smp_serial as sp
from edge.firmware_bridge.mcuboot import McubootImage, parse_image
from edge.firmware_bridge.smp_client import (
    DeviceRefused,
    NoResponse,
    SmpClient,
    UploadError,
    UploadStats,
    count_value,
    int_field,
)
from edge.firmware_bridge.transport import SerialLink
from edge.firmware_bridge.upload import FAST_TRIES, MIN_CHUNK, SMALLEST_TRIES, UploadOptions, run_upload

Mark = Literal["test", "confirm"]

# What to do about the img_mgmt errors a user can cause (the others are device faults).
_ERROR_HINTS = {
    "NO_FREE_SLOT": "slot 1 holds an image already marked for the next boot: reset the board (MCUboot swaps it in) "
                    "or erase slot 1 (`mcumgr image erase`), then flash again",
    "IMAGE_ALREADY_PENDING": "another image is already marked for the next boot: reset the board first",
    "INVALID_IMAGE_TOO_LARGE": "the image is larger than the board's slot partition",
    "CURRENT_VERSION_IS_NEWER": "`upgrade` only accepts a higher version than the running one: bump --version "
                                "in imgtool, or flash without the upgrade-only check",
    "INVALID_IMAGE_HEADER_MAGIC": "the device does not see an MCUboot header at offset 0",
    "HASH_NOT_FOUND": "the device lists no valid image with that hash",
}


@dataclass
class ImageUploadStats(UploadStats):
    """UploadStats plus what the device confirmed about the image."""

    slot: int = 1
    version: str = ""
    image_hash: str = ""  # the SHA256 TLV, as listed by the device's image state for the slot
    device_match: bool | None = None  # the last chunk's `match` (None: the device does not send it)
    pending: bool = False  # marked for the next boot
    permanent: bool = False  # ... and kept without the application confirming itself


def _refused(error: tuple[int, int], what: str) -> DeviceRefused:
    group, rc = error
    name = sp.IMG_ERR_NAMES[rc] if group == sp.GROUP_IMG and 0 <= rc < len(sp.IMG_ERR_NAMES) else ""
    label = f" ({name})" if name else ""
    return DeviceRefused(f"device refused {what}: group {group} rc {rc}{label}", where="SMP response",
                         hint=_ERROR_HINTS.get(name))


class ImageTarget:
    """MCUboot slot `slot` of image `number` through img_mgmt upload (group 1, command 1)."""

    group = sp.GROUP_IMG
    command = sp.CMD_IMG_UPLOAD
    windows = False  # img_mgmt has no checksum of a stored range: `match` checks it all at the end

    def __init__(self, info: McubootImage, data: bytes, *, number: int = 0, slot: int = 1,
                 upgrade: bool = False) -> None:
        self.info = info
        self.number = number
        self.slot = slot
        self.upgrade = upgrade
        self.sha = hashlib.sha256(data).digest()
        self.match: bool | None = None
        self.label = f"image {number} slot {slot}"
        self.invalid_hint = (f"the image in slot {slot} is NOT valid (MCUboot would refuse to boot it); check the "
                             "cable or lower the baud rate and flash again")

    def chunk_size(self, buf_size: int) -> int:
        first = sp.SmpMessage(sp.OP_WRITE, self.group, self.command, 0, self.request(0, b"", 1 << 31)).encode()
        return max(MIN_CHUNK, buf_size - len(first) - 2)  # + 2: the data length's CBOR head grows to 3 bytes

    def request(self, off: int, piece: bytes, total: int) -> dict:
        payload: dict = {"off": off, "data": piece}
        if off == 0:  # the first chunk names the upload; it is resent in full whenever the device asks for 0
            payload.update(image=self.number, len=total, sha=self.sha)
            if self.upgrade:
                payload["upgrade"] = True
        return payload

    def start(self, client: SmpClient, data: bytes, resume: bool, size: int) -> int:
        """Send the first chunk and wait: the device answers with where it stands (resume by `sha`).
        On a noisy line the chunk halves after a few lost tries, as in the chunk loop."""
        self.match = None
        while True:
            smallest = size <= MIN_CHUNK
            try:
                reply = client.request(sp.OP_WRITE, self.group, self.command,
                                       self.request(0, data[:size], len(data)),
                                       SMALLEST_TRIES if smallest else FAST_TRIES)
                break
            except NoResponse:
                if smallest:
                    raise
                size = max(MIN_CHUNK, size // 2)
        new, _ = self.device_offset(reply, reply.error(), size)
        if new > len(data):
            raise UploadError(f"device acknowledged offset {new} beyond the {len(data)}-byte image", where=self.label)
        if 0 < new != size:
            client.stats.log.append(f"the device resumes its upload at {new} B" if new < len(data)
                                    else "the device already holds this exact image")
        return new

    def device_offset(self, reply: sp.SmpMessage, error: tuple[int, int] | None, sent_end: int) -> tuple[int, bool]:
        if error is not None:
            raise _refused(error, "image upload")
        new = int_field(reply, "off", "image upload")
        match = reply.payload.get("match")
        if isinstance(match, bool):
            self.match = match
        return new, new < sent_end  # an offset short of this chunk's end: the device did not take it

    def suspect(self, reply: sp.SmpMessage, error: tuple[int, int] | None) -> bool:
        return error is not None or count_value(reply.payload.get("off")) is None

    def verify(self, client: SmpClient, data: bytes, start: int, end: int) -> None:
        raise NotImplementedError("img_mgmt has no checksum of a stored range")  # windows is False

    def confirm(self, client: SmpClient, data: bytes) -> str | None:
        stats = client.stats
        if isinstance(stats, ImageUploadStats):
            stats.device_match = self.match
        if self.match is False:
            return "the device's sha256 of the stored image differs from the file's (upload answer `match`: false)"
        if self.match is None:
            if not client.framing.crc:
                raise UploadError(
                    "the device did not report `match` for the last chunk, and the raw framing checks nothing on the "
                    "wire, so nothing proves the stored image is right",
                    where=f"{client.link.url}:{self.label}",
                    hint="enable CONFIG_IMG_ENABLE_IMAGE_CHECK on the board, or use --framing console")
            stats.log.append("the device sent no `match` (CONFIG_IMG_ENABLE_IMAGE_CHECK off): relying on image state "
                             "and MCUboot's own hash check at boot")
        listed = find_slot(read_image_state(client), self.number, self.slot)
        if listed is None or listed.get("hash") != self.info.hash:
            got = "no valid image" if listed is None else f"hash {_hex(listed.get('hash'))}"
            return (f"image state lists {got} in slot {self.slot}, expected the file's SHA256 TLV "
                    f"{self.info.hash.hex()[:16]}...")
        stats.device_sha256 = self.sha.hex() if self.match else ""
        if isinstance(stats, ImageUploadStats):
            stats.image_hash = self.info.hash.hex()
            stats.pending = listed.get("pending") is True
            stats.permanent = listed.get("permanent") is True
        return None


def _hex(value: object) -> str:
    return f"{value.hex()[:16]}..." if isinstance(value, bytes) else repr(value)


def read_image_state(client: SmpClient) -> list[dict]:
    """The `images` list of image state read (group 1, command 0). Its answer is long (a hash and
    flags per slot), so on a noisy line it gets twice the usual tries: it is a read, repeats are harmless."""
    reply = client.request(sp.OP_READ, sp.GROUP_IMG, sp.CMD_IMG_STATE, {}, 2 * (client.retries + 1))
    return _images(reply, "image state read")


def _images(reply: sp.SmpMessage, what: str) -> list[dict]:
    error = reply.error()
    if error is not None:
        raise _refused(error, what)
    images = reply.payload.get("images")
    if not isinstance(images, list) or not all(isinstance(entry, dict) for entry in images):
        raise UploadError(f"{what}: response has no valid 'images' list: {reply.payload!r:.120}", where="SMP response")
    return images


def find_slot(images: list[dict], number: int, slot: int) -> dict | None:
    """The entry for `slot` of image `number` (`image` may be absent on single-image devices)."""
    for entry in images:
        if entry.get("slot") == slot and entry.get("image", 0) == number:
            return entry
    return None


def mark_image(client: SmpClient, image_hash: bytes, mark: Mark) -> list[dict]:
    """Image state write: boot the image with `image_hash` once on the next reset ("test": MCUboot
    reverts unless the application confirms itself) or for good ("confirm"); return the new state."""
    reply = client.request(sp.OP_WRITE, sp.GROUP_IMG, sp.CMD_IMG_STATE, {"hash": image_hash,
                                                                         "confirm": mark == "confirm"})
    return _images(reply, f"image state write ({mark})")


def upload_image(
    link: SerialLink,
    data: bytes,
    *,
    source: str = "<image>",
    framing: sp.Framing | None = None,
    number: int = 0,
    slot: int = 1,
    mark: Mark | None = None,
    upgrade: bool = False,
    options: UploadOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImageUploadStats:
    """Upload the MCUboot image `data` (read from `source`) to `slot`; return stats only once the device
    confirmed it (`match`, and image state listing the slot with the file's SHA256 TLV), then mark it.

    Raises ImageFormatError (exit 2) for a bad file before sending anything, DeviceError (exit 3)
    for the link and the device. Resuming is the device's decision (it resumes an upload whose
    `sha` it knows), so `options.resume` does not apply.
    """
    info = parse_image(data, source)
    target = ImageTarget(info, data, number=number, slot=slot, upgrade=upgrade)
    stats = ImageUploadStats(slot=slot, version=info.version_str)
    run_upload(link, data, target, framing=framing, options=options, progress=progress, stats=stats)
    if mark is not None:
        client = SmpClient(link, framing=framing, retries=(options or UploadOptions()).retries)
        client.barrier()
        listed = find_slot(mark_image(client, info.hash, mark), number, slot)
        stats.pending = listed is not None and listed.get("pending") is True
        stats.permanent = listed is not None and listed.get("permanent") is True
        if not stats.pending or stats.permanent != (mark == "confirm"):
            raise DeviceError(f"after image state write ({mark}) slot {slot} is not listed as pending"
                              + (" and permanent" if mark == "confirm" else "") + f": {listed!r:.160}",
                              where=f"{link.url}:{target.label}",
                              hint="the image is stored and verified, but will not boot on the next reset")
    return stats
