"""MCUboot image management (mcumgr group 1) on the emulated flash, as Zephyr's img_mgmt."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from edge.firmware_bridge import smp_serial as sp
from edge.firmware_bridge.emulation.flash import Flash, slot_name
from edge.firmware_bridge.mcuboot import IMAGE_HEADER_SIZE, IMAGE_MAGIC, ImageFormatError, McubootImage, parse_image

SLOT_SIZE = 448 * 1024  # the emulated MCUboot slot partitions (nRF52840's default slot1_partition)


def _img_err(name: str) -> dict:
    return {"err": {"group": sp.GROUP_IMG, "rc": sp.IMG_ERR[name]}}


@dataclass
class _ImageUpload:
    """img_mgmt's g_img_mgmt_state: the upload in progress (slot -1: none)."""

    slot: int = -1
    off: int = 0
    size: int = 0
    sha: bytes = b""


class ImageManager:
    """MCUboot image management (group 1) as Zephyr's img_mgmt with one updatable image.

    Upload (cmd 1) goes to slot 1 with Zephyr's rules: a chunk at the wrong offset is answered
    with success and the offset expected; `off` 0 with the `sha` of the upload in progress
    resumes it; the last chunk's answer has `match` (CONFIG_IMG_ENABLE_IMAGE_CHECK: the sha256 of
    the stored bytes equals `sha`). State read (cmd 0) lists only images whose stored bytes hash
    to their SHA256 TLV (bootutil's check), so a corrupt slot is never listed as an image.
    State write marks slot 1 for test or permanently (`pending`); no reboot or swap is emulated.
    """

    def __init__(self, flash: Flash, *, slot_size: int = SLOT_SIZE, image_check: bool = True) -> None:
        self.flash = flash
        self.slot_size = slot_size
        self.image_check = image_check
        self.upload_state = _ImageUpload()
        self.pending: bool | None = None  # slot 1 set for the next boot: False for test, True permanently

    def handle(self, command: int, op: int, p: dict) -> dict:
        """One group-1 request payload -> the response payload."""
        if (command, op) == (sp.CMD_IMG_UPLOAD, sp.OP_WRITE):
            return self._upload(p)
        if (command, op) == (sp.CMD_IMG_STATE, sp.OP_READ):
            return self.state()
        if (command, op) == (sp.CMD_IMG_STATE, sp.OP_WRITE):
            return self._state_write(p)
        if (command, op) == (sp.CMD_IMG_ERASE, sp.OP_WRITE):
            slot = p.get("slot", 1)
            if slot != 1:
                return _img_err("INVALID_SLOT" if slot != 0 else "NO_FREE_SLOT")  # slot 0 runs the application
            if self.pending is not None:
                return _img_err("NO_FREE_SLOT")
            self.erase()
            return {}
        return {"rc": sp.MGMT_ERR_ENOTSUP}

    def erase(self) -> None:
        """Image erase of slot 1: its bytes and any upload in progress are gone (img_mgmt_erase)."""
        self.flash.files.pop(slot_name(1), None)
        self.upload_state = _ImageUpload()

    def valid_image(self, slot: int) -> McubootImage | None:
        """The image in `slot` if its stored bytes pass the SHA256 TLV check, else None."""
        stored = self.flash.files.get(slot_name(slot))
        if not stored:
            return None
        try:
            return parse_image(bytes(stored), f"slot {slot}")
        except ImageFormatError:
            return None

    def state(self) -> dict:
        """The `image state` answer (not frugal: every flag present)."""
        images = []
        for slot in (0, 1):
            info = self.valid_image(slot)
            if info is None:
                continue
            pending = slot == 1 and self.pending is not None
            images.append({"slot": slot, "version": info.version_str, "hash": info.hash, "bootable": info.bootable,
                           "pending": pending, "confirmed": slot == 0, "active": slot == 0,
                           "permanent": pending and bool(self.pending)})
        return {"images": images, "splitStatus": 0}

    def _state_write(self, p: dict) -> dict:
        digest, confirm = p.get("hash"), p.get("confirm", False)
        if not isinstance(confirm, bool) or not isinstance(digest, bytes | None):
            return {"rc": sp.MGMT_ERR_EINVAL}
        if not digest:
            if not confirm:
                return _img_err("INVALID_HASH")  # a test needs a hash
            slot = 0
        elif len(digest) != 32:
            return _img_err("INVALID_HASH")
        else:
            found = [s for s in (0, 1) if (info := self.valid_image(s)) is not None and info.hash == digest]
            if not found:
                return _img_err("HASH_NOT_FOUND")
            slot = found[0]
        if not confirm and slot == 0:
            return _img_err("IMAGE_SETTING_TEST_TO_ACTIVE_DENIED")
        if self.pending is not None:  # slot 1 boots next: only repeating the same request is allowed
            if slot == 1 and confirm == self.pending:
                return self.state()
            return _img_err("IMAGE_ALREADY_PENDING")
        if slot == 1:
            self.pending = confirm
        return self.state()

    def _slot_sha(self, size: int) -> bytes:
        stored = bytes(self.flash.files.get(slot_name(1), b""))[:size]
        return hashlib.sha256(stored + b"\xff" * (size - len(stored))).digest()  # erased flash reads 0xff

    def _upload(self, p: dict) -> dict:
        off, data, sha = p.get("off"), p.get("data", b""), p.get("sha", b"")
        ints = [p[k] for k in ("off", "len", "image") if k in p]
        if not isinstance(data, bytes) or not isinstance(sha, bytes) or not isinstance(p.get("upgrade", False), bool) \
                or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in ints):
            return {"rc": sp.MGMT_ERR_EINVAL}
        if off is None:
            return _img_err("INVALID_OFFSET")
        state = self.upload_state
        if off == 0:
            if len(data) < IMAGE_HEADER_SIZE:
                return _img_err("INVALID_IMAGE_HEADER")
            size = p.get("len")
            if size is None:
                return _img_err("INVALID_LENGTH")
            if int.from_bytes(data[:4], "little") != IMAGE_MAGIC:
                return _img_err("INVALID_IMAGE_HEADER_MAGIC")
            if len(sha) > 32:
                return _img_err("INVALID_HASH")
            if sha and state.slot != -1 and sha == state.sha:
                return {"off": state.off}  # the same upload, interrupted: go on where it stopped
            if self.pending is not None:
                return _img_err("NO_FREE_SLOT")
            if size > self.slot_size:
                return _img_err("INVALID_IMAGE_TOO_LARGE")
            if p.get("upgrade"):
                running = self.valid_image(0)
                if running is None:
                    return _img_err("VERSION_GET_FAILED")
                if running.version[:3] >= struct.unpack_from("<BBH", data, 20):
                    return _img_err("CURRENT_VERSION_IS_NEWER")
            self.upload_state = state = _ImageUpload(1, 0, size, sha)
            if self.image_check and len(sha) == 32 and self._slot_sha(size) == sha:
                self.upload_state = _ImageUpload()
                return {"off": size, "match": True}  # the slot already holds exactly this
        elif state.slot == -1 or off != state.off:
            return {"off": state.off}  # wrong offset: a success naming the one expected
        elif off + len(data) > state.size:
            self.upload_state = _ImageUpload()
            return _img_err("INVALID_IMAGE_DATA_OVERRUN")
        if data:
            self.flash.write(slot_name(1), off, data)
            state.off += len(data)
        reply: dict = {"off": state.off}
        if state.off == state.size:
            if self.image_check:
                reply["match"] = len(state.sha) == 32 and self._slot_sha(state.size) == state.sha
            self.upload_state = _ImageUpload()
        return reply
