"""An emulated board: MLPerf Tiny DUT firmware + an mcumgr SMP server (files, images) + TFLite Micro.

`EmulatedDevice.feed(bytes) -> bytes` is the whole firmware as a byte-in/byte-out machine:
lines that start with the SMP markers (0x06 0x09 / 0x04 0x14) go to the SMP server (as in
Zephyr's shell transport), everything else is the MLPerf Tiny command line (`...%`). Uploaded
files live in a dict (the board's flash), optionally mirrored to a folder so they survive a
restart. `infer` runs the stored model in the `tflite_micro` interpreter. MCUboot slots are
flash entries `image-0` (the running firmware, if a test puts one there) and `image-1` (where
image uploads go, as Zephyr's img_mgmt with one updatable image).
"""

from __future__ import annotations

from pathlib import Path

from edge.firmware_bridge import smp_serial as sp
from edge.firmware_bridge.emulation.flash import Flash
from edge.firmware_bridge.emulation.mlperf_firmware import EE_CMD_SIZE, MlperfFirmware
from edge.firmware_bridge.emulation.smp_server import SMP_BUF_SIZE, SmpServer
from edge.paths import DEFAULT_MCU


class EmulatedDevice:
    """Bytes in, bytes out: SMP packets to the SMP server, the rest to the MLPerf command line.

    `framing="console"` (default) shares the line as Zephyr's shell/console transport does;
    `framing="raw"` is Zephyr's raw UART transport, which owns the whole port: no text, so no
    MLPerf command line and no boot banner on it.
    """

    def __init__(
        self,
        *,
        store: Path | None = None,
        target: str = DEFAULT_MCU,
        buf_size: int = SMP_BUF_SIZE,
        framing: sp.Framing | None = None,
    ) -> None:
        self.flash = Flash(store)
        self.smp = SmpServer(self.flash, buf_size)
        self.mlperf = MlperfFirmware(self.flash, target=target)
        self.framing = framing or sp.framing("console")
        self.decoder = self.framing.new_decoder(buf_size)
        self._command = bytearray()

    def boot(self) -> bytes:
        """The boot banner (none on a raw SMP port)."""
        return b"" if self.framing.name == "raw" else self.mlperf.banner().encode()

    def reset_link_state(self) -> None:
        """Forget half-received frames and commands (after a disconnect); flash is kept."""
        self.decoder = self.framing.new_decoder(self.smp.buf_size)
        self._command.clear()

    def feed(self, data: bytes) -> bytes:
        """Process received bytes; return what the device sends back."""
        out = bytearray()
        for packet in self.decoder.feed(data):
            reply = self.smp.handle(packet)
            if reply is not None:
                out += self.framing.encode(reply)
        for byte in self.decoder.take_other():
            if byte == ord("%"):
                command = self._command.decode("ascii", errors="replace")
                self._command.clear()
                out += self.mlperf.handle(command).encode()
            elif len(self._command) < EE_CMD_SIZE:  # ee_serial_callback: later bytes land in slot 80, which the
                self._command.append(byte)  # terminator then overwrites with NUL: the command is its first 80
        return bytes(out)
