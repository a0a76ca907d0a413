"""edge.firmware_bridge.emulation: an emulated board for tests and `edge emulator`, never used by the host side.

board (EmulatedDevice) = flash + smp_server (mcumgr, with mcuboot_slots) + mlperf_firmware (MLPerf
Tiny DUT); io_manager and lpm01a are the energy setup's IO manager and LPM01A energy monitor;
pty_device serves any of them on a pseudo-terminal or loopback TCP port; cli is `edge emulator`.
It may import the host side's protocol modules (smp_serial, mcuboot, transport, power_monitor) and
model_runner; the host side imports nothing from here.
"""
