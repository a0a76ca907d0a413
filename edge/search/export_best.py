"""`edge search --export BEST|N`: a trial of the search becomes a normal run.

The trial's run folder (`trials/<n>/`, its manifest and every artifact up to the battery stage) is
copied to `runs/<name>/`, its remembered settings lose the trial's private build folder, and the
pipeline runs on it as `edge run` would: data, train, prune and qat are up to date and skipped; export
writes `build/<target>/`, then profile, battery and report run. `make export RUN=<name>`, `edge report`,
`edge battery check` and `make flash` apply to it from then on.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edge.config import check_settings, validate_settings
from edge.errors import ConfigError
from edge.manifest import Manifest
from edge.search.pareto import recommended, rows_of

LEFT_OUT = ("build", "log.txt", "epochs.jsonl")


def pick(study: Any, which: str) -> dict[str, Any]:
    """The trial `which` names: BEST (the recommended one) or a trial number; it must be feasible."""
    rows = rows_of(study)
    feasible = [r["number"] for r in rows if r["feasible"]]
    listed = ", ".join(map(str, feasible)) or "none yet"
    if which.upper() == "BEST":
        best = recommended(rows)
        if best is None:
            raise ConfigError("the search has no feasible trial yet", where="--export BEST",
                              hint="run the search longer (edge search --trials/--budget), or loosen its limits")
        return best
    if not which.isdigit():
        raise ConfigError(f"{which!r} is neither BEST nor a trial number", where="--export",
                          hint=f"feasible trials: {listed}")
    row = next((r for r in rows if r["number"] == int(which)), None)
    if row is None or not row["feasible"]:
        state = "not in the study" if row is None else (row["why"] or f"infeasible ({', '.join(row['violated'])})")
        raise ConfigError(f"trial {which} cannot be exported: {state}", where="--export",
                          hint=f"feasible trials: {listed}")
    return row


def export_trial(row: dict[str, Any], trials_dir: Path, run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Copy the trial's run to `run_dir` and return its (config, settings) without the trial's build folder."""
    source = trials_dir / str(row["number"])
    if not (source / "manifest.json").is_file():
        raise ConfigError(f"trial {row['number']}'s run is not on this machine", where=str(source),
                          hint="export it on the machine that ran it (its worker log names the host), or share "
                          "the runs folder between machines")
    if run_dir.exists():
        raise ConfigError(f"run '{run_dir.name}' exists already", where=str(run_dir),
                          hint="name another with --to NAME, or delete that folder")
    shutil.copytree(source, run_dir, ignore=shutil.ignore_patterns(*LEFT_OUT))
    manifest = Manifest(run_dir)
    settings = dict(manifest.settings)
    export = {k: v for k, v in settings.get("export", {}).items() if k != "build_dir"}
    settings["export"] = export
    if not export:
        del settings["export"]
    config = check_settings(validate_settings(settings, str(manifest.file)), str(manifest.file))
    manifest.settings = settings
    manifest.save()
    return config, settings
