"""The pipeline on real data no one here made: scikit-learn's handwritten digits, beside the default.

Writes the digits as an ImageFolder tree with its own train/val/test split (1,797 8x8 images of
10 classes, upscaled; `edge.training.digits`) and runs `edge run` on it with the defaults and no
overrides, plus variants a user meets (a larger image size, few training images). Prints one row
per run: images, image size, epochs, float val top-1 against the pixel baseline, the pruned size
and accuracy, TFLite Micro int8 test top-1 against the float model, the TFLM-vs-QAT agreement, the
int8 bytes and the wall time; `--default-run` adds the built-in default's row from its manifest.
Exits 1 when the digits defaults miss the targets: float val >= 0.95, TFLM int8 test top-1 within
2 points of the trained float model, TFLM vs QAT agreement >= 0.99.

    .venv/bin/python bench/bench_real_data.py [--variants defaults,64px,few] [--default-run default]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.manifest import Manifest
from edge.paths import RUNS_DIR

VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "64px": ["--set", "data.image_size=64"],
    "few": [],  # the train/ folder thinned to a quarter (see _thin)
}
HEADER = (f"{'run':16s} {'train':>6s} {'px':>3s} {'ep':>4s} {'val':>6s} {'base':>6s} {'kept':>5s} {'pr val':>6s} "
          f"{'int8':>6s} {'float':>6s} {'agree':>6s} {'KB':>6s} {'wall_s':>7s}")


def _thin(root: Path, keep_every: int = 4) -> None:
    """Keep every `keep_every`-th training image of each class (val/ and test/ stay whole)."""
    for folder in sorted((root / "train").iterdir()):
        for i, image in enumerate(sorted(folder.iterdir())):
            if i % keep_every:
                image.unlink()


def _row(name: str, manifest: Manifest, wall_s: float | None) -> tuple[str, dict[str, float]]:
    m = {stage: record.metrics for stage, record in manifest.stages.items()}
    train, prune, export = m.get("train", {}), m.get("prune", {}), m.get("export", {})
    figures = {"val": train.get("val_top1"), "baseline": train.get("baseline_val_top1"),
               "float_test": train.get("test_top1"), "int8_test": export.get("test_top1_tflm_int8"),
               "agreement": export.get("tflm_vs_qat_top1")}

    def f(value: object, spec: str = ".3f") -> str:
        return "-" if value is None else format(value, spec)

    data = m["data"]
    text = (f"{name:16s} {data['n_train']:6d} {data['image_size_px']:3d} {f(train.get('epochs_run'), 'd'):>4s} "
            f"{f(figures['val']):>6s} {f(figures['baseline']):>6s} {f(prune.get('params_ratio'), '.2f'):>5s} "
            f"{f(prune.get('val_top1')):>6s} {f(figures['int8_test']):>6s} {f(figures['float_test']):>6s} "
            f"{f(figures['agreement']):>6s} {f(export.get('tflite_int8_bytes', 0) / 1024, '.0f'):>6s} "
            f"{f(wall_s, '.0f'):>7s}")
    return text, figures


def _run(name: str, extra: list[str], tree: Path, runs_dir: Path) -> tuple[str, dict[str, float]]:
    run_dir = runs_dir / f"real-{name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "edge", "run", "--runs-dir", str(runs_dir), "--run", run_dir.name,
           "--data", f"imagefolder:{tree}", "--fresh-config", *extra]
    start = time.perf_counter()
    code = subprocess.call(cmd)
    wall = time.perf_counter() - start
    text, figures = _row(name, Manifest(run_dir), wall)
    return (text + (f"   (edge run exit {code})" if code else "")), {**figures, "exit": code}


def main() -> int:
    """Run the variants, print the table, and check the digits defaults against the targets."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="defaults,64px,few", help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    parser.add_argument("--default-run", default=None, help="also print this existing run's row (read only)")
    args = parser.parse_args()
    from edge.training.digits import write_digits_imagefolder

    rows: list[str] = []
    checked: dict[str, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            tree = write_digits_imagefolder(Path(tmp) / name, size=32)
            if name == "few":
                _thin(tree)
            text, figures = _run(f"digits-{name}", VARIANTS[name], tree, args.runs_dir)
            rows.append(text)
            if name == "defaults":
                checked = figures
    if args.default_run:
        rows.append(_row(f"{args.default_run} (built-in)", Manifest(args.runs_dir / args.default_run), None)[0])
    print("\nval/base: float val top-1 and the pixel baseline's; kept/pr val: params kept by pruning and its val "
          "top-1;\nint8/float: TFLite Micro int8 and trained float test top-1; agree: TFLM vs QAT top-1 agreement\n")
    print(HEADER + "\n" + "-" * len(HEADER) + "\n" + "\n".join(rows))
    if checked is None:
        return 0
    failures = []
    if checked["exit"]:
        failures.append(f"edge run exited {checked['exit']}")
    if (checked["val"] or 0) < 0.95:
        failures.append(f"float val top-1 {checked['val']} < 0.95")
    if checked["int8_test"] is None or checked["float_test"] - checked["int8_test"] > 0.02:
        failures.append(f"TFLM int8 test top-1 {checked['int8_test']} more than 2 points below float "
                        f"{checked['float_test']}")
    if (checked["agreement"] or 0) < 0.99:
        failures.append(f"TFLM vs QAT agreement {checked['agreement']} < 0.99")
    print("\ndigits defaults: " + ("all targets met" if not failures else "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
