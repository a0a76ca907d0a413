"""Firmware image upload (SMP image management, group 1) through the emulated board on a pty.

The images are real MCUboot images made by mcuboot's own `imgtool create` (unsigned)."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bridge_helpers import interrupt_after
from edge_cli import run_edge
from imgtool.image import Image, VerifyResult

from edge.errors import DeviceError
from edge.firmware_bridge import smp_serial as sp
from edge.firmware_bridge.emulation.board import EmulatedDevice
from edge.firmware_bridge.emulation.flash import Flash, slot_name
from edge.firmware_bridge.emulation.pty_device import Faults, PtyDevice
from edge.firmware_bridge.image import ImageUploadStats, read_image_state, upload_image
from edge.firmware_bridge.mcuboot import ImageFormatError, parse_image
from edge.firmware_bridge.smp_client import DeviceRefused, SmpClient, UploadError
from edge.firmware_bridge.transport import SerialLink
from edge.firmware_bridge.upload import UploadOptions

RAW = sp.framing("raw", raw_input_timeout_s=0.05)
FRAMINGS = {"console": sp.framing("console"), "raw": RAW}
SLOT1 = slot_name(1)


def imgtool_create(folder: Path, name: str, payload_bytes: int, version: str = "1.2.3", *extra: str) -> Path:
    """An unsigned MCUboot image of a random payload, made by `imgtool create`."""
    payload = folder / f"{name}.payload"
    payload.write_bytes(random.Random(name).randbytes(payload_bytes))
    out = folder / f"{name}.bin"
    done = subprocess.run([sys.executable, "-m", "imgtool.main", "create", "--version", version, "--header-size",
                           "0x200", "--slot-size", "0x40000", "--pad-header", *extra, str(payload), str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("mcuboot")
    return {
        "app": imgtool_create(folder, "app", 12000),
        "small": imgtool_create(folder, "small", 3000, "1.2.3"),
        "protected": imgtool_create(folder, "protected", 2000, "2.0.1+9", "--security-counter", "5"),
    }


def _board(framing: sp.Framing | None = None, flash: Flash | None = None, **kwargs: object) -> PtyDevice:
    device = EmulatedDevice(framing=framing)
    if flash is not None:
        device.flash = device.smp.flash = device.mlperf.flash = device.smp.images.flash = flash
    for key, value in kwargs.items():
        setattr(device.smp.images, key, value)
    return PtyDevice(device)


def test_parse_image_agrees_with_imgtool_verify(images):
    for name, path in images.items():
        result, _, digest, _ = Image.verify(str(path), None)
        assert result == VerifyResult.OK
        info = parse_image(path.read_bytes(), str(path))
        assert info.hash == digest, name
        assert info.tlv_end == len(path.read_bytes()) and info.hdr_size == 0x200
    protected = parse_image(images["protected"].read_bytes())
    assert protected.protect_tlv_size > 0 and protected.version_str == "2.0.1.9"
    assert parse_image(images["app"].read_bytes()).version_str == "1.2.3"


@pytest.mark.parametrize("framing", ["console", "raw"])
def test_upload_stores_the_exact_image_and_the_device_confirms_its_hash(images, framing):
    data = images["app"].read_bytes()
    with _board(FRAMINGS[framing]) as board, SerialLink(board.path, 921600) as link:
        stats = upload_image(link, data, source=str(images["app"]), framing=FRAMINGS[framing])
        assert bytes(board.device.flash.files[SLOT1]) == data  # the emulated flash, not the protocol's word
        state = board.device.smp.images.state()["images"]
    assert isinstance(stats, ImageUploadStats)
    assert stats.device_match is True and stats.device_sha256 == hashlib.sha256(data).hexdigest()
    assert stats.image_hash == Image.verify(str(images["app"]), None)[2].hex()
    assert stats.version == "1.2.3" and stats.slot == 1 and not stats.pending
    assert stats.restarts == 0 and stats.reconnects == 0 and stats.bytes == len(data)
    assert state == [{"slot": 1, "version": "1.2.3", "hash": bytes.fromhex(stats.image_hash), "bootable": True,
                      "pending": False, "confirmed": False, "active": False, "permanent": False}]
    # the first request (len, sha, image) fits the emulator's 2048-byte SMP buffer exactly, data included
    assert 1900 < stats.chunk_bytes < 2048 - 8


def test_interrupted_upload_resumes_where_the_device_stopped(images):
    data = images["app"].read_bytes()
    with _board() as board, SerialLink(board.path, 921600) as link:
        with pytest.raises(KeyboardInterrupt):
            upload_image(link, data, options=UploadOptions(chunk=512), progress=interrupt_after(4000))
        time.sleep(0.5)  # chunks in flight when Ctrl-C came are stored meanwhile
        partial = len(board.device.flash.files[SLOT1])
        assert 4000 < partial < len(data)
        assert board.device.smp.images.upload_state.off == partial
        stats = upload_image(link, data, options=UploadOptions(chunk=512))
        assert bytes(board.device.flash.files[SLOT1]) == data
    assert stats.resumed_from == partial and stats.device_match is True
    assert stats.log == [f"the device resumes its upload at {partial} B"]


def test_an_image_already_in_the_slot_is_not_sent_again(images):
    data = images["small"].read_bytes()
    with _board() as board, SerialLink(board.path, 921600) as link:
        upload_image(link, data)
        stats = upload_image(link, data)
    assert stats.resumed_from == len(data) and stats.device_match is True
    assert stats.log == ["the device already holds this exact image"]
    assert stats.wire_bytes_out < 3 * 1024  # barrier, params, the first chunk, state read: nothing else


class _BadFlash(Flash):
    """Flash that flips one byte of the first `bad_writes` chunks it stores."""

    bad_writes = 10**9

    def write(self, name: str, offset: int, data: bytes) -> None:
        if self.bad_writes > 0 and len(data) > 40:
            self.bad_writes -= 1
            data = data[:40] + bytes([data[40] ^ 0x01]) + data[41:]
        super().write(name, offset, data)


@pytest.mark.parametrize("framing", ["console", "raw"])
def test_a_corrupt_stored_image_is_never_reported_as_flashed(images, framing):
    data = images["small"].read_bytes()
    with _board(FRAMINGS[framing], _BadFlash()) as board, SerialLink(board.path, 921600) as link:
        with pytest.raises(UploadError, match="the image in slot 1 is NOT valid") as info:
            upload_image(link, data, framing=FRAMINGS[framing])
        assert bytes(board.device.flash.files[SLOT1]) != data
        assert board.device.smp.images.state()["images"] == []  # bootutil's check: not an image at all
    assert info.value.exit_code == 3
    assert info.value.message.startswith("the device's sha256 of the stored image differs from the file's")
    assert info.value.message.endswith("after 3 attempts")


def test_a_device_without_the_match_check_still_never_reports_a_corrupt_image(images):
    data = images["small"].read_bytes()
    with _board(flash=_BadFlash(), image_check=False) as board, SerialLink(board.path, 921600) as link, \
            pytest.raises(UploadError) as info:
        upload_image(link, data)
    assert info.value.message.startswith("image state lists no valid image in slot 1, expected the file's SHA256")
    flash = _BadFlash()
    flash.bad_writes = 0
    with _board(flash=flash, image_check=False) as board, SerialLink(board.path, 921600) as link:
        stats = upload_image(link, data)
    assert stats.device_match is None and stats.device_sha256 == "" and stats.image_hash
    assert "the device sent no `match`" in stats.log[0]
    with _board(RAW, flash=Flash(), image_check=False) as board, SerialLink(board.path, 921600) as link, \
            pytest.raises(UploadError, match="did not report `match`") as info:
        upload_image(link, data, framing=RAW)
    assert info.value.hint == "enable CONFIG_IMG_ENABLE_IMAGE_CHECK on the board, or use --framing console"


def test_a_transient_storage_error_is_repaired_by_a_full_rewrite(images):
    data = images["app"].read_bytes()
    flash = _BadFlash()
    flash.bad_writes = 1
    with _board(flash=flash) as board, SerialLink(board.path, 921600) as link:
        stats = upload_image(link, data)
        assert bytes(board.device.flash.files[SLOT1]) == data
    assert stats.restarts == 1 and stats.device_match is True


def test_test_and_confirm_marks_and_a_pending_slot_refuses_uploads(images):
    small, app = images["small"].read_bytes(), images["app"].read_bytes()
    with _board() as board, SerialLink(board.path, 921600) as link:
        stats = upload_image(link, small, mark="test")
        assert stats.pending and not stats.permanent and board.device.smp.images.pending is False
        with pytest.raises(DeviceRefused) as info:
            upload_image(link, app)
        assert info.value.message == "device refused image upload: group 1 rc 9 (NO_FREE_SLOT)"
        assert info.value.hint.startswith("slot 1 holds an image already marked for the next boot")
        client = SmpClient(link)
        erase = client.request(sp.OP_WRITE, sp.GROUP_IMG, sp.CMD_IMG_ERASE, {})
        assert erase.error() == (sp.GROUP_IMG, sp.IMG_ERR["NO_FREE_SLOT"])  # a pending slot is kept
        board.device.smp.images.pending = None  # as after the reset that swapped it in
        assert client.request(sp.OP_WRITE, sp.GROUP_IMG, sp.CMD_IMG_ERASE, {}).payload == {}
        assert SLOT1 not in board.device.flash.files
        stats = upload_image(link, app, mark="confirm")
        assert stats.pending and stats.permanent
        [listed] = read_image_state(client)
        assert listed["hash"] == parse_image(app).hash and listed["permanent"] is True


def test_upgrade_only_refuses_a_version_that_is_not_newer(images):
    flash = Flash()
    flash.write(slot_name(0), 0, images["small"].read_bytes())  # the running firmware: 1.2.3
    with _board(flash=flash) as board, SerialLink(board.path, 921600) as link:
        with pytest.raises(DeviceRefused, match=r"rc 27 \(CURRENT_VERSION_IS_NEWER\)"):
            upload_image(link, images["app"].read_bytes(), upgrade=True)  # also 1.2.3
        stats = upload_image(link, images["protected"].read_bytes(), upgrade=True)  # 2.0.1
        assert stats.version == "2.0.1.9" and stats.device_match is True
        versions = [entry["version"] for entry in board.device.smp.images.state()["images"]]
    assert versions == ["1.2.3", "2.0.1.9"]


def test_bad_image_files_name_the_file_and_the_byte(images, tmp_path):
    data = images["small"].read_bytes()
    info = parse_image(data)
    flipped = data[:700] + bytes([data[700] ^ 4]) + data[701:]
    cases = {
        "raw.bin": (b"\x7fELF" + data[4:], "raw.bin, byte 0",
                    "not an MCUboot image: magic is 0x464c457f, expected 0x96f3b83d"),
        "cut.bin": (data[:-10], f"cut.bin, byte {info.hdr_size + info.img_size + 2}",
                    f"the TLV area claims 40 bytes, ending at byte {len(data)} of a {len(data) - 10}-byte file: "
                    "the image is truncated"),
        "nohdr.bin": (data[:20], "nohdr.bin, byte 20", "the file has 20 bytes, fewer than the 32-byte MCUboot header"),
        "flip.bin": (flipped, f"flip.bin, byte {len(data) - 32}",
                     f"the SHA256 TLV is {info.hash.hex()[:16]}... but the {info.hdr_size + info.img_size} bytes it "
                     f"covers hash to {hashlib.sha256(flipped[:-40]).hexdigest()[:16]}...: the image is corrupt"),
    }
    with _board() as board, SerialLink(board.path, 921600) as link:
        for name, (content, where, message) in cases.items():
            with pytest.raises(ImageFormatError) as err:
                upload_image(link, content, source=name)
            assert (err.value.where, err.value.message, err.value.exit_code) == (where, message, 2), name
        assert SLOT1 not in board.device.flash.files  # nothing was sent
        assert board.device.smp.images.upload_state.slot == -1


def test_a_device_that_drops_off_the_bus_is_reconnected_and_resumed(images):
    data = images["app"].read_bytes()
    faults = Faults(disconnect_after=5000, disconnect_s=1.5)
    with _board() as board:
        board.faults = faults
        with SerialLink(board.path, 921600, retry_delay_s=0.1) as link:
            stats = upload_image(link, data, options=UploadOptions(chunk=512, max_reconnects=6))
            assert bytes(board.device.flash.files[SLOT1]) == data
    assert board.disconnects == 1 and stats.reconnects >= 1 and stats.resumed_from > 0


def test_uploads_on_a_line_with_1_percent_bad_bytes(images):
    """Every upload either stores the right image (checked on the emulated flash) or fails with a clear error."""
    data = images["small"].read_bytes()
    faults = Faults(drop=0.005, flip=0.005, seed=11)
    ok = 0
    with _board() as board:
        board.faults = faults
        with SerialLink(board.path, 921600, timeout_s=1.0) as link:
            for _ in range(4):
                board.device.smp.images.erase()
                try:
                    stats = upload_image(link, data)
                except DeviceError as exc:
                    assert exc.exit_code == 3 and exc.hint
                    continue
                assert stats.device_match is True
                assert bytes(board.device.flash.files[SLOT1]) == data
                ok += 1
    assert faults.dropped + faults.flipped > 40
    assert ok >= 3


def test_raw_framing_with_flipped_bytes_rewrites_and_never_reports_a_corrupt_image(images):
    """No CRC on the raw wire: a flipped data byte is stored, `match` comes back false and the image is
    rewritten from offset 0 (img_mgmt has no checksum of a stored range, so no earlier check is possible)."""
    data = images["small"].read_bytes()
    faults = Faults(flip=0.0002, drop=0.00005, seed=1)
    ok = rewrites = 0
    with _board(RAW) as board:
        board.faults = faults
        with SerialLink(board.path, 921600, timeout_s=1.0) as link:
            for _ in range(4):
                board.device.smp.images.erase()
                try:
                    stats = upload_image(link, data, framing=RAW)
                except DeviceError as exc:
                    assert exc.exit_code == 3 and exc.hint.endswith("so try --framing console")
                    rewrites += 1
                    continue
                assert bytes(board.device.flash.files[SLOT1]) == data
                rewrites += stats.restarts
                ok += 1
    assert faults.flipped >= 3
    assert ok >= 2 and rewrites >= 1


def test_flash_cli_uploads_and_confirms_an_image(images, tmp_path):
    data = images["small"].read_bytes()
    with _board() as board:
        done = run_edge("flash", "--port", board.path, "--baud", "921600", "--image", str(images["small"]),
                        "--confirm", "--quiet", timeout=60)
        assert done.returncode == 0, done.stderr
        assert bytes(board.device.flash.files[SLOT1]) == data
    image_hash = parse_image(data, "small.bin").hash.hex()
    assert f"-> {board.path} slot 1: {len(data)} B" in done.stdout
    assert f"image hash {image_hash} listed by the device; the device's sha256 matched; pending (permanent)" \
        in done.stdout
    missing = run_edge("flash", "--port", "loop://", "--image", str(tmp_path / "none.bin"), timeout=60)
    assert missing.returncode == 2 and f"{tmp_path / 'none.bin'}: image file not found" in missing.stderr


def test_image_flags_without_an_image_are_refused():
    done = run_edge("flash", "--port", "loop://", "--upgrade", timeout=60)
    assert done.returncode == 2
    assert "error: edge flash: --upgrade only applies to firmware images" in done.stderr
