"""What a training checkpoint must match to be resumed: the loop settings, the model, the data.

A checkpoint holds tensors and plain containers only (so `torch.load(..., weights_only=True)`
reads it and a planted pickle cannot run code) plus one JSON string of metadata built here:
the loop settings, the model's structure (its module tree, activation included, and every
parameter shape) and the fingerprint of the run's data set (the sha256 the manifest recorded for
the data stage's outputs). No torch import: the model is only asked for `repr` and `state_dict`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.errors import ConfigError

CHECKPOINT_FORMAT = 2
_FRESH = "train without --resume to start afresh (delete the checkpoint to silence this)"


def model_structure(model: Any) -> list[str]:
    """The model as lines of text: its module tree and every state_dict entry with its shape."""
    shapes = [f"{key} {tuple(value.shape)}" for key, value in model.state_dict().items()]
    return [*repr(model).splitlines(), *shapes]


def data_fingerprint(checkpoint: Path) -> dict[str, str] | None:
    """sha256 of each data stage output of the run the checkpoint lives in (run/STAGE/file), if any."""
    from edge.manifest import Manifest

    try:
        record = Manifest(checkpoint.resolve().parent.parent).stages.get("data")
    except ConfigError:
        return None
    return {key: ref.sha256 for key, ref in sorted(record.outputs.items())} if record else None


def checkpoint_meta(checkpoint: Path, model: Any, fields: dict[str, Any]) -> str:
    """The JSON metadata string stored in a checkpoint: `fields` plus format, model and data."""
    meta = {**fields, "format": CHECKPOINT_FORMAT, "model_structure": model_structure(model),
            "data": data_fingerprint(checkpoint)}
    return json.dumps(meta, sort_keys=True)


def read_meta(state: Any, checkpoint: Path) -> dict[str, Any]:
    """The metadata of a loaded checkpoint; ConfigError if it is not one this edge writes."""
    raw = state.get("meta") if isinstance(state, dict) else None
    try:
        meta = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError("not a checkpoint of this edge version (no metadata of format "
                          f"{CHECKPOINT_FORMAT})", where=str(checkpoint), hint=_FRESH)
    return meta


def check_resumable(meta: dict[str, Any], checkpoint: Path, fit_config: dict[str, Any], model: Any) -> None:
    """Refuse to resume when the loop settings, the model structure or the run's data differ."""
    saved = meta.get("fit_config") or {}
    if saved != fit_config:
        changed = sorted(k for k in {*saved, *fit_config} if saved.get(k) != fit_config.get(k))
        raise ConfigError(f"checkpoint was made with other settings ({', '.join(changed)})", where=str(checkpoint),
                          hint="resume with the same config, or " + _FRESH)
    now = model_structure(model)
    before = meta.get("model_structure") or []
    if now != before:
        pairs = enumerate(zip(before, now, strict=False))
        line = next((i for i, (a, b) in pairs if a != b), min(len(before), len(now)))
        was = before[line].strip() if line < len(before) else "(nothing)"
        is_ = now[line].strip() if line < len(now) else "(nothing)"
        raise ConfigError(f"checkpoint was made for another model: it has '{was}' where this config builds "
                          f"'{is_}' (model.* settings changed)", where=str(checkpoint),
                          hint="resume with the model settings it was made with, or " + _FRESH)
    data = data_fingerprint(checkpoint)
    if meta.get("data") is not None and data is not None and meta["data"] != data:
        raise ConfigError("checkpoint was trained on another data set (the data stage's output changed since)",
                          where=str(checkpoint), hint=_FRESH)
