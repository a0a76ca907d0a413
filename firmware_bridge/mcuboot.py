"""The MCUboot image format: parse a header + TLV area and check its SHA256 TLV as bootutil does.

An image (mcuboot `docs/design.md`, `bootutil/image.h`; what `imgtool create` and `west sign` write):

    0        image_header (32 B): ih_magic 0x96f3b83d, ih_load_addr, ih_hdr_size, ih_protect_tlv_size,
             ih_img_size, ih_flags, ih_ver (u8 major, u8 minor, u16 revision, u32 build_num), pad
    hdr_size payload (img_size bytes)
    ...      protected TLV area if protect_tlv_size > 0: info {magic 0x6908, tlv_tot = protect_tlv_size} + TLVs
    ...      TLV area: info {magic 0x6907, tlv_tot (including the 4-byte info)} + TLVs {u8 type, u8 pad, u16 len, value}

TLV type 0x10 (IMAGE_TLV_SHA256) is the sha256 of everything before the unprotected TLV area
(header + payload + protected TLVs). That digest is the image's identity in SMP image
management: `image state` lists it as `hash`, and `image state write` selects an image by it.
`parse_image` is used by the host (to refuse a bad file before sending it) and by the emulated
board (to list only images whose stored bytes hash to their TLV, as bootutil_img_validate does).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from edge.errors import ConfigError

IMAGE_MAGIC = 0x96F3B83D
IMAGE_HEADER_SIZE = 32
TLV_INFO_MAGIC = 0x6907
TLV_PROT_INFO_MAGIC = 0x6908
TLV_SHA256 = 0x10
TLV_INFO_SIZE = 4
TLV_HEADER_SIZE = 4
IMAGE_F_NON_BOOTABLE = 0x10
_HEADER = "IIHHII BBHI I"  # struct image_header without the byte-order prefix


class ImageFormatError(ConfigError):
    """Not a valid MCUboot image (exit 2); `where` names the file and the byte offset."""


@dataclass(frozen=True)
class McubootImage:
    """What a parsed MCUboot image says about itself."""

    hdr_size: int
    protect_tlv_size: int
    img_size: int
    flags: int
    load_addr: int
    version: tuple[int, int, int, int]  # major, minor, revision, build
    hash: bytes  # the SHA256 TLV, checked against the bytes it covers
    tlv_end: int  # bytes the image occupies (header + payload + TLV areas); anything after is padding
    byteorder: str  # "little" or "big", from the magic

    @property
    def version_str(self) -> str:
        """Version as Zephyr's img_mgmt prints it: major.minor.revision, plus .build when non-zero."""
        major, minor, revision, build = self.version
        return f"{major}.{minor}.{revision}" + (f".{build}" if build else "")

    @property
    def bootable(self) -> bool:
        """False when the header sets IMAGE_F_NON_BOOTABLE."""
        return not self.flags & IMAGE_F_NON_BOOTABLE

    @property
    def hashed_size(self) -> int:
        """Bytes covered by the SHA256 TLV: header + payload + protected TLVs."""
        return self.hdr_size + self.img_size + self.protect_tlv_size


def _fail(source: str, offset: int, message: str, hint: str | None = None) -> ImageFormatError:
    return ImageFormatError(message, where=f"{source}, byte {offset}",
                            hint=hint or "build the image with `imgtool create` (or `west sign`) and flash that file")


def parse_image(data: bytes, source: str = "<image>") -> McubootImage:
    """Parse and check an MCUboot image; raise ImageFormatError naming `source` and the byte offset."""
    n = len(data)
    if n < IMAGE_HEADER_SIZE:
        raise _fail(source, n, f"the file has {n} bytes, fewer than the {IMAGE_HEADER_SIZE}-byte MCUboot header")
    magic = int.from_bytes(data[:4], "little")
    if magic == IMAGE_MAGIC:
        order, prefix = "little", "<"
    elif int.from_bytes(data[:4], "big") == IMAGE_MAGIC:
        order, prefix = "big", ">"
    else:
        raise _fail(source, 0, f"not an MCUboot image: magic is 0x{magic:08x}, expected 0x{IMAGE_MAGIC:08x}",
                    hint="this looks like a raw binary; wrap it with `imgtool create --version X.Y.Z "
                         "--header-size 0x200 --pad-header --slot-size SIZE in.bin out.bin`")
    (_, load_addr, hdr_size, protect, img_size, flags, major, minor, revision, build, _pad) = struct.unpack(
        prefix + _HEADER, data[:IMAGE_HEADER_SIZE])
    if hdr_size < IMAGE_HEADER_SIZE:
        raise _fail(source, 8, f"ih_hdr_size is {hdr_size}, smaller than the {IMAGE_HEADER_SIZE}-byte header")
    off = hdr_size + img_size
    if off > n:
        raise _fail(source, 12, f"ih_hdr_size {hdr_size} + ih_img_size {img_size} = {off} is past the end of the "
                                f"{n}-byte file: the image is truncated")
    if protect:
        info_magic, tot = _tlv_info(data, off, source, prefix)
        if info_magic != TLV_PROT_INFO_MAGIC or tot != protect:
            raise _fail(source, off, f"protected TLV info is magic 0x{info_magic:04x} size {tot}, expected magic "
                                     f"0x{TLV_PROT_INFO_MAGIC:04x} size {protect} (ih_protect_tlv_size)")
        off += protect
    info_magic, tot = _tlv_info(data, off, source, prefix)
    if info_magic != TLV_INFO_MAGIC:
        raise _fail(source, off, f"TLV info magic is 0x{info_magic:04x}, expected 0x{TLV_INFO_MAGIC:04x}"
                                 + (" (a protected TLV area that ih_protect_tlv_size does not announce)"
                                    if info_magic == TLV_PROT_INFO_MAGIC else ""))
    end = off + tot
    if tot < TLV_INFO_SIZE or end > n:
        raise _fail(source, off + 2, f"the TLV area claims {tot} bytes, ending at byte {end} of a {n}-byte file: "
                                     "the image is truncated")
    digest = _find_sha256(data, off + TLV_INFO_SIZE, end, source, prefix)
    covered = hdr_size + img_size + protect
    actual = hashlib.sha256(data[:covered]).digest()
    if actual != digest[1]:
        raise _fail(source, digest[0], f"the SHA256 TLV is {digest[1].hex()[:16]}... but the {covered} bytes it covers "
                                       f"hash to {actual.hex()[:16]}...: the image is corrupt")
    return McubootImage(hdr_size, protect, img_size, flags, load_addr, (major, minor, revision, build),
                        digest[1], end, order)


def _tlv_info(data: bytes, off: int, source: str, prefix: str) -> tuple[int, int]:
    if off + TLV_INFO_SIZE > len(data):
        raise _fail(source, off, f"the TLV info at byte {off} is cut off by the end of the {len(data)}-byte file: "
                                 "the image is truncated")
    magic, tot = struct.unpack(prefix + "HH", data[off:off + TLV_INFO_SIZE])
    return magic, tot


def _find_sha256(data: bytes, off: int, end: int, source: str, prefix: str) -> tuple[int, bytes]:
    """(offset of the value, value) of the one SHA256 TLV between `off` and `end`."""
    found: tuple[int, bytes] | None = None
    while off < end:
        if off + TLV_HEADER_SIZE > end:
            raise _fail(source, off, f"a TLV header at byte {off} runs past the TLV area's end at byte {end}")
        kind, _, length = struct.unpack(prefix + "BBH", data[off:off + TLV_HEADER_SIZE])
        value = off + TLV_HEADER_SIZE
        if value + length > end:
            raise _fail(source, off, f"TLV type 0x{kind:02x} of {length} bytes at byte {off} runs past the TLV "
                                     f"area's end at byte {end}")
        if kind == TLV_SHA256:
            if length != 32:
                raise _fail(source, off, f"the SHA256 TLV at byte {off} has {length} bytes, expected 32")
            if found is not None:
                raise _fail(source, off, f"a second SHA256 TLV at byte {off} (the first is at byte {found[0] - 4})")
            found = (value, data[value:value + length])
        off = value + length
    if found is None:
        raise _fail(source, end, "the TLV area has no SHA256 TLV (type 0x10), which MCUboot and img_mgmt need",
                    hint="sign with imgtool's default --sha 256 (not 384/512)")
    return found
