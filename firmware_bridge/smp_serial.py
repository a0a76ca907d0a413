"""mcumgr SMP over a serial line: the two framings Zephyr offers, their decoders, and the message codec.

`console` (default) is Zephyr's "SMP over console" (subsys/mgmt/mcumgr/transport/smp-console.md):
a packet is `len(2, BE) + body + crc16(2, BE)` with `len = len(body) + 2` and CRC16-CCITT
(polynomial 0x1021, initial value 0) over the body; it is base64-encoded and cut into lines of
at most 127 bytes, the first starting 0x06 0x09, the others 0x04 0x14, each ending in `\\n`.
Encoding uses the PyPI `smp` package (`smp.packet.encode`); decoding is our own because a
bridge must survive dropped and flipped bytes: it resynchronises on the next start marker,
bounds every buffer, and never raises on garbage (it counts it).

`raw` is Zephyr's raw UART transport (CONFIG_UART_MCUMGR_RAW_PROTOCOL +
CONFIG_MCUMGR_TRANSPORT_RAW_UART, Zephyr 4.4; MCUboot's BOOT_SERIAL_RAW_PROTOCOL): SMP packets
back to back in binary, no base64, length prefix, CRC or lines. The header's length field is the
only framing; a packet not complete within the input timeout of its first byte is discarded
(CONFIG_MCUMGR_TRANSPORT_RAW_UART_INPUT_TIMEOUT). It carries ~98 % of the wire bytes as packet
bytes instead of ~73 %, but nothing on the wire is checked: the uploader verifies what the
device stored instead (upload.py).

The body is an 8-byte SMP header (op, flags, length, group, sequence, command) + CBOR map.
"""

from __future__ import annotations

import base64
import binascii
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import cbor2
from smp.packet import encode as _smp_encode

START = b"\x06\x09"
CONTINUE = b"\x04\x14"
MAX_LINE = 127
HEADER = struct.Struct("!BBHHBB")
HEADER_SIZE = HEADER.size

# SMP ops (header byte 0, bits 0-2) and the version bits (3-4; 1 = SMP v2).
OP_READ, OP_READ_RSP, OP_WRITE, OP_WRITE_RSP = 0, 1, 2, 3
VERSION_V2 = 1

GROUP_OS = 0
GROUP_IMG = 1
GROUP_FS = 8
CMD_OS_ECHO = 0
CMD_OS_PARAMS = 6
CMD_IMG_STATE = 0
CMD_IMG_UPLOAD = 1
CMD_IMG_ERASE = 5
CMD_FS_FILE = 0
CMD_FS_STATUS = 1
CMD_FS_HASH = 2

# MGMT_ERR (SMP v1 "rc") and FS_MGMT_ERR (v2 "err.rc" in group 8) codes used here.
MGMT_ERR_EOK = 0
MGMT_ERR_EINVAL = 3
MGMT_ERR_ENOENT = 5
MGMT_ERR_ENOTSUP = 8
FS_ERR_FILE_NOT_FOUND = 3
FS_ERR_OFFSET_NOT_VALID = 11
FS_ERR_OFFSET_LARGER_THAN_FILE = 12

# IMG_MGMT_ERR codes (v2 "err.rc" in group 1), enum img_mgmt_err_code_t in Zephyr's img_mgmt.h.
IMG_ERR_NAMES = (
    "OK", "UNKNOWN", "FLASH_CONFIG_QUERY_FAIL", "NO_IMAGE", "NO_TLVS", "INVALID_TLV",
    "TLV_MULTIPLE_HASHES_FOUND", "TLV_INVALID_SIZE", "HASH_NOT_FOUND", "NO_FREE_SLOT", "FLASH_OPEN_FAILED",
    "FLASH_READ_FAILED", "FLASH_WRITE_FAILED", "FLASH_ERASE_FAILED", "INVALID_SLOT", "NO_FREE_MEMORY",
    "FLASH_CONTEXT_ALREADY_SET", "FLASH_CONTEXT_NOT_SET", "FLASH_AREA_DEVICE_NULL", "INVALID_PAGE_OFFSET",
    "INVALID_OFFSET", "INVALID_LENGTH", "INVALID_IMAGE_HEADER", "INVALID_IMAGE_HEADER_MAGIC", "INVALID_HASH",
    "INVALID_FLASH_ADDRESS", "VERSION_GET_FAILED", "CURRENT_VERSION_IS_NEWER", "IMAGE_ALREADY_PENDING",
    "INVALID_IMAGE_VECTOR_TABLE", "INVALID_IMAGE_TOO_LARGE", "INVALID_IMAGE_DATA_OVERRUN",
    "IMAGE_CONFIRMATION_DENIED", "IMAGE_SETTING_TEST_TO_ACTIVE_DENIED",
)
IMG_ERR = {name: code for code, name in enumerate(IMG_ERR_NAMES)}


def crc16_ccitt(data: bytes, crc: int = 0) -> int:
    """CRC16-CCITT as mcumgr uses it (poly 0x1021, init 0, no reflection; 'XMODEM')."""
    return binascii.crc_hqx(data, crc)


def encode_frames(packet: bytes, line_length: int = MAX_LINE) -> bytes:
    """The serial lines (concatenated) that carry one SMP packet."""
    return b"".join(_smp_encode(packet, line_length=line_length))


@dataclass
class FrameDecoder:
    """Turns a byte stream into CRC-checked SMP packets, skipping anything else.

    `feed(data)` returns the complete packets found; bytes that are not part of an SMP
    line are returned by `take_other()` (the MLPerf text protocol shares the line). Broken
    frames (bad base64, wrong length, bad CRC, overlong line) are counted in `errors`.
    """

    max_packet: int = 1 << 16
    errors: int = 0
    other_limit: int = 1 << 16
    _line: bytearray = field(default_factory=bytearray)
    _in_smp_line: bool = False
    _packet: bytearray | None = None
    _expected: int = 0
    _other: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        """Consume bytes; return the complete, CRC-valid packets (header + CBOR)."""
        packets: list[bytes] = []
        i, n = 0, len(data)
        while i < n:
            if self._in_smp_line:
                newline = data.find(b"\n", i)
                end = n if newline < 0 else newline
                room = MAX_LINE + 2 - len(self._line)
                if end - i > room:
                    self.errors += 1  # newline lost: drop the line, the packet in progress and this byte
                    self._line.clear()
                    self._packet = None
                    self._in_smp_line = False
                    i += room + 1
                    continue
                self._line += data[i:end]
                if newline < 0:
                    break
                packet = self._end_line(bytes(self._line))
                if packet is not None:
                    packets.append(packet)
                self._line.clear()
                self._in_smp_line = False
                i = newline + 1
                continue
            if self._other[-1:] in (START[:1], CONTINUE[:1]) and bytes(self._other[-1:]) + data[i:i + 1] in (
                START, CONTINUE
            ):
                self._line[:] = bytes(self._other[-1:]) + data[i:i + 1]
                del self._other[-1:]
                self._in_smp_line = True
                i += 1
                continue
            found = [k for k in (data.find(START, i), data.find(CONTINUE, i)) if k >= 0]
            cut = min(found) if found else n
            self._other += data[i:cut]
            if len(self._other) > self.other_limit:
                del self._other[: len(self._other) - self.other_limit]
            if not found:
                break
            self._line[:] = data[cut:cut + 2]
            self._in_smp_line = True
            i = cut + 2
        return packets

    def take_other(self) -> bytes:
        """Bytes seen outside SMP lines since the last call (e.g. MLPerf text)."""
        keep = 1 if self._other[-1:] in (START[:1], CONTINUE[:1]) else 0  # may be half a marker
        out = bytes(self._other[: len(self._other) - keep])
        del self._other[: len(self._other) - keep]
        return out

    def _end_line(self, line: bytes) -> bytes | None:
        marker, text = line[:2], line[2:]
        try:
            chunk = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.errors += 1
            self._packet = None
            return None
        if marker == START:
            if len(chunk) < 2:
                self.errors += 1
                self._packet = None
                return None
            self._expected = int.from_bytes(chunk[:2], "big")
            if self._expected < 2 + HEADER_SIZE or self._expected > self.max_packet:
                self.errors += 1
                self._packet = None
                return None
            self._packet = bytearray(chunk[2:])
        elif self._packet is None:
            self.errors += 1  # a continuation without a start: its start frame was lost
            return None
        else:
            self._packet.extend(chunk)
        if len(self._packet) < self._expected:
            return None
        body_and_crc = bytes(self._packet)
        self._packet = None
        if len(body_and_crc) != self._expected or crc16_ccitt(body_and_crc) != 0:
            self.errors += 1
            return None
        return body_and_crc[:-2]


@dataclass
class RawDecoder:
    """Splits a raw-UART SMP byte stream into packets by the header's length field.

    As Zephyr's raw transport: a packet not complete within `input_timeout_s` of the data it
    started in is discarded when more bytes arrive; a header announcing more than `max_packet`
    bytes (the device's buffer) is discarded at once, with everything buffered. Never raises.
    """

    max_packet: int = 1 << 16
    input_timeout_s: float = 0.1
    errors: int = 0
    _buffer: bytearray = field(default_factory=bytearray)
    _started: float = 0.0

    def feed(self, data: bytes, now: float | None = None) -> list[bytes]:
        """Consume bytes; return the complete packets (header + CBOR), unchecked."""
        now = time.monotonic() if now is None else now
        if self._buffer and now - self._started > self.input_timeout_s:
            self.errors += 1  # a half packet went stale: its bytes were lost on the wire
            self._buffer.clear()
        if not self._buffer:
            self._started = now
        self._buffer += data
        packets: list[bytes] = []
        while len(self._buffer) >= HEADER_SIZE:
            total = HEADER_SIZE + int.from_bytes(self._buffer[2:4], "big")
            if total > self.max_packet:
                self.errors += 1
                self._buffer.clear()
                break
            if len(self._buffer) < total:
                break
            packets.append(bytes(self._buffer[:total]))
            del self._buffer[:total]
            self._started = now
        return packets

    def take_other(self) -> bytes:
        """Nothing: a raw SMP port carries no text."""
        return b""


class PacketDecoder(Protocol):
    """What both decoders offer: packets from bytes, text seen between them, an error count."""

    errors: int

    def feed(self, data: bytes) -> list[bytes]: ...

    def take_other(self) -> bytes: ...


@dataclass(frozen=True)
class Framing:
    """How SMP packets travel on the line: encoder, decoder factory, wire cost, resync pause."""

    name: str
    encode: Callable[[bytes], bytes]
    new_decoder: Callable[[int], PacketDecoder]  # max packet bytes -> a fresh decoder
    wire_bytes: Callable[[int], int]  # packet bytes -> bytes on the wire
    quiet_s: float = 0.0  # silence a receiver needs to drop a half packet (0: it resyncs by itself)
    crc: bool = True  # False: corrupt bytes reach the device unnoticed, so stored data must be checked


FRAMINGS = ("console", "raw")
DEFAULT_RAW_TIMEOUT_S = 0.1


def framing(name: str, raw_input_timeout_s: float = DEFAULT_RAW_TIMEOUT_S) -> Framing:
    """The framing called `name` ('console' or 'raw'); raw needs the device's input timeout."""
    if name == "console":
        return Framing(
            "console", encode_frames, lambda size: FrameDecoder(max_packet=size + 2),
            lambda n: len(encode_frames(bytes(n))),
        )
    if name == "raw":
        return Framing(
            "raw", bytes, lambda size: RawDecoder(max_packet=size, input_timeout_s=raw_input_timeout_s),
            lambda n: n, quiet_s=raw_input_timeout_s, crc=False,
        )
    raise ValueError(f"unknown SMP framing {name!r}; choose one of {', '.join(FRAMINGS)}")


@dataclass(frozen=True)
class SmpMessage:
    """One decoded SMP message: header fields and the CBOR payload as a dict."""

    op: int
    group: int
    command: int
    sequence: int
    payload: dict[str, Any]
    flags: int = 0
    version: int = VERSION_V2

    def encode(self) -> bytes:
        """Header + canonical CBOR body."""
        body = cbor2.dumps(self.payload, canonical=True)
        first = (self.op & 0b111) | ((self.version & 0b11) << 3)
        return HEADER.pack(first, self.flags, len(body), self.group, self.sequence & 0xFF, self.command) + body

    @property
    def is_response(self) -> bool:
        """True for READ_RSP and WRITE_RSP."""
        return self.op in (OP_READ_RSP, OP_WRITE_RSP)

    def error(self) -> tuple[int, int] | None:
        """(group, rc) if this response reports an error (SMP v1 `rc` or v2 `err`), else None."""
        err = self.payload.get("err")
        if isinstance(err, dict):
            rc = err.get("rc", 0)
            if isinstance(rc, int) and rc != 0:
                group = err.get("group", self.group)
                return (group if isinstance(group, int) else self.group, rc)
        rc = self.payload.get("rc", 0)
        if isinstance(rc, int) and not isinstance(rc, bool) and rc != 0:
            return (GROUP_OS, rc)
        return None


class SmpDecodeError(ValueError):
    """A CRC-valid packet whose header or CBOR body is malformed."""


def decode_message(packet: bytes) -> SmpMessage:
    """Parse header + CBOR map; raise SmpDecodeError on anything malformed."""
    if len(packet) < HEADER_SIZE:
        raise SmpDecodeError(f"packet of {len(packet)} bytes is shorter than the 8-byte SMP header")
    first, flags, length, group, seq, cmd = HEADER.unpack(packet[:HEADER_SIZE])
    body = packet[HEADER_SIZE:]
    if length != len(body):
        raise SmpDecodeError(f"header says {length} payload bytes, packet has {len(body)}")
    try:
        payload = cbor2.loads(body) if body else {}
    except Exception as exc:  # cbor2 raises several types on garbage; all mean "malformed"
        raise SmpDecodeError(f"CBOR payload does not decode: {exc}") from exc
    if not isinstance(payload, dict):
        raise SmpDecodeError(f"CBOR payload is a {type(payload).__name__}, expected a map")
    return SmpMessage(first & 0b111, group, cmd, seq, payload, flags, (first >> 3) & 0b11)
