"""The model card and quality sections: data, accuracy at every stage, and the measured int8 checks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.report import measure, plots
from edge.report.content import Check, Figure, Image, Section, Table, fmt, mark
from edge.report.gather import Artifact, RunView, dig, seed_siblings, seeds_of

# Thresholds of the pass/warn marks (stated on the page next to each mark).
MIN_TRAIN_PER_CLASS = 100
MIN_TEST_PER_CLASS = 20
MIN_BALANCE = 0.5  # smallest / largest training class
MAX_CLASS_GAP = 0.10  # worst class top-1 below the overall top-1
MAX_ROBUST_DROP = 0.10  # top-1 lost at a perturbation's moderate strength
MAX_ECE = 0.05
MAX_INT8_DROP = 0.02  # TFLM int8 test top-1 below the float model's
MAX_SEED_SPREAD = 0.02  # TFLM int8 test top-1 over runs that differ only in seeds
MIN_TFLM_AGREEMENT = 0.98  # LiteRT's top-1 vs TFLite Micro's on the same int8 inputs
TFLM_IMAGES = 64  # test images the report also runs through TFLite Micro (about 30 ms each on a host core)

_STAGE_ACCURACY = (  # (stage, metric, label)
    ("train", "baseline_val_top1", "pixel baseline (logistic regression), val"),
    ("train", "baseline_test_top1", "pixel baseline (logistic regression), test"),
    ("train", "val_top1", "trained float, val"),
    ("train", "test_top1", "trained float, test"),
    ("prune", "val_top1", "pruned float, val"),
    ("prune", "test_top1", "pruned float, test"),
    ("qat", "val_top1_ptq", "post-training quantised, val"),
    ("qat", "val_top1", "QAT fake-quant, val"),
    ("qat", "test_top1", "QAT fake-quant, test"),
)


@dataclass(frozen=True)
class Int8Results:
    """What the report measured with the int8 model (LiteRT) on the test split."""

    labels: list[str]
    test_y: np.ndarray
    logits: np.ndarray
    sweep_images: int
    curves: dict[str, list[tuple[float, float]]]
    model: Artifact
    seconds: float
    tflm_agreement: float | None = None  # LiteRT vs TFLite Micro top-1 on the first TFLM_IMAGES test images
    tflm_images: int = 0

    @property
    def preds(self) -> np.ndarray:
        """Top-1 predictions."""
        return self.logits.argmax(axis=1)


def measure_int8(view: RunView) -> Int8Results | None:
    """Run the exported int8 model on the test split (clean, then the perturbation sweep); None when the run
    has no current int8 model or data set."""
    from edge.training.dataset import load_dataset

    model, data = view.artifact("export", "tflite_int8"), view.artifact("data", "dataset")
    if model is None or data is None:
        return None
    started = time.perf_counter()
    ds = load_dataset(data.path)
    try:
        runner = measure.Int8Runner(model.path)
        logits = runner.logits(ds.test.x)
        idx = measure.sweep_subset(len(ds.test))
        curves = measure.robustness(runner, ds.test.x[idx], ds.test.y[idx])
    except (RuntimeError, ValueError) as exc:  # LiteRT refused the model: say so on the page, keep the rest
        view.problems["export.tflite_int8"] = f"LiteRT could not run it: {exc}"
        return None
    agreement, n = _tflm_agreement(view, model, runner.inputs(ds.test.x[:TFLM_IMAGES]), logits[:TFLM_IMAGES])
    return Int8Results(list(ds.labels), ds.test.y, logits, len(idx), curves, model,
                       time.perf_counter() - started, agreement, n)


def _tflm_agreement(view: RunView, model: Artifact, inputs: np.ndarray, lite: np.ndarray) -> tuple[float | None, int]:
    """How often TFLite Micro picks LiteRT's top-1 on these inputs (the report's LiteRT results stand in for TFLM)."""
    from edge.errors import ExportError

    got = view.json("export", "report")
    arena = dig(got[0], "tflm", "arena_constant_bytes") if got else None
    if not arena or not len(inputs):
        return None, 0
    try:
        tflm = measure.tflm_top1(model.path, inputs, int(arena))
    except ExportError as exc:
        view.problems["export.tflite_int8"] = f"TFLite Micro could not run it here: {exc.message}"
        return None, 0
    return float((tflm == lite.argmax(axis=1)).mean()), len(inputs)


def model_card(view: RunView, res: Int8Results | None) -> Section:
    """Data, classes, splits, samples, accuracy at every stage, per-class results of the int8 model."""
    sec = Section("model-card", "Model card")
    sec.figures += [f for f in (
        view.figure("data", "source", "data source"),
        view.figure("data", "num_classes", "classes"),
        view.figure("data", "image_size_px", "image size", "px"),
        view.figure("data", "channels", "channels"),
        *(view.figure("data", f"n_{s}", f"{s} images") for s in ("train", "val", "test", "calib")),
        view.figure("export", "model_source", "exported model from stage"),
        view.figure("export", "params", "parameters (exported)"),
        view.figure("export", "macs", "MACs per inference (exported)"),
        view.figure("train", "params", "parameters (trained, unpruned)"),
    ) if f is not None]
    src = view.json("data", "source")
    if src:
        sec.figures.append(Figure("data location", src[0].get("path") or src[0].get("source", "?"), "",
                                  "recorded", src[1].source, src[1].ref.sha256))
    _stage_images(view, sec)
    rows = _accuracy_rows(view, res)
    if rows:
        sec.tables.append(Table("Top-1 at every stage", ["model", "top-1", "basis", "source"],
                                [[label, fmt(value), basis, source] for label, value, basis, source in rows]))
        values = [value for _, value, _, _ in rows]
        sec.images.append(Image("top-1 at every stage", plots.bars(
            [label for label, _, _, _ in rows], values, "top-1", "Top-1 at every stage",
            xlim=(max(0.0, min(values) - 0.1), 1.02)), "manifest metrics"))
    if res is not None:
        m = measure.confusion(res.test_y, res.preds, len(res.labels))
        sec.images.append(Image("confusion matrix, int8 model, test split",
                                plots.confusion_plot(m, res.labels, "int8 model (LiteRT), test split"),
                                f"measured: {res.model.source}", res.model.ref.sha256))
        tflm = view.metric("export", "tflm_vs_qat_top1")
        if tflm is not None:
            sec.figures.append(Figure("TFLite Micro top-1 agreement with the reference", tflm, "", "measured",
                                      "manifest stages.export.metrics.tflm_vs_qat_top1 (the export's TFLM run)"))
        if res.tflm_agreement is not None:
            sec.figures.append(Figure(f"LiteRT vs TFLite Micro top-1 agreement ({res.tflm_images} test images)",
                                      res.tflm_agreement, "", "measured",
                                      f"this report: both interpreters on {res.model.source}", res.model.ref.sha256))
    elif view.record("export"):
        sec.problems.append("the int8 model or the data set is not current: per-class results not measured")
    for stage in ("data", "export"):
        if view.record(stage) is None:
            sec.problems.append(f"the {stage} stage has not run")
    sec.problems += view.problems_of("data", "export")
    return sec


def _stage_images(view: RunView, sec: Section) -> None:
    """The stages' own plots: sample images, training, pruning and QAT curves."""
    for stage, key, title in (("data", "samples", "sample images per class"), ("train", "curves", "training curves"),
                              ("prune", "plot", "pruning: size vs accuracy"), ("qat", "curves", "QAT curves")):
        plot = view.artifact(stage, key)
        if plot:
            sec.images.append(Image(title, plot.path.read_bytes(), plot.source, plot.ref.sha256))


def _accuracy_rows(view: RunView, res: Int8Results | None) -> list[tuple[str, float, str, str]]:
    """(model, top-1, basis, source) at every stage: recorded by train/prune/qat, measured by export and here."""
    rows = [(label, float(value), "recorded", f"stages.{stage}.metrics.{key}") for stage, key, label in _STAGE_ACCURACY
            if (value := view.metric(stage, key)) is not None]
    rows += [(f"{key.removeprefix('test_top1_').replace('_', ' ')}, test", float(value), "measured by export",
              f"stages.export.metrics.{key}") for key, value in sorted(view.metrics("export").items())
             if key.startswith("test_top1_") and value is not None]
    if res is not None:
        rows.append(("LiteRT int8 (this report), test", float((res.preds == res.test_y).mean()), "measured",
                     res.model.source))
    return rows


def _class_counts(view: RunView, split: str, labels: list[str]) -> list[int]:
    counts = view.metric("data", "class_counts", {}).get(split, {})
    return [int(counts.get(str(i), counts.get(name, 0))) for i, name in enumerate(labels)]


def _labels(view: RunView, res: Int8Results | None) -> list[str]:
    if res is not None:
        return res.labels
    counts = view.metric("data", "class_counts", {}).get("train", {})
    return [str(k) for k in counts]


def quality(view: RunView, res: Int8Results | None) -> Section:
    """Measured quality in the spirit of the AIST ML Quality Management Guideline, each with a mark."""
    sec = Section("quality", "Quality",
                  "Measured on this run's artifacts, not asserted. Each check states its threshold; "
                  "'warn' means look closer, not that the model is unusable.")
    labels = _labels(view, res)
    _data_checks(view, sec, labels)
    if res is None:
        sec.checks.append(Check("int8 model measurements", None, "an exported, current int8 model", "n/a",
                                "no current int8 model in this run"))
    else:
        _class_checks(sec, res)
        _robustness(sec, res)
        _calibration(sec, res)
    _int8_drop(view, sec)
    _stability(view, sec)
    return sec


def _stability(view: RunView, sec: Section) -> None:
    """Spread of the TFLM int8 test top-1 over runs beside this one that differ only in their seeds."""
    threshold = f"spread (max - min) of TFLM int8 test top-1 over seeds <= {MAX_SEED_SPREAD}"
    key = "test_top1_tflm_int8"
    rows = [[m.run_dir.name, ", ".join(f"{k}={v}" for k, v in seeds_of(m.config).items()),
             fmt(m.stages["export"].metrics[key])]
            for m in seed_siblings(view) if "export" in m.stages and key in m.stages["export"].metrics]
    if len(rows) < 2:
        sec.checks.append(Check("stability over seeds", None, threshold, "n/a",
                                "no run beside this one differs only in its seeds: run the pipeline again with "
                                "--run NAME --set train.seed=N (same config otherwise) to measure the spread"))
        return
    values = [float(r[2]) for r in rows]
    spread = max(values) - min(values)
    sec.checks.append(Check("stability over seeds", round(spread, 4), threshold, mark(spread <= MAX_SEED_SPREAD),
                            f"{len(rows)} runs: {', '.join(r[0] for r in rows)}"))
    sec.tables.append(Table("Stability: runs that differ only in their seeds", ["run", "seeds", "TFLM int8 test top-1"],
                            rows, f"source: manifest stages.export.metrics.{key} of each run"))


def _data_checks(view: RunView, sec: Section, labels: list[str]) -> None:
    train, val, test = (_class_counts(view, s, labels) for s in ("train", "val", "test"))
    if not any(train):
        sec.checks.append(Check("data per class", None, f">= {MIN_TRAIN_PER_CLASS} training images per class",
                                "n/a", "the data stage recorded no class counts"))
        return
    total = sum(train) or 1
    sec.tables.append(Table("Data per class (data stage)", ["class", "train", "val", "test", "share of train"],
                            [[n, fmt(a), fmt(b), fmt(c), f"{100 * a / total:.1f} %"]
                             for n, a, b, c in zip(labels, train, val, test, strict=True)],
                            "source: manifest stages.data.metrics.class_counts"))
    low = min(train)
    sec.checks.append(Check("data sufficiency (train)", low, f">= {MIN_TRAIN_PER_CLASS} training images per class",
                            mark(low >= MIN_TRAIN_PER_CLASS), f"smallest class: {labels[train.index(low)]}"))
    if any(test):
        sec.checks.append(Check("data sufficiency (test)", min(test), f">= {MIN_TEST_PER_CLASS} test images per class",
                                mark(min(test) >= MIN_TEST_PER_CLASS), "per-class accuracy rests on these"))
    balance = low / max(train)
    sec.checks.append(Check("class balance (train)", round(balance, 3), f"smallest / largest class >= {MIN_BALANCE}",
                            mark(balance >= MIN_BALANCE)))


def _class_checks(sec: Section, res: Int8Results) -> None:
    m = measure.confusion(res.test_y, res.preds, len(res.labels))
    acc = measure.per_class_accuracy(m)
    overall = float((res.preds == res.test_y).mean())
    sec.tables.append(Table("Accuracy per class, int8 model (LiteRT), test split",
                            ["class", "test images", "top-1", "most confused with"],
                            [[name, fmt(int(m[i].sum())), fmt(float(acc[i])), _confused(m, i, res.labels)]
                             for i, name in enumerate(res.labels)],
                            f"measured; model sha256 {res.model.ref.sha256[:12]}"))
    worst = int(np.nanargmin(acc)) if np.isfinite(acc).any() else 0
    gap = overall - float(acc[worst])
    sec.checks.append(Check("accuracy per class", round(float(acc[worst]), 4),
                            f"worst class within {MAX_CLASS_GAP:.2f} of the overall top-1 {overall:.4f}",
                            mark(gap <= MAX_CLASS_GAP), f"worst class: {res.labels[worst]}"))
    sec.figures.append(Figure("int8 test top-1 (LiteRT)", overall, "", "measured", res.model.source,
                              res.model.ref.sha256))
    if res.tflm_agreement is not None:
        sec.checks.append(Check("LiteRT stands in for TFLite Micro", round(res.tflm_agreement, 4),
                                f"same top-1 on >= {MIN_TFLM_AGREEMENT:.0%} of {res.tflm_images} test images",
                                mark(res.tflm_agreement >= MIN_TFLM_AGREEMENT),
                                "the per-class, robustness and calibration figures are LiteRT's"))


def _confused(m: np.ndarray, i: int, labels: list[str]) -> str:
    row = m[i].copy()
    row[i] = 0
    return "-" if not row.any() else f"{labels[int(row.argmax())]} ({int(row.max())})"


def _robustness(sec: Section, res: Int8Results) -> None:
    rows = []
    for p in measure.PERTURBATIONS:
        pts = dict(res.curves[p.name])
        clean, judged = pts[p.identity], pts[p.judged]
        rows.append([p.name, p.unit, *[f"{s:g}: {pts[s]:.3f}" for s in sorted(pts) if s != p.identity]])
        sec.checks.append(Check(f"robustness: {p.name}", round(judged, 4),
                                f"top-1 at {p.name} {p.judged:g} within {MAX_ROBUST_DROP:.2f} of clean {clean:.4f}",
                                mark(clean - judged <= MAX_ROBUST_DROP)))
    width = max(len(r) for r in rows)
    sec.tables.append(Table(f"Robustness: top-1 vs strength ({res.sweep_images} seeded test images)",
                            ["perturbation", "unit", *[f"level {i + 1}" for i in range(width - 2)]],
                            [r + [""] * (width - len(r)) for r in rows],
                            "measured with the int8 model (LiteRT); clean images are "
                            + ", ".join(f"{p.name} {p.identity:g}" for p in measure.PERTURBATIONS)))
    sec.images.append(Image("robustness of the int8 model", plots.robustness_plot(
        res.curves, f"int8 top-1 vs perturbation ({res.sweep_images} test images)"),
        f"measured: {res.model.source}", res.model.ref.sha256))


def _calibration(sec: Section, res: Int8Results) -> None:
    cal = measure.calibration(measure.softmax(res.logits), res.test_y)
    sec.checks.append(Check("calibration (ECE)", round(cal.ece, 4), f"ECE <= {MAX_ECE} ({measure.ECE_BINS} bins)",
                            mark(cal.ece <= MAX_ECE), "softmax of the int8 model's dequantised logits"))
    sec.images.append(Image("reliability diagram", plots.reliability_plot(cal, "int8 model, test split"),
                            f"measured: {res.model.source}", res.model.ref.sha256))


def _int8_drop(view: RunView, sec: Section) -> None:
    e = view.metrics("export")
    tflm, flt = e.get("test_top1_tflm_int8"), e.get("test_top1_pytorch_float", view.metric("qat", "test_top1_float"))
    if tflm is None or flt is None:
        return
    sec.checks.append(Check("int8 vs float (TFLM, test)", round(flt - tflm, 4),
                            f"TFLM int8 top-1 at most {MAX_INT8_DROP} below the float model's", mark(flt - tflm
                                                                                                  <= MAX_INT8_DROP),
                            f"float {flt:.4f}, TFLM int8 {tflm:.4f} (measured by export)"))


def summary_json(res: Int8Results | None) -> dict[str, Any]:
    """The raw measured arrays' summary for report.json."""
    if res is None:
        return {}
    return {"test_images": len(res.test_y), "sweep_images": res.sweep_images, "seconds": round(res.seconds, 2),
            "robustness": {k: [list(p) for p in v] for k, v in res.curves.items()},
            "model_sha256": res.model.ref.sha256}
