"""The run configuration: strict pydantic sections, one per stage, with defaults.

The built-in default is what `make export TARGET=cortex-m` runs. Users change it with a YAML
file (`--config my.yaml`) and/or dotted overrides (`--set train.epochs=10`). Unknown keys are
rejected with the offending field named; values are strict (`true` is not a number, `1` is not a
boolean); a `--set` value for a text field (`data.source`, `battery.device`, ...) is taken
literally, not as YAML, so `imagefolder:ds/set #2` keeps its `#2`. `check_settings` checks what
needs other modules (the target, the lifetime, profile names) before a command saves anything.
"""

from __future__ import annotations

import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from edge.errors import ConfigError
from edge.vit_spec import Activation, BlockSpec, VitSpec, family_spec

PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """`true` is not 1: refuse booleans for any field that is not a boolean (Literal[1, 3] too)."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation is not bool and bool not in typing.get_args(annotation):
                raise ValueError(f"{str(value).lower()} is a boolean; this field takes no true/false")
        return value


#: Model input side when neither the config nor the data says otherwise.
DEFAULT_IMAGE_SIZE = 64


class DataConfig(Section):
    """Where the images come from and how they are shaped for the model."""

    source: str = Field(
        "synthetic",
        description="'synthetic' (built-in motion-camera set), 'imagefolder:PATH' or 'vww:COCO_ROOT'",
    )
    image_size: int | None = Field(
        None, ge=16, le=512, description="square model input side, pixels (null: synthetic and vww 64; imagefolder "
        "proposes it from the images: median short side, a multiple of 8, 16..64, recorded in data/source.json)")
    channels: Literal[1, 3] = Field(1, description="1 = grayscale, 3 = RGB")
    n_train: int = Field(4000, ge=10, description="synthetic: training images")
    n_val: int = Field(800, ge=10, description="synthetic: validation images")
    n_test: int = Field(800, ge=10, description="synthetic: test images")
    n_calib: int = Field(200, ge=1, description="fixed calibration subset size (taken from train)")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="imagefolder/vww: share of images for val")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="imagefolder/vww: share of images for test")
    vww_min_area_fraction: float = Field(0.005, gt=0, lt=1, description="vww: person box area / image area")
    skip_corrupt: bool = Field(
        False,
        description="imagefolder/vww: leave unreadable images out (listed in data/source.json) instead of failing",
    )
    seed: int = 0


class ModelConfig(Section):
    """Which family member to build (a timm model name registered by edge.training.models; docs/models.md)."""

    name: str = "cct_lite_s"
    act: Activation = Field("relu", description="MLP activation: relu (fused into the int8 FULLY_CONNECTED; "
                            "the default, see docs/export.md), gelu_tanh, hardswish or quick_gelu")
    patch_size: int | None = Field(None, ge=1, le=64, description="override the family member's patch size "
                                   "(null: model.name's); data.image_size must be a multiple of it")
    embed_dim: int | None = Field(None, ge=8, le=1024, description="override the embedding width (null: model.name's); "
                                  "a multiple of the head count")
    depth: int | None = Field(None, ge=1, le=24, description="override the number of blocks (null: model.name's)")
    num_heads: int | None = Field(None, ge=1, le=32, description="override the attention heads per block "
                                  "(null: model.name's)")
    mlp_ratio: float | None = Field(None, gt=0, le=8, description="override MLP width / embedding width "
                                    "(null: model.name's)")

    def spec(self, img_size: int, in_chans: int, num_classes: int, labels: list[str] | None = None) -> VitSpec:
        """The model this section describes: the family member `name`, with any width overrides applied."""
        base = family_spec(self.name, img_size, in_chans, num_classes, labels, act=self.act)
        overrides = {key: getattr(self, key) for key in WIDTH_KEYS if getattr(self, key) is not None}
        if not overrides:
            return base
        first = base.blocks[0]
        member = {"patch_size": base.patch_size, "embed_dim": base.embed_dim, "depth": len(base.blocks),
                  "num_heads": first.num_heads, "mlp_ratio": first.mlp_hidden / base.embed_dim}
        widths = {**member, **overrides}
        embed, heads = int(widths["embed_dim"]), int(widths["num_heads"])
        if embed % heads:
            raise ConfigError(f"model.embed_dim {embed} is not a multiple of model.num_heads {heads}",
                              where="model.embed_dim", hint="pick a width that the head count divides, e.g. "
                              f"{embed - embed % heads or heads}")
        if img_size % int(widths["patch_size"]):
            raise ConfigError(f"data.image_size {img_size} is not a multiple of model.patch_size "
                              f"{widths['patch_size']}", where="model.patch_size",
                              hint="pick a patch size that divides the image side")
        block = BlockSpec(num_heads=heads, head_dim=embed // heads, mlp_hidden=int(embed * float(widths["mlp_ratio"])))
        name = base.name if widths == member else "{}-p{}-e{}-d{}-h{}-r{:g}".format(
            base.name, *(widths[k] for k in WIDTH_KEYS))
        try:
            return VitSpec.model_validate({**base.model_dump(), "name": name, "patch_size": int(widths["patch_size"]),
                                           "embed_dim": embed, "blocks": [block.model_dump()] * int(widths["depth"])})
        except ValidationError as exc:
            raise ConfigError(f"the model widths do not make a model: {exc.errors()[0]['msg']}",
                              where="model.patch_size", hint="see `edge config --show` for the model.* keys") from exc


#: ModelConfig fields that override a family member's widths (edge.vit_spec.FAMILY keys).
WIDTH_KEYS = ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio")


class DistillConfig(Section):
    """Knowledge distillation from a teacher trained first."""

    teacher: Literal["none", "cnn", "vit_lite_m"] = "none"
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the distillation loss")
    temperature: float = Field(4.0, gt=0)
    teacher_epochs: int = Field(10, ge=1)


class TrainConfig(Section):
    """AdamW + cosine schedule training of the float model."""

    epochs: int | None = Field(None, ge=1, description="length of the cosine schedule; null = from the data: "
                               "enough epochs for train.target_steps optimizer steps, between 15 and max_epochs "
                               "(15 on the built-in set, 45 on 1,300 images); early stopping ends it sooner")
    target_steps: int = Field(900, ge=1, description="epochs=null: optimizer steps the schedule aims for")
    max_epochs: int = Field(150, ge=1, description="epochs=null: cap on the schedule length")
    max_minutes: float | None = Field(None, gt=0, description="time budget: stop after the epoch that passes it "
                                      "(the best model so far is kept; --resume continues)")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: int = Field(2, ge=0)
    label_smoothing: float = Field(0.05, ge=0, lt=1)
    early_stop_patience: int | None = Field(
        None, ge=1, description="epochs without val improvement before stopping; null = 30 % of the schedule, at "
        "least 6 (6 on the built-in set, 14 on 1,300 images: a long schedule's val curve is noisy while the "
        "learning rate is still high)")
    target_val_top1: float | None = Field(None, gt=0, le=1, description="stop once val_top1 reaches this")
    augment: bool = True
    hflip: bool | None = Field(None, description="augmentation mirrors images left-right (train, prune and QAT); "
                               "null: decided from the data (off when training the pixel baseline on mirrored "
                               "copies too costs it val accuracy: digits, text); false for anything whose mirror "
                               "image is another class")
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all cores)")
    distill: DistillConfig = DistillConfig()
    carbon_country: str = Field("SWE", min_length=3, max_length=3, description="ISO 3166 alpha-3 for CodeCarbon")


class PruneConfig(Section):
    """Structured pruning (torch-pruning): heads, MLP units and embedding channels, in steps with
    distillation fine-tuning. Every budget given must hold; see docs/compression.md."""

    enabled: bool = Field(True, description="false: pass the trained model through unchanged")
    max_drop: float | None = Field(
        0.01, ge=0, le=1, description="accuracy-aware: stop at the last step whose val top-1 is within this of the "
        "trained model's (absolute, 0.01 = 1 point; a larger drop within 1.28 standard errors of the val split's "
        "noise still counts as within); the size budget below is then the smallest model tried, "
        "max_macs/flash_bytes/ram_bytes stay hard limits; null = prune to the budget whatever it costs")
    params_ratio: float | None = Field(0.30, gt=0, le=1, description="keep at most this share of the params")
    int8_ratio: float | None = Field(
        0.095, gt=0, le=1, description="estimated int8 TFLite bytes <= this share of the trained float32 bytes "
        "(export's gate is 0.10; the estimate was within 0.5 % on trained models)")
    max_macs: int | None = Field(None, gt=0, description="MAC budget of one inference")
    flash_bytes: int | None = Field(None, gt=0, description="budget for the estimated int8 TFLite size")
    ram_bytes: int | None = Field(None, gt=0, description="budget for the estimated int8 activation RAM")
    importance: Literal["taylor", "magnitude"] = "taylor"
    heads: bool = Field(True, description="remove whole attention heads (head_dim is kept)")
    mlp: bool = Field(True, description="remove MLP hidden units")
    embed: bool = Field(True, description="remove embedding channels (every residual, norm, token)")
    min_embed_dim: int = Field(16, ge=1, description="never shrink the embedding below this")
    drop_blocks: int = Field(0, ge=0, description="whole blocks to remove first (least loss increase when skipped)")
    steps: int = Field(4, ge=1, description="pruning steps, each followed by fine-tuning (max_drop stops at a step)")
    finetune_epochs: int | None = Field(None, ge=0, description="fine-tuning epochs after each step; null = "
                                        "1/15 of the training schedule (1 on the built-in set, 3 on 1,300 images)")
    final_epochs: int | None = Field(None, ge=0, description="extra fine-tuning epochs after the last step; "
                                     "null = 3/15 of the training schedule")
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    importance_batches: int = Field(8, ge=1, description="taylor: training batches for the gradients")
    distill_alpha: float = Field(0.7, ge=0, le=1, description="weight of distillation from the unpruned model")
    distill_temperature: float = Field(2.0, gt=0)
    seed: int = 0


class QATConfig(Section):
    """Quantisation-aware training of the pruned model (docs/compression.md, "QAT")."""

    enabled: bool = True
    scheme: Literal["auto", "tflite", "nncf"] = Field(
        "auto", description="'tflite': QAT runs the int8 TFLite graph op by op (every tensor TFLite quantises, "
        "int8, ReLU MLP); 'nncf': NNCF fake quantizers (int16 activations, any MLP activation); 'auto': tflite "
        "when it applies, else nncf")
    epochs: int = Field(2, ge=0, description="QAT fine-tuning epochs (0 = post-training quantisation only); "
                        "2 keeps the default pipeline under 10 min (docs/compression.md)")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-4, gt=0, description="peak learning rate (weights and quantizer ranges)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (also pulls on the range parameters)")
    warmup_epochs: int = Field(1, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    early_stop_patience: int = Field(3, ge=1, description="epochs without val improvement before stopping")
    augment: bool = True
    distill_alpha: float = Field(0.5, ge=0, le=1, description="weight of distillation from the float model (0 = off)")
    distill_temperature: float = Field(4.0, gt=0)
    activation_bits: Literal[8, 16] = Field(8, description="8 = int8 activations; 16 = int16 (TFLite 16x8 mode)")
    model_type: Literal["default", "transformer"] = Field(
        "default", description="NNCF scheme: 'default' quantises every tensor it can (like full-int8 TFLite), "
        "'transformer' only the inputs of matmuls and linear layers")
    calib_size: int | None = Field(None, ge=1, description="calibration images taken from data's calib split "
                                   "(null = all)")
    bias_correction: bool = Field(True, description="NNCF fast bias correction after calibration")
    onnx_opset: int = Field(17, ge=13, le=21, description="opset of qat/model_int8.onnx")
    seed: int = 0


class ExportConfig(Section):
    """ONNX and TFLite export, the TFLite Micro check and the firmware sources (docs/export.md)."""

    int16_activations: bool = Field(False, description="int16 activations / int8 weights (TFLM 16x8) instead of int8")
    build_dir: str | None = Field(None, description="output folder root (default: build/ next to runs/)")
    opset: int = Field(17, ge=17, le=23, description="ONNX opset of model.onnx")
    arena_margin_fraction: float = Field(0.05, ge=0, le=1, description="kTensorArenaSize = measured x (1 + this)")
    min_tflm_agreement: float = Field(0.99, ge=0, le=1, description="fail if TFLM top-1 agreement is lower")
    agreement_basis: Literal["decisive", "all"] = Field(
        "decisive", description="'decisive': the agreement gate counts the test images whose QAT top-1 margin is at "
        "least 4 int8 output steps (smaller margins are ties an int8 output cannot resolve) and fails when over 10 % "
        "are such near-ties; 'all': every test image (report.json gives both)")
    max_size_fraction: float | None = Field(
        0.10, gt=0, le=1, description="fail if int8 bytes exceed this share of the unpruned float32 bytes "
        "(checked when the model was pruned; null = report only)")
    eval_images: int | None = Field(None, ge=1, description="test images for the agreement table (null = all)")
    require_qat: bool = Field(False, description="fail instead of falling back to the prune/train model")
    strip_tensor_names: bool = Field(True, description="drop tensor names from model_int8.tflite (TFLM ignores them)")


class BatteryConfig(Section):
    """Battery simulation and the lifetime gate (profiles in power_profiles/, see docs/power.md)."""

    device: str = Field("camera-trap-nrf52840", description="device profile (power_profiles/devices/NAME.yaml)")
    mcu: str | None = Field(None, description="MCU profile for the cost model (default: the device's MCU)")
    kernels: Literal["optimized", "reference"] = Field("optimized", description="CMSIS-NN-class or reference kernels")
    min_lifetime: str = Field("1y", description="gate target: e.g. 1y, 18mo, 400d")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="gate on the (1 - confidence) lifetime percentile")
    runs: int = Field(1000, ge=1, le=100_000, description="Monte Carlo runs")
    seed: int = 0
    max_years: float = Field(10.0, gt=0, le=50, description="simulated horizon (longer lifetimes are lower bounds)")
    event_rate_per_day: float | None = Field(None, ge=0, description="override the device's motion event rate")
    frames_per_event: int | None = Field(None, ge=1, le=100, description="override the device's frames per event")
    process: Literal["poisson", "diurnal", "bursty", "replay"] | None = Field(
        None, description="override the device's event process")

    @field_validator("device", "mcu")
    @classmethod
    def _plain_profile_name(cls, value: str | None) -> str | None:
        if value is not None and not PROFILE_NAME.fullmatch(value):
            raise ValueError("a profile name (letters, digits, '.', '_', '-'; no '/' or '..'), e.g. "
                             "camera-trap-nrf52840; see `edge battery profiles`")
        return value


class RunConfig(Section):
    """The whole, resolved configuration of one run."""

    target: str = "cortex-m"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    prune: PruneConfig = PruneConfig()
    qat: QATConfig = QATConfig()
    export: ExportConfig = ExportConfig()
    battery: BatteryConfig = BatteryConfig()

    def section(self, *keys: str) -> dict[str, Any]:
        """The named top-level sections as plain data (used to fingerprint a stage's config)."""
        dumped = self.model_dump(mode="json")
        return {key: dumped[key] for key in keys}


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"'{part}' is a value, not a section", where=f"--set {dotted}")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split `key.path=value`. A text field's value is taken literally; others are read as YAML
    (numbers, booleans, null, lists)."""
    if "=" not in text:
        raise ConfigError("expected KEY=VALUE", where=f"--set {text}", hint="e.g. --set train.epochs=10")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"'{key}' is not a dotted key", where=f"--set {text}", hint="e.g. --set train.epochs=10")
    kind = _text_field(key)
    if kind is not None:
        value = raw.strip()
        return key, None if kind == "optional" and value in ("null", "~", "") else value
    if not raw.strip():
        return key, ""
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"value {raw!r} is not valid YAML: {problem}", where=f"--set {text}",
                          hint="quote text, write lists as [1, 2]; e.g. --set train.epochs=10") from exc


def _text_field(dotted: str) -> str | None:
    """'text' or 'optional' when `dotted` names a str (or str | None) config field, else None."""
    model: Any = RunConfig
    parts = dotted.split(".")
    for part in parts[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    field = getattr(model, "model_fields", {}).get(parts[-1])
    if field is None:
        return None
    annotation = field.annotation
    if annotation is str:
        return "text"
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and set(typing.get_args(annotation)) == {
            str, type(None)}:
        return "optional"
    return None


def _format_validation(exc: ValidationError, origin: str) -> ConfigError:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"field '{field}': {msg} (got {err.get('input')!r})")
    return ConfigError(
        "; ".join(lines),
        where=origin,
        hint="see `edge config --show` for every key, its default and its meaning",
    )


def user_settings(
    file: str | os.PathLike[str] | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """The user's explicit settings: `base` (what a run remembered), then a YAML file, then `--set`.

    Returns the merged tree and a description of where it came from (for error messages).
    Defaults are not part of it, so a run picks up improved defaults of a newer edge.
    """
    tree: dict[str, Any] = dict(base or {})
    origin = "the run's saved settings" if base else "built-in defaults"
    if file is not None:
        path = Path(file)
        origin = str(path)
        loaded = read_yaml_file(path, "config file") or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"the top level must be a mapping of sections, not {type(loaded).__name__}",
                              where=str(path), hint="e.g.\ntrain:\n  epochs: 10")
        tree = _deep_merge(tree, loaded)
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
        origin = f"{origin} + --set"
    return tree, origin


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice (lines {seen[key]} and {line})", key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_utf8(path: Path, what: str) -> str:
    """A text file's contents; unreadable or non-UTF-8 files raise ConfigError naming the file, line and byte."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}", where=str(path)) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{what} is not UTF-8 text: byte {exc.start} is 0x{raw[exc.start]:02x}",
                          where=f"{path}:{line}", hint="save the file as UTF-8") from exc


def read_yaml_file(path: Path, what: str) -> Any:
    """A YAML file's data; unreadable, non-UTF-8, malformed or duplicate-key files raise ConfigError
    naming the file and the line (or byte)."""
    text = read_utf8(path, what)
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: no tags run code
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', None) or exc}", where=where) from exc


def validate_settings(tree: dict[str, Any], origin: str = "settings") -> RunConfig:
    """Defaults + `tree` as a validated RunConfig; errors name the field and the origin."""
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise _format_validation(exc, origin) from exc


def check_settings(config: RunConfig, origin: str = "settings") -> RunConfig:
    """Checks that need other modules: the target exists, the lifetime parses, the device profile
    exists. Run before any work and before the settings are saved into a run."""
    from edge.export.targets import resolve_target
    from edge.power.durations import parse_duration_days
    from edge.power.profiles import profile_path

    try:
        resolve_target(config.target)
    except ConfigError as exc:
        raise ConfigError(exc.message, where=f"{origin}: field 'target'", hint=exc.hint) from exc
    parse_duration_days(config.battery.min_lifetime, where=f"{origin}: field 'battery.min_lifetime'")
    scheme, _, folder = config.data.source.partition(":")
    if scheme.strip().lower() in ("imagefolder", "vww") and folder.strip():
        path = Path(os.path.expanduser(folder.strip()))
        if not path.is_dir():
            raise ConfigError(f"folder '{folder.strip()}' {'is not a folder' if path.exists() else 'does not exist'}",
                              where=f"{origin}: field 'data.source'",
                              hint="the text after 'imagefolder:' or 'vww:' is a path, taken literally (spaces and # "
                              "included); quote it in the shell")
    for kind, name, key in (("devices", config.battery.device, "device"), ("mcus", config.battery.mcu, "mcu")):
        if name is not None:
            try:
                profile_path(kind, name)
            except ConfigError as exc:
                raise ConfigError(exc.message, where=f"{origin}: field 'battery.{key}'", hint=exc.hint) from exc
    return config


def load_config(
    file: str | os.PathLike[str] | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Resolve a RunConfig from a base dict, an optional YAML file and `--set` overrides."""
    return validate_settings(*user_settings(file, overrides, base))


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
