"""The one `quant_ranges.json` schema (edge/quant_ranges.py): round trip, errors naming file and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.quant_ranges import (
    POINT_RE,
    ActivationRange,
    QuantRangesFile,
    WeightRange,
    activation_points,
    integer_points,
    read_ranges,
    write_ranges,
)
from edge.vit_spec import BlockSpec, VitSpec

SPEC = VitSpec(name="vit_lite_tiny", img_size=16, in_chans=1, patch_size=4, embed_dim=16, num_classes=2,
               blocks=[BlockSpec(num_heads=2, head_dim=8, mlp_hidden=32)] * 2, labels=["a", "b"])
VALID = {"format": "edge-quant-ranges/1", "activation_bits": 8, "weight_bits": 8, "activations": {}, "weights": {}}


def test_write_then_read_gives_the_same_ranges_and_the_documented_json(tmp_path: Path) -> None:
    ranges = QuantRangesFile(
        activation_bits=16,
        activations={"blocks.1.attn.q": ActivationRange(min=-0.1 / 3, max=2.5), "head": ActivationRange(min=0, max=1)},
        weights={"head.weight": WeightRange(min=[-1 / 3, -2.0], max=[1 / 3, 2.0]),
                 "norm.weight": WeightRange(min=[0.5], max=[1.5])})
    path = write_ranges(tmp_path / "quant_ranges.json", ranges)
    loaded = read_ranges(path)
    assert loaded == ranges
    assert loaded.activation_pairs() == {"blocks.1.attn.q": (-0.1 / 3, 2.5), "head": (0.0, 1.0)}
    assert list(loaded.activations) == ["blocks.1.attn.q", "head"]  # file order is kept
    assert json.loads(path.read_text()) == {
        "format": "edge-quant-ranges/2", "activation_bits": 16, "weight_bits": 8,
        "activations": {"blocks.1.attn.q": {"min": -0.1 / 3, "max": 2.5}, "head": {"min": 0.0, "max": 1.0}},
        "weights": {"head.weight": {"axis": 0, "min": [-1 / 3, -2.0], "max": [1 / 3, 2.0]},
                    "norm.weight": {"axis": 0, "min": [0.5], "max": [1.5]}}}


@pytest.mark.parametrize(("patch", "message"), [
    ({"activations": {"blocks.0.attn.q": {"min": 1.0, "max": 1.0}}},
     r"field 'activations\.blocks\.0\.attn\.q': Value error, min 1\.0 is not below max 1\.0"),
    ({"activations": {"head": {"min": 3, "max": 2}}}, r"field 'activations\.head': Value error, min 3\.0 is not below"),
    ({"activations": {"head": {"min": "low", "max": 2}}}, r"field 'activations\.head\.min': Input should be a valid"),
    ({"activations": {"blocks.0.attn.qq": {"min": 0.0, "max": 1.0}}},
     r"field 'activations\.blocks\.0\.attn\.qq': Value error, undocumented activation point 'blocks\.0\.attn\.qq'"),
    ({"weights": {"head.weight": {"axis": 0, "min": [-1.0, float("nan")], "max": [1.0, 1.0]}}},
     r"field 'weights\.head\.weight': Value error, channel 1: range \[nan, 1\.0\] must be finite"),
    ({"weights": {"head.weight": {"axis": 0, "min": [-1.0], "max": [1.0, 1.0]}}}, r"1 mins but 2 maxs"),
    ({"weights": {"head.weight": {"min": [-1.0], "max": [1.0], "scale": 2}}}, r"field 'weights\.head\.weight\.scale'"),
    ({"activation_bits": 4}, r"field 'activation_bits': Input should be 8 or 16"),
    ({"format": "edge-quant-ranges/3"},
     r"field 'format' is 'edge-quant-ranges/3', expected 'edge-quant-ranges/1' or 'edge-quant-ranges/2'"),
])
def test_a_bad_field_is_named_with_the_file(tmp_path: Path, patch: dict, message: str) -> None:
    path = tmp_path / "quant_ranges.json"
    path.write_text(json.dumps(VALID | patch))
    with pytest.raises(ConfigError, match=message) as info:
        read_ranges(path)
    assert str(info.value).startswith(f"{path}: invalid quantisation ranges, ")
    assert info.value.where == str(path) and info.value.hint == "the qat stage writes this file; rerun it"


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "quant_ranges.json"
    with pytest.raises(ConfigError, match="cannot read quantisation ranges") as info:
        read_ranges(path)
    assert info.value.where == str(path)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="invalid quantisation ranges, top level: Input should be a valid dict"):
        read_ranges(path)
    path.write_text(json.dumps(VALID | {"weight_bits": 4, "activation_bits": 2}))
    with pytest.raises(ConfigError, match=r"field 'activation_bits': Input should be 8 or 16 \(and 1 more\)"):
        read_ranges(path)


def test_weight_range_channel_count_must_match_the_weight() -> None:
    ranges = QuantRangesFile(weights={"head.weight": {"axis": 0, "min": [-1.0] * 3, "max": [1.0] * 3}})
    with pytest.raises(ConfigError, match=r"'weights.head.weight' has 3 channels, the weight \[2, 16\] has 2"):
        ranges.check_shapes({"head.weight": (2, 16)})
    with pytest.raises(ConfigError, match=r"'weights.head.weight' names no weight of the model") as info:
        ranges.check_shapes({}, where="run/qat/quant_ranges.json")
    assert info.value.where == "run/qat/quant_ranges.json"
    ranges.check_shapes({"head.weight": (3, 16)})


def test_activation_points_are_the_documented_names_in_graph_order() -> None:
    points = activation_points(SPEC)
    assert len(points) == 5 + 14 * 2 and len(set(points)) == len(points)
    assert points[:4] == ["input", "patch_embed", "tokens", "blocks.0.norm1"]
    assert points[-3:] == ["blocks.1.add2", "norm", "head"]
    assert all(POINT_RE.match(p) for p in points)
    assert not POINT_RE.match("blocks.0.attn.qk") and not POINT_RE.match("blocks.x.norm1")


def test_integer_points_are_every_tensor_of_the_int8_graph_in_order() -> None:
    norm = ["mean", "centred", "square", "var", "var_eps", "rstd"]
    points = integer_points(SPEC)  # gelu_tanh: fc1 has its own tensor
    assert points[:10] == ["input", "patch_embed", "tokens", *(f"blocks.0.norm1.{p}" for p in norm), "blocks.0.norm1"]
    assert points[-8:] == [*(f"norm.{p}" for p in norm), "norm", "head"]
    assert len(points) == 3 + 2 * (7 + 7 + 8 + 4) + 7 + 1 and len(set(points)) == len(points)
    relu = integer_points(SPEC.model_copy(update={"act": "relu"}))
    assert set(points) - set(relu) == {"blocks.0.mlp.fc1", "blocks.1.mlp.fc1"}  # fused into the FC with ReLU
    assert all(POINT_RE.match(p) for p in points)
    assert not POINT_RE.match("blocks.0.attn.q.mean") and not POINT_RE.match("norm.rsqrt")


def test_a_format_1_file_still_reads() -> None:
    ranges = QuantRangesFile.model_validate(VALID | {"activations": {"blocks.0.norm1": {"min": -1, "max": 1}}})
    assert ranges.format == "edge-quant-ranges/1"


def test_the_module_imports_neither_torch_nor_tensorflow() -> None:
    code = ("import sys, edge.quant_ranges, edge.export.apply_ranges; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'nncf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_graph_ranges_turn_format_1_names_into_the_int8_graph_tensors() -> None:
    from edge.export.apply_ranges import graph_ranges

    v1 = QuantRangesFile.model_validate(VALID | {"activations": {
        "input": {"min": -1, "max": 1}, "blocks.0.attn.q": {"min": -2, "max": 4},
        "blocks.0.norm1": {"min": -3, "max": 3}, "norm": {"min": -3, "max": 3}, "head": {"min": -1, "max": 2}}})
    pairs, folded = graph_ranges(v1, SPEC)  # head_dim 8: q's range times 8^-0.5, norm outputs unused
    assert folded == ["blocks.0.norm1", "norm"] and set(pairs) == {"blocks.0.attn.q", "head"}
    assert pairs["blocks.0.attn.q"] == pytest.approx((-2 * 8**-0.5, 4 * 8**-0.5))
    v2 = QuantRangesFile(activations={"blocks.0.attn.q": ActivationRange(min=-2, max=4),
                                      "blocks.0.norm1": ActivationRange(min=-3, max=3)})
    assert graph_ranges(v2, SPEC) == ({"blocks.0.attn.q": (-2.0, 4.0), "blocks.0.norm1": (-3.0, 3.0)}, [])
