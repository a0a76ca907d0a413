"""Every bad input gets a clear error: a table of hostile but realistic inputs across the commands.

Each row runs the CLI in this process (`edge.cli.main`, output captured) and asserts the exit code
(docs: 2 bad input, 3 device, 4 export/verify; never 1 "gate failed", never 5 "internal error")
and that the message names the file, field or byte at fault. Serial commands get a port that does
not exist, so a row that touched the board would exit 3, not 2: "refused before any work".
Power-profile and battery numbers have their own table (tests/test_power_inputs.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from export_fixtures import single_op_tflite

from edge.cli import main

NO_PORT = "/nonexistent/ttyEDGE0"


@dataclass(frozen=True)
class Row:
    """One bad input: the argv (with {tmp} for the fixture folder), the exit code, text the message must hold."""

    name: str
    argv: tuple[str, ...]
    code: int
    says: tuple[str, ...]


def row(name: str, argv: str | list[str], code: int, *says: str) -> Row:
    return Row(name, tuple(argv.split() if isinstance(argv, str) else argv), code, says)


def cfg(name: str, setting: str, *says: str) -> Row:
    """`edge config --set SETTING` must exit 2 naming the field."""
    return row(name, ["config", "--runs-dir", "{tmp}/runs", "--set", setting], 2, *says)


# --- config values (--set) -----------------------------------------------------------------------
CONFIG_ROWS = [
    cfg("yaml-unclosed-list", "train.epochs=[1", "--set train.epochs=[1", "not valid YAML"),
    cfg("yaml-unclosed-map", "train.epochs={a: 1", "--set train.epochs={a: 1", "not valid YAML"),
    cfg("yaml-bad-indent", "train.epochs=a: b: c", "--set train.epochs=a: b: c", "not valid YAML"),
    cfg("yaml-python-tag", "train.epochs=!!python/object:os.system x", "not valid YAML"),
    cfg("bool-as-int", "train.epochs=true", "field 'train.epochs'", "boolean"),
    cfg("bool-as-int-false", "train.batch_size=false", "field 'train.batch_size'", "boolean"),
    cfg("bool-as-literal", "data.channels=true", "field 'data.channels'", "boolean"),
    cfg("bool-as-bits", "qat.activation_bits=true", "field 'qat.activation_bits'", "boolean"),
    cfg("int-as-bool", "train.augment=1", "field 'train.augment'", "valid boolean"),
    cfg("text-as-bool", "export.int16_activations=maybe", "field 'export.int16_activations'"),
    cfg("epochs-zero", "train.epochs=0", "field 'train.epochs'", "greater than or equal to 1"),
    cfg("epochs-negative", "train.epochs=-3", "field 'train.epochs'"),
    cfg("epochs-text", "train.epochs=ten", "field 'train.epochs'", "'ten'"),
    cfg("epochs-fraction", "train.epochs=1.5", "field 'train.epochs'"),
    cfg("epochs-list", "train.epochs=[1, 2]", "field 'train.epochs'"),
    cfg("lr-zero", "train.lr=0", "field 'train.lr'"),
    cfg("lr-negative", "train.lr=-0.1", "field 'train.lr'"),
    cfg("lr-nan", "train.lr=.nan", "field 'train.lr'"),
    cfg("lr-inf", "train.lr=.inf", "field 'train.lr'", "finite"),
    cfg("batch-zero", "train.batch_size=0", "field 'train.batch_size'"),
    cfg("smoothing-one", "train.label_smoothing=1", "field 'train.label_smoothing'"),
    cfg("threads-zero", "train.threads=0", "field 'train.threads'"),
    cfg("country-short", "train.carbon_country=SE", "field 'train.carbon_country'"),
    cfg("teacher-unknown", "train.distill.teacher=resnet", "field 'train.distill.teacher'"),
    cfg("distill-alpha", "train.distill.alpha=2", "field 'train.distill.alpha'"),
    cfg("unknown-key", "train.epoch=3", "field 'train.epoch'", "unknown key"),
    cfg("unknown-section", "trian.epochs=3", "field 'trian'", "unknown key"),
    cfg("section-as-value", "train=5", "field 'train'"),
    cfg("value-as-section", "train.epochs.x=1", "train.epochs"),
    cfg("no-equals", "train.epochs", "--set train.epochs", "expected KEY=VALUE"),
    cfg("empty-key", "=5", "--set =5", "not a dotted key"),
    cfg("empty-part", "train..epochs=1", "'train..epochs' is not a dotted key"),
    cfg("channels-two", "data.channels=2", "field 'data.channels'"),
    cfg("image-size-tiny", "data.image_size=8", "field 'data.image_size'"),
    cfg("image-size-huge", "data.image_size=10000", "field 'data.image_size'"),
    cfg("val-fraction", "data.val_fraction=0.6", "field 'data.val_fraction'"),
    cfg("calib-zero", "data.n_calib=0", "field 'data.n_calib'"),
    cfg("skip-corrupt-int", "data.skip_corrupt=2", "field 'data.skip_corrupt'"),
    cfg("seed-text", "data.seed=x", "field 'data.seed'"),
    cfg("act-unknown", "model.act=gelu", "field 'model.act'"),
    cfg("act-number", "model.act=1", "field 'model.act'"),
    cfg("prune-ratio-zero", "prune.params_ratio=0", "field 'prune.params_ratio'"),
    cfg("prune-ratio-big", "prune.params_ratio=1.5", "field 'prune.params_ratio'"),
    cfg("prune-importance", "prune.importance=random", "field 'prune.importance'"),
    cfg("prune-steps", "prune.steps=0", "field 'prune.steps'"),
    cfg("prune-min-embed", "prune.min_embed_dim=0", "field 'prune.min_embed_dim'"),
    cfg("qat-bits", "qat.activation_bits=4", "field 'qat.activation_bits'"),
    cfg("qat-opset", "qat.onnx_opset=5", "field 'qat.onnx_opset'"),
    cfg("qat-model-type", "qat.model_type=x", "field 'qat.model_type'"),
    cfg("export-opset", "export.opset=3", "field 'export.opset'"),
    cfg("export-agreement", "export.min_tflm_agreement=2", "field 'export.min_tflm_agreement'"),
    cfg("export-size-fraction", "export.max_size_fraction=0", "field 'export.max_size_fraction'"),
    cfg("device-escapes", "battery.device=../cells/x", "field 'battery.device'", "no '/' or '..'"),
    cfg("device-absolute", "battery.device=/etc/passwd", "field 'battery.device'", "no '/' or '..'"),
    cfg("device-dotdot", "battery.device=..", "field 'battery.device'"),
    cfg("device-unknown", "battery.device=no-such-device", "field 'battery.device'", "no device profile named"),
    cfg("mcu-escapes", "battery.mcu=../../x", "field 'battery.mcu'", "no '/' or '..'"),
    cfg("mcu-unknown", "battery.mcu=z80", "field 'battery.mcu'", "no mcu profile named 'z80'"),
    cfg("lifetime-word", "battery.min_lifetime=forever", "field 'battery.min_lifetime'", "cannot read duration"),
    cfg("lifetime-negative", "battery.min_lifetime=-1y", "field 'battery.min_lifetime'"),
    cfg("lifetime-zero", "battery.min_lifetime=0y", "field 'battery.min_lifetime'", "must be positive"),
    cfg("confidence-low", "battery.confidence=0.3", "field 'battery.confidence'"),
    cfg("mc-runs-zero", "battery.runs=0", "field 'battery.runs'"),
    cfg("max-years", "battery.max_years=100", "field 'battery.max_years'"),
    cfg("kernels", "battery.kernels=fast", "field 'battery.kernels'"),
    cfg("process", "battery.process=weird", "field 'battery.process'"),
    cfg("frames-zero", "battery.frames_per_event=0", "field 'battery.frames_per_event'"),
    cfg("target-unknown", "target=nope", "field 'target'", "unknown target 'nope'"),
    cfg("target-path", "target=../../etc", "field 'target'", "unknown target '../../etc'"),
    row("target-flag", "config --runs-dir {tmp}/runs --target cortex-m99", 2, "unknown target 'cortex-m99'",
        "did you mean"),
    row("target-empty", ["config", "--runs-dir", "{tmp}/runs", "--target", ""], 2, "unknown target ''"),
    row("data-hash-is-literal", ["config", "--runs-dir", "{tmp}/runs", "--data", "imagefolder:{tmp}/set #2"], 2,
        "field 'data.source'", "set #2' does not exist"),
    row("data-missing-folder", "config --runs-dir {tmp}/runs --data imagefolder:/nonexistent/photos", 2,
        "'/nonexistent/photos' does not exist"),
    row("data-file-not-folder", "config --runs-dir {tmp}/runs --data imagefolder:{tmp}/random.bin", 2,
        "random.bin' is not a folder"),
    row("data-vww-missing", "config --runs-dir {tmp}/runs --data vww:/nonexistent/coco", 2,
        "'/nonexistent/coco' does not exist"),
]

# --- config files (--config) ---------------------------------------------------------------------
FILE_ROWS = [
    row("config-not-utf8", "config --runs-dir {tmp}/runs --config {tmp}/latin1.yaml", 2,
        "latin1.yaml:2", "not UTF-8", "byte 24 is 0xe9"),
    row("config-duplicate-key", "config --runs-dir {tmp}/runs --config {tmp}/dup.yaml", 2,
        "dup.yaml:3", "key 'epochs' appears twice (lines 2 and 3)"),
    row("config-top-level-list", "config --runs-dir {tmp}/runs --config {tmp}/list.yaml", 2,
        "list.yaml", "mapping of sections, not list"),
    row("config-syntax", "config --runs-dir {tmp}/runs --config {tmp}/syntax.yaml", 2, "syntax.yaml:3",
        "not valid YAML"),
    row("config-python-tag", "config --runs-dir {tmp}/runs --config {tmp}/tag.yaml", 2, "tag.yaml:1",
        "not valid YAML"),
    row("config-missing", "config --runs-dir {tmp}/runs --config {tmp}/nope.yaml", 2, "nope.yaml",
        "cannot read config file"),
    row("config-is-folder", "config --runs-dir {tmp}/runs --config {tmp}", 2, "cannot read config file"),
    row("config-unknown-section", "config --runs-dir {tmp}/runs --config {tmp}/unknown.yaml", 2,
        "unknown.yaml", "field 'trainer'"),
    row("config-section-scalar", "config --runs-dir {tmp}/runs --config {tmp}/scalar.yaml", 2,
        "scalar.yaml", "field 'train'"),
    row("config-bool-epochs", "config --runs-dir {tmp}/runs --config {tmp}/bool.yaml", 2,
        "bool.yaml", "field 'train.epochs'", "boolean"),
]

# --- run names and run folders -------------------------------------------------------------------
RUN_ROWS = [
    row("run-escapes", "config --runs-dir {tmp}/runs --run ../../tmp/escape", 2, "--run", "'../../tmp/escape'"),
    row("run-absolute", "train --runs-dir {tmp}/runs --run /tmp/abs", 2, "--run", "'/tmp/abs' is not a run name"),
    row("run-dotdot", "data --runs-dir {tmp}/runs --run ..", 2, "'..' is not a run name"),
    row("run-nested", "qat --runs-dir {tmp}/runs --run a/b", 2, "'a/b' is not a run name"),
    row("run-empty", ["export", "--runs-dir", "{tmp}/runs", "--run", ""], 2, "'' is not a run name"),
    row("run-dot", "run --runs-dir {tmp}/runs --run .", 2, "'.' is not a run name"),
    row("status-run-escapes", "status --runs-dir {tmp}/runs --run ../x", 2, "'../x' is not a run name"),
    row("runs-dir-is-file", "config --runs-dir {tmp}/random.bin", 2, "--runs-dir is a file"),
    row("nproc-zero", "train --runs-dir {tmp}/runs --nproc 0", 2, "--nproc", "at least 1, got 0"),
    row("nproc-negative", "train --runs-dir {tmp}/runs --nproc -2", 2, "--nproc", "got -2"),
    row("nproc-text", "train --runs-dir {tmp}/runs --nproc two", 2, "--nproc", "'two' is not a whole number"),
    row("epochs-flag-zero", "train --runs-dir {tmp}/runs --epochs 0", 2, "--epochs", "at least 1"),
    row("epochs-flag-negative", "train --runs-dir {tmp}/runs --epochs -1", 2, "--epochs"),
]

# --- run manifests (runs/<run>/manifest.json) ----------------------------------------------------
MANIFESTS: dict[str, bytes] = {
    "m-list": b"[]",
    "m-string": b'"manifest"',
    "m-not-json": b"{schema: 1",
    "m-latin1": b'{"schema": 1, "run": "caf\xe9"}',
    "m-schema": b'{"schema": 99}',
    "m-settings-list": b'{"schema": 1, "settings": []}',
    "m-stages-list": b'{"schema": 1, "stages": []}',
    "m-record-list": b'{"schema": 1, "stages": {"train": []}}',
    "m-record-type": b'{"schema": 1, "stages": {"train": {"name": 5, "config_sha256": "x", "started_at": "t", '
                     b'"wall_s": 1}}}',
    "m-record-missing": b'{"schema": 1, "stages": {"train": {"name": "train", "config_sha256": "x"}}}',
    "m-saved-bad": b'{"schema": 1, "settings": {"train": {"epochs": 0}}}',
    "m-config-bad": b'{"schema": 1, "config": {"train": {"epochs": true}}}',
}
MANIFEST_ROWS = [
    row("manifest-list", "config --runs-dir {tmp}/runs --run m-list", 2, "m-list/manifest.json",
        "a JSON list, not an object"),
    row("manifest-string", "status --runs-dir {tmp}/runs --run m-string", 2, "m-string/manifest.json",
        "a JSON str, not an object"),
    row("manifest-not-json", "config --runs-dir {tmp}/runs --run m-not-json", 2, "m-not-json/manifest.json",
        "cannot read the run manifest"),
    row("manifest-not-utf8", "status --runs-dir {tmp}/runs --run m-latin1", 2, "m-latin1/manifest.json",
        "cannot read the run manifest"),
    row("manifest-schema", "status --runs-dir {tmp}/runs --run m-schema", 2, "manifest schema 99"),
    row("manifest-settings-list", "config --runs-dir {tmp}/runs --run m-settings-list", 2,
        "field 'settings' is a JSON list"),
    row("manifest-stages-list", "status --runs-dir {tmp}/runs --run m-stages-list", 2, "field 'stages' is a JSON list"),
    row("manifest-record-list", "status --runs-dir {tmp}/runs --run m-record-list", 2, "field 'stages.train'"),
    row("manifest-record-type", "status --runs-dir {tmp}/runs --run m-record-type", 2, "field 'stages.train.name'"),
    row("manifest-record-missing", "status --runs-dir {tmp}/runs --run m-record-missing", 2,
        "field 'stages.train.", "Field required"),
    row("manifest-saved-settings", "config --runs-dir {tmp}/runs --run m-saved-bad", 2,
        "the run's saved settings", "field 'train.epochs'", "--fresh-config forgets the settings this run saved"),
    row("stage-config-bad", "stage train --run-dir {tmp}/runs/m-config-bad", 2,
        "m-config-bad/manifest.json: config", "field 'train.epochs'", "boolean"),
    row("stage-options-not-json", ["stage", "data", "--run-dir", "{tmp}/runs/m-list", "--options", "{nope"], 2,
        "--options: not JSON"),
    row("stage-options-list", ["stage", "data", "--run-dir", "{tmp}/runs/m-list", "--options", "[1]"], 2,
        "--options: a JSON object is expected, not list"),
    row("manifest-is-folder", "config --runs-dir {tmp}/runs --run m-folder", 2, "m-folder/manifest.json",
        "cannot read the run manifest"),
]

# --- model files: every command that reads a .tflite ---------------------------------------------
BAD_MODELS = {  # name -> (file, what the message must say)
    "empty": ("empty.tflite", "file is 0 bytes, too short"),
    "random": ("random.bin", "not a TFLite flatbuffer: bytes 4-7 are"),
    "onnx": ("model.onnx", "not a TFLite flatbuffer: bytes 4-7 are"),
    "truncated": ("cut.tflite", "corrupted or truncated TFLite flatbuffer (200 bytes)"),
    "huge": ("huge.tflite", "more than the 2,147,483,647 a TFLite flatbuffer can address; not read"),
    "root": ("root.tflite", "root table offset"),
    "missing": ("missing.tflite", "model file not found"),
    "folder": ("folder.tflite", "not a regular file"),
}
MODEL_COMMANDS = {  # name -> (argv before the model, exit code)
    "flash": (["flash", "--port", NO_PORT, "--model"], 2),
    "bench": (["bench", "--port", NO_PORT, "--json", "{tmp}/b.json", "--model"], 2),
    "profile": (["profile", "--model"], 2),
    "battery-check": (["battery", "check", "--out", "{tmp}/bat", "--model"], 2),
    "battery-simulate": (["battery", "simulate", "--out", "{tmp}/bat", "--model"], 2),
    "emulator": (["emulator", "--seconds", "0.1", "--model"], 2),
    "verify": (["verify"], 4),
}
MODEL_ROWS = [
    row(f"{command}-{kind}", [*argv, f"{{tmp}}/{file}"], code, file,
        "corrupted or truncated ONNX protobuf" if command == "verify" and not file.endswith(".tflite") else says)
    for command, (argv, code) in MODEL_COMMANDS.items()
    for kind, (file, says) in BAD_MODELS.items()
    if not (command == "verify" and kind in ("missing", "folder"))
]
MODEL_ROWS += [
    row("flash-custom-op", f"flash --port {NO_PORT} --model {{tmp}}/custom.tflite", 2, "custom.tflite",
        "TFLite Micro cannot run this model", "nothing was sent to the board"),
    row("bench-custom-op", f"bench --port {NO_PORT} --json {{tmp}}/b.json --model {{tmp}}/custom.tflite", 2,
        "TFLite Micro cannot run this model"),
]

# --- serial commands: arguments and bench inputs, refused before the port is opened ---------------
BENCH = f"bench --port {NO_PORT} --json {{tmp}}/b.json --model {{tmp}}/relu.tflite"
SERIAL_ROWS = [
    row("bench-runs-zero", f"{BENCH} --runs 0", 2, "--runs", "at least 1, got 0"),
    row("bench-runs-negative", f"{BENCH} --runs -5", 2, "--runs"),
    row("bench-warmup-negative", f"{BENCH} --warmup -1", 2, "--warmup", "0 or more"),
    row("bench-inputs-zero", f"{BENCH} --inputs 0", 2, "--inputs"),
    row("bench-baud-zero", f"{BENCH} --baud 0", 2, "--baud"),
    row("bench-timeout-zero", f"{BENCH} --timeout 0", 2, "--timeout", "above 0"),
    row("bench-timeout-nan", f"{BENCH} --timeout nan", 2, "--timeout", "finite"),
    row("bench-json-folder", f"bench --port {NO_PORT} --json {{tmp}} --model {{tmp}}/relu.tflite", 2, "--json",
        "is a folder"),
    row("bench-json-no-folder", f"bench --port {NO_PORT} --json {{tmp}}/no/such/b.json", 2, "--json",
        "does not exist"),
    row("bench-input-missing", f"{BENCH} --input {{tmp}}/nope.npy", 2, "nope.npy", "input file not found"),
    row("bench-input-folder", f"{BENCH} --input {{tmp}}", 2, "input is not a file"),
    row("bench-npy-wrong-size", f"{BENCH} --input {{tmp}}/wrong_size.npy", 2, "wrong_size.npy",
        "[3, 5] has 15 values, not a multiple of the model's input [1, 8] (8 values)"),
    row("bench-npy-object", f"{BENCH} --input {{tmp}}/object.npy", 2, "object.npy", "not a plain numeric .npy"),
    row("bench-npy-wraps", f"{BENCH} --input {{tmp}}/big.npy", 2, "big.npy",
        "value 1000.0 at index [0, 0] does not fit the model's int8 input"),
    row("bench-npy-fraction", f"{BENCH} --input {{tmp}}/fraction.npy", 2, "fraction.npy", "whole numbers"),
    row("bench-npy-nan", f"{BENCH} --input {{tmp}}/nan.npy", 2, "nan.npy", "at index [0, 3]"),
    row("bench-npy-text", f"{BENCH} --input {{tmp}}/text.npy", 2, "text.npy", "is not numeric"),
    row("bench-npy-garbage", f"{BENCH} --input {{tmp}}/garbage.npy", 2, "garbage.npy", "not a plain numeric"),
    row("bench-bin-size", f"{BENCH} --input {{tmp}}/seven.bin", 2, "seven.bin", "input is 7 bytes",
        "is 8 bytes"),
    row("bench-bin-empty", f"{BENCH} --input {{tmp}}/empty.bin", 2, "empty.bin", "input file is empty"),
    row("flash-chunk-zero", f"flash --port {NO_PORT} --model {{tmp}}/relu.tflite --chunk 0", 2, "--chunk"),
    row("flash-baud-negative", f"flash --port {NO_PORT} --model {{tmp}}/relu.tflite --baud -5", 2, "--baud"),
    row("flash-raw-timeout", f"flash --port {NO_PORT} --model {{tmp}}/relu.tflite --raw-timeout-ms 0", 2,
        "--raw-timeout-ms must be positive"),
    row("flash-test-without-image", f"flash --port {NO_PORT} --model {{tmp}}/relu.tflite --test", 2,
        "--test only applies to firmware images"),
    row("flash-image-missing", f"flash --port {NO_PORT} --image {{tmp}}/nope.bin", 2, "nope.bin",
        "image file not found"),
    row("emulator-line-rate", "emulator --seconds 0.1 --line-rate -1", 2, "--line-rate"),
    row("emulator-drop", "emulator --seconds 0.1 --drop 2", 2, "edge emulator"),
    row("emulator-monitor-alone", "emulator --seconds 0.1 --power-monitor", 2, "--power-monitor powers the DUT"),
]

ROWS = CONFIG_ROWS + FILE_ROWS + RUN_ROWS + MANIFEST_ROWS + MODEL_ROWS + SERIAL_ROWS


def _npy(path: Path, array: np.ndarray, allow_pickle: bool = False) -> None:
    np.save(path, array, allow_pickle=allow_pickle)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bad files every row refers to, made once."""
    tmp = tmp_path_factory.mktemp("bad")
    relu = single_op_tflite("RELU")
    files: dict[str, bytes] = {
        "relu.tflite": relu, "empty.tflite": b"", "random.bin": os.urandom(4096),
        "model.onnx": b"\x08\x07\x12\x07pytorch\x1a\x052.3.0" + os.urandom(256), "cut.tflite": relu[:200],
        "root.tflite": b"\xff\xff\x00\x00TFL3" + relu[8:], "custom.tflite": single_op_tflite("TOPK_V2"),
        "latin1.yaml": "train:\n  epochs: 3 # caf\u00e9\n".encode("latin-1"),
        "dup.yaml": b"train:\n  epochs: 3\n  epochs: 4\n", "list.yaml": b"- train\n- prune\n",
        "syntax.yaml": b"train:\n  epochs: [1\n", "tag.yaml": b"!!python/object/apply:os.system ['true']\n",
        "unknown.yaml": b"trainer:\n  epochs: 3\n", "scalar.yaml": b"train: 5\n",
        "bool.yaml": b"train:\n  epochs: true\n", "seven.bin": bytes(7), "empty.bin": b"",
        "garbage.npy": b"\x93NUMPY garbage",
    }
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    with open(tmp / "huge.tflite", "wb") as handle:  # sparse: 3 GB on paper, nothing on disk
        handle.truncate(3 * 10**9)
    (tmp / "folder.tflite").mkdir()
    _npy(tmp / "wrong_size.npy", np.zeros((3, 5), np.int8))
    _npy(tmp / "object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _npy(tmp / "big.npy", np.full((1, 8), 1000.0, np.float32))
    _npy(tmp / "fraction.npy", np.full((1, 8), 0.5, np.float32))
    _npy(tmp / "nan.npy", np.array([[0, 1, 2, np.nan, 4, 5, 6, 7]], np.float32))
    _npy(tmp / "text.npy", np.array(["a"] * 8))
    for name, data in MANIFESTS.items():
        (tmp / "runs" / name).mkdir(parents=True)
        (tmp / "runs" / name / "manifest.json").write_bytes(data)
    (tmp / "runs" / "m-folder" / "manifest.json").mkdir(parents=True)
    return tmp


def run_cli(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`edge ARGV` in this process: (exit code, stdout + stderr)."""
    code = main(argv)
    out, err = capfd.readouterr()
    return code, out + err


def test_the_table_is_big_and_names_are_unique() -> None:
    assert len(ROWS) >= 150
    assert len({r.name for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("case", ROWS, ids=[r.name for r in ROWS])
def test_bad_input(case: Row, inputs: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(inputs)
    monkeypatch.delenv("EDGE_DEBUG", raising=False)
    argv = [arg.replace("{tmp}", str(inputs)) for arg in case.argv]
    code, text = run_cli(argv, capfd)
    assert "Traceback" not in text and "internal error" not in text, text
    assert code == case.code, text
    for fragment in case.says:
        assert fragment.replace("{tmp}", str(inputs)) in text, text
    assert not (inputs / "b.json").exists() and not (inputs / "bat").exists()  # refused before any work


def test_invalid_settings_are_not_saved_into_the_run(inputs: Path, capfd: pytest.CaptureFixture[str]) -> None:
    runs = inputs / "runs-saved"
    for setting in ("target=nope", "battery.min_lifetime=forever", "battery.device=../x"):
        code, text = run_cli(["data", "--runs-dir", str(runs), "--run", "r", "--set", setting], capfd)
        assert code == 2, text
    assert not (runs / "r").exists()


# --- checkpoints: weights only, and only for the same model and data -----------------------------
def _fit(tmp: Path, act: Callable[[], object] | None = None, **kw: object):
    import torch
    from torch import nn

    from edge.training.loop import FitConfig, fit

    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    model = nn.Sequential(nn.Linear(4, 8), (act or nn.ReLU)(), nn.Linear(8, 2))
    cfg = FitConfig(epochs=3, batch_size=16, augment=False)
    return fit(model, (x, y), (x, y), cfg, checkpoint=tmp / "checkpoint.pt", desc="t", **kw)


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_planted_checkpoint_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    import torch

    from edge.errors import ConfigError

    marker = tmp_path / "PWNED"
    torch.save({"meta": _Planted(marker), "model": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError, match=r"checkpoint refused: it would call (posix|nt)\.system; loading it could "
                       r"run code") as err:
        _fit(tmp_path, resume=True)
    assert err.value.where == str(tmp_path / "checkpoint.pt") and err.value.exit_code == 2
    assert not marker.exists()


def test_resume_checks_the_model_and_cleans_stale_temp_files(tmp_path: Path) -> None:
    from torch import nn

    from edge.errors import ConfigError

    (tmp_path / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    _fit(tmp_path, stop_after_epochs=1)
    assert not list(tmp_path.glob(".checkpoint.pt.*.tmp"))
    with pytest.raises(ConfigError, match=r"checkpoint was made for another model: it has '\(1\): ReLU\(\)' where "
                       r"this config builds '\(1\): GELU\(approximate='tanh'\)'"):
        _fit(tmp_path, act=lambda: nn.GELU(approximate="tanh"), resume=True)
    assert len(_fit(tmp_path, resume=True).history) == 3


def test_checkpoint_of_another_format_is_refused(tmp_path: Path) -> None:
    import torch

    from edge.errors import ConfigError

    torch.save({"fit_config": {}, "epoch": 0}, tmp_path / "checkpoint.pt")  # before metadata: no 'meta'
    with pytest.raises(ConfigError, match="not a checkpoint of this edge version"):
        _fit(tmp_path, resume=True)


# --- images that decoded to black -----------------------------------------------------------------
@pytest.mark.parametrize(("mode", "values"), [
    ("F", [[0.0, 0.25], [0.5, 1.0]]),  # float TIFF in 0..1
    ("F", [[0.0, 63.75], [127.5, 255.0]]),  # float in 0..255
    ("I", [[0, 16384], [32768, 65535]]),  # 32-bit container, 16-bit data
    ("I", [[0, 64], [128, 255]]),  # 32-bit container, 8-bit data
    ("I", [[-1000, 0], [1000, 3000]]),  # signed: min..max
])
def test_float_and_32bit_images_keep_their_contrast(tmp_path: Path, mode: str, values: list[list[float]]) -> None:
    from PIL import Image

    from edge.training.images import load_image

    array = np.array(values, dtype=np.float32 if mode == "F" else np.int32)
    path = tmp_path / "x.tif"
    Image.fromarray(array, mode=mode).save(path)
    out = load_image(path, 2, 1, fit="stretch")[..., 0].astype(int)
    assert out.min() <= 1 and out.max() >= 254, out
    assert (np.diff(out.ravel()) >= 0).all(), out  # order kept
