"""Wall time of each export step and of the whole export stage, and the model sizes.

Runs the export stage (in a child process, as `edge run` does) on the default run when it has a
model (runs/default: qat, else prune, else train), otherwise on a temporary run holding a
randomly initialised `vit_lite_s` (64x64x1, the default model before pruning). Baselines measured
in the same run: the import time of TensorFlow and of torch in a fresh process, which every
conversion/ONNX child pays. Target (issue 4): the export stage alone under 60 s on 2 cores.

    .venv/bin/python bench/bench_export.py [--run default] [--runs-dir runs] [--target cortex-m]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.paths import DEFAULT_RUN, DEFAULT_TARGET, RUNS_DIR, build_dir

BUDGET_S = 60.0


def _child_s(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def _temporary_run(root: Path, target: str) -> Path:
    """A run with data + train records holding a random vit_lite_s (no training: speed only)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from export_fixtures import make_run

    from edge.vit_spec import family_spec

    spec = family_spec("vit_lite_s", 64, 1, 2, ["no_person", "person"])
    run_dir, _ = make_run(root, spec=spec, n_test=800, min_tflm_agreement=0.0)
    from edge.manifest import Manifest

    manifest = Manifest(run_dir)
    manifest.config["target"] = target
    manifest.save()
    return run_dir


def main() -> int:
    """Measure and print; exit 1 when the stage takes longer than its budget."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=DEFAULT_RUN)
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    parser.add_argument("--target", default=None, help="target of the temporary run (a real run keeps its own)")
    args = parser.parse_args()

    tf_import = _child_s("import tensorflow")
    torch_import = _child_s("import torch, timm")
    print(f"baseline: import tensorflow {tf_import:.1f} s, import torch+timm {torch_import:.1f} s (fresh process)")

    run_dir = args.runs_dir / args.run
    manifest_file = run_dir / "manifest.json"
    tmp = None
    has_model = manifest_file.is_file() and any(
        s in json.loads(manifest_file.read_text()).get("stages", {}) for s in ("qat", "prune", "train"))
    if not has_model:
        tmp = tempfile.TemporaryDirectory()
        run_dir = _temporary_run(Path(tmp.name), args.target or DEFAULT_TARGET)
        print(f"no model in {manifest_file}: timing a random vit_lite_s (64x64x1, 800 test images) instead")
    config = json.loads((run_dir / "manifest.json").read_text())["config"]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edge", "stage", "export", "--run-dir", str(run_dir)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    out = build_dir(config["target"], run_dir.resolve().parent, config["export"].get("build_dir"))
    report_file = out / "report.json"
    if proc.returncode != 0:
        print(f"export failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-2:]}")
        if not report_file.is_file() or report_file.stat().st_mtime < time.time() - wall:
            return proc.returncode
        print("(a gate failed after report.json was written; its figures follow)")
    report = json.loads(report_file.read_text())
    print(f"export stage ({config['target']}, model from {report['model']['source_stage']}): {wall:.1f} s wall "
          f"(budget {BUDGET_S:.0f} s, {wall / BUDGET_S:.0%}); {wall / (tf_import + torch_import):.1f}x the two imports")
    for step, seconds in report["timings_s"].items():
        print(f"  {step:28s} {seconds:8.2f} s")
    size = report["size"]
    print(f"int8 tflite {size['tflite_bytes']:,} B, float tflite {size['tflite_float_bytes']:,} B, "
          f"onnx {size['onnx_bytes']:,} B; params {report['model']['params']:,}, MACs {report['model']['macs']:,}")
    if size.get("fraction_of_unpruned_float32") is not None:
        print(f"int8 / unpruned float32: {size['fraction_of_unpruned_float32']:.1%} (target <= 10%)")
    print(f"TFLM arena {report['tflm']['arena_bytes']:,} B, host invoke {report['tflm']['invoke_ms_host']} ms/image, "
          f"TFLM vs {report['agreement']['reference']}: top-1 {report['agreement']['tflm_vs_qat_top1']:.4f} "
          f"on {report['agreement']['test_images']} images")
    if tmp is not None:
        tmp.cleanup()
    return proc.returncode or (0 if wall < BUDGET_S else 1)


if __name__ == "__main__":
    sys.exit(main())
