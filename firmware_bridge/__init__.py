"""edge.firmware_bridge: serial transport, MLPerf Tiny and SMP protocols, flashing, emulator."""
