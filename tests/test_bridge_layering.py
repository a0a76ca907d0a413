"""The bridge's host side (what talks to real boards) imports nothing from the emulated board."""

from __future__ import annotations

import ast
from pathlib import Path

BRIDGE = Path(__file__).resolve().parent.parent / "firmware_bridge"
EMULATION = "edge.firmware_bridge.emulation"


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_host_side_imports_no_emulation() -> None:
    host = sorted(BRIDGE.glob("*.py"))
    assert host and (BRIDGE / "emulation" / "board.py").is_file()
    offenders = {p.name: sorted(n for n in _imports(p) if n.startswith(EMULATION)) for p in host}
    assert {name: found for name, found in offenders.items() if found} == {}
