"""Type-check the `edge` package with mypy (configured in pyproject.toml's [tool.mypy]).

The package maps folders under one import root (`edge.training` is `training/`, see pyproject's
`package-dir`), which the editable install does with an import hook that mypy cannot follow. So this
script lays out the package as Python sees it, as symlinks under .mypy_cache/tree/, runs mypy there
(its cache in .mypy_cache/) and prints mypy's messages with the repository's own paths.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".mypy_cache"
MAPPED = {"training": "training", "export": "export", "firmware_bridge": "firmware_bridge"}  # edge.<key> -> folder


def link_tree(into: Path) -> Path:
    """`into/edge/...` as symlinks laid out as the installed package (made afresh); returns `into/edge`."""
    shutil.rmtree(into, ignore_errors=True)
    package = into / "edge"
    package.mkdir(parents=True)
    for entry in (ROOT / "edge").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, folder in MAPPED.items():
        (package / name).symlink_to(ROOT / folder)
    return package


def repo_paths(text: str) -> str:
    """mypy's messages with the tree's paths (edge/training/x.py) replaced by the repository's."""
    for name, folder in MAPPED.items():
        text = text.replace(f"edge/{name}/", f"{folder}/")
    return text


def main(argv: list[str]) -> int:
    """Run mypy on the package; extra arguments go to mypy. Returns mypy's exit status."""
    tree = CACHE / "tree"
    link_tree(tree)
    os.chdir(tree)
    out, err, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(CACHE / "cache"), "-p", "edge", *argv]
    )
    sys.stdout.write(repo_paths(out))
    sys.stderr.write(repo_paths(err))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
