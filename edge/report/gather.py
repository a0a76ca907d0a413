"""Read a run as the report sees it: stage records, metrics and hash-checked artifacts (no recomputation).

An artifact whose file changed after its stage recorded it (another run exported to the same
`build/<target>/`, a hand edit) is not read: the report says so instead of showing another run's figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ConfigError
from edge.manifest import ArtifactRef, Manifest, StageRecord
from edge.report.content import Basis, Figure


@dataclass(frozen=True)
class Artifact:
    """A verified artifact: where it is and what the manifest says about it."""

    stage: str
    key: str
    path: Path
    ref: ArtifactRef

    @property
    def source(self) -> str:
        """`stage.key (path)` for a figure's source line."""
        return f"{self.stage}.{self.key} ({self.ref.path})"


class RunView:
    """A run's manifest with safe accessors; remembers which artifacts were read and what was missing."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.manifest = Manifest(self.run_dir)
        if not self.manifest.file.exists():
            raise ConfigError("no run here: manifest.json is missing", where=str(self.manifest.file),
                              hint="run the pipeline first (`edge run --run NAME`)")
        self.used: dict[str, ArtifactRef] = {}
        self.problems: dict[str, str] = {}  # "stage.key" -> why it was not read

    @property
    def name(self) -> str:
        """The run's name."""
        return self.run_dir.name

    def record(self, stage: str) -> StageRecord | None:
        """The stage's record, or None when it has not run."""
        return self.manifest.stages.get(stage)

    def metrics(self, stage: str) -> dict[str, Any]:
        """The stage's metrics ({} when it has not run)."""
        record = self.record(stage)
        return dict(record.metrics) if record else {}

    def metric(self, stage: str, key: str, default: Any = None) -> Any:
        """One recorded metric, or `default`."""
        return self.metrics(stage).get(key, default)

    def figure(self, stage: str, key: str, label: str, unit: str = "", basis: Basis = "recorded",
               scale: float = 1.0) -> Figure | None:
        """A recorded metric as a figure sourced to the manifest, or None when the stage did not record it."""
        value = self.metric(stage, key)
        if value is None:
            return None
        if scale != 1.0 and isinstance(value, (int, float)):
            value = value * scale
        return Figure(label, value, unit, basis, f"manifest stages.{stage}.metrics.{key}")

    def artifact(self, stage: str, key: str) -> Artifact | None:
        """A stage's output, hash-checked against the manifest; None (and a problem noted) when it is absent
        or changed since."""
        record = self.record(stage)
        if record is None or key not in record.outputs:
            return None
        try:
            path = self.manifest.artifact(stage, key)
        except ConfigError as exc:
            self.problems[f"{stage}.{key}"] = exc.message
            return None
        ref = record.outputs[key]
        self.used[f"{stage}.{key}"] = ref
        return Artifact(stage, key, path, ref)

    def json(self, stage: str, key: str) -> tuple[dict[str, Any], Artifact] | None:
        """A JSON artifact's content with its reference, or None."""
        art = self.artifact(stage, key)
        if art is None:
            return None
        try:
            data = json.loads(art.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.problems[f"{stage}.{key}"] = f"unreadable: {exc}"
            return None
        return (data, art) if isinstance(data, dict) else None

    def problems_of(self, *stages: str) -> list[str]:
        """The noted problems of artifacts of these stages, as sentences."""
        return [f"{key}: {why}" for key, why in self.problems.items() if key.split(".")[0] in stages]


def dig(data: Any, *path: str | int, default: Any = None) -> Any:
    """`data[p0][p1]...`, or `default` when any step is missing (other engineers change these files)."""
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return default
    return data


def _without_seeds(tree: Any) -> Any:
    """The config with every `seed` key left out (recursively)."""
    if isinstance(tree, dict):
        return {k: _without_seeds(v) for k, v in tree.items() if k != "seed"}
    return tree


def seeds_of(config: dict[str, Any]) -> dict[str, Any]:
    """`section.seed` -> value for every section that has a seed."""
    return {f"{k}.seed": v["seed"] for k, v in config.items() if isinstance(v, dict) and "seed" in v}


def seed_siblings(view: RunView) -> list[Manifest]:
    """This run and the runs beside it whose config differs only in seeds (the stability check's sample)."""
    mine = _without_seeds(view.manifest.config)
    found = [view.manifest]
    for folder in sorted(view.run_dir.parent.iterdir()):
        if folder == view.run_dir or not (folder / "manifest.json").is_file():
            continue
        try:
            other = Manifest(folder)
        except ConfigError:
            continue  # another version's or a damaged manifest: not a sample
        if _without_seeds(other.config) == mine:
            found.append(other)
    return found
