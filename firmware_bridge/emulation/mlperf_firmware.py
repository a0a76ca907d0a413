"""The MLPerf Tiny DUT firmware's command line (mlcommons/tiny's reference), running the stored model in TFLM.

Reported timings (the `m-lap-us-` stamps) come from the cost model `edge.power.cost` when it
can estimate the model on the emulated MCU profile, otherwise from the host's measured
TFLM time; `profile%` says which in an extra `m-timing-[...]` line.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from contextlib import AbstractContextManager
from typing import Protocol

import numpy as np

from edge.firmware_bridge.emulation.flash import MODEL_FILE, Flash
from edge.firmware_bridge.model_runner import ModelRunner, costmodel_estimate, format_results
from edge.paths import DEFAULT_MCU

FW_VERSION = "ULPMark for tinyML Firmware V0.0.1"  # EE_FW_VERSION in the reference firmware
DEVICE_NAME = "dut"
VENDOR = "edge-emulator"
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
        # an emulated energy monitor powering this DUT (lpm01a.DutActivity): told of every
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
