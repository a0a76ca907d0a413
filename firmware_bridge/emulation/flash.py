"""The emulated board's flash: named files (the model, MCUboot slots), optionally kept in a folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MODEL_FILE = "/lfs/model.tflite"


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
