"""The `export` stage: ONNX, full-integer TFLite, the TFLite Micro check, firmware sources, report.

This process imports neither torch nor TensorFlow: a torch child writes the float ONNX and the
PyTorch logits, a TensorFlow child converts to TFLite (both run at once), a TFLM child measures
the arena and runs the test split. LiteRT and onnxruntime run here.

The model comes from the newest upstream stage in the run: qat (with its learned ranges), else
prune, else train (every quantisation point calibrated). The report says which.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edge import paths
from edge.atomic import atomic_write_json, atomic_write_text
from edge.config import ExportConfig, RunConfig
from edge.errors import ConfigError, ExportError
from edge.export import c_array, onnx_check, parity, report
from edge.export.child import run_module
from edge.export.targets import Target, check_fit, resolve_target
from edge.export.tflite_inspect import TfliteModel, quant_params, read_tflite, require_full_integer
from edge.export.tflm_check import check_tflm, require_tflm_ops, resolver_calls
from edge.manifest import StageRun
from edge.quant_ranges import read_ranges
from edge.vit_spec import VitSpec

MODEL_STAGES = ("qat", "prune", "train")


def build_dir(run: StageRun, config: RunConfig) -> Path:
    """build/<target>/: under export.build_dir, else build/ next to the runs folder (edge.paths)."""
    out = paths.build_dir(config.target, run.manifest.run_dir.resolve().parent, config.export.build_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def upstream_model(run: StageRun, require_qat: bool) -> tuple[str, Path, Path]:
    """(stage, weights, spec) of the newest model stage in the run, recorded as inputs."""
    for stage in MODEL_STAGES:
        record = run.manifest.stages.get(stage)
        if record and "weights" in record.outputs and "spec" in record.outputs:
            if stage != "qat" and require_qat:
                break
            return stage, run.input(stage, "weights"), run.input(stage, "spec")
    raise ConfigError("no model in this run: the qat, prune and train stages have not written one"
                      if not require_qat else "export.require_qat is set but the qat stage has not run",
                      where=str(run.manifest.file), hint="run the pipeline up to qat first (`edge run --until qat`)")


class _Timer:
    """Wall time of each step, for report.json and bench/bench_export.py."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    def __call__(self, name: str, started: float) -> None:
        self.steps[name] = round(time.perf_counter() - started, 3)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block as step `name` (not recorded when it raises)."""
        started = time.perf_counter()
        yield
        self(name, started)


def _int16_activations(requested: bool, qat: dict[str, Path]) -> bool:
    """int16x8 export when asked for, or when QAT learned int16 ranges; a contradiction is an error."""
    if not qat:
        return requested
    bits = read_ranges(qat["ranges"]).activation_bits
    if requested and bits != 16:
        raise ConfigError(
            f"export.int16_activations is true but the qat stage learned {bits}-bit activation ranges",
            where=str(qat["ranges"]),
            hint="set qat.activation_bits=16 (export then follows it by itself)",
        )
    return bits == 16


@dataclass(frozen=True)
class _Model:
    """What the export converts: the upstream model, its QAT files and the test images it is judged on."""

    source: str  # the stage that wrote the model: qat, prune or train
    weights: Path
    spec_path: Path
    spec: VitSpec
    qat: dict[str, Path]  # the qat stage's ranges, QDQ ONNX and reference logits (empty for prune/train)
    int16: bool
    test_x: np.ndarray
    test_y: np.ndarray


def run_stage(run: StageRun, config: RunConfig) -> None:
    """Export the run's newest model for config.target and record everything in the manifest."""
    cfg = config.export
    timer = _Timer()
    started_all = time.perf_counter()
    target = resolve_target(config.target)
    out = _fresh_build_dir(run, config)
    model = _model_inputs(run, cfg)
    bar = tqdm(total=6, desc=f"export {config.target}", unit="step", file=sys.stderr)
    convert_info, torch_info = _convert(run.dir, out, model, cfg, timer)
    bar.update(2)

    with timer.step("inspect"):
        int_model, float_model = _inspect(out)
    with timer.step("runtimes"):
        logits, onnx_info, tflm_info = _runtimes(out, run.dir, model)
    bar.update(2)
    agreement = _parity(out, logits, model.test_y)
    with timer.step("fit_and_vela"):
        arena_const = int(-(-tflm_info["arena_bytes"] * (1 + cfg.arena_margin_fraction) // 16) * 16)
        fit, vela = _fit(target, out, run.dir, int_model, arena_const, model.spec)
    with timer.step("c_array"):
        _write_firmware(out, int_model, model.spec, arena_const, config.target)
    bar.update(1)

    sizes = _sizes(run, out, int_model.size_bytes, model.source)
    reached = _size_budget_reached(run, config, model.source)
    report_data = report.build(
        target=target, source=model.source, spec=model.spec, int_model=int_model, float_model=float_model,
        convert=convert_info, torch=torch_info, onnx=onnx_info, tflm=tflm_info, arena_const=arena_const,
        rows=agreement.rows, reference=agreement.reference, ties=agreement.ties, sizes=sizes, fit=fit, vela=vela,
        timings=timer.steps, test_images=len(model.test_x), notes=run.notes,
    )
    timer("total", started_all)
    report_data["timings_s"] = timer.steps
    report_data["run"] = {"name": run.manifest.run_dir.name, "manifest": str(run.manifest.file)}
    report.write(out, report_data)  # written before the gates so a failed gate can be inspected
    bar.update(1)
    bar.close()
    _gates(cfg, agreement.tflm_row, sizes, reached, agreement.reference, agreement.ties)
    _record(run, out, report_data)


def _fresh_build_dir(run: StageRun, config: RunConfig) -> Path:
    """build/<target>/, with a note when it held another run's export and without an earlier export's optional
    outputs (so none is mistaken for this one's)."""
    out = build_dir(run, config)
    _note_previous_run(run, out)
    for stale in ("model_int8.onnx", "model_int8_vela.tflite"):
        (out / stale).unlink(missing_ok=True)
    return out


def _model_inputs(run: StageRun, cfg: ExportConfig) -> _Model:
    """The newest model of the run, its QAT files and the test images (first export.eval_images); writes the
    calibration and test images as .npy for the children."""
    from edge.training.dataset import load_dataset

    source, weights, spec_path = upstream_model(run, cfg.require_qat)
    spec = VitSpec.load(spec_path)
    data = load_dataset(run.input("data", "dataset"))
    test_x, test_y = data.test.x, data.test.y
    if cfg.eval_images:
        test_x, test_y = test_x[:cfg.eval_images], test_y[:cfg.eval_images]
    np.save(run.dir / "calib_x.npy", data.calib.x)
    np.save(run.dir / "test_x.npy", test_x)
    qat = _qat_inputs(run) if source == "qat" else {}
    if source != "qat":
        run.notes.append(f"no qat stage in this run: exported the {source} model with every quantisation "
                         "point calibrated on calib_x")
    return _Model(source=source, weights=weights, spec_path=spec_path, spec=spec, qat=qat,
                  int16=_int16_activations(cfg.int16_activations, qat), test_x=test_x, test_y=test_y)


def _convert(work: Path, out: Path, model: _Model, cfg: ExportConfig, timer: _Timer
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The torch child (float ONNX, PyTorch logits) and the TensorFlow child (float and integer TFLite) side by
    side; returns what each recorded (convert.json, torch.json) and moves model.onnx into `out`."""
    job = {"spec": str(model.spec_path), "weights": str(model.weights),
           "ranges": str(model.qat["ranges"]) if model.qat else None, "calib": str(work / "calib_x.npy"),
           "out_dir": str(out), "int16": model.int16, "strip": cfg.strip_tensor_names}
    atomic_write_json(work / "convert_job.json", job)
    with timer.step("convert_and_onnx_parallel"), ThreadPoolExecutor(max_workers=2) as pool:
        onnx_job = pool.submit(_timed, run_module, "edge.export.onnx_export",
                               [str(model.spec_path), str(model.weights), str(work / "test_x.npy"), str(work),
                                "--opset", str(cfg.opset)], what="ONNX export (torch)")
        tf_job = pool.submit(_timed, run_module, "edge.export.tflite_convert", [str(work / "convert_job.json")],
                             what="TFLite conversion (TensorFlow)")
        timer.steps["tflite_convert_child"] = tf_job.result()
        timer.steps["onnx_export_child"] = onnx_job.result()
    convert_info = json.loads((out / "convert.json").read_text(encoding="utf-8"))
    torch_info = json.loads((work / "torch.json").read_text(encoding="utf-8"))
    (work / "model.onnx").replace(out / "model.onnx")
    return convert_info, torch_info


def _inspect(out: Path) -> tuple[TfliteModel, TfliteModel]:
    """The integer and float TFLite models; the integer one must be full-integer with ops TFLM has."""
    int_model = read_tflite(out / paths.MODEL_INT8)
    require_full_integer(int_model)
    require_tflm_ops(int_model)
    return int_model, read_tflite(out / "model_float.tflite")


def _runtimes(out: Path, work: Path, model: _Model) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """Logits of every runtime on the test images (the TFLM child runs while LiteRT and onnxruntime run here),
    the ONNX models' description and the TFLM check's figures."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        tflm_job = pool.submit(check_tflm, out / paths.MODEL_INT8, work / "test_x.npy", work)
        logits, onnx_info = _other_runtimes(out, work, model.spec, model.test_x, model.qat)
        tflm_info, logits["TFLM int8"] = tflm_job.result()
    return logits, onnx_info, tflm_info


@dataclass(frozen=True)
class _Parity:
    """Every runtime's agreement with the reference (the QAT model when there is one), and the near-ties."""

    rows: list[dict[str, Any]]
    reference: str
    tflm_row: dict[str, Any]
    ties: dict[str, Any]


def _parity(out: Path, logits: dict[str, np.ndarray], test_y: np.ndarray) -> _Parity:
    """The parity table and plot, and the TFLM int8 model's near-ties (margin under 4 output steps)."""
    reference = "PyTorch fake-quant (QAT)" if "PyTorch fake-quant (QAT)" in logits else "PyTorch float"
    rows = parity.parity_table(logits, reference, test_y)
    parity.plot_parity(logits, reference, out / "parity.png")
    tflm_row = next(r for r in rows if r["runtime"] == "TFLM int8")
    out_scale = quant_params(read_tflite(out / paths.MODEL_INT8).io("output"))[0]
    ties = parity.tie_analysis(logits["TFLM int8"], logits[reference], 4 * out_scale)
    ties["tflm_vs_float_top1"] = next(r for r in parity.parity_table(
        {"TFLM int8": logits["TFLM int8"], "PyTorch float": logits["PyTorch float"]}, "PyTorch float")
        if r["runtime"] == "TFLM int8")["top1_agreement"]
    return _Parity(rows=rows, reference=reference, tflm_row=tflm_row, ties=ties)


def _fit(target: Target, out: Path, work: Path, int_model: TfliteModel, arena_const: int, spec: VitSpec
         ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Whether the model fits the target's flash and RAM: the Vela-compiled model for Ethos-U targets (returned
    with Vela's figures), else the int8 model with the TFLM arena."""
    frame = spec.img_size * spec.img_size * spec.in_chans
    if target.runtime != "vela":
        return check_fit(target, int_model.size_bytes, arena_const, frame), None
    from edge.export.vela import compile_vela

    vela = compile_vela(out / paths.MODEL_INT8, work / "vela", target.vela)
    Path(vela["vela_model"]).replace(out / "model_int8_vela.tflite")
    vela["vela_model"] = "model_int8_vela.tflite"
    return check_fit(target, (out / "model_int8_vela.tflite").stat().st_size, vela["sram_bytes"], frame), vela


def _size_budget_reached(run: StageRun, config: RunConfig, source: str) -> bool:
    """Whether export.max_size_fraction applies: the model was pruned and pruning reached its size budget (else
    a note says the fraction was only reported)."""
    pruned = config.prune.enabled and "prune" in run.manifest.stages and source in ("qat", "prune")
    reached = pruned and run.manifest.stages["prune"].metrics.get("reached_size_budget", True)
    if not pruned:
        run.notes.append("the model was not pruned: export.max_size_fraction was reported, not enforced")
    elif not reached:
        run.notes.append("pruning stopped on accuracy (prune.max_drop) before its size budget: "
                         "export.max_size_fraction was reported, not enforced")
    return bool(reached)


def _note_previous_run(run: StageRun, out: Path) -> None:
    """Say so when this export replaces another run's files in the shared build folder."""
    previous = report.exported_run(out)
    name = run.manifest.run_dir.name
    if previous is not None and previous != name:
        note = (f"{out} held the export of run '{previous}'; it now holds run '{name}' "
                "(set export.build_dir to keep both)")
        run.notes.append(note)
        print(f"note: {note}", file=sys.stderr)


def _timed(func: Any, *args: Any, **kwargs: Any) -> float:
    started = time.perf_counter()
    func(*args, **kwargs)
    return round(time.perf_counter() - started, 3)


def _qat_inputs(run: StageRun) -> dict[str, Path]:
    """The qat stage's ranges, QDQ ONNX and reference logits (those it recorded)."""
    found = {}
    outputs = run.manifest.stages["qat"].outputs
    for key, name in (("quant_ranges", "ranges"), ("onnx_qdq", "onnx_qdq"), ("reference", "reference")):
        if key in outputs:
            found[name] = run.input("qat", key)
    return found


def _other_runtimes(out: Path, work: Path, spec: VitSpec, test_x: np.ndarray,
                    qat: dict[str, Path]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Logits of PyTorch (saved by the torch child), the QAT reference, onnxruntime and LiteRT."""
    logits: dict[str, np.ndarray] = {"PyTorch float": np.load(work / "torch_float.npz")["logits"]}
    if "reference" in qat:
        ref = np.load(qat["reference"])
        if "test_qat" in ref and len(ref["test_qat"]) >= len(test_x):
            logits["PyTorch fake-quant (QAT)"] = ref["test_qat"][: len(test_x)].astype(np.float32)
    x = onnx_check.model_input(test_x, spec.input_mean, spec.input_std)
    info = {"float": onnx_check.describe_onnx(onnx_check.read_onnx(out / "model.onnx"))}
    logits["onnxruntime float"] = onnx_check.run_onnx(out / "model.onnx", x)
    if "onnx_qdq" in qat:
        (out / "model_int8.onnx").write_bytes(qat["onnx_qdq"].read_bytes())
        info["qdq"] = onnx_check.describe_onnx(onnx_check.read_onnx(out / "model_int8.onnx"))
        logits["onnxruntime QDQ"] = onnx_check.run_onnx(out / "model_int8.onnx", x)
    logits["LiteRT float"] = parity.run_litert(out / "model_float.tflite", test_x)
    logits["LiteRT int8"] = parity.run_litert(out / paths.MODEL_INT8, test_x)
    return logits, info


def _write_firmware(out: Path, model: Any, spec: VitSpec, arena_const: int, target: str) -> None:
    in_t, out_t = model.io("input"), model.io("output")
    in_scale, in_zero = quant_params(in_t)
    out_scale, out_zero = quant_params(out_t)
    info = c_array.FirmwareInfo(
        resolver_calls=resolver_calls(model), arena_bytes=arena_const, input_shape=in_t.shape,
        input_type=in_t.dtype.lower(), input_scale=in_scale, input_zero_point=in_zero, output_scale=out_scale,
        output_zero_point=out_zero, labels=spec.labels or [f"class_{i}" for i in range(spec.num_classes)],
        source=f"edge export (target {target})",
    )
    data = (out / paths.MODEL_INT8).read_bytes()
    atomic_write_text(out / "model_data.h", c_array.render_header(info, len(data)))
    atomic_write_text(out / "model_data.cc", c_array.render_source(data, info))


def _sizes(run: StageRun, out: Path, int8_bytes: int, source: str) -> dict[str, Any]:
    """Model sizes, and the int8 model's share of the unpruned float32 model (the train stage's)."""
    sizes: dict[str, Any] = {
        "tflite_bytes": int8_bytes,
        "tflite_float_bytes": (out / "model_float.tflite").stat().st_size,
        "onnx_bytes": (out / "model.onnx").stat().st_size,
        "onnx_qdq_bytes": (out / "model_int8.onnx").stat().st_size if (out / "model_int8.onnx").is_file() else None,
        "model_source": source,
    }
    train = run.manifest.stages.get("train")
    if train and "weights" in train.outputs:
        from safetensors.numpy import load_file

        params = sum(int(v.size) for v in load_file(str(run.manifest.artifact("train", "weights"))).values())
        sizes["unpruned_float32_bytes"] = 4 * params
        sizes["fraction_of_unpruned_float32"] = round(int8_bytes / (4 * params), 4)
    return sizes


def _gates(cfg: Any, tflm_row: dict[str, Any], sizes: dict[str, Any], pruned: bool, reference: str,
           ties: dict[str, Any]) -> None:
    agreement = tflm_row["top1_agreement"]
    if not agreement_passes(agreement, cfg.min_tflm_agreement, cfg.agreement_basis, ties):
        raise ExportError(agreement_failure(agreement, cfg.min_tflm_agreement, reference, ties, cfg.agreement_basis),
                          where="export.min_tflm_agreement (report.json agreement)",
                          hint=agreement_hint(cfg.min_tflm_agreement, ties))
    fraction = sizes.get("fraction_of_unpruned_float32")
    if cfg.max_size_fraction is not None and fraction is not None and pruned and fraction > cfg.max_size_fraction:
        raise ExportError(
            f"int8 model is {sizes['tflite_bytes']:,} B = {fraction:.1%} of the unpruned float32 model "
            f"({sizes['unpruned_float32_bytes']:,} B); the limit is {cfg.max_size_fraction:.0%}",
            where="export.max_size_fraction", hint="prune harder (prune.*) or raise export.max_size_fraction")


#: agreement_basis 'decisive': the gate also fails when more than this share of the test images are near-ties.
MAX_NEAR_TIE_SHARE = 0.10


def agreement_passes(agreement: float, minimum: float, basis: str, ties: dict[str, Any]) -> bool:
    """The agreement gate. 'all': top-1 agreement on every test image >= minimum. 'decisive': on the images
    whose reference top-1 margin is at least the near-tie threshold (4 int8 output steps; a smaller margin is
    a tie an int8 output cannot resolve), with at most MAX_NEAR_TIE_SHARE of the images near-ties."""
    if basis == "all":
        return agreement >= minimum
    decisive = ties["decisive_top1_agreement"]
    near_share = ties["near_tie_images"] / max(1, ties["images"])
    return decisive is not None and decisive >= minimum and near_share <= MAX_NEAR_TIE_SHARE


def agreement_failure(agreement: float, minimum: float, reference: str, ties: dict[str, Any],
                      basis: str = "all") -> str:
    """The gate's message: the agreement with its statistics (images, 95 % interval, decisive-margin agreement)."""
    lo, hi = ties["agreement_ci95"]
    near = ties["near_tie_images"]
    rule = (f"export.min_tflm_agreement is {minimum}" if basis == "all" else
            f"export.min_tflm_agreement is {minimum} on the decisive images (export.agreement_basis=decisive), "
            f"with at most {MAX_NEAR_TIE_SHARE:.0%} near-ties")
    return (f"TFLite Micro int8 agrees with {reference} on {agreement:.4f} of the test images "
            f"({ties['agreeing_images']}/{ties['images']}, "
            f"95 % interval {lo:.3f}-{hi:.3f}; {near} near-tie image(s), agreement on the "
            f"decisive rest {ties['decisive_top1_agreement']}); {rule}")


def agreement_hint(minimum: float, ties: dict[str, Any]) -> str:
    """The likely fix for a failed agreement gate."""
    n = ties["images"]
    small = (f"with {n} test images one image is {1 / n:.1%}: add test images (data.test_fraction or a larger "
             f"test/ folder) for a gate that can tell; " if n and 1 / n > 1 - minimum else "")
    return (small + "the calibrated points in report.md are where int8 and QAT differ: give QAT more epochs "
            "(qat.epochs) or int16 activations (qat.activation_bits=16); lower export.min_tflm_agreement "
            "only if you accept that disagreement")


def _record(run: StageRun, out: Path, data: dict[str, Any]) -> None:
    for key, name in (("tflite_int8", paths.MODEL_INT8), ("tflite_float", "model_float.tflite"),
                      ("onnx", "model.onnx"), ("onnx_qdq", "model_int8.onnx"), ("c_source", "model_data.cc"),
                      ("c_header", "model_data.h"), ("report", "report.json"), ("report_md", "report.md"),
                      ("tflite_vela", "model_int8_vela.tflite"), ("parity_plot", "parity.png")):
        if (out / name).is_file():
            run.output(key, out / name)
    run.metrics.update(report.metrics(data))
