"""QAT with NNCF on a tiny ViT-lite and an easy task: ranges, point names, QDQ ONNX, accuracy."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from edge.quant_ranges import POINT_RE, QuantRangesFile, activation_points, read_ranges, write_ranges
from edge.training.loop import FitConfig, evaluate, fit
from edge.training.models import build_model
from edge.training.qat import export_qdq_onnx, float_model, learned_ranges, onnx_logits, quantize, quantizers
from edge.vit_spec import BlockSpec, VitSpec

os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")

SPEC = VitSpec(name="vit_lite_tiny", img_size=16, in_chans=1, patch_size=4, embed_dim=16, num_classes=2,
               blocks=[BlockSpec(num_heads=2, head_dim=8, mlp_hidden=32)] * 2, labels=["dark_top", "bright_top"])
TOLERANCE = 0.03  # fake-quant val top-1 may be at most this far below float on the easy task


def easy_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 16x16 images; label 1 when the top half is brighter than the bottom half."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = 0.4 * torch.randn(n, 1, 16, 16, generator=gen)
    sign = (2 * y - 1).float()[:, None, None]
    x[:, :, :8, :] += 0.5 * sign[:, None]
    x[:, :, 8:, :] -= 0.5 * sign[:, None]
    return x, y


@pytest.fixture(scope="module")
def trained() -> dict:
    """A float model trained on the easy task, quantised, and QAT fine-tuned for one epoch."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train, val, calib = easy_task(384, 1), easy_task(256, 2), easy_task(32, 3)[0]
    model = build_model(SPEC)
    fit(model, train, val, FitConfig(epochs=8, batch_size=32, lr=3e-3, warmup_epochs=0, augment=False,
                                                      label_smoothing=0.0, weight_decay=0.0), desc="float")
    model.eval()
    qmodel = quantize(model, calib)
    before = {name: q.get_input_low_input_high()[1].detach().clone() for name, q in quantizers(qmodel)}
    result = fit(qmodel, train, val, FitConfig(epochs=1, batch_size=32, lr=2e-4, warmup_epochs=0, augment=False,
                                              weight_decay=0.0), teacher=model, desc="qat")
    qmodel.load_state_dict(result.best_state)
    return {"model": model, "qmodel": qmodel, "val": val, "before": before}


def test_float_model_is_plain_vitlite_and_close_to_fake_quant(trained: dict) -> None:
    plain = float_model(trained["qmodel"], SPEC)  # strict load with VitLite names
    assert set(plain.state_dict()) == set(build_model(SPEC).state_dict())
    x = trained["val"][0][:64]
    with torch.no_grad():
        diff = (plain(x) - trained["qmodel"].eval()(x)).abs().max().item()
    assert 0 < diff < 0.5  # fake quant changes the logits, but only a little


def test_ranges_are_learned_saved_and_reloadable(trained: dict, tmp_path) -> None:
    qmodel = trained["qmodel"]
    after = {name: q.get_input_low_input_high()[1].detach() for name, q in quantizers(qmodel)}
    assert any(not torch.equal(after[n], trained["before"][n]) for n in after), "QAT left every range unchanged"

    report = learned_ranges(qmodel, SPEC)
    path = write_ranges(tmp_path / "quant_ranges.json", report.ranges)
    loaded = read_ranges(path)
    assert loaded == report.ranges
    raw = json.loads(path.read_text())
    assert raw["format"] == "edge-quant-ranges/1" and raw["activation_bits"] == 8 and raw["weight_bits"] == 8
    QuantRangesFile.model_validate(raw)

    shapes = {k: tuple(v.shape) for k, v in float_model(qmodel, SPEC).state_dict().items()}
    loaded.check_shapes(shapes)
    matrices = sorted(n for n in shapes if n.endswith(".weight") and len(shapes[n]) >= 2)
    norms = sorted(n for n in shapes if ".norm" in n or n.startswith("norm."))
    assert sorted(loaded.weights) == sorted(matrices + [n for n in norms if n.endswith(".weight")])
    for name in matrices:  # every conv/linear weight: symmetric int8, one range per output channel
        item = loaded.weights[name]
        assert item.axis == 0 and len(item.min) == len(item.max) == shapes[name][0]
        assert item.min == pytest.approx([-hi for hi in item.max], rel=1e-6)
    for name in (n for n in norms if n.endswith(".weight")):  # LayerNorm gains: one per-tensor range
        assert len(loaded.weights[name].min) == 1
    for name, item in loaded.activations.items():
        assert POINT_RE.match(name) and np.isfinite([item.min, item.max]).all() and item.min < item.max
    assert report.unmapped == []


def test_quantizers_map_to_the_documented_points(trained: dict) -> None:
    report = learned_ranges(trained["qmodel"], SPEC)
    per_block = ["norm1", "attn.q", "attn.k", "attn.v", "attn.softmax", "attn.context", "attn.proj", "add1",
                 "norm2", "mlp.act", "mlp.fc2", "add2"]
    expected = {"patch_embed", "tokens", "norm"} | {f"blocks.{i}.{p}" for i in range(2) for p in per_block}
    assert set(report.ranges.activations) == expected
    # NNCF quantises q * D^-0.5; the contract's attn.q is q itself: the range is scaled back by sqrt(D)
    hook = next(q for name, q in quantizers(trained["qmodel"]) if name == "post_hooks.blocks/0/attn/mul/0__0.0")
    low, high = (float(t.detach()) for t in hook.get_input_low_input_high())
    got = report.ranges.activations["blocks.0.attn.q"]
    assert got.min == pytest.approx(low * 8**0.5, rel=1e-6) and got.max == pytest.approx(high * 8**0.5, rel=1e-6)
    assert report.placement["pre_hooks.blocks/1/mlp/fc1/linear/0__1.0"] == "blocks.1.mlp.fc1.weight"


def test_fake_quant_accuracy_stays_close_to_float(trained: dict) -> None:
    float_top1 = evaluate(trained["model"], *trained["val"])[0]
    quant_top1 = evaluate(trained["qmodel"], *trained["val"])[0]
    assert float_top1 >= 0.9, "the easy task was not learned; the tolerance check would be meaningless"
    assert quant_top1 >= float_top1 - TOLERANCE


def test_qdq_onnx_runs_in_onnxruntime_and_agrees(trained: dict, tmp_path) -> None:
    import onnx

    path = export_qdq_onnx(trained["qmodel"], SPEC, tmp_path / "model_int8.onnx")
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    ops = [node.op_type for node in graph.graph.node]
    assert ops.count("QuantizeLinear") >= 20 and ops.count("DequantizeLinear") >= 20
    assert not [n.domain for n in graph.graph.node if n.domain.startswith("org.openvinotoolkit")]
    x = trained["val"][0]
    ours = onnx_logits(path, x.numpy())
    ref = evaluate(trained["qmodel"], x, trained["val"][1])[2].numpy()
    assert (ours.argmax(1) == ref.argmax(1)).mean() >= 0.99
    assert np.abs(ours - ref).max() < 0.05


def test_int16_activations(trained: dict, tmp_path) -> None:
    calib = easy_task(8, 5)[0]
    q16 = quantize(trained["model"], calib, activation_bits=16, bias_correction=False)
    bits = {q.num_bits for name, q in quantizers(q16) if name.startswith("post_hooks")}
    assert bits == {16}
    report = learned_ranges(q16, SPEC, activation_bits=16)
    assert report.ranges.activation_bits == 16
    signed = 0
    for item in report.ranges.activations.values():  # symmetric (zero point 0, as TFLite 16x8 wants)
        if item.min != 0.0:  # unsigned tensors (softmax) start at 0
            assert item.min == pytest.approx(-item.max * 32768 / 32767, rel=1e-5)
            signed += 1
    assert signed >= len(report.ranges.activations) - 2
    import onnx

    path = export_qdq_onnx(q16, SPEC, tmp_path / "m.onnx")  # FakeQuantize rewritten as int16 QDQ pairs
    graph = onnx.load(str(path))
    assert {n.domain for n in graph.graph.node} == {""}
    zero_types = {onnx.TensorProto.DataType.Name(t.data_type) for t in graph.graph.initializer
                  if t.name.endswith("/zero_point")}
    assert {"INT16", "INT8"} <= zero_types  # int16 activations, int8 weights
    x = trained["val"][0][:64]
    ours = onnx_logits(path, x.numpy())
    ref = evaluate(q16, x, trained["val"][1][:64])[2].numpy()
    assert (ours.argmax(1) == ref.argmax(1)).mean() >= 0.98 and np.abs(ours - ref).max() < 0.05


@pytest.mark.parametrize("act", ["gelu_tanh", "quick_gelu"])  # one op / three ops in the activation module
def test_every_documented_point_has_exactly_one_producing_op(act: str) -> None:
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph
    from nncf.torch.function_hook.wrapper import wrap_model

    from edge.training.nncf_points import locate

    spec = SPEC.model_copy(update={"act": act})
    graph = build_nncf_graph(wrap_model(build_model(spec).eval()), torch.zeros(1, 1, 16, 16))
    producers: dict[str, list[str]] = {}
    for node in graph.get_all_nodes():
        where = locate(graph, node.node_name, None, spec)
        if where.kind == "activation":
            producers.setdefault(where.name, []).append(node.node_name)
    points = set(producers)
    per_block = ["norm1", "attn.q", "attn.k", "attn.v", "attn.scores", "attn.softmax", "attn.context", "attn.proj",
                 "add1", "norm2", "mlp.fc1", "mlp.act", "mlp.fc2", "add2"]
    expected = {"input", "patch_embed", "tokens", "norm", "head"}
    expected |= {f"blocks.{i}.{p}" for i in range(2) for p in per_block}
    assert points == expected == set(activation_points(spec))  # NNCF names = the export's list
    # one producing op per point, ignoring ops that only move values (they name their input's tensor)
    moved = {"reshape", "flatten", "transpose", "dropout", "__getitem__"}
    for name in expected:
        real = [n for n in producers[name] if graph.get_node_by_name(n).node_type not in moved]
        if name.endswith("attn.q"):  # q itself and q * D^-0.5 (preferred: the tensor the int8 model has)
            i = name.split(".")[1]
            assert sorted(real) == [f"blocks/{i}/attn/mul/0", f"blocks/{i}/attn/q/linear/0"]
            assert locate(graph, f"blocks/{i}/attn/mul/0", None, spec).priority == 1
        else:
            assert len(real) == 1, (name, real)
