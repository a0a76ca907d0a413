"""The ViT-lite family: registered in timm, TFLM-friendly structure, exact size figures."""

from __future__ import annotations

import pytest
import timm
import torch
from export_fixtures import tiny_spec
from torch.overrides import TorchFunctionMode

import edge.training.models as models
from edge.vit_spec import BlockSpec, family_spec

torch.set_num_threads(1)


def test_family_is_registered_in_timm():
    names = timm.list_models("vit_lite_*")
    assert {"vit_lite_xs", "vit_lite_s", "vit_lite_m"} <= set(names)
    model = timm.create_model("vit_lite_s", img_size=64, in_chans=1, num_classes=2)
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 2)


def test_size_figures_match_a_hand_count():
    model = timm.create_model("vit_lite_xs", img_size=64, in_chans=1, num_classes=2)
    tokens, embed, hidden, heads, head_dim = 65, 64, 128, 2, 32
    patch = 64 * embed * (8 * 8)  # 64 patches x 64 filters x 8x8x1
    block = (
        3 * tokens * embed * embed  # q, k, v
        + 2 * heads * tokens * tokens * head_dim  # q k^T and attn v
        + tokens * embed * embed  # proj
        + 2 * tokens * embed * hidden  # fc1, fc2
    )
    assert models.count_macs(model, (1, 64, 64)) == patch + 4 * block + embed * 2
    per_block = 4 * (embed * embed + embed) + 2 * embed * hidden + hidden + embed + 4 * embed
    expected = (64 * embed + embed) + embed + tokens * embed + 4 * per_block + 2 * embed + embed * 2 + 2
    assert models.count_params(model) == expected == 142530


def test_conv_tokenizer_member_makes_16_tokens_and_counts_like_a_hand_count():
    model = timm.create_model("cct_lite_xs", img_size=64, in_chans=1, num_classes=2)
    assert model.patch_embed.grid_size == (4, 4) and model.pos_embed.shape == (1, 16, 64) and model.cls_token is None
    tokens, embed, hidden, heads, head_dim = 16, 64, 128, 2, 32
    stem = 32 * 32 * 16 * 9 * 1 + 16 * 16 * 32 * 9 * 16  # 3x3 stride-2 convs: 64 -> 32 px (16 ch) -> 16 px (32 ch)
    patch = 16 * embed * (4 * 4 * 32)  # 16 patches of 4x4x32
    pool = 2 * tokens * embed  # sequence pooling: one score per token, then the weighted mean
    block = (4 * tokens * embed * embed + 2 * heads * tokens * tokens * head_dim + 2 * tokens * embed * hidden)
    assert models.count_macs(model, (1, 64, 64)) == stem + patch + 4 * block + pool + embed * 2


def test_family_members_pick_as_many_stem_layers_as_keep_a_4x4_grid():
    stems = {size: family_spec("cct_lite_s", size, 1, 2).stem_channels for size in (16, 24, 32, 48, 64, 96)}
    assert stems == {16: [], 24: [], 32: [16], 48: [16], 64: [16, 32], 96: [16, 32]}
    assert family_spec("cct_lite_s", 64, 1, 2).num_tokens == 16 == family_spec("cct_lite_s", 32, 1, 2).num_tokens


class MaxRank(TorchFunctionMode):
    """Records the highest tensor rank any op produces."""

    def __init__(self):
        super().__init__()
        self.max_rank = 0
        self.ops: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.max_rank = max(self.max_rank, out.dim())
        self.ops.add(getattr(func, "__name__", str(func)))
        return out


@pytest.mark.parametrize("name", ["vit_lite_s", "cct_lite_s"])
def test_forward_uses_at_most_4d_tensors_and_no_gather_or_erf(name):
    model = models.build_model(family_spec(name, 64, 1, 2, act="gelu_tanh")).eval()
    with torch.no_grad(), MaxRank() as mode:
        model(torch.randn(1, 1, 64, 64))
    assert mode.max_rank == 4
    assert not {"gather", "index_select", "erf"} & mode.ops
    acts = {type(m).__name__: m for m in model.modules() if isinstance(m, torch.nn.GELU)}
    assert acts and all(m.approximate == "tanh" for m in acts.values())


def test_per_block_widths_round_trip_through_spec_and_safetensors(tmp_path):
    spec = tiny_spec(blocks=[BlockSpec(num_heads=2, head_dim=8, mlp_hidden=32),
                             BlockSpec(num_heads=1, head_dim=8, mlp_hidden=12)])
    model = models.build_model(spec).eval()
    assert model.blocks[1].attn.num_heads == 1 and model.blocks[1].mlp.fc1.out_features == 12
    assert models.spec_of(model, spec) == spec
    models.save_model(model, spec, tmp_path / "w.safetensors", tmp_path / "spec.json")
    loaded, loaded_spec = models.load_model(tmp_path / "w.safetensors", tmp_path / "spec.json")
    x = torch.randn(3, 1, 16, 16)
    assert loaded_spec == spec
    assert torch.equal(loaded(x), model(x))


def test_model_act_setting_reaches_the_spec_and_the_model():
    from edge.config import RunConfig

    assert RunConfig().model.act == "relu" and family_spec("vit_lite_s", 64, 1, 2).act == "relu"
    config = RunConfig.model_validate({"model": {"act": "hardswish"}})
    spec = family_spec(config.model.name, 64, 1, 2, act=config.model.act)
    assert spec.act == "hardswish"
    model = models.build_model(spec)
    assert all(isinstance(block.mlp.act, torch.nn.Hardswish) for block in model.blocks)
