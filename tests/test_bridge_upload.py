"""Model upload over mcumgr SMP through the emulated board on a pty: hash, resume, faults."""

from __future__ import annotations

import hashlib
import time

import pytest
from bridge_helpers import emulator_ports, interrupt_after
from edge_cli import run_edge

from edge.errors import DeviceError
from edge.firmware_bridge import smp_serial as sp
from edge.firmware_bridge.emulation.board import EmulatedDevice
from edge.firmware_bridge.emulation.flash import MODEL_FILE, Flash
from edge.firmware_bridge.emulation.pty_device import Faults, PtyDevice
from edge.firmware_bridge.file_upload import upload_file
from edge.firmware_bridge.smp_client import UploadError
from edge.firmware_bridge.transport import SerialLink
from edge.firmware_bridge.upload import UploadOptions


def test_upload_stores_the_exact_model_and_the_device_confirms_its_hash(small_tflite):
    with PtyDevice() as board, SerialLink(board.path, 921600) as link:
        stats = upload_file(link, small_tflite, expected_sha256=hashlib.sha256(small_tflite).hexdigest())
        assert bytes(board.device.flash.files[MODEL_FILE]) == small_tflite
    assert stats.device_sha256 == hashlib.sha256(small_tflite).hexdigest()
    assert stats.bytes == len(small_tflite) > 8000
    assert stats.reconnects == 0 and stats.restarts == 0
    assert stats.chunk_bytes == 2048 - 64 - len(MODEL_FILE)  # sized from the device's mcumgr buf_size


def test_manifest_hash_mismatch_is_refused_before_sending(small_tflite):
    with PtyDevice() as board, SerialLink(board.path, 921600) as link:
        with pytest.raises(UploadError, match="differs from the manifest's"):
            upload_file(link, small_tflite, expected_sha256="00" * 32)
        assert MODEL_FILE not in board.device.flash.files


def test_interrupted_upload_resumes_from_the_device_offset(small_tflite):
    with PtyDevice() as board, SerialLink(board.path, 921600) as link:
        with pytest.raises(KeyboardInterrupt):
            upload_file(link, small_tflite, options=UploadOptions(chunk=512), progress=interrupt_after(4000))
        time.sleep(0.5)  # chunks still in flight when Ctrl-C came are stored by the device meanwhile
        partial = len(board.device.flash.files[MODEL_FILE])
        assert 4000 < partial < len(small_tflite)
        stats = upload_file(link, small_tflite, options=UploadOptions(chunk=512))
        assert stats.resumed_from == partial
        assert bytes(board.device.flash.files[MODEL_FILE]) == small_tflite


def test_device_that_drops_off_the_bus_is_reconnected_and_resumed(small_tflite):
    faults = Faults(disconnect_after=5000, disconnect_s=4.0)
    with PtyDevice(faults=faults) as board, SerialLink(board.path, 921600, retry_delay_s=0.1) as link:
        stats = upload_file(link, small_tflite, options=UploadOptions(chunk=512, max_reconnects=6))
        assert board.disconnects >= 1
        assert stats.reconnects >= 1 and stats.resumed_from > 0
        assert bytes(board.device.flash.files[MODEL_FILE]) == small_tflite


class _BadFlash(Flash):
    """Flash that corrupts one byte of the first `bad_writes` chunks it stores."""

    bad_writes = 10**9

    def write(self, name: str, offset: int, data: bytes) -> None:
        if self.bad_writes > 0 and data:
            self.bad_writes -= 1
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        super().write(name, offset, data)


def _board_with(flash: Flash, framing: sp.Framing | None = None) -> PtyDevice:
    device = EmulatedDevice(framing=framing)
    device.flash = device.smp.flash = device.mlperf.flash = flash
    return PtyDevice(device)


def test_a_corrupt_stored_model_is_never_reported_as_flashed(tiny_tflite):
    with _board_with(_BadFlash()) as board, SerialLink(board.path, 921600) as link:
        with pytest.raises(UploadError, match="the stored model is NOT valid") as info:
            upload_file(link, tiny_tflite)
        assert info.value.exit_code == 3
        assert bytes(board.device.flash.files[MODEL_FILE]) != tiny_tflite


def test_a_transient_storage_error_is_repaired_by_a_full_rewrite(tiny_tflite):
    flash = _BadFlash()
    flash.bad_writes = 1
    with _board_with(flash) as board, SerialLink(board.path, 921600) as link:
        stats = upload_file(link, tiny_tflite)
        assert stats.restarts == 1
        assert bytes(board.device.flash.files[MODEL_FILE]) == tiny_tflite


def _uploads_on_a_noisy_line(model: bytes, count: int, seed: int) -> dict[str, int]:
    """1 % of bytes in both directions dropped or bit-flipped: every upload either succeeds with
    the right bytes on the device or fails with a clear error; none reports a corrupt model."""
    digest = hashlib.sha256(model).hexdigest()
    faults = Faults(drop=0.005, flip=0.005, seed=seed)
    outcomes = {"ok": 0, "failed": 0}
    with PtyDevice(faults=faults) as board, SerialLink(board.path, 921600, timeout_s=1.0) as link:
        for _ in range(count):
            board.device.flash.files.pop(MODEL_FILE, None)  # every upload starts from an empty file
            try:
                stats = upload_file(link, model)
            except DeviceError as exc:
                assert exc.exit_code == 3 and exc.message and exc.hint
                outcomes["failed"] += 1
                continue
            assert stats.device_sha256 == digest
            assert bytes(board.device.flash.files[MODEL_FILE]) == model  # the device really has it
            outcomes["ok"] += 1
    assert faults.dropped > 10 * count and faults.flipped > 10 * count
    return outcomes


def test_12_uploads_on_a_line_with_1_percent_bad_bytes(tiny_tflite):
    outcomes = _uploads_on_a_noisy_line(tiny_tflite, 12, seed=5)
    assert outcomes["ok"] >= 10, outcomes


@pytest.mark.slow
def test_100_uploads_on_a_line_with_1_percent_bad_bytes(tiny_tflite):
    outcomes = _uploads_on_a_noisy_line(tiny_tflite, 100, seed=3)
    assert outcomes["ok"] >= 90, outcomes


def test_an_identical_file_on_the_device_is_not_sent_again(small_tflite):
    with PtyDevice() as board, SerialLink(board.path, 921600) as link:
        board.device.flash.write(MODEL_FILE, 0, small_tflite)
        stats = upload_file(link, small_tflite)
    assert stats.resumed_from == len(small_tflite)
    assert stats.wire_bytes_out < 1000  # params, status, prefix hash, final hash: no data chunks
    assert "already holds this exact file" in stats.log[-1]


def test_flash_cli_checks_the_manifest_sha256(small_tflite, tmp_path):
    from edge.firmware_bridge.cli import manifest_sha256
    from edge.manifest import Manifest

    model = tmp_path / "build" / "model_int8.tflite"
    model.parent.mkdir()
    model.write_bytes(small_tflite)
    manifest = Manifest(tmp_path / "runs" / "r1")
    run = manifest.begin("export", "cfg")
    run.output("tflite_int8", model)
    manifest.commit(run.finish())
    assert manifest_sha256(model, tmp_path / "runs", "r1") == hashlib.sha256(small_tflite).hexdigest()
    assert manifest_sha256(tmp_path / "other.tflite", tmp_path / "runs", "r1") is None
    model.write_bytes(small_tflite + b"\0")  # changed after export
    with PtyDevice() as board, SerialLink(board.path, 921600) as link, pytest.raises(UploadError) as info:
        upload_file(link, model.read_bytes(), expected_sha256=manifest_sha256(model, tmp_path / "runs", "r1"))
    assert "differs from the manifest's" in info.value.message and "re-run `edge export`" in info.value.hint


class _StaleAnswers(EmulatedDevice):
    """After every upload answer, replay 256 old-looking 'hash = the right sha256' answers (one per
    sequence number), as retransmissions from an earlier session could leave in the pipe."""

    def __init__(self, claimed: bytes) -> None:
        super().__init__()
        digest = hashlib.sha256(claimed).digest()
        self.fakes = b"".join(
            sp.encode_frames(sp.SmpMessage(sp.OP_READ_RSP, sp.GROUP_FS, sp.CMD_FS_HASH, seq,
                                           {"type": "sha256", "len": len(claimed), "output": digest}).encode())
            for seq in range(256)
        )

    def feed(self, data: bytes) -> bytes:
        out = super().feed(data)
        answers = [sp.decode_message(p) for p in sp.FrameDecoder().feed(out)]
        if any(a.group == sp.GROUP_FS and a.command == sp.CMD_FS_FILE for a in answers):
            out += self.fakes
        return out


def test_stale_hash_answers_never_confirm_a_corrupt_model(tiny_tflite):
    device = _StaleAnswers(tiny_tflite)
    device.flash = device.smp.flash = device.mlperf.flash = _BadFlash()
    with PtyDevice(device) as board, SerialLink(board.path, 921600) as link:
        with pytest.raises(UploadError, match="the stored model is NOT valid"):
            upload_file(link, tiny_tflite)
        assert bytes(board.device.flash.files[MODEL_FILE]) != tiny_tflite


def test_flash_and_bench_over_a_socket_url(tiny_tflite):
    from edge.firmware_bridge.bench import random_inputs, run_bench
    from edge.firmware_bridge.emulation.pty_device import TcpDevice
    from edge.firmware_bridge.mlperf import MlperfDut

    with TcpDevice() as board:
        assert board.path.startswith("socket://127.0.0.1:")
        with SerialLink(board.path, 115200) as link:
            upload_file(link, tiny_tflite)
            report = run_bench(MlperfDut(link), random_inputs(tiny_tflite, 2), runs=2, warmups=0, model=tiny_tflite)
        assert report.local_match is True
        with SerialLink(board.path, 115200) as link:  # a second connection finds the model still there
            assert upload_file(link, tiny_tflite).resumed_from == len(tiny_tflite)


# --- raw framing (Zephyr's raw UART SMP transport): no base64, no CRC on the wire ---
RAW = sp.framing("raw", raw_input_timeout_s=0.05)


def test_raw_framing_upload_stores_the_exact_model_checking_each_window(small_tflite):
    with PtyDevice(framing=RAW) as board, SerialLink(board.path, 921600) as link:
        stats = upload_file(link, small_tflite, framing=RAW, options=UploadOptions(verify_every=2048))
        assert bytes(board.device.flash.files[MODEL_FILE]) == small_tflite
    assert stats.device_sha256 == hashlib.sha256(small_tflite).hexdigest()
    assert stats.restarts == 0 and stats.timeouts == 0
    assert stats.retries == 1  # "file not found" on the fresh device: an error is believed when repeated
    assert stats.crc_checks == (len(small_tflite) - 1) // 2048  # the last window is covered by the sha256
    assert stats.wire_bytes_out < 1.1 * len(small_tflite)  # the console framing needs > 1.33x


def test_raw_framing_catches_corrupt_stored_bytes_at_the_next_window(small_tflite):
    flash = _BadFlash()
    flash.bad_writes = 1
    with _board_with(flash, RAW) as board, SerialLink(board.path, 921600) as link:
        stats = upload_file(link, small_tflite, framing=RAW, options=UploadOptions(verify_every=2048))
        assert bytes(board.device.flash.files[MODEL_FILE]) == small_tflite
    assert stats.restarts == 1
    assert stats.log[0].startswith("device CRC32 of bytes 0-2048 is ")  # found long before the final sha256


def test_raw_framing_that_keeps_corrupting_says_to_use_the_console_framing(tiny_tflite):
    with _board_with(_BadFlash(), RAW) as board, SerialLink(board.path, 921600) as link:
        with pytest.raises(UploadError) as info:
            upload_file(link, tiny_tflite, framing=RAW, options=UploadOptions(verify_every=512))
        assert bytes(board.device.flash.files[MODEL_FILE]) != tiny_tflite
    assert "after 3 attempts" in info.value.message and info.value.exit_code == 3
    assert info.value.hint.endswith("the raw framing has no CRC, so try --framing console")


def test_raw_uploads_on_a_line_with_rare_bad_bytes(small_tflite):
    """1 bad byte in 10,000: lost or refused requests are resent after the device's input timeout,
    corrupt stored data is caught by the window CRC32; no corrupt model is ever reported flashed."""
    faults = Faults(drop=0.00005, flip=0.00005, seed=2)
    ok = 0
    with PtyDevice(faults=faults, framing=RAW) as board, SerialLink(board.path, 921600, timeout_s=1.0) as link:
        for _ in range(6):
            board.device.flash.files.pop(MODEL_FILE, None)
            try:
                upload_file(link, small_tflite, framing=RAW, options=UploadOptions(verify_every=2048))
            except DeviceError as exc:
                assert exc.exit_code == 3 and exc.hint
                continue
            assert bytes(board.device.flash.files[MODEL_FILE]) == small_tflite
            ok += 1
    assert faults.dropped + faults.flipped >= 3
    assert ok >= 5


def test_flash_cli_over_the_raw_framing_of_an_emulator_process(tmp_path, tiny_tflite):
    model = tmp_path / "model_int8.tflite"
    model.write_bytes(tiny_tflite)
    with emulator_ports("--framing", "raw", "--line-rate", "921600", seconds=60) as (port,):
        flash = ["flash", "--port", port, "--baud", "921600", "--model", str(model), "--framing", "raw", "--quiet",
                 "--runs-dir", str(tmp_path)]
        done = run_edge(*flash, timeout=60)
        assert done.returncode == 0, done.stderr
        assert f"device sha256 {hashlib.sha256(tiny_tflite).hexdigest()} = local file sha256" in done.stdout
        bad = run_edge(*flash, "--raw-timeout-ms", "0", timeout=60)
        assert bad.returncode == 2 and "--raw-timeout-ms must be positive, got 0.0" in bad.stderr
