"""A device's energy per state: sleep power, per-motion wake cost, per-capture, inference, uplink, beacon.

All energies are at the load; the battery sees them through the regulator: battery charge =
energy / (nominal pack voltage x regulator efficiency), plus the regulator's quiescent current.
(Using the nominal pack voltage keeps energy and charge consistent; see docs/power.md.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge.power.profiles import load_camera, load_cell, load_mcu, load_motion, load_radio
from edge.power.schema import CameraProfile, CellProfile, DeviceProfile, McuProfile, MotionProfile, RadioProfile

STATES = ("sleep", "wake", "capture", "inference", "uplink", "beacon")


@dataclass(frozen=True)
class PeakLoad:
    """The largest simultaneous load of one state, as battery current."""

    state: str
    battery_current_mA: float
    duration_ms: float


@dataclass(frozen=True)
class DeviceModel:
    """What the simulator needs, derived from a device profile, its parts and the inference cost."""

    name: str
    cell: CellProfile
    cells_in_series: int
    cells_in_parallel: int
    pack_V: float
    regulator_efficiency: float
    regulator_quiescent_current_uA: float
    min_voltage_V: float
    sleep_power_uW: float
    wake_energy_uJ: float  # per PIR pulse
    pulses_per_motion: float
    capture_energy_uJ: float  # per accepted event (camera power-up + frames + MCU)
    inference_energy_uJ: float  # per accepted event (frames_per_event inferences)
    uplink_energy_uJ: float  # per uplink (repeats included)
    uplink_probability: float  # per accepted event
    beacon_power_uW: float  # periodic status packets, averaged
    refractory_s: float
    inference_latency_ms: float
    event_time_ms: float  # awake time of one accepted event (capture + inference + uplink)
    peaks: tuple[PeakLoad, ...] = field(default_factory=tuple)

    def battery_current_uA(self, power_uW: float) -> float:
        """Battery current for a load power (regulator included, quiescent excluded)."""
        return power_uW / (self.pack_V * self.regulator_efficiency)

    def charge_uC(self, energy_uJ: float) -> float:
        """Battery charge for a load energy."""
        return energy_uJ / (self.pack_V * self.regulator_efficiency)

    @property
    def sleep_current_uA(self) -> float:
        """Battery current while sleeping (regulator quiescent current included)."""
        return self.battery_current_uA(self.sleep_power_uW) + self.regulator_quiescent_current_uA

    @property
    def peak(self) -> PeakLoad:
        """The largest peak over all states."""
        return max(self.peaks, key=lambda p: p.battery_current_mA)

    def event_charge_uC(self) -> float:
        """Expected battery charge of one accepted event (its motion's PIR pulses included)."""
        energy = (self.pulses_per_motion * self.wake_energy_uJ + self.capture_energy_uJ + self.inference_energy_uJ
                  + self.uplink_probability * self.uplink_energy_uJ)
        return self.charge_uC(energy)


@dataclass(frozen=True)
class _Parts:
    """The profiles a device names."""

    mcu: McuProfile
    camera: CameraProfile
    motion: MotionProfile
    radio: RadioProfile | None
    cell: CellProfile


def _load_parts(device: DeviceProfile, root: Path | None) -> _Parts:
    """Load the MCU, camera, motion sensor, radio (if any) and cell profiles of `device`."""
    return _Parts(mcu=load_mcu(device.mcu, root), camera=load_camera(device.camera, root),
                  motion=load_motion(device.motion, root),
                  radio=load_radio(device.radio, root) if device.radio else None, cell=load_cell(device.cell, root))


def _sleep_power_uW(device: DeviceProfile, parts: _Parts) -> float:
    """Load power while asleep: MCU, PIR, other parts, the camera unless power-gated, the radio."""
    mcu, cam, pir, radio = parts.mcu, parts.camera, parts.motion, parts.radio
    sleep = mcu.sleep_power_uW + pir.quiescent_current_uA * pir.supply_V
    sleep += device.other_sleep_current_uA * mcu.supply_V
    if not device.camera_power_gated:
        sleep += cam.standby_current_uA * cam.supply_V
    if radio is not None:
        sleep += radio.sleep_current_uA * radio.supply_V
    return sleep


def _capture(device: DeviceProfile, parts: _Parts) -> tuple[float, float]:
    """(energy uJ, time ms) of one capture: camera power-up, settle + event frames, the MCU running throughout."""
    cam, beh, run = parts.camera, device.behaviour, parts.mcu.run_power_uW
    mode = cam.modes[device.camera_mode or cam.default_mode]
    frames = cam.settle_frames + beh.frames_per_event
    capture_ms = cam.power_up_time_ms + frames * mode.frame_time_ms + beh.frames_per_event * beh.capture_overhead_ms
    capture = (cam.power_up_current_uA * cam.supply_V * cam.power_up_time_ms * 1e-3
               + frames * cam.frame_energy_uJ(device.camera_mode) + run * capture_ms * 1e-3)
    return capture, capture_ms


@dataclass(frozen=True)
class _RadioLoads:
    """What the radio costs: per uplink (repeats included), its probability per event, and beacons."""

    probability: float = 0.0
    uplink_uJ: float = 0.0
    uplink_ms: float = 0.0
    beacon_uW: float = 0.0


def _radio_loads(device: DeviceProfile, parts: _Parts) -> _RadioLoads:
    """The uplink per accepted event (by behaviour.uplink) and the averaged beacon power; nothing without a radio."""
    beh, radio, mcu = device.behaviour, parts.radio, parts.mcu
    if radio is None:
        return _RadioLoads()
    prob = {"never": 0.0, "on_detection": beh.detection_fraction, "always": 1.0}[beh.uplink]
    run = mcu.run_power_uW
    packet_ms = radio.packet_time_ms(beh.payload_bytes)
    uplink = beh.uplink_repeats * (radio.packet_energy_uJ(beh.payload_bytes) + run * packet_ms * 1e-3)
    beacon = 0.0
    if beh.beacon_interval_s:
        one = radio.packet_energy_uJ(beh.payload_bytes) + mcu.wakeup_uJ + run * packet_ms * 1e-3
        beacon = one / beh.beacon_interval_s
    return _RadioLoads(probability=prob, uplink_uJ=uplink, uplink_ms=beh.uplink_repeats * packet_ms, beacon_uW=beacon)


def _peaks(device: DeviceProfile, parts: _Parts, sleep_uW: float, pack_V: float, capture_ms: float,
           inference_ms: float) -> tuple[PeakLoad, ...]:
    """The battery current of each awake state: the sleeping parts (MCU excepted) + the MCU running + the
    state's own part at its largest draw."""
    mcu, cam, radio, beh = parts.mcu, parts.camera, parts.radio, device.behaviour
    mode = cam.modes[device.camera_mode or cam.default_mode]

    def batt_mA(power_uW: float) -> float:
        return (power_uW / (pack_V * device.regulator_efficiency) + device.regulator_quiescent_current_uA) * 1e-3

    base, run = sleep_uW - mcu.sleep_power_uW, mcu.run_power_uW
    cam_uW = max(mode.active_current_uA * cam.supply_V, cam.power_up_current_uA * cam.supply_V)
    peaks = [
        PeakLoad("wake", batt_mA(base + run), beh.wake_active_ms),
        PeakLoad("capture", batt_mA(base + run + cam_uW), capture_ms),
        PeakLoad("inference", batt_mA(base + run), inference_ms),
    ]
    if radio is not None:
        peaks.append(PeakLoad("uplink", batt_mA(base + run + radio.tx_current_uA * radio.supply_V),
                              radio.packet_time_ms(beh.payload_bytes)))
    return tuple(peaks)


def build_device(
    device: DeviceProfile,
    inference_energy_uJ: float,
    inference_latency_ms: float,
    root: Path | None = None,
) -> DeviceModel:
    """Compose the device from its parts; `inference_*` come from the cost model (one frame)."""
    parts = _load_parts(device, root)
    beh = device.behaviour
    sleep = _sleep_power_uW(device, parts)
    wake = parts.mcu.wakeup_uJ + parts.mcu.run_power_uW * beh.wake_active_ms * 1e-3
    capture, capture_ms = _capture(device, parts)
    inference = beh.frames_per_event * inference_energy_uJ
    inference_ms = beh.frames_per_event * inference_latency_ms
    radio = _radio_loads(device, parts)
    pack_V = parts.cell.nominal_V * device.cells_in_series
    return DeviceModel(
        name=device.name,
        cell=parts.cell,
        cells_in_series=device.cells_in_series,
        cells_in_parallel=device.cells_in_parallel,
        pack_V=pack_V,
        regulator_efficiency=device.regulator_efficiency,
        regulator_quiescent_current_uA=device.regulator_quiescent_current_uA,
        min_voltage_V=device.min_voltage_V,
        sleep_power_uW=sleep,
        wake_energy_uJ=wake,
        pulses_per_motion=parts.motion.pulses_per_motion,
        capture_energy_uJ=capture,
        inference_energy_uJ=inference,
        uplink_energy_uJ=radio.uplink_uJ,
        uplink_probability=radio.probability,
        beacon_power_uW=radio.beacon_uW,
        refractory_s=beh.refractory_s,
        inference_latency_ms=inference_latency_ms,
        event_time_ms=capture_ms + inference_ms + radio.probability * radio.uplink_ms,
        peaks=_peaks(device, parts, sleep, pack_V, capture_ms, inference_ms),
    )
