"""Structured pruning: dense result, exact size figures, whole heads, budgets, ONNX, the stage."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_fixtures import tiny_spec

from edge.config import load_config
from edge.errors import ConfigError
from edge.training.models import build_model, count_macs, count_params, load_model, save_model, spec_of
from edge.training.prune_plan import (
    Budget,
    Dims,
    int8_bytes_estimate,
    plan_spec,
    ram_bytes_estimate,
    solve_plan,
    spec_macs,
    spec_params,
)
from edge.training.pruning import drop_blocks, prune_to
from edge.vit_spec import BlockSpec, family_spec

torch.set_num_threads(1)


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(tiny_spec()).eval()


def tiny_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def test_spec_arithmetic_matches_the_model_for_pruned_widths():
    for spec in (tiny_spec(), family_spec("vit_lite_s", 64, 1, 2), family_spec("cct_lite_s", 64, 1, 2),
                 family_spec("cct_lite_xs", 32, 3, 5),
                 tiny_spec(embed_dim=11, blocks=[BlockSpec(num_heads=1, head_dim=8, mlp_hidden=5),
                                                 BlockSpec(num_heads=2, head_dim=8, mlp_hidden=1)])):
        model = build_model(spec)
        assert spec_params(spec) == count_params(model)
        assert spec_macs(spec) == count_macs(model, (spec.in_chans, spec.img_size, spec.img_size))


def test_conv_tokenizer_model_prunes_its_transformer_and_keeps_its_stem(tmp_path):
    spec = family_spec("cct_lite_xs", 32, 1, 3)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    target = spec.model_copy(update={"embed_dim": 40, "blocks": [BlockSpec(num_heads=1, head_dim=32, mlp_hidden=50)]
                                     * len(spec.blocks)})
    prune_to(model, target, "taylor", [(torch.randn(8, 1, 32, 32), torch.randint(0, 3, (8,)))])
    pruned = spec_of(model, spec)
    assert pruned == target and pruned.stem_channels == [16] and pruned.pool == "seq"
    assert model.patch_embed.stem[0].conv.out_channels == 16 and model.seq_pool.score.in_features == 40
    assert spec_params(pruned) == count_params(model)
    save_model(model, pruned, tmp_path / "m.safetensors", tmp_path / "m.json")
    rebuilt, _ = load_model(tmp_path / "m.safetensors", tmp_path / "m.json")
    x = torch.randn(2, 1, 32, 32)
    assert torch.allclose(rebuilt.eval()(x), model(x), atol=1e-5)


def test_pruned_model_is_dense_and_rebuilds_from_its_spec(tmp_path):
    model = tiny_model()
    target = tiny_spec(embed_dim=10, blocks=[BlockSpec(num_heads=1, head_dim=8, mlp_hidden=12),
                                             BlockSpec(num_heads=2, head_dim=8, mlp_hidden=5)])
    prune_to(model, target, "magnitude")
    block0, block1 = model.blocks
    assert block0.attn.q.weight.shape == (8, 10) and block0.attn.proj.weight.shape == (10, 8)
    assert block1.attn.k.weight.shape == (16, 10) and block1.mlp.fc2.weight.shape == (10, 5)
    assert block0.mlp.fc1.weight.shape == (12, 10) and model.norm.weight.shape == (10,)
    assert model.pos_embed.shape == (1, 17, 10) and model.cls_token.shape == (1, 1, 10)
    assert model.patch_embed.proj.weight.shape == (10, 1, 4, 4) and model.head.weight.shape == (3, 10)
    assert spec_of(model, tiny_spec()) == target
    # 5,091 -> 1,912 parameters (hand count: 560 + 2 x 2,224 + 83 -> 350 + 656 + 853 + 53)
    assert (count_params(tiny_model()), count_params(model)) == (spec_params(tiny_spec()), spec_params(target))
    assert spec_params(target) == 1912 and spec_params(tiny_spec()) == 5091
    assert count_macs(model, (1, 16, 16)) == spec_macs(target) < spec_macs(tiny_spec())

    save_model(model, target, tmp_path / "w.safetensors", tmp_path / "spec.json")
    rebuilt, spec = load_model(tmp_path / "w.safetensors", tmp_path / "spec.json")  # strict load
    x = tiny_data(5)[0]
    assert spec == target
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model(x))


def _scale_head(model, block: int, head: int, factor: float) -> None:
    attn, d = model.blocks[block].attn, model.blocks[block].attn.head_dim
    with torch.no_grad():
        for layer in (attn.q, attn.k, attn.v):
            layer.weight[head * d:(head + 1) * d] *= factor
            layer.bias[head * d:(head + 1) * d] *= factor
        attn.proj.weight[:, head * d:(head + 1) * d] *= factor


def test_head_pruning_removes_the_weakest_whole_head_exactly_like_slicing():
    model = tiny_model()
    _scale_head(model, block=0, head=1, factor=1e-3)  # head 1 of block 0 is the weakest
    _scale_head(model, block=1, head=0, factor=1e-3)  # head 0 of block 1 is the weakest
    reference = copy.deepcopy(model)
    target = tiny_spec(blocks=[BlockSpec(num_heads=1, head_dim=8, mlp_hidden=32)] * 2)
    removed = prune_to(model, target, "magnitude")
    assert removed["heads"] == [[1], [0]] and removed["mlp"] == [[], []] and removed["embed"] == [[]]
    assert all(b.attn.head_dim == 8 and b.attn.num_heads == 1 for b in model.blocks)

    # the same model made by hand: keep rows/columns of the surviving head only
    for block, keep in zip(reference.blocks, (slice(0, 8), slice(8, 16)), strict=True):
        attn = block.attn
        for name in ("q", "k", "v"):
            old = getattr(attn, name)
            new = torch.nn.Linear(16, 8)
            new.weight.data, new.bias.data = old.weight.data[keep].clone(), old.bias.data[keep].clone()
            setattr(attn, name, new)
        proj = torch.nn.Linear(8, 16)
        proj.weight.data, proj.bias.data = attn.proj.weight.data[:, keep].clone(), attn.proj.bias.data.clone()
        attn.proj = proj
    x = tiny_data(4)[0]
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-6)


def test_drop_blocks_removes_the_block_that_matters_least_and_the_model_still_rebuilds(tmp_path):
    spec = tiny_spec(blocks=[BlockSpec(num_heads=2, head_dim=8, mlp_hidden=32)] * 3)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    with torch.no_grad():  # block 1 adds nothing to the residual stream: removing it changes nothing
        for layer in (model.blocks[1].attn.proj, model.blocks[1].mlp.fc2):
            layer.weight.zero_()
            layer.bias.zero_()
    x, y = tiny_data(8)
    with torch.no_grad():
        before = model(x)
    assert drop_blocks(model, 1, [(x, y)]) == [1]
    pruned = spec_of(model, spec)
    assert len(pruned.blocks) == 2 and count_params(model) == spec_params(pruned) == spec_params(spec) - 2224
    save_model(model, pruned, tmp_path / "w.safetensors", tmp_path / "spec.json")
    rebuilt, _ = load_model(tmp_path / "w.safetensors", tmp_path / "spec.json")
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), before, rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="cannot drop 2 of 2 blocks"):
        drop_blocks(model, 2, [(x, y)])


def test_taylor_importance_prunes_with_gradients_and_keeps_one_of_everything():
    model = tiny_model()
    target = plan_spec(tiny_spec(), 0.0, Dims(min_embed=4))
    assert target.embed_dim == 4 and all(b.num_heads == 1 and b.mlp_hidden == 1 for b in target.blocks)
    prune_to(model, target, "taylor", [tiny_data(16, seed) for seed in range(2)])
    assert spec_of(model, tiny_spec()) == target
    assert all(p.grad is None for p in model.parameters())
    assert model(tiny_data(2)[0]).shape == (2, 3)


@pytest.mark.parametrize("budget, measure, limit", [
    (Budget(params_ratio=0.3), spec_params, 0.3 * 312098),
    (Budget(max_macs=8_000_000), spec_macs, 8_000_000),
    (Budget(flash_bytes=150_000), int8_bytes_estimate, 150_000),
    (Budget(ram_bytes=30_000), ram_bytes_estimate, 30_000),
])
def test_budgets_are_met_and_used(budget, measure, limit):
    base = family_spec("vit_lite_s", 64, 1, 2)
    plan = solve_plan(base, budget.limits(base), Dims())
    assert measure(plan) <= limit
    grown = plan.model_copy(update={"embed_dim": plan.embed_dim + 2})  # a little wider no longer fits
    assert measure(grown) > limit
    assert all(b.head_dim == 32 and b.num_heads >= 1 and b.mlp_hidden >= 1 for b in plan.blocks)


def test_the_default_budget_keeps_at_most_30_percent_of_vit_lite_s():
    base = family_spec("vit_lite_s", 64, 1, 2)
    plan = solve_plan(base, Budget(params_ratio=0.3).limits(base), Dims())
    assert (plan.embed_dim, plan.blocks[0].num_heads, plan.blocks[0].mlp_hidden) == (58, 1, 116)
    assert spec_params(plan) == 93592
    steps = [solve_plan(base, Budget(params_ratio=0.3).at_step(base, s, 3), Dims()) for s in (1, 2, 3)]
    sizes = [spec_params(s) for s in steps]
    assert sizes[0] > sizes[1] > sizes[2] == 93592


def test_the_default_config_targets_int8_under_10_percent_of_float32():
    from edge.config import PruneConfig
    from edge.training.stages.prune import budget_of

    base = family_spec("vit_lite_s", 64, 1, 2)
    plan = solve_plan(base, budget_of(PruneConfig()).limits(base), Dims())
    # the int8 budget (0.095 x 1,248,392 B) binds before the params one (0.30 x 312,098)
    assert int8_bytes_estimate(plan) == 118076 <= 0.095 * 4 * spec_params(base)
    assert spec_params(plan) == 57468 and (plan.embed_dim, plan.blocks[0].mlp_hidden) == (42, 85)


def test_bad_budgets_give_clear_errors():
    with pytest.raises(ConfigError) as err:
        Budget(params_ratio=1.5).check()
    assert err.value.render().startswith("prune.params_ratio: params_ratio must be in (0, 1], got 1.5")
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["prune.params_ratio=1.5"])
    assert "field 'prune.params_ratio': Input should be less than or equal to 1 (got 1.5)" in str(err.value)
    base = family_spec("vit_lite_s", 64, 1, 2)
    with pytest.raises(ConfigError) as err:
        solve_plan(base, Budget(max_macs=1_000_000).limits(base), Dims())
    # smallest: 64 x 16 x 64 (patches) + 4 x (3x65x16x32 + 2x65x65x32 + 65x32x16 + 2x65x16) + 16 x 2
    assert err.value.render().splitlines()[0] == (
        "prune: pruning budget cannot be met: even the smallest allowed model "
        "(embed 16, 1 head and 1 MLP unit per block) has macs 1,687,968 > 1,000,000")
    with pytest.raises(ConfigError, match=r"prune.int8_ratio: int8_ratio must be in \(0, 1\], got 0"):
        Budget(int8_ratio=0).check()
    with pytest.raises(ConfigError, match="no pruning target given"):
        Budget().check()


def test_pruned_model_exports_to_onnx_and_onnxruntime_agrees(tmp_path):
    model = tiny_model()
    prune_to(model, tiny_spec(embed_dim=12, blocks=[BlockSpec(num_heads=1, head_dim=8, mlp_hidden=7)] * 2),
             "magnitude")
    x = tiny_data(3)[0]
    path = tmp_path / "pruned.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["logits"], dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=0, atol=1e-4)


def _tiny_run(tmp_path, val_from_model=False, **prune):
    """A run directory with a finished data and train stage (tiny data, tiny model); `val_from_model`
    labels the val split with the model's own predictions (val top-1 exactly 1 before pruning)."""
    from edge.config import RunConfig
    from edge.manifest import Manifest
    from edge.training.dataset import Dataset, Split, save_dataset
    from edge.training.loop import to_input

    rng = np.random.default_rng(0)
    splits = {name: Split(rng.integers(0, 256, (n, 16, 16, 1), dtype=np.uint8), rng.integers(0, 3, n))
              for name, n in (("train", 48), ("val", 24), ("test", 12), ("calib", 8))}
    if val_from_model:
        with torch.no_grad():
            own = tiny_model()(to_input(splits["val"].x)).argmax(1).numpy().astype(np.int64)
        splits["val"] = Split(splits["val"].x, own)
    manifest = Manifest(tmp_path)
    config = RunConfig.model_validate({"prune": {"int8_ratio": None, "steps": 2, "finetune_epochs": 1,
                                                 "final_epochs": 0, "batch_size": 16, "importance_batches": 1,
                                                 "min_embed_dim": 4, "max_drop": None, **prune}})
    manifest.config = config.model_dump(mode="json")
    data = manifest.begin("data", "-")
    save_dataset(Dataset.from_splits(splits, ["a", "b", "c"]), data.output("dataset", data.dir / "dataset.npz"))
    manifest.commit(data.finish())
    train = manifest.begin("train", "-")
    save_model(tiny_model(), tiny_spec(), train.output("weights", train.dir / "model.safetensors"),
               train.output("spec", train.dir / "model_spec.json"))
    manifest.commit(train.finish())
    return manifest


def test_prune_stage_writes_a_smaller_model_its_steps_and_plot(tmp_path):
    from edge.manifest import Manifest
    from edge.pipeline import run_stage_here

    _tiny_run(tmp_path, params_ratio=0.5)
    run_stage_here(tmp_path, "prune")
    record = Manifest(tmp_path).stages["prune"]
    assert set(record.outputs) == {"weights", "spec", "steps", "plot"}
    metrics = record.metrics
    assert metrics["params_before"] == 5091 and metrics["params"] <= 0.5 * 5091
    assert metrics["params_ratio"] == round(metrics["params"] / 5091, 4) and metrics["steps"] == 2
    assert metrics["macs"] < metrics["macs_before"] and metrics["float32_bytes"] == 4 * metrics["params"]
    assert {"val_top1", "val_top1_before", "int8_bytes_estimate", "wall_s"} <= set(metrics)
    model, spec = load_model(tmp_path / "prune/model.safetensors", tmp_path / "prune/model_spec.json")
    assert count_params(model) == metrics["params"] and spec.embed_dim == metrics["embed_dim"] < 16
    budget = Budget(params_ratio=0.5)
    assert spec == solve_plan(tiny_spec(), budget.limits(tiny_spec()), Dims(min_embed=4))  # the whole budget used
    steps = json.loads((tmp_path / "prune/steps.json").read_text())
    assert [s["step"] for s in steps] == [0, 1, 2]
    assert steps[0]["params"] > steps[1]["params"] > steps[2]["params"] == metrics["params"]
    assert (tmp_path / "prune/size_vs_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_disabled_prune_stage_passes_the_trained_model_through(tmp_path):
    from edge.manifest import Manifest
    from edge.pipeline import run_stage_here

    _tiny_run(tmp_path, enabled=False)
    run_stage_here(tmp_path, "prune")
    metrics = Manifest(tmp_path).stages["prune"].metrics
    assert (metrics["params"], metrics["params_ratio"], metrics["steps"]) == (5091, 1.0, 0)
    assert (tmp_path / "prune/model.safetensors").read_bytes() == (tmp_path / "train/model.safetensors").read_bytes()


def test_impossible_budget_stops_the_stage_before_any_work(tmp_path):
    from edge.pipeline import run_stage_here

    _tiny_run(tmp_path, max_macs=10)
    # smallest: 16 x 4 x 16 (patches) + 2 x (3x17x4x8 + 2x17x17x8 + 17x8x4 + 2x17x4) + 4 x 3 = 14,908
    with pytest.raises(ConfigError, match=r"\(embed 4, 1 head and 1 MLP unit per block\) has macs 14,908 > 10"):
        run_stage_here(tmp_path, "prune")
    assert not (tmp_path / "prune/model.safetensors").exists()


def test_cli_rejects_a_params_ratio_above_one_with_exit_2(tmp_path, capsys):
    from edge.cli import main

    code = main(["prune", "--runs-dir", str(tmp_path), "--set", "prune.params_ratio=1.5"])
    assert code == 2
    assert "field 'prune.params_ratio': Input should be less than or equal to 1 (got 1.5)" in capsys.readouterr().err


@pytest.mark.slow
def test_edge_prune_end_to_end_on_a_small_run(tmp_path):
    import subprocess
    import sys

    from edge.manifest import Manifest

    settings = ["data.n_train=256", "data.n_val=64", "data.n_test=64", "data.n_calib=16", "data.image_size=32",
                "model.name=vit_lite_xs", "train.epochs=3", "train.threads=1", "prune.steps=2",
                "prune.finetune_epochs=1", "prune.final_epochs=1", "prune.int8_ratio=null"]
    cmd = [sys.executable, "-m", "edge", "prune", "--runs-dir", str(tmp_path), "--run", "small"]
    for setting in settings:
        cmd += ["--set", setting]
    assert subprocess.call(cmd) == 0
    metrics = Manifest(tmp_path / "small").stages["prune"].metrics
    assert metrics["params"] <= 0.3 * metrics["params_before"] and metrics["steps"] == 2
    model, spec = load_model(tmp_path / "small/prune/model.safetensors", tmp_path / "small/prune/model_spec.json")
    assert count_params(model) == metrics["params"] and all(b.num_heads >= 1 for b in spec.blocks)


def test_accuracy_aware_pruning_stops_at_the_last_step_within_max_drop(tmp_path):
    """max_drop 0: the first step that costs val top-1 is undone, the model before it is saved."""
    from edge.manifest import Manifest
    from edge.pipeline import run_stage_here

    _tiny_run(tmp_path, val_from_model=True, params_ratio=0.2, steps=3, max_drop=0.0)
    run_stage_here(tmp_path, "prune")
    metrics = Manifest(tmp_path).stages["prune"].metrics
    steps = json.loads((tmp_path / "prune/steps.json").read_text())
    from edge.training.stages.prune import NOISE_Z

    assert steps[0]["val_top1"] == 1.0
    rejected = [s for s in steps if s.get("accepted") is False]
    assert len(rejected) == 1 and rejected[0] is steps[-1] and rejected[0]["drop"] > NOISE_Z * rejected[0]["drop_se"]
    kept = steps[-2]
    assert all(s["drop"] <= NOISE_Z * s["drop_se"] for s in steps[1:-1])
    assert metrics["reached_size_budget"] is False and metrics["kept_step"] == kept["step"]
    assert metrics["params"] == kept["params"] > 0.2 * 5091
    assert metrics["stop_reason"].startswith(f"step {rejected[0]['step']} lost {rejected[0]['drop']:.4f} val top-1, "
                                             "more than prune.max_drop 0.0 by over 1.28 standard errors")
    assert metrics["stop_reason"].endswith(f"kept the model of step {kept['step']}")
    model, _ = load_model(tmp_path / "prune/model.safetensors", tmp_path / "prune/model_spec.json")
    assert count_params(model) == kept["params"]


def test_fine_tuning_follows_the_training_schedule():
    from edge.config import PruneConfig
    from edge.training.stages.prune import finetune_epochs

    assert finetune_epochs(PruneConfig(), 15) == (1, 3)
    assert finetune_epochs(PruneConfig(), 45) == (3, 9)
    assert finetune_epochs(PruneConfig(finetune_epochs=2, final_epochs=0), 45) == (2, 0)


def test_paired_drop_counts_only_the_images_that_changed():
    from edge.training.stages.prune import paired_drop

    before = torch.tensor([True] * 90 + [False] * 10)
    after = before.clone()
    after[:6] = False  # 6 lost
    after[95:97] = True  # 2 gained
    drop, se = paired_drop(before, after)
    assert drop == 0.04
    assert abs(se - (8 - 16 / 100) ** 0.5 / 100) < 1e-12
    assert paired_drop(before, before) == (0.0, 0.0)
