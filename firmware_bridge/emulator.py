"""An emulated board: MLPerf Tiny DUT firmware + an mcumgr SMP server (files, images) + TFLite Micro.

`EmulatedDevice.feed(bytes) -> bytes` is the whole firmware as a byte-in/byte-out machine:
lines that start with the SMP markers (0x06 0x09 / 0x04 0x14) go to the SMP server (as in
Zephyr's shell transport), everything else is the MLPerf Tiny command line (`...%`). Uploaded
files live in a dict (the board's flash), optionally mirrored to a folder so they survive a
restart. `infer` runs the stored model in the `tflite_micro` interpreter. MCUboot slots are
flash entries `image-0` (the running firmware, if a test puts one there) and `image-1` (where
image uploads go, as Zephyr's img_mgmt with one updatable image).

Reported timings (the `m-lap-us-` stamps) come from the cost model `edge.power.cost` when it
can estimate the model on the emulated MCU profile, otherwise from the host's measured
TFLM time; `profile%` says which in an extra `m-timing-[...]` line.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import struct
import tempfile
import time
import zlib
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edge.firmware_bridge import smp_serial as sp
from edge.firmware_bridge.mcuboot import IMAGE_HEADER_SIZE, IMAGE_MAGIC, ImageFormatError, McubootImage, parse_image

FW_VERSION = "ULPMark for tinyML Firmware V0.0.1"  # EE_FW_VERSION in the reference firmware
DEVICE_NAME = "dut"
VENDOR = "edge-emulator"
MODEL_FILE = "/lfs/model.tflite"
MAX_DB_INPUT_SIZE = 96 * 96 * 3  # the reference firmware's default buffer
EE_CMD_SIZE = 80  # the reference firmware keeps the first 80 characters of a command
DB_PRINT_PER_LINE = 8
HELP = (  # ee_profile_parse's `help`, byte for byte (typos included)
    f"{FW_VERSION}\r\n"
    "\r\n"
    "help         : Print this information\r\n"
    "name         : Print the name of the device\r\n"
    "timestsamp   : Generate a timetsamp\r\n"
    "db SUBCMD    : Manipulate a generic byte buffer\r\n"
    "  load N     : Allocate N bytes and set load counter\r\n"
    "  db HH[HH]* : Load 8-bit hex byte(s) until N bytes\r\n"
    "  print [N=16] [offset=0]\r\n"
    "             : Print N bytes at offset as hex\r\n"
    "infer N [W=0]: Load input, execute N inferences after W warmup loops\r\n"
    "results      : Return the result fp32 vector\r\n"
)
SMP_BUF_SIZE = 2048
SMP_BUF_COUNT = 4
ARENA_BYTES = 512 * 1024
SLOT_SIZE = 448 * 1024  # the emulated MCUboot slot partitions (nRF52840's default slot1_partition)
DEFAULT_MCU = "nrf52840"  # the MCU profile of the default cortex-m target (power_profiles/targets.yaml)


class ModelRunner:
    """One .tflite in the TFLM interpreter: int8/uint8 input bytes in, dequantised floats out."""

    def __init__(self, model: bytes, arena_bytes: int = ARENA_BYTES) -> None:
        from tflite_micro.python.tflite_micro import runtime

        self.sha256 = hashlib.sha256(model).hexdigest()
        self.interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_bytes)
        self.input = self.interpreter.get_input_details(0)
        self.output = self.interpreter.get_output_details(0)
        self.input_bytes = int(np.prod(self.input["shape"])) * np.dtype(self.input["dtype"]).itemsize

    def run(self, data: bytes, times: int = 1) -> tuple[np.ndarray, float]:
        """Invoke `times` times on `data`; return (dequantised output, host seconds for all runs)."""
        tensor = np.frombuffer(data, dtype=self.input["dtype"]).reshape(self.input["shape"])
        self.interpreter.set_input(tensor, 0)
        start = time.perf_counter()
        for _ in range(times):
            self.interpreter.invoke()
        elapsed = time.perf_counter() - start
        return self._dequantize(self.interpreter.get_output(0).reshape(-1)), elapsed

    def _dequantize(self, raw: np.ndarray) -> np.ndarray:
        q = self.output["quantization_parameters"]
        if np.issubdtype(raw.dtype, np.integer) and len(q["scales"]):
            return dequantize_float32(raw, float(q["scales"][0]), int(q["zero_points"][0]))
        return raw.astype(np.float32)

    def idle_output(self) -> np.ndarray:
        """The output before any inference: a zeroed tensor, dequantised (what th_results prints then)."""
        return self._dequantize(np.zeros(int(np.prod(self.output["shape"])), dtype=self.output["dtype"]))


def dequantize_float32(raw: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integer outputs as the reference firmware dequantises them: `((float)q - zero_point) * scale` in
    float32 (mlcommons/tiny DequantizeInt8ToFloat). Float64 arithmetic rounds differently for some
    scales and then prints another `%0.3f` (-0.307 instead of -0.308)."""
    return (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def format_results(values: np.ndarray) -> str:
    """`m-results-[...]` exactly as the reference th_results prints it: each float32 value with %0.3f."""
    return "m-results-[" + ",".join(f"{float(np.float32(v)):0.3f}" for v in values) + "]"


@functools.lru_cache(maxsize=8)
def costmodel_estimate(model: bytes, mcu: str) -> tuple[float, float] | None:
    """(latency_ms, energy_uJ) of one inference from the cost model `edge.power.cost` on the
    MCU profile `mcu` (power_profiles/mcus/), or None if the cost model or profile is missing."""
    try:
        from edge.power.cost import estimate
        from edge.power.profiles import load_mcu
        from edge.power.tflite_graph import parse_tflite
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        try:
            cost = estimate(parse_tflite(path), load_mcu(mcu))
        except Exception:  # an unknown MCU or an op the cost model cannot size: fall back to host time
            return None
    return (cost.latency_ms, cost.energy_uJ) if cost.latency_ms > 0 else None


@dataclass
class Flash:
    """The board's file system: name -> bytes, optionally mirrored to a folder."""

    folder: Path | None = None
    files: dict[str, bytearray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            for path in self.folder.glob("*.bin"):
                self.files[bytes.fromhex(path.stem).decode()] = bytearray(path.read_bytes())

    def write(self, name: str, offset: int, data: bytes) -> None:
        """Truncate at `offset` == 0, else append at `offset` (must equal the current length)."""
        content = self.files.setdefault(name, bytearray())
        if offset == 0:
            content.clear()
        content[offset:] = data
        self._persist(name)

    def _persist(self, name: str) -> None:
        if self.folder is not None:
            from edge.atomic import atomic_write_bytes

            atomic_write_bytes(self.folder / f"{name.encode().hex()}.bin", bytes(self.files[name]))


def slot_name(slot: int) -> str:
    """The emulated flash entry of MCUboot slot `slot` (Zephyr's partition name image-N)."""
    return f"image-{slot}"


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


class Activity(Protocol):
    """What a DUT tells the energy monitor that powers it (times in the DUT's microsecond clock)."""

    def edge(self, t_us: int) -> None:
        """th_timestamp: a falling edge on the timestamp GPIO (the monitor's D7 event input)."""

    def inference(self, start_us: int, end_us: int, power_W: float | None) -> None:
        """The timed runs of `infer N W` span [start_us, end_us) at `power_W` (None: not modelled);
        their two th_timestamp edges are implied."""

    def hold(self) -> AbstractContextManager:
        """Held while the DUT reads its clock and reports an inference (the monitor waits)."""


class MlperfFirmware:
    """The MLPerf Tiny DUT command set over the emulated flash's model."""

    def __init__(self, flash: Flash, *, target: str = DEFAULT_MCU, model_file: str = MODEL_FILE) -> None:
        self.flash = flash
        self.target = target
        self.model_file = model_file
        self.memory = bytearray(MAX_DB_INPUT_SIZE)  # gp_buff: kept across loads, as in the firmware
        self.buffer_size = 0  # g_buff_size
        self.buffer_pos = 0  # g_buff_pos
        self.last_results: np.ndarray | None = None
        self._runner: ModelRunner | None = None
        self._boot = time.monotonic()
        self._offset_us = 0
        # an emulated energy monitor powering this DUT (lpm01a_emulator.DutActivity): told of every
        # th_timestamp GPIO edge and of each inference run's window and modelled power
        self.activity: Activity | None = None

    def now_us(self) -> int:
        """The device's microsecond clock (host time since boot + emulated extra time)."""
        return int((time.monotonic() - self._boot) * 1e6) + self._offset_us

    def banner(self) -> str:
        """What the firmware prints at boot (ee_benchmark_initialize)."""
        return "m-timestamp-mode-performance\r\n" + self._lap() + "m-init-done\r\nm-ready\r\n"

    def _lap(self) -> str:
        now = self.now_us()
        if self.activity is not None:
            self.activity.edge(now)
        return f"m-lap-us-{now}\r\n"

    def runner(self) -> ModelRunner | None:
        """The interpreter for the stored model (reloaded when the file changed)."""
        model = self.flash.files.get(self.model_file)
        if not model:
            return None
        digest = hashlib.sha256(model).hexdigest()
        if self._runner is None or self._runner.sha256 != digest:
            self._runner = ModelRunner(bytes(model))
        return self._runner

    def timing_source(self) -> str:
        """'cost-model <target>' when the cost model covers the model, else 'host-measured'."""
        model = self.flash.files.get(self.model_file)
        if model and costmodel_estimate(bytes(model), self.target) is not None:
            return f"cost-model {self.target}"
        return "host-measured"

    def handle(self, command: str) -> str:
        """One `%`-terminated command (without the `%`) -> the reply text, ending in m-ready."""
        tokens = [t for t in command.split(" ") if t]
        head = tokens[0] if tokens else ""
        try:
            body = self._dispatch(head, tokens[1:])
        except Exception as exc:  # a firmware never dies on a command; it reports it
            body = f"e-[{type(exc).__name__}: {str(exc)[:60]}]\r\n"
        return body + "m-ready\r\n"

    def _dispatch(self, head: str, args: list[str]) -> str:
        if head == "name":
            return f"m-name-{DEVICE_NAME}-[{VENDOR}]\r\n"
        if head == "timestamp":
            return self._lap()
        if head == "profile":
            runner = self.runner()
            model = f"edge-{runner.sha256[:12]}" if runner else "none"
            return f"m-profile-[{FW_VERSION}]\r\nm-model-[{model}]\r\nm-timing-[{self.timing_source()}]\r\n"
        if head == "db":
            return self._db(args)
        if head == "infer":
            return self._infer(args)
        if head == "results":
            return self._results()
        if head == "help":
            return HELP
        return f"e-[Unknown command: {head}]\r\n"

    def _results(self) -> str:
        """th_results: the output tensor as it is; before any `infer` that is the zeroed arena, dequantised."""
        if self.last_results is None:
            runner = self.runner()
            if runner is None:
                return f"e-[No model at {self.model_file}: flash one first]\r\n"
            self.last_results = runner.idle_output()
        return format_results(self.last_results) + "\r\n"

    def _db_print(self) -> str:
        """`db print`: g_buff_size bytes of the buffer as `m-buffer-xx-xx-...` lines of 8 (its N/offset are ignored,
        as in the reference), plus an empty line when the size is not a multiple of 8."""
        out = []
        for i in range(self.buffer_size):
            if i % DB_PRINT_PER_LINE == 0:
                out.append("m-buffer-")
            out.append(f"{self.memory[i] if i < len(self.memory) else 0:02x}")
            last = (i + 1) % DB_PRINT_PER_LINE == 0 or i + 1 == self.buffer_size
            out.append("\r\n" if last else "-")
        if self.buffer_size % DB_PRINT_PER_LINE:
            out.append("\r\n")
        return "".join(out)

    def _db(self, args: list[str]) -> str:
        if not args:
            return "e-[Command 'db' requires a subcommand]\r\n"
        if args[0] == "load":
            if len(args) < 2:
                return "e-[Command 'db load' requires the # of bytes]\r\n"
            size = _atoi(args[1])
            if size == 0:
                return "e-[Command 'db load' must be >0 bytes]\r\n"
            self.buffer_size, self.buffer_pos = size, 0
            if not 0 < size <= MAX_DB_INPUT_SIZE:  # size_t: a negative N is huge; %d prints it back negative
                return f"Supplied buffer size {size} exceeds maximum of {MAX_DB_INPUT_SIZE}\n"
            return f"m-[Expecting {size} bytes]\r\n"
        if args[0] == "print":
            return self._db_print()
        digits = args[0]
        if len(digits) % 2:
            return "e-[Insufficent number of hex digits]\r\n"
        for i in range(0, len(digits), 2):
            pair = digits[i:i + 2]
            if any(ch not in "0123456789abcdefABCDEF" for ch in pair):
                return f"e-[Invalid hex digit '{pair}']\r\n"
            if self.buffer_pos < len(self.memory):  # the firmware would write past gp_buff; the emulator drops it
                self.memory[self.buffer_pos] = int(pair, 16)
            self.buffer_pos += 1
            if self.buffer_pos == self.buffer_size:
                return "m-load-done\r\n"
        return ""

    def _infer(self, args: list[str]) -> str:
        runs, warmups = 1, 10
        if args:
            runs = _atoi(args[0])
            if runs <= 0:
                return "e-[Inference iterations must be >0]\r\n"
            if len(args) > 1:
                warmups = _atoi(args[1])
                if warmups < 0:
                    return "e-[Inference warmup must be >=0]\r\n"
        runner = self.runner()
        if runner is None:
            return f"e-[No model at {self.model_file}: flash one first]\r\n"
        held = min(self.buffer_pos, len(self.memory), runner.input_bytes)  # ee_get_buffer(buf, input bytes)
        # th_load_tensor complains (bare LF, no e- prefix), then the stale tensor runs anyway
        expected = runner.input_bytes
        complaint = f"Input db has {held} elemented, expected {expected}\n" if held != expected else ""
        tensor = bytes(self.memory[:runner.input_bytes])
        out = [f"m-warmup-start-{warmups}"]
        if warmups:
            runner.run(tensor, warmups)
        out += ["m-warmup-done", f"m-infer-start-{runs}"]
        values, host_s = runner.run(tensor, runs)
        modelled = costmodel_estimate(bytes(self.flash.files[self.model_file]), self.target)
        elapsed_us = round(runs * modelled[0] * 1000) if modelled is not None else round(host_s * 1e6)
        # the emulated runs start now (after the host computed them) and take elapsed_us of device time;
        # an attached monitor does not read the clock in between
        with self.activity.hold() if self.activity is not None else contextlib.nullcontext():
            start = self.now_us()
            end = start + max(1, elapsed_us)
            self._offset_us += max(0, end - self.now_us())
            if self.activity is not None:
                power_W = modelled[1] / modelled[0] * 1e-3 if modelled is not None else None
                self.activity.inference(start, end, power_W)
        self.last_results = values
        out += [f"m-lap-us-{start}", f"m-lap-us-{end}", "m-infer-done", format_results(values)]
        return complaint + "\r\n".join(out) + "\r\n"


def _atoi(text: str) -> int:
    """C atoi: leading sign and digits, 0 if none."""
    digits = ""
    for i, ch in enumerate(text):
        if ch.isdigit() or (i == 0 and ch in "+-"):
            digits += ch
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


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
