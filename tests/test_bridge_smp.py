"""SMP serial framing and the resynchronising decoder (mcumgr "SMP over console")."""

from __future__ import annotations

import base64
import contextlib
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smp.packet import decode as smp_decode

from edge.firmware_bridge import smp_serial as sp


def _message(size: int = 300, seq: int = 7) -> sp.SmpMessage:
    payload = {"off": 0, "data": bytes(range(256)) * (size // 256) + bytes(size % 256), "name": "/lfs/m", "len": size}
    return sp.SmpMessage(sp.OP_WRITE, sp.GROUP_FS, sp.CMD_FS_FILE, seq, payload)


def test_crc16_is_ccitt_xmodem_check_value():
    assert sp.crc16_ccitt(b"123456789") == 0x31C3  # the catalogued check value of CRC-16/XMODEM


def test_frames_follow_the_console_spec():
    packet = _message().encode()
    frames = sp.encode_frames(packet)
    lines = frames.split(b"\n")[:-1]
    assert lines[0][:2] == b"\x06\x09" and all(line[:2] == b"\x04\x14" for line in lines[1:])
    assert all(len(line) + 1 <= 127 for line in lines)
    raw = b"".join(base64.b64decode(line[2:]) for line in lines)
    assert int.from_bytes(raw[:2], "big") == len(packet) + 2
    assert raw[2:-2] == packet
    assert int.from_bytes(raw[-2:], "big") == sp.crc16_ccitt(packet)


def test_decoder_agrees_with_the_smp_package_decoder():
    packet = _message(1000).encode()
    frames = sp.encode_frames(packet)
    reference = smp_decode()
    next(reference)
    result = None
    for line in frames.splitlines(keepends=True):
        try:
            reference.send(line)
        except StopIteration as stop:
            result = stop.value
    assert result == packet
    assert sp.FrameDecoder().feed(frames) == [packet]


def test_decoder_resynchronises_after_garbage_and_split_feeds():
    packet = _message(500, seq=9).encode()
    stream = b"m-ready\r\n\x04\x14garbage\n" + sp.encode_frames(packet) + b"m-infer-done\r\n"
    decoder = sp.FrameDecoder()
    found = []
    for i in range(0, len(stream), 7):  # 7-byte pieces split markers and lines
        found += decoder.feed(stream[i:i + 7])
    assert found == [packet]
    assert decoder.errors == 1  # the orphan continuation line
    assert decoder.take_other() == b"m-ready\r\nm-infer-done\r\n"


def test_flipped_bit_or_dropped_byte_is_rejected_not_delivered():
    frames = bytearray(sp.encode_frames(_message(200).encode()))
    flipped = bytearray(frames)
    flipped[40] ^= 0x04
    dropped = frames[:50] + frames[51:]
    for broken in (bytes(flipped), bytes(dropped)):
        decoder = sp.FrameDecoder()
        assert decoder.feed(broken) == []
        assert decoder.errors >= 1


def test_message_round_trip_and_errors():
    msg = _message(10)
    back = sp.decode_message(msg.encode())
    assert back == msg
    assert sp.SmpMessage(sp.OP_WRITE_RSP, 8, 0, 1, {"err": {"group": 8, "rc": 11}, "len": 5}).error() == (8, 11)
    assert sp.SmpMessage(sp.OP_READ_RSP, 0, 6, 1, {"rc": 8}).error() == (0, 8)
    assert sp.SmpMessage(sp.OP_READ_RSP, 0, 6, 1, {"rc": 0, "buf_size": 1}).error() is None
    with pytest.raises(sp.SmpDecodeError, match="shorter than the 8-byte"):
        sp.decode_message(b"\x01\x02")
    with pytest.raises(sp.SmpDecodeError, match="header says 5 payload bytes"):
        sp.decode_message(bytes([1, 0, 0, 5, 0, 0, 0, 0]) + b"\xa0")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_fuzz_decoder_never_crashes_or_hangs(chunks):
    decoder = sp.FrameDecoder()
    start = time.monotonic()
    for chunk in chunks:
        for packet in decoder.feed(chunk):
            with contextlib.suppress(sp.SmpDecodeError):
                sp.decode_message(packet)
        decoder.take_other()
    assert time.monotonic() - start < 2.0
    assert len(decoder._line) <= sp.MAX_LINE + 2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([b"\x06\x09", b"\x04\x14", b""]))
def test_fuzz_framed_garbage_is_counted_not_raised(body, marker):
    decoder = sp.FrameDecoder()
    frame = marker + base64.b64encode(body) + b"\n"
    for packet in decoder.feed(frame):  # a random body passes the CRC only by chance; then decode must not crash
        with contextlib.suppress(sp.SmpDecodeError):
            sp.decode_message(packet)


class _ByteDecoder(sp.FrameDecoder):
    """The obvious byte-at-a-time decoder, as an oracle for the sliced fast path."""

    def feed(self, data: bytes) -> list[bytes]:
        packets = []
        for byte in data:
            if self._in_smp_line:
                if byte == 0x0A:
                    packet = self._end_line(bytes(self._line))
                    packets += [packet] if packet is not None else []
                    self._line.clear()
                    self._in_smp_line = False
                elif len(self._line) >= sp.MAX_LINE + 2:
                    self.errors += 1
                    self._line.clear()
                    self._packet = None
                    self._in_smp_line = False
                else:
                    self._line.append(byte)
                continue
            self._other.append(byte)
            if bytes(self._other[-2:]) in (sp.START, sp.CONTINUE):
                self._line[:] = self._other[-2:]
                del self._other[-2:]
                self._in_smp_line = True
        return packets


_PIECES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"\x06", b"\x09", b"\x04", b"\x14", b"\n", b"\x06\x09", b"\x04\x14", b"m-ready\r\n"]),
    st.integers(1, 400).map(lambda n: sp.encode_frames(_message(n, seq=n % 256).encode())),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=12), st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_fast_decoder_equals_the_byte_at_a_time_oracle(pieces, cuts):
    stream = b"".join(pieces)
    fast, slow = sp.FrameDecoder(), _ByteDecoder()
    got, i, k = [], 0, 0
    while i < len(stream):  # feed the fast one in arbitrary slices, the oracle all at once
        step = cuts[k % len(cuts)]
        got += fast.feed(stream[i:i + step])
        i, k = i + step, k + 1
    assert got == slow.feed(stream)
    assert fast.errors == slow.errors
    assert fast.take_other() == slow.take_other()


_CBOR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["rc", "err", "off", "len", "output", "type", "x"]) | st.integers(),
                       _CBOR_VALUES, max_size=5))
def test_fuzz_response_payload_checks_never_crash(payload):
    from edge.firmware_bridge.smp_client import UploadError, int_field

    msg = sp.decode_message(sp.SmpMessage(sp.OP_READ_RSP, 8, 2, 1, payload).encode())
    error = msg.error()
    assert error is None or (isinstance(error[1], int) and error[1] != 0)
    for key in ("off", "len"):
        with contextlib.suppress(UploadError):
            assert int_field(msg, key, "fuzz") >= 0


# --- raw framing (Zephyr CONFIG_UART_MCUMGR_RAW_PROTOCOL): packets back to back, no CRC ---


def test_raw_framing_sends_packets_unchanged_and_splits_them_by_the_header_length():
    raw = sp.framing("raw")
    first, second = _message(300, seq=1).encode(), _message(40, seq=2).encode()
    assert raw.encode(first) == first and raw.wire_bytes(len(first)) == len(first)
    assert not raw.crc and sp.framing("console").crc
    decoder = raw.new_decoder(4096)
    stream = first + second  # back to back in one write, as Zephyr's test_raw_back_to_back
    found = []
    for i in range(0, len(stream), 13):
        found += decoder.feed(stream[i:i + 13], now=0.0)
    assert found == [first, second] and decoder.errors == 0
    assert decoder.take_other() == b""


def test_raw_decoder_drops_a_half_packet_after_the_input_timeout():
    packet = _message(100).encode()
    decoder = sp.RawDecoder(max_packet=4096, input_timeout_s=0.1)
    assert decoder.feed(packet[:-4], now=10.0) == []  # the last 4 bytes were lost on the wire
    assert decoder.feed(packet, now=10.25) == [packet]  # the next request starts clean
    assert decoder.errors == 1


def test_raw_decoder_discards_a_header_larger_than_the_device_buffer():
    decoder = sp.RawDecoder(max_packet=512)
    assert decoder.feed(_message(600).encode(), now=0.0) == []
    assert decoder.errors == 1
    assert decoder.feed(_message(100).encode(), now=0.01) == [_message(100).encode()]


def test_unknown_framing_is_named():
    with pytest.raises(ValueError, match="unknown SMP framing 'slip'; choose one of console, raw"):
        sp.framing("slip")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.binary(max_size=300), st.floats(0, 0.3)), max_size=8))
def test_fuzz_raw_decoder_never_crashes_or_hangs(chunks):
    decoder = sp.RawDecoder(max_packet=2048, input_timeout_s=0.1)
    now = 0.0
    for chunk, gap in chunks:
        now += gap
        for packet in decoder.feed(chunk, now=now):
            assert sp.HEADER_SIZE <= len(packet) <= 2048
            with contextlib.suppress(sp.SmpDecodeError):
                sp.decode_message(packet)
        assert len(decoder._buffer) < 2048
