"""report.json + report.md for build/<target>/, and the manifest metrics drawn from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.atomic import atomic_write_json, atomic_write_text
from edge.export.parity import markdown_table
from edge.export.targets import Target
from edge.export.tflite_inspect import TfliteModel, quant_params
from edge.export.tflm_check import TFLM_OPS
from edge.manifest import tool_versions
from edge.vit_spec import VitSpec

TOOLS = ("tensorflow-cpu", "torch", "onnx", "onnxruntime", "ai-edge-litert", "tflite-micro", "ethos-u-vela")


def build(*, target: Target, source: str, spec: VitSpec, int_model: TfliteModel, float_model: TfliteModel,
          convert: dict[str, Any], torch: dict[str, Any], onnx: dict[str, Any], tflm: dict[str, Any],
          arena_const: int, rows: list[dict[str, Any]], reference: str, ties: dict[str, Any], sizes: dict[str, Any],
          fit: dict[str, Any], vela: dict[str, Any] | None, timings: dict[str, float], test_images: int,
          notes: list[str]) -> dict[str, Any]:
    """Everything the export measured, as one JSON-ready dict."""
    in_t, out_t = int_model.io("input"), int_model.io("output")
    in_scale, in_zero = quant_params(in_t)
    out_scale, out_zero = quant_params(out_t)
    by_name = {row["runtime"]: row for row in rows}
    tflm_row = by_name["TFLM int8"]
    return {
        "format": "edge-export-report/1",
        "target": target.as_dict(),
        "model": {
            "source_stage": source, "name": spec.name, "img_size": spec.img_size, "in_chans": spec.in_chans,
            "patch_size": spec.patch_size, "embed_dim": spec.embed_dim, "depth": len(spec.blocks),
            "blocks": [b.model_dump() for b in spec.blocks], "act": spec.act, "labels": spec.labels,
            "params": torch["params"], "macs": torch["macs"],
        },
        "quantization": {
            "mode": convert["quantization"], "qat_points": convert["qat_points"],
            "calibrated_points": convert["calibrated_points"], "fixed_points": convert["fixed_points"],
            "folded_points": convert["folded_points"],
            "unknown_points": convert["unknown_points"], "clipped_weights": convert["clipped_weights"],
            "calibration_images": convert["calibration_images"],
        },
        "input": {"dtype": in_t.dtype.lower(), "shape": in_t.shape, "scale": in_scale, "zero_point": in_zero,
                  "layout": "NHWC",
                  "from_pixels": "int8 = pixel - 128 (= pixel XOR 0x80)" if in_t.dtype == "INT8" and in_zero == 0
                  else "q = round((pixel - 128) / 127.5 / scale) + zero_point"},
        "output": {"dtype": out_t.dtype.lower(), "shape": out_t.shape, "scale": out_scale, "zero_point": out_zero},
        "full_integer": not int_model.float_tensors(),
        "tensor_types": int_model.tensor_types(),
        "size": {**sizes, "float_tflite_ops": float_model.op_counts()},
        "tflm": {"arena_bytes": tflm["arena_bytes"], "arena_constant_bytes": arena_const, "ops": tflm["ops"],
                 "op_counts": tflm["op_counts"], "resolver": tflm["resolver"],
                 "invoke_ms_host": tflm["invoke_ms_host"], "bisect_s": tflm["bisect_s"]},
        "onnx": {**onnx, "torch_opset": torch["opset"]},
        "agreement": {
            "reference": reference, "test_images": test_images,
            "tflm_vs_qat_top1": tflm_row["top1_agreement"],
            "tflm_vs_qat_max_logit_error": tflm_row["max_logit_error"],
            "tflm_vs_qat_mean_logit_error": tflm_row["mean_logit_error"],
            "table": rows,
            **ties,
        },
        "fit": fit,
        "cost_model": cost_model_basis(target),
        "vela": vela,
        "timings_s": timings,
        "tools": tool_versions(TOOLS),
        "notes": list(notes),
    }


def cost_model_basis(target: Target) -> dict[str, Any] | None:
    """The cost model's kernel set for the target's runtime and kernels, and the cited measurements behind it
    (None when no kernel set applies: another runtime, or no MCU profile)."""
    from dataclasses import asdict

    from edge.power.cost import TARGET_KERNELS, kernel_backing
    from edge.power.profiles import load_mcu

    choice = TARGET_KERNELS.get((target.runtime, target.kernels))
    if choice is None or target.mcu is None:
        return None
    return asdict(kernel_backing(load_mcu(target.mcu), choice))


def metrics(data: dict[str, Any]) -> dict[str, Any]:
    """The flat manifest metrics (units in the key names)."""
    agreement = data["agreement"]
    out = {
        "tflite_int8_bytes": data["size"]["tflite_bytes"],
        "tflite_float_bytes": data["size"]["tflite_float_bytes"],
        "onnx_bytes": data["size"]["onnx_bytes"],
        "tflm_arena_bytes": data["tflm"]["arena_bytes"],
        "tflm_vs_qat_top1": agreement["tflm_vs_qat_top1"],
        "tflm_max_logit_error": agreement["tflm_vs_qat_max_logit_error"],
        "agreement_reference": agreement["reference"],
        "params": data["model"]["params"],
        "macs": data["model"]["macs"],
        "model_source": data["model"]["source_stage"],
        "calibrated_points": len(data["quantization"]["calibrated_points"]),
        "flash_needed_bytes": data["fit"]["flash_needed_bytes"],
        "ram_needed_bytes": data["fit"]["ram_needed_bytes"],
        "tflm_invoke_ms_host": data["tflm"]["invoke_ms_host"],
    }
    if data["size"].get("fraction_of_unpruned_float32") is not None:
        out["int8_fraction_of_unpruned_float32"] = data["size"]["fraction_of_unpruned_float32"]
    for row in agreement["table"]:
        if row["accuracy"] is not None:
            out[f"test_top1_{row['runtime'].split(' (')[0].replace(' ', '_').lower()}"] = row["accuracy"]
    if data.get("vela"):
        out["vela_inference_ms"] = data["vela"]["inference_ms"]
        out["vela_sram_bytes"] = data["vela"]["sram_bytes"]
    return out


def exported_run(out: Path) -> str | None:
    """The name of the run whose export wrote `out` (its report.json says), or None if unknown."""
    try:
        name = json.loads((out / "report.json").read_text(encoding="utf-8"))["run"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) and name else None


def write(out: Path, data: dict[str, Any]) -> None:
    """Write report.json and report.md into `out`."""
    atomic_write_json(out / "report.json", data)
    atomic_write_text(out / "report.md", markdown(data))


def _kib(n: int | None) -> str:
    return "-" if n is None else f"{n:,} B ({n / 1024:.1f} KiB)"


def _margins(disagreements: list[dict[str, Any]]) -> str:
    return ", ".join(f"{d['reference_margin']:.4f}" for d in disagreements[:10]) or "-"


def markdown(data: dict[str, Any]) -> str:
    """The human-readable report: one part per heading."""
    parts = [_title(data), _sizes(data), _agreement(data["agreement"]), _quantisation(data["quantization"]),
             _tflm_ops(data["tflm"]), _cost_model(data, data["target"])]
    if data.get("vela"):
        parts.append(_vela(data["vela"]))
    parts.append(["## Timings (s)", "", ", ".join(f"{k} {v}" for k, v in data["timings_s"].items())])
    if data["notes"]:
        parts.append(["## Notes", "", *[f"- {n}" for n in data["notes"]]])
    return "\n\n".join("\n".join(p) for p in parts) + "\n"


def _title(data: dict[str, Any]) -> list[str]:
    """Heading, run, target and model."""
    t, m = data["target"], data["model"]
    return [
        f"# Export report: {t['name']}",
        *(["", f"Run: `{data['run']['name']}` ({data['run']['manifest']})"] if "run" in data else []),
        "",
        f"Target: **{t['name']}** — {t['description']} ({t['core']}, runtime {t['runtime']}, kernels {t['kernels']}).",
        f"Model: `{m['name']}` from the **{m['source_stage']}** stage, "
        f"{m['img_size']}x{m['img_size']}x{m['in_chans']}, {m['depth']} blocks, embed {m['embed_dim']}, "
        f"{m['params']:,} params, {m['macs']:,} MACs.",
    ]


def _sizes(data: dict[str, Any]) -> list[str]:
    """File sizes, arena, flash and RAM against the target, input encoding."""
    s, tflm, fit, inp = data["size"], data["tflm"], data["fit"], data["input"]
    frac = s.get("fraction_of_unpruned_float32")
    return [
        "## Sizes and memory",
        "",
        "| item | value |", "|---|---:|",
        f"| int8 TFLite (`model_int8.tflite`) | {_kib(s['tflite_bytes'])} |",
        f"| float TFLite | {_kib(s['tflite_float_bytes'])} |",
        f"| float ONNX | {_kib(s['onnx_bytes'])} |",
        f"| QDQ ONNX | {_kib(s.get('onnx_qdq_bytes'))} |",
        f"| unpruned float32 model | {_kib(s.get('unpruned_float32_bytes'))} |",
        f"| int8 / unpruned float32 | {'-' if frac is None else f'{frac:.1%}'} |",
        f"| TFLM arena (smallest that works) | {_kib(tflm['arena_bytes'])} |",
        f"| `kTensorArenaSize` (with margin) | {_kib(tflm['arena_constant_bytes'])} |",
        f"| flash needed / available | {fit['flash_needed_bytes']:,} / {fit['flash_available_bytes']:,} B "
        f"({fit['flash_used_fraction']:.0%}) |",
        f"| RAM needed / available | {fit['ram_needed_bytes']:,} / {fit['ram_available_bytes']:,} B "
        f"({fit['ram_used_fraction']:.0%}) |",
        "",
        f"Input: {inp['dtype']} {inp['shape']} NHWC, scale {inp['scale']:.9g}, "
        f"zero point {inp['zero_point']}: {inp['from_pixels']}.",
        f"Full-integer: **{data['full_integer']}** (tensor types {data['tensor_types']}).",
    ]


def _agreement(a: dict[str, Any]) -> list[str]:
    """The runtimes against the reference on the test split."""
    return [
        "## Agreement (test split)",
        "",
        markdown_table(a["table"], a["reference"]),
        "",
        f"TFLM int8 vs {a['reference']}: top-1 agreement **{a['tflm_vs_qat_top1']:.4f}** on {a['test_images']} "
        f"images (95 % interval {a['agreement_ci95'][0]:.3f}-{a['agreement_ci95'][1]:.3f}) "
        f"(vs PyTorch float: {a['tflm_vs_float_top1']:.4f}). {len(a['disagreements'])} disagreement(s), reference "
        f"margins {_margins(a['disagreements'])}; {a['near_tie_images']} image(s) have a reference margin below "
        f"{a['near_tie_threshold']:.4f} (4 int8 output steps); agreement on the rest: "
        f"{a['decisive_top1_agreement']}.",
        "",
        "![logits of the integer runtimes against the reference](parity.png)",
    ]


def _quantisation(q: dict[str, Any]) -> list[str]:
    """Where each quantisation point's range came from."""
    return [
        "## Quantisation",
        "",
        f"Mode {q['mode']}; {len(q['qat_points'])} points use QAT ranges, "
        f"{len(q['calibrated_points'])} were calibrated on {q['calibration_images']} calibration images.",
        "",
        f"- QAT ranges: {', '.join(q['qat_points']) or 'none'}",
        f"- calibrated: {', '.join(q['calibrated_points']) or 'none'}",
        f"- fixed: {', '.join(f'{k} ({v})' for k, v in q['fixed_points'].items()) or 'none'}",
        f"- LayerNorm outputs with a QAT range, calibrated instead so the converter folds the norm's scale "
        f"and shift into the next Linear: {', '.join(q['folded_points']) or 'none'}",
    ]


def _tflm_ops(tflm: dict[str, Any]) -> list[str]:
    """The ops the firmware's resolver must register."""
    return ["## TFLite Micro ops", "", "| op | count | resolver call |", "|---|---:|---|",
            *[f"| {op} | {n} | `Add{TFLM_OPS.get(op, '?')}()` |" for op, n in tflm["op_counts"].items()]]


def _cost_model(data: dict[str, Any], target: dict[str, Any]) -> list[str]:
    """The kernel set the cost model uses for this target and the measurements behind it."""
    head = ["## Cost model basis", ""]
    if "cost_model" not in data:
        return [*head, "Not recorded: this report was written before exports named their kernel set; rerun the "
                       "export."]
    backing = data["cost_model"]
    if backing is None:
        from edge.power.cost import TARGET_KERNELS

        why = ("the target has no MCU profile" if (target["runtime"], target["kernels"]) in TARGET_KERNELS else
               f"no kernel set of the cost model for runtime {target['runtime']} with kernels {target['kernels']}")
        return [*head, f"None: {why}. `edge profile` estimates such a model from an MCU profile's per-class "
                       "figures (estimates, band x0.5-x3)."]
    from edge.power.cost import KernelBacking

    line = KernelBacking(**{**backing, "boards": tuple(backing["boards"])}).line()
    return [*head, f"Runtime {target['runtime']} with kernels {target['kernels']} picks the {line}. The profile "
                   "stage's estimate and band rest on these (power_profiles/measurements/mlperf_tiny.yaml)."]


def _vela(v: dict[str, Any]) -> list[str]:
    """Vela's compile summary for Ethos-U targets."""
    return ["## Ethos-U (vela)", "",
            f"{v['accelerator_config']} / {v['system_config']} / {v['memory_mode']}: {v['npu_ops']} NPU ops, "
            f"{v['cpu_ops']} CPU ops, SRAM {_kib(v['sram_bytes'])}, "
            f"off-chip flash {_kib(v['off_chip_flash_bytes'])}, {v['cycles']:,} cycles = "
            f"{v['inference_ms']} ms at {v['npu_clock_hz'] / 1e6:.0f} MHz (vela estimate)."]
