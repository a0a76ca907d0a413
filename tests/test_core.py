"""Atomic writes, the run manifest and the config: the contracts every stage relies on."""

from __future__ import annotations

import json

import pytest

from edge.atomic import atomic_path, atomic_write_json, sha256_file
from edge.config import load_config
from edge.errors import ConfigError, StaleInputError
from edge.manifest import Manifest


def test_atomic_write_leaves_target_untouched_on_failure(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a mod")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]  # no temp file left behind


def test_atomic_write_gives_normal_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "report.json", {"a": 1})
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_atomic_path_fixes_permissions_of_a_file_the_library_replaced(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "model.safetensors") as tmp:
            tmp.unlink()  # as safetensors does: a new file, created 0600
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode) == 0o644


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path):
    from edge.atomic import remove_stale_temps

    (tmp_path / ".checkpoint.pt.a1b2.tmp").write_bytes(b"half")
    (tmp_path / ".other.pt.a1b2.tmp").write_bytes(b"not ours")
    assert [p.name for p in remove_stale_temps(tmp_path / "checkpoint.pt")] == [".checkpoint.pt.a1b2.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.a1b2.tmp"]


def _stage_with_output(manifest: Manifest, name: str, content: bytes, sha: str = "cfg") -> None:
    run = manifest.begin(name, sha)
    path = run.dir / "out.bin"
    path.write_bytes(content)
    run.output("out", path)
    run.metrics["value_units"] = 1
    manifest.commit(run.finish())


def test_manifest_records_hashes_and_reloads(tmp_path):
    manifest = Manifest(tmp_path / "run")
    _stage_with_output(manifest, "data", b"abc")
    again = Manifest(tmp_path / "run")
    ref = again.stages["data"].outputs["out"]
    assert ref.path == "data/out.bin"
    assert ref.sha256 == sha256_file(tmp_path / "run/data/out.bin")
    assert ref.bytes == 3
    assert again.stages["data"].metrics["wall_s"] >= 0
    assert again.staleness("data", "cfg") is None


def test_changed_artifact_is_refused_with_a_clear_message(tmp_path):
    manifest = Manifest(tmp_path / "run")
    _stage_with_output(manifest, "data", b"abc")
    (tmp_path / "run/data/out.bin").write_bytes(b"tampered")
    with pytest.raises(StaleInputError) as info:
        manifest.begin("train", "cfg").input("data", "out")
    assert "output 'out' of stage 'data' changed after it was written" in str(info.value)
    assert "rerun the 'data' stage" in str(info.value)
    assert manifest.staleness("data", "cfg") == "output 'out' is missing or changed"


def test_staleness_reasons(tmp_path):
    manifest = Manifest(tmp_path / "run")
    assert manifest.staleness("data", "cfg") == "not run yet"
    _stage_with_output(manifest, "data", b"abc")
    assert manifest.staleness("data", "other") == "its config changed"
    run = manifest.begin("train", "cfg")
    run.input("data", "out")
    out = run.dir / "w.bin"
    out.write_bytes(b"w")
    run.output("weights", out)
    manifest.commit(run.finish())
    assert manifest.staleness("train", "cfg") is None
    _stage_with_output(manifest, "data", b"new data")  # upstream reran with other bytes
    assert manifest.staleness("train", "cfg") == "input 'data.out' changed"


def test_missing_upstream_stage_says_what_to_run(tmp_path):
    with pytest.raises(ConfigError, match=r"stage 'data' has no output 'dataset'.*\n  hint: run the 'data' stage"):
        Manifest(tmp_path / "run").begin("train", "x").input("data", "dataset")


def test_corrupt_manifest_is_reported_with_its_path(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run/manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"manifest.json: cannot read the run manifest"):
        Manifest(tmp_path / "run")


def test_config_defaults_and_overrides():
    config = load_config(overrides=["train.epochs=3", "data.channels=3", "target=cortex-m4"])
    assert (config.train.epochs, config.data.channels, config.target) == (3, 3, "cortex-m4")
    assert config.model.name == "cct_lite_s"


def test_config_unknown_key_is_named():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["train.epoch=3"])
    assert "field 'train.epoch': unknown key (got 3)" in str(info.value)


def test_config_bad_value_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: field 'train.lr': Input should be greater than 0")


def test_config_yaml_syntax_error_has_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: 3\n bad: [\n")
    with pytest.raises(ConfigError, match=rf"{path}:3: not valid YAML"):
        load_config(path)


def test_config_file_round_trips(tmp_path):
    path = tmp_path / "c.yaml"
    atomic_write_json(path, {"train": {"epochs": 5}})  # JSON is YAML
    assert load_config(path).train.epochs == 5
    assert json.loads(path.read_text()) == {"train": {"epochs": 5}}


def test_status_marks_a_stage_whose_output_changed(tmp_path, capsys):
    from edge.cli import main

    manifest = Manifest(tmp_path / "run")
    _stage_with_output(manifest, "train", b"weights")
    assert main(["status", "--runs-dir", str(tmp_path), "--run", "run"]) == 0
    assert "STALE" not in capsys.readouterr().out
    (tmp_path / "run/train/out.bin").write_bytes(b"other weights")
    assert main(["status", "--runs-dir", str(tmp_path), "--run", "run"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("train"))
    assert "[STALE: output 'out' is missing or changed; rerun with `edge run --until train`]" in line
