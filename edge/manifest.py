"""The run manifest: one JSON file that every stage reads and writes (docs/architecture.md).

`runs/<name>/manifest.json` holds the resolved config and, per stage, a record of its inputs
and outputs (path + sha256), metrics (units in key names), tool versions and wall time.
A stage refuses inputs whose hash no longer matches the record of the stage that wrote them,
and a stage whose config and inputs are unchanged is skipped.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.atomic import atomic_write_json, sha256_file
from edge.errors import ConfigError, StaleInputError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1


class ArtifactRef(BaseModel):
    """A file a stage read or wrote; `path` is relative to the run directory."""

    model_config = ConfigDict(extra="forbid")
    path: str
    sha256: str
    bytes: int


class StageRecord(BaseModel):
    """What one stage did: the manifest's entry under `stages.<name>`."""

    model_config = ConfigDict(extra="forbid")
    name: str
    config_sha256: str
    inputs: dict[str, ArtifactRef] = Field(default_factory=dict)
    outputs: dict[str, ArtifactRef] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    tools: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    started_at: str
    wall_s: float


def tool_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of `packages` (missing ones are reported as 'not installed')."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


class Manifest:
    """A run directory and its manifest.json."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.file = self.run_dir / MANIFEST_NAME
        self.config: dict[str, Any] = {}  # resolved: every key, defaults included
        self.settings: dict[str, Any] = {}  # only what the user set explicitly for this run
        self.stages: dict[str, StageRecord] = {}
        if self.file.exists():
            self._load()

    def _load(self) -> None:
        fresh = "delete the run directory (or pass another --run) to start the run afresh"
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the run manifest: {exc}", where=str(self.file), hint=fresh) from exc
        if not isinstance(data, dict):
            raise ConfigError(f"the run manifest is a JSON {type(data).__name__}, not an object", where=str(self.file),
                              hint=fresh)
        if data.get("schema") != SCHEMA_VERSION:
            raise ConfigError(
                f"manifest schema {data.get('schema')!r} is not {SCHEMA_VERSION}",
                where=str(self.file),
                hint="this run was made by another version of edge; start a new run",
            )
        for key in ("config", "settings", "stages"):
            if not isinstance(data.get(key, {}), dict):
                raise ConfigError(f"field '{key}' is a JSON {type(data[key]).__name__}, not an object",
                                  where=str(self.file), hint=fresh)
        self.config = data.get("config", {})
        self.settings = data.get("settings", {})
        self.stages = {}
        for name, rec in data.get("stages", {}).items():
            try:
                self.stages[name] = StageRecord.model_validate(rec)
            except ValidationError as exc:
                err = exc.errors()[0]
                field = ".".join(str(p) for p in ("stages", name, *err["loc"]))
                raise ConfigError(f"field '{field}': {err['msg']} (got {str(err.get('input'))[:60]!r})",
                                  where=str(self.file), hint=fresh) from exc

    def save(self) -> None:
        """Write manifest.json atomically."""
        atomic_write_json(
            self.file,
            {
                "schema": SCHEMA_VERSION,
                "run": self.run_dir.name,
                "settings": self.settings,
                "config": self.config,
                "stages": {name: rec.model_dump() for name, rec in self.stages.items()},
            },
        )

    def resolve(self, rel: str) -> Path:
        """Absolute path of a run-relative artifact path."""
        return (self.run_dir / rel).resolve()

    def ref(self, path: str | os.PathLike[str]) -> ArtifactRef:
        """Hash a file and describe it relative to the run directory."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError("expected file is missing", where=str(path))
        rel = os.path.relpath(path.resolve(), self.run_dir.resolve())
        return ArtifactRef(path=rel, sha256=sha256_file(path), bytes=path.stat().st_size)

    def artifact(self, stage: str, key: str) -> Path:
        """Path of output `key` of `stage`, verified against the hash the stage recorded.

        Raises ConfigError if the stage has not run and StaleInputError if the file changed.
        """
        record = self.stages.get(stage)
        if record is None or key not in record.outputs:
            raise ConfigError(
                f"stage '{stage}' has no output '{key}' in this run",
                where=str(self.file),
                hint=f"run the '{stage}' stage first (e.g. `edge run --until {stage}`)",
            )
        ref = record.outputs[key]
        path = self.resolve(ref.path)
        if not path.is_file():
            raise StaleInputError(
                f"output '{key}' of stage '{stage}' is missing",
                where=str(path),
                hint=f"rerun the '{stage}' stage (`edge run --until {stage} --force {stage}`)",
            )
        actual = sha256_file(path)
        if actual != ref.sha256:
            raise StaleInputError(
                f"output '{key}' of stage '{stage}' changed after it was written "
                f"(sha256 {actual[:12]}..., manifest says {ref.sha256[:12]}...)",
                where=str(path),
                hint=f"rerun the '{stage}' stage (`edge run --until {stage} --force {stage}`) "
                "instead of editing artifacts by hand",
            )
        return path

    def staleness(self, stage: str, config_sha256: str) -> str | None:
        """Why `stage` must run again, or None when its record is still valid."""
        record = self.stages.get(stage)
        if record is None:
            return "not run yet"
        if record.config_sha256 != config_sha256:
            return "its config changed"
        for key, ref in record.inputs.items():
            path = self.resolve(ref.path)
            if not path.is_file() or sha256_file(path) != ref.sha256:
                return f"input '{key}' changed"
        for key, ref in record.outputs.items():
            path = self.resolve(ref.path)
            if not path.is_file() or sha256_file(path) != ref.sha256:
                return f"output '{key}' is missing or changed"
        return None

    def begin(self, stage: str, config_sha256: str) -> StageRun:
        """Start recording a stage run."""
        return StageRun(self, stage, config_sha256)

    def commit(self, record: StageRecord) -> None:
        """Store a finished stage record and save the manifest atomically."""
        self.stages[record.name] = record
        self.save()


class StageRun:
    """Collects a stage's inputs, outputs and metrics while it runs."""

    def __init__(self, manifest: Manifest, name: str, config_sha256: str) -> None:
        self.manifest = manifest
        self.name = name
        self.config_sha256 = config_sha256
        self.inputs: dict[str, ArtifactRef] = {}
        self.outputs: dict[str, Path] = {}
        self.metrics: dict[str, Any] = {}
        self.notes: list[str] = []
        self.options: dict[str, Any] = {}  # run-time flags (e.g. resume) that are not config
        self._started = time.perf_counter()
        self._started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    @property
    def dir(self) -> Path:
        """This stage's own folder inside the run directory (created on demand)."""
        folder = self.manifest.run_dir / self.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def input(self, stage: str, key: str) -> Path:
        """Use output `key` of an upstream `stage` (hash-verified) and record it as an input."""
        path = self.manifest.artifact(stage, key)
        self.inputs[f"{stage}.{key}"] = self.manifest.stages[stage].outputs[key]
        return path

    def external_input(self, key: str, path: str | os.PathLike[str]) -> Path:
        """Record a file from outside the run (a user's data, a profile) as an input."""
        self.inputs[key] = self.manifest.ref(path)
        return Path(path)

    def output(self, key: str, path: str | os.PathLike[str]) -> Path:
        """Declare an output file (hashed when the stage finishes); returns the path."""
        self.outputs[key] = Path(path)
        return Path(path)

    def finish(self, tools: tuple[str, ...] = ()) -> StageRecord:
        """Hash the outputs and build the record; metrics get `wall_s` if not set."""
        wall = round(time.perf_counter() - self._started, 3)
        self.metrics.setdefault("wall_s", wall)
        return StageRecord(
            name=self.name,
            config_sha256=self.config_sha256,
            inputs=self.inputs,
            outputs={key: self.manifest.ref(path) for key, path in self.outputs.items()},
            metrics=self.metrics,
            tools=tool_versions(tools),
            notes=self.notes,
            started_at=self._started_at,
            wall_s=wall,
        )
