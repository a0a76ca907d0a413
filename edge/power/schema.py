"""Strict schemas of the power profiles in power_profiles/ (units live in the field names).

Every profile lists its `sources` (datasheets, papers, measurements). Unknown keys are rejected,
and so are NaN and infinity anywhere, negative or zero values where they mean nothing (a zero
sleep current), and physically impossible values (a sleep current above the run current, a
cutoff voltage above the nominal voltage, capacity tables that are not sorted or that disagree
with the rated capacity, ...). Zero is accepted only where it is a real setting: no regulator
(quiescent 0), no settle frames, no receive window, an ideal cell in tests (self-discharge or
internal resistance 0), no event rate.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CORES = ("cortex-m0+", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "cortex-m85", "xtensa-lx7", "riscv")


class Strict(BaseModel):
    """Base of every profile model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Sources = list[str]


def _sources() -> Sources:
    return Field(min_length=1, description="datasheets / papers the figures come from")


# ---------------------------------------------------------------------------------------- MCU
class KernelCosts(Strict):
    """Cycles per MAC (MAC-heavy op classes) and per output element (the rest) of one kernel library."""

    conv_cycles_per_mac: float = Field(gt=0, le=1000)
    depthwise_cycles_per_mac: float = Field(gt=0, le=1000)
    fully_connected_cycles_per_mac: float = Field(gt=0, le=1000)
    matmul_cycles_per_mac: float = Field(gt=0, le=1000)
    elementwise_cycles_per_element: float = Field(gt=0, le=10000)
    activation_cycles_per_element: float = Field(gt=0, le=10000)
    softmax_cycles_per_element: float = Field(gt=0, le=10000)
    reduce_cycles_per_element: float = Field(gt=0, le=10000)
    pooling_cycles_per_element: float = Field(gt=0, le=10000)
    data_movement_cycles_per_element: float = Field(gt=0, le=10000)
    other_cycles_per_element: float = Field(gt=0, le=10000)
    op_overhead_cycles: float = Field(gt=0, le=1e6, description="interpreter cost of invoking one op")


class Kernels(Strict):
    """Per-op-class costs for the optimised int8 library, the portable reference kernels and float32."""

    optimized_library: str = Field(min_length=1, description="e.g. 'CMSIS-NN 6', 'ESP-NN'")
    optimized: KernelCosts
    reference: KernelCosts
    float32: KernelCosts


class MeasuredRun(Strict):
    """A measured run power of this part in one setup (clock, supply, regulator), e.g. an MLPerf Tiny energy run."""

    clock_hz: int = Field(ge=1_000_000, le=2_000_000_000)
    supply_V: float = Field(gt=0, le=5.5)
    regulator: str = Field(min_length=1, description="e.g. 'SMPS', 'LDO', 'external SMPS', 'DC/DC'")
    power_uW: float = Field(gt=0, le=5e6, description="mean power while running inference")
    source: str = Field(min_length=1)


class McuProfile(Strict):
    """A microcontroller: memories, clock, currents, wake-up and inference kernel costs."""

    name: str
    part: str
    core: Literal[CORES]  # type: ignore[valid-type]
    clock_hz: int = Field(ge=1_000_000, le=2_000_000_000)
    flash_bytes: int = Field(gt=0)
    ram_bytes: int = Field(gt=0)
    supply_V: float = Field(gt=0, le=5.5)
    regulator: str = Field("not stated", description="core supply for run_current_uA: 'LDO', 'SMPS', 'DC/DC'")
    sleep_mode: str = Field(description="which low-power mode sleep_current_uA is for")
    sleep_current_uA: float = Field(gt=0)
    run_current_uA: float = Field(gt=0, description="typical, at clock_hz, code from flash")
    wakeup_time_us: float = Field(gt=0)
    wakeup_energy_uJ: float | None = Field(None, gt=0, description="default: wakeup_time x run power")
    kernels: Kernels
    mlperf_boards: list[str] = Field(
        default_factory=list, description="boards with this part in power_profiles/measurements/mlperf_tiny.yaml")
    measured_run: list[MeasuredRun] = Field(default_factory=list, description="measured run power per setup")
    sources: Sources = _sources()
    notes: str = ""

    @model_validator(mode="after")
    def _check(self) -> McuProfile:
        if self.sleep_current_uA >= self.run_current_uA:
            raise ValueError(
                f"impossible: sleep_current_uA {self.sleep_current_uA} is not below run_current_uA "
                f"{self.run_current_uA}"
            )
        per_mhz = self.run_current_uA / (self.clock_hz / 1e6)
        if not 5 <= per_mhz <= 2000:
            raise ValueError(
                f"impossible: run_current_uA {self.run_current_uA} at {self.clock_hz} Hz is {per_mhz:.1f} uA/MHz "
                "(real MCUs draw 5-2000 uA/MHz); check the unit"
            )
        return self

    @property
    def run_power_uW(self) -> float:
        """Active power at clock_hz from the datasheet run current (the battery's view of the MCU)."""
        return self.run_current_uA * self.supply_V

    def inference_power(self) -> tuple[float, str]:
        """Power while running inference and where it comes from: a measured run at clock_hz, else the
        datasheet run current x supply_V."""
        for run in self.measured_run:
            if run.clock_hz == self.clock_hz:
                return run.power_uW, (f"measured {run.power_uW / 1000:.1f} mW at {run.clock_hz / 1e6:g} MHz, "
                                      f"{run.supply_V:g} V {run.regulator} ({run.source})")
        return self.run_power_uW, (f"run current {self.run_current_uA:g} uA x {self.supply_V:g} V "
                                   f"({self.regulator}) of the profile, not a measured ML run")

    @property
    def sleep_power_uW(self) -> float:
        """Power in the sleep mode."""
        return self.sleep_current_uA * self.supply_V

    @property
    def wakeup_uJ(self) -> float:
        """Energy of one wake-up from sleep."""
        if self.wakeup_energy_uJ is not None:
            return self.wakeup_energy_uJ
        return self.run_power_uW * self.wakeup_time_us * 1e-6


# ------------------------------------------------------------------------------------- camera
class CameraMode(Strict):
    """One resolution / frame-rate setting."""

    width_px: int = Field(gt=0)
    height_px: int = Field(gt=0)
    frame_time_ms: float = Field(gt=0)
    active_current_uA: float = Field(gt=0)


class CameraProfile(Strict):
    """An image sensor: standby, power-up, per-frame cost per mode."""

    name: str
    part: str
    supply_V: float = Field(gt=0, le=5.5)
    standby_current_uA: float = Field(gt=0)
    power_up_time_ms: float = Field(gt=0, description="power-on to first valid frame, incl. register setup")
    power_up_current_uA: float = Field(gt=0)
    settle_frames: int = Field(ge=0, le=100, description="frames discarded while auto-exposure settles")
    modes: dict[str, CameraMode] = Field(min_length=1)
    default_mode: str
    sources: Sources = _sources()
    notes: str = ""

    @model_validator(mode="after")
    def _check(self) -> CameraProfile:
        if self.default_mode not in self.modes:
            raise ValueError(f"default_mode '{self.default_mode}' is not one of the modes {sorted(self.modes)}")
        for key, mode in self.modes.items():
            if self.standby_current_uA >= mode.active_current_uA:
                raise ValueError(f"impossible: standby_current_uA is not below modes.{key}.active_current_uA")
        return self

    def frame_energy_uJ(self, mode: str | None = None) -> float:
        """Energy of one frame in `mode` (default mode if None)."""
        m = self.modes[mode or self.default_mode]
        return m.active_current_uA * self.supply_V * m.frame_time_ms * 1e-3


# ------------------------------------------------------------------------------------- motion
class MotionProfile(Strict):
    """A PIR motion sensor."""

    name: str
    part: str
    supply_V: float = Field(gt=0, le=5.5)
    quiescent_current_uA: float = Field(gt=0)
    pulses_per_motion: float = Field(ge=1, le=100, description="output pulses per passing subject (mean)")
    warmup_time_s: float = Field(gt=0)
    sources: Sources = _sources()
    notes: str = ""


# -------------------------------------------------------------------------------------- radio
class BleParams(Strict):
    """Bluetooth LE advertising parameters."""

    bitrate_bps: float = Field(gt=0)
    channels_per_event: int = Field(ge=1, le=3)
    packet_overhead_bytes: int = Field(gt=0, description="preamble + access address + header + AdvA + CRC")
    max_payload_bytes: int = Field(gt=0)
    ramp_up_us: float = Field(gt=0)
    rx_listen_us: float = Field(ge=0, description="receive window after each advertising packet")


class LoraParams(Strict):
    """LoRa modulation parameters; time on air follows Semtech AN1200.13 / the SX1262 datasheet."""

    spreading_factor: int = Field(ge=5, le=12)
    bandwidth_Hz: float = Field(gt=0)
    coding_rate: int = Field(ge=1, le=4, description="1 = 4/5 ... 4 = 4/8")
    preamble_symbols: int = Field(ge=6, le=65535)
    explicit_header: bool = True
    crc: bool = True
    low_data_rate_optimize: bool | None = Field(None, description="None: on when symbol time >= 16 ms")
    mac_overhead_bytes: int = Field(ge=0, description="LoRaWAN MHDR+FHDR+FPort+MIC = 13")
    max_payload_bytes: int = Field(gt=0, le=255)
    rx_window_ms: float = Field(ge=0, description="class A receive windows after an uplink (no downlink)")

    @model_validator(mode="after")
    def _check(self) -> LoraParams:
        if self.bandwidth_Hz not in (7.8e3, 10.4e3, 15.6e3, 20.8e3, 31.25e3, 41.7e3, 62.5e3, 125e3, 250e3, 500e3):
            raise ValueError(f"impossible: bandwidth_Hz {self.bandwidth_Hz} is not a LoRa bandwidth (e.g. 125000)")
        return self

    def time_on_air_ms(self, payload_bytes: int) -> float:
        """Time on air of one packet with `payload_bytes` application bytes (plus MAC overhead)."""
        n = payload_bytes + self.mac_overhead_bytes
        sf, bw = self.spreading_factor, self.bandwidth_Hz
        t_sym_ms = (2**sf) / bw * 1e3
        ldro = self.low_data_rate_optimize if self.low_data_rate_optimize is not None else t_sym_ms >= 16.0
        de, ih, crc = int(ldro), int(not self.explicit_header), int(self.crc)
        num = 8 * n - 4 * sf + 28 + 16 * crc - 20 * ih
        payload_symbols = 8 + max(math.ceil(num / (4 * (sf - 2 * de))) * (self.coding_rate + 4), 0)
        return (self.preamble_symbols + 4.25 + payload_symbols) * t_sym_ms


class RadioProfile(Strict):
    """A radio: currents, start-up, and BLE or LoRa parameters."""

    name: str
    part: str
    kind: Literal["ble", "lora"]
    supply_V: float = Field(gt=0, le=5.5)
    sleep_current_uA: float = Field(ge=0, description="0 when the radio is part of the MCU and its sleep is there")
    tx_current_uA: float = Field(gt=0)
    rx_current_uA: float = Field(gt=0)
    tx_power_dBm: float = Field(ge=-40, le=30)
    startup_time_us: float = Field(gt=0)
    startup_current_uA: float = Field(gt=0)
    ble: BleParams | None = None
    lora: LoraParams | None = None
    sources: Sources = _sources()
    notes: str = ""

    @model_validator(mode="after")
    def _check(self) -> RadioProfile:
        if getattr(self, self.kind) is None:
            raise ValueError(f"kind '{self.kind}' needs a '{self.kind}:' section")
        other = "lora" if self.kind == "ble" else "ble"
        if getattr(self, other) is not None:
            raise ValueError(f"kind '{self.kind}' cannot have a '{other}:' section")
        if self.sleep_current_uA >= self.tx_current_uA:
            raise ValueError("impossible: sleep_current_uA is not below tx_current_uA")
        return self

    def packet_energy_uJ(self, payload_bytes: int) -> float:
        """Energy of sending one packet (BLE: one advertising event on all channels)."""
        v = self.supply_V
        start = self.startup_current_uA * v * self.startup_time_us * 1e-6
        if self.kind == "lora":
            assert self.lora is not None
            tx_ms = self.lora.time_on_air_ms(payload_bytes)
            rx_uJ = self.rx_current_uA * v * self.lora.rx_window_ms * 1e-3
            return start + self.tx_current_uA * v * tx_ms * 1e-3 + rx_uJ
        assert self.ble is not None
        b = self.ble
        air_us = (payload_bytes + b.packet_overhead_bytes) * 8 / b.bitrate_bps * 1e6
        tx_uJ = self.tx_current_uA * v * (b.ramp_up_us + air_us) * 1e-6
        per_channel = tx_uJ + self.rx_current_uA * v * b.rx_listen_us * 1e-6
        return start + b.channels_per_event * per_channel

    def packet_time_ms(self, payload_bytes: int) -> float:
        """Duration the radio is busy for one packet."""
        if self.kind == "lora":
            assert self.lora is not None
            return self.startup_time_us * 1e-3 + self.lora.time_on_air_ms(payload_bytes) + self.lora.rx_window_ms
        assert self.ble is not None
        b = self.ble
        air_us = (payload_bytes + b.packet_overhead_bytes) * 8 / b.bitrate_bps * 1e6
        return (self.startup_time_us + b.channels_per_event * (b.ramp_up_us + air_us + b.rx_listen_us)) * 1e-3


# --------------------------------------------------------------------------------------- cell
Point = tuple[float, float]


def _check_sorted(points: list[Point], what: str) -> None:
    xs = [p[0] for p in points]
    if any(b <= a for a, b in itertools.pairwise(xs)):
        raise ValueError(f"{what}: the first column must increase strictly (got {xs})")


class CellProfile(Strict):
    """A primary or rechargeable cell."""

    name: str
    part: str
    chemistry: str
    nominal_V: float = Field(gt=0, le=5)
    cutoff_V: float = Field(gt=0, le=5)
    capacity_mAh: float = Field(gt=0, le=100_000, description="rated capacity at rated_current_mA, 20 C")
    rated_current_mA: float = Field(gt=0)
    capacity_vs_load: list[Point] = Field(min_length=1, description="[current_mA, capacity_mAh] at 20 C")
    temperature_derating: list[Point] = Field(min_length=1, description="[temperature_C, capacity factor]")
    self_discharge_pct_per_year: float = Field(ge=0, le=100, description="at 20 C; doubles per +10 C")
    shelf_life_years: float | None = Field(None, gt=0, le=50, description="the cell's rated life; caps lifetimes")
    max_continuous_current_mA: float = Field(gt=0)
    max_pulse_current_mA: float = Field(gt=0)
    internal_resistance_ohm: float = Field(
        ge=0, le=1000, description="effective DC resistance under a pulse; the only pulse model (docs/power.md)")
    voltage_curve: list[Point] = Field(min_length=2, description="[depth of discharge 0..1, open-circuit V]")
    sources: Sources = _sources()
    notes: str = ""

    @model_validator(mode="after")
    def _check(self) -> CellProfile:
        if self.cutoff_V >= self.nominal_V:
            raise ValueError(f"impossible: cutoff_V {self.cutoff_V} is not below nominal_V {self.nominal_V}")
        if self.max_pulse_current_mA < self.max_continuous_current_mA:
            raise ValueError("impossible: max_pulse_current_mA is below max_continuous_current_mA")
        for what in ("capacity_vs_load", "temperature_derating", "voltage_curve"):
            _check_sorted(getattr(self, what), what)
        for current, cap in self.capacity_vs_load:
            if current <= 0 or cap <= 0:
                raise ValueError(f"capacity_vs_load: currents and capacities must be positive (got {current}, {cap})")
        for x, factor in self.temperature_derating:
            if not 0 <= factor <= 1.2:
                raise ValueError(f"impossible: temperature_derating factor {factor} at {x} is outside 0..1.2")
        dods = [p[0] for p in self.voltage_curve]
        if dods[0] != 0 or dods[-1] != 1:
            raise ValueError("voltage_curve must run from depth of discharge 0 to 1")
        if any(v <= 0 for _, v in self.voltage_curve):
            raise ValueError("impossible: voltage_curve voltages must be positive")
        self._check_rated_capacity()
        return self

    def _check_rated_capacity(self) -> None:
        """capacity_mAh must agree (5 %) with capacity_vs_load at rated_current_mA: one capacity, two forms."""
        currents = [math.log(c) for c, _ in self.capacity_vs_load]
        caps = [cap for _, cap in self.capacity_vs_load]
        x = min(max(math.log(self.rated_current_mA), currents[0]), currents[-1])
        table = caps[-1]
        for (x0, y0), (x1, y1) in itertools.pairwise(zip(currents, caps, strict=True)):
            if x0 <= x <= x1:
                table = y0 + (y1 - y0) * (x - x0) / (x1 - x0)
                break
        if len(caps) == 1:
            table = caps[0]
        if abs(table / self.capacity_mAh - 1) > 0.05:
            raise ValueError(
                f"capacity_mAh {self.capacity_mAh:g} disagrees with capacity_vs_load, which gives {table:.0f} mAh "
                f"at rated_current_mA {self.rated_current_mA:g} (more than 5 % apart): one of them is wrong")


# ------------------------------------------------------------------------------------- device
class EventSpec(Strict):
    """The process that generates motion events."""

    process: Literal["poisson", "diurnal", "bursty", "replay"] = "diurnal"
    rate_per_day: float = Field(12.0, ge=0, le=1e6)
    diurnal_amplitude: float = Field(0.8, ge=0, le=1, description="diurnal: rate(t) = mean (1 + a cos(...))")
    peak_hour: float = Field(18.0, ge=0, lt=24)
    cluster_mean_size: float = Field(3.0, ge=1, description="bursty: mean events per cluster")
    cluster_spread_s: float = Field(60.0, gt=0, description="bursty: mean offset of an event from its cluster start")
    replay_csv: str | None = Field(None, description="replay: CSV of trigger times, repeated over the lifetime")


class Behaviour(Strict):
    """The device state machine: sleep -> PIR wake -> capture -> inference -> uplink -> sleep."""

    refractory_s: float = Field(10.0, ge=0, description="retriggerable hold-off: motion within it is merged")
    frames_per_event: int = Field(1, ge=1, le=100)
    wake_active_ms: float = Field(2.0, gt=0, description="MCU awake per PIR pulse (ISR, debounce)")
    capture_overhead_ms: float = Field(5.0, ge=0, description="MCU awake per frame besides the camera time")
    uplink: Literal["never", "on_detection", "always"] = "on_detection"
    detection_fraction: float = Field(0.3, ge=0, le=1, description="share of events the model flags")
    payload_bytes: int = Field(10, ge=0)
    uplink_repeats: int = Field(1, ge=1, le=100)
    beacon_interval_s: float | None = Field(None, gt=0, le=1e7, description="periodic status packet (BLE adv / LoRa)")


class Environment(Strict):
    """Temperature over the year (daily means)."""

    temperature_mean_C: float = Field(20.0, ge=-60, le=85)
    temperature_seasonal_amplitude_C: float = Field(0.0, ge=0, le=60)
    coldest_day_of_year: int = Field(15, ge=0, lt=366)


class Uncertainty(Strict):
    """Relative standard deviations (lognormal) of uncertain inputs for Monte Carlo."""

    sleep_current_rel_sigma: float = Field(0.1, ge=0, le=2)
    active_energy_rel_sigma: float = Field(0.1, ge=0, le=2)
    event_rate_rel_sigma: float = Field(0.25, ge=0, le=2)
    capacity_rel_sigma: float = Field(0.05, ge=0, le=2)


class DeviceProfile(Strict):
    """A whole device composed of parts by profile name."""

    name: str
    description: str
    mcu: str
    camera: str
    camera_mode: str | None = None
    motion: str
    radio: str | None = None
    cell: str
    cells_in_series: int = Field(1, ge=1, le=16)
    cells_in_parallel: int = Field(1, ge=1, le=16)
    regulator_efficiency: float = Field(0.9, gt=0, le=1)
    regulator_quiescent_current_uA: float = Field(0.0, ge=0)
    other_sleep_current_uA: float = Field(0.0, ge=0, description="leakage, pull-ups, load switches")
    camera_power_gated: bool = Field(True, description="camera supply switched off between events")
    min_voltage_V: float = Field(gt=0, le=20, description="brown-out: the device stops below this battery voltage")
    behaviour: Behaviour = Behaviour()
    events: EventSpec = EventSpec()
    environment: Environment = Environment()
    uncertainty: Uncertainty = Uncertainty()
    sources: Sources = _sources()
    notes: str = ""
