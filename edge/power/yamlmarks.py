"""YAML loading that remembers where every key was, so schema errors can name file:line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge.config import UniqueKeyLoader, read_utf8
from edge.errors import ConfigError

Loc = tuple[str | int, ...]


@dataclass
class MarkedYaml:
    """Parsed YAML data plus the 1-based line of every mapping key and sequence item."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """Line of the deepest part of `loc` that exists in the file (1 if nothing matches)."""
        for cut in range(len(loc), -1, -1):
            if tuple(loc[:cut]) in self.lines:
                return self.lines[tuple(loc[:cut])]
        return 1

    def where(self, loc: Loc) -> str:
        """`file:line` for a location."""
        return f"{self.path}:{self.line_of(loc)}"


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            here = (*loc, key)
            lines[here] = key_node.start_mark.line + 1
            _walk(value_node, here, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            here = (*loc, index)
            lines[here] = item.start_mark.line + 1
            _walk(item, here, lines)


def load_marked(path: str | os.PathLike[str]) -> MarkedYaml:
    """Read a YAML file; errors (not UTF-8, not YAML, a key given twice) name the file and line."""
    path = Path(path)
    loader = UniqueKeyLoader(read_utf8(path, "profile"))  # a SafeLoader that refuses duplicate keys
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", where=where) from exc
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {(): 1}
    if node is not None:
        _walk(node, (), lines)
    return MarkedYaml(path, data, lines)
