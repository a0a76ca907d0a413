"""The emulated board's mcumgr SMP server: OS params/echo, file upload/download/status/hash, images."""

from __future__ import annotations

import hashlib
import zlib

from edge.firmware_bridge import smp_serial as sp
from edge.firmware_bridge.emulation.flash import Flash
from edge.firmware_bridge.emulation.mcuboot_slots import ImageManager

SMP_BUF_SIZE = 2048
SMP_BUF_COUNT = 4


class SmpServer:
    """The subset of mcumgr the bridge needs: OS params/echo, FS upload/download/status/hash, images."""

    def __init__(self, flash: Flash, buf_size: int = SMP_BUF_SIZE) -> None:
        self.flash = flash
        self.buf_size = buf_size
        self.images = ImageManager(flash)

    def handle(self, packet: bytes) -> bytes | None:
        """One request packet in, one response packet out (None: drop, as Zephyr does)."""
        try:
            msg = sp.decode_message(packet)
        except sp.SmpDecodeError:
            return None
        if msg.op not in (sp.OP_READ, sp.OP_WRITE) or len(packet) > self.buf_size:
            return None
        payload = self._dispatch(msg)
        reply = sp.SmpMessage(msg.op + 1, msg.group, msg.command, msg.sequence, payload, version=msg.version)
        return reply.encode()

    def _dispatch(self, msg: sp.SmpMessage) -> dict:
        key = (msg.group, msg.command, msg.op)
        p = msg.payload
        if key == (sp.GROUP_OS, sp.CMD_OS_PARAMS, sp.OP_READ):
            return {"buf_size": self.buf_size, "buf_count": SMP_BUF_COUNT}
        if key == (sp.GROUP_OS, sp.CMD_OS_ECHO, sp.OP_WRITE):
            return {"r": p.get("d", "")}
        if msg.group == sp.GROUP_IMG:
            return self.images.handle(msg.command, msg.op, p)
        if msg.group != sp.GROUP_FS:
            return {"rc": sp.MGMT_ERR_ENOTSUP}
        name = p.get("name")
        if not isinstance(name, str) or not name.startswith("/"):
            return {"rc": sp.MGMT_ERR_EINVAL}
        if key == (sp.GROUP_FS, sp.CMD_FS_FILE, sp.OP_WRITE):
            return self._upload(name, p)
        content = self.flash.files.get(name)
        if content is None:
            return {"err": {"group": sp.GROUP_FS, "rc": sp.FS_ERR_FILE_NOT_FOUND}}
        if key == (sp.GROUP_FS, sp.CMD_FS_FILE, sp.OP_READ):
            off = p.get("off", 0)
            if not isinstance(off, int) or not 0 <= off <= len(content):
                return {"err": {"group": sp.GROUP_FS, "rc": sp.FS_ERR_OFFSET_LARGER_THAN_FILE}}
            reply = {"off": off, "data": bytes(content[off:off + self.buf_size // 2])}
            return reply | ({"len": len(content)} if off == 0 else {})
        if key == (sp.GROUP_FS, sp.CMD_FS_STATUS, sp.OP_READ):
            return {"len": len(content)}
        if key == (sp.GROUP_FS, sp.CMD_FS_HASH, sp.OP_READ):
            return self._hash(content, p)
        return {"rc": sp.MGMT_ERR_ENOTSUP}

    def _upload(self, name: str, p: dict) -> dict:
        off, data = p.get("off"), p.get("data")
        if not isinstance(off, int) or off < 0 or not isinstance(data, bytes):
            return {"rc": sp.MGMT_ERR_EINVAL}
        current = len(self.flash.files.get(name, b""))
        if off != 0 and off != current:
            # fs_mgmt: the offset must continue the file; report what the device has
            return {"err": {"group": sp.GROUP_FS, "rc": sp.FS_ERR_OFFSET_NOT_VALID}, "len": current}
        self.flash.write(name, off, data)
        return {"off": off + len(data)}

    def _hash(self, content: bytearray, p: dict) -> dict:
        kind = p.get("type", "crc32")
        off = p.get("off", 0)
        length = p.get("len", len(content) - off if isinstance(off, int) else 0)
        if not isinstance(off, int) or not isinstance(length, int) or off < 0 or length < 0 or off > len(content):
            return {"err": {"group": sp.GROUP_FS, "rc": sp.FS_ERR_OFFSET_LARGER_THAN_FILE}}
        data = bytes(content[off:off + length])
        reply: dict = {"type": kind, "len": len(data)} | ({"off": off} if off else {})
        if kind == "sha256":
            return reply | {"output": hashlib.sha256(data).digest()}
        if kind == "crc32":
            return reply | {"output": zlib.crc32(data)}
        return {"err": {"group": sp.GROUP_FS, "rc": 13}}  # CHECKSUM_HASH_NOT_FOUND
