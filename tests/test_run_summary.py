"""`edge run`'s closing lines: what was made, where, the key figures with their basis, the verdict."""

from __future__ import annotations

from pathlib import Path

from edge.manifest import Manifest
from edge.run_summary import summary


def _stage(manifest: Manifest, name: str, metrics: dict, outputs: dict[str, str] | None = None) -> None:
    run = manifest.begin(name, "-")
    for key, rel in (outputs or {}).items():
        path = run.dir.parent / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        run.output(key, path)
    run.metrics.update(metrics)
    manifest.commit(run.finish())


def test_summary_names_figures_files_and_verdict(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = Manifest(Path("runs/r"))
    _stage(manifest, "battery", {"device": "camera-trap", "lifetime_p5_days": 730.5, "lifetime_p50_days": 1000,
                                 "target_days": 365.25, "gate_passed": False}, {"summary": "battery/summary.md"})
    _stage(manifest, "train", {"params": 1234, "val_top1": 0.5, "baseline_val_top1": 0.6, "beats_baseline": False,
                               "epochs_run": 7})
    _stage(manifest, "data", {"n_train": 10, "n_val": 2, "n_test": 3, "image_size_px": 32, "channels": 1,
                              "num_classes": 2, "source": "imagefolder"})
    lines = summary(Path("runs/r")).splitlines()
    assert lines[0] == "[edge] done: run 'r' -> runs/r/ (manifest.json; `edge status` for the table)"
    assert lines[1] == "  data     10 train / 2 val / 3 test images, 32 px x 1, 2 classes (imagefolder)"
    assert lines[2] == "  train    1,234 params, val top-1 0.500, pixel baseline 0.600 (NOT BEATEN), 7 epochs"
    assert lines[3] == "  battery  camera-trap: P5 lifetime 2.0 y, P50 2.7 y, target 1.0 y: FAIL"
    assert lines[4] == "  reports  runs/r/battery/summary.md"
