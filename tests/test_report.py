"""`edge report`: the run on one page, checked in a real browser (headless Chromium).

The fast test builds a tiny run (data + train records from export_fixtures, then the real export,
profile, battery and report stages) and opens report.html in Debian's `chromium` (`make chromium`
installs it): every section and every image must render, with no script error; the screenshot is
kept under the test's tmp dir. The slow test runs `edge run` end to end on a tiny config, so the
report stage at the end of the flow and `edge report` are covered through the CLI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from export_fixtures import make_run

from edge.config import RunConfig
from edge.manifest import Manifest, StageRecord
from edge.pipeline import run_stage_here
from edge.report import card, measure
from edge.report.build import build_report
from edge.report.gather import RunView

SECTIONS = ["overview", "model-card", "quality", "fit", "speed", "battery", "carbon", "provenance"]
# Run before the page's own content: records script errors and, after load, what rendered.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || (e.target && e.target.src) || e)), true);
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const shown = [...document.querySelectorAll("section")].filter(s => s.getBoundingClientRect().height > 0);
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    images: imgs.length,
    broken: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
    sections: shown.map(s => s.id),
    errors: window.__errors,
  });
  document.body.appendChild(probe);
});
</script>"""


def chromium() -> str:
    """The Chromium binary; skipped locally when absent, a failure where EDGE_REQUIRE_BROWSER=1 (CI)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("EDGE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed: `make chromium` (Debian's chromium package)")
        pytest.skip("chromium is not installed (`make chromium`)")
    return found


def _browser(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--user-data-dir=" + str(Path(args[-1].removeprefix("file://")).parent / "chromium-profile"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def render_in_browser(html: Path, out: Path) -> tuple[dict, Path]:
    """What rendered (sections, images, broken images, script errors) and a screenshot of the page."""
    out.mkdir(parents=True, exist_ok=True)
    probed = out / "probed.html"
    probed.write_text(html.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    dom = _browser("--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"the probe did not run: {dom.stderr[-2000:]}"
    shot = out / "report.png"
    _browser("--window-size=1100,2400", f"--screenshot={shot}", html.as_uri())
    pdf = out / "report.pdf"  # printing: the print stylesheet, every section on paper
    _browser("--no-pdf-header-footer", f"--print-to-pdf={pdf}", html.as_uri())
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.read_bytes().count(b"/Type /Page") >= 3
    import html as html_lib

    return json.loads(html_lib.unescape(found.group(1))), shot


def _small_battery(run_dir: Path) -> None:
    manifest = Manifest(run_dir)
    tree = RunConfig.model_validate(manifest.config).model_dump(mode="json")
    tree["battery"]["runs"] = 50
    manifest.config = RunConfig.model_validate(tree).model_dump(mode="json")
    manifest.save()


def test_report_of_a_tiny_run_renders_every_section_and_image_in_chromium(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path, n_test=40)
    _small_battery(run_dir)
    for stage in ("export", "profile", "battery"):
        run_stage_here(run_dir, stage)
    started = time.perf_counter()
    run_stage_here(run_dir, "report")
    wall = time.perf_counter() - started
    record = Manifest(run_dir).stages["report"]
    assert set(record.outputs) == {"report_html", "report_md", "report_json"}
    assert {"export.tflite_int8", "data.dataset", "profile.profile", "battery.lifetime"} <= set(record.inputs)
    assert "manifest" in record.inputs  # prune and qat did not run: a later stage must rerun the report
    report = json.loads((run_dir / "report/report.json").read_text())
    assert [s["id"] for s in report["sections"]] == SECTIONS
    assert report["artifacts_not_current"] == {}
    by_id = {s["id"]: s for s in report["sections"]}
    for sid in SECTIONS[1:-2]:
        assert not by_id[sid]["problems"], (sid, by_id[sid]["problems"])
    assert by_id["carbon"]["problems"] == ["no training energy recorded (CodeCarbon did not run in this run's train "
                                           "stage)"]  # the fixture's train record has no CodeCarbon figures
    assert any(f["label"].startswith("cited points behind kernel set") for f in by_id["speed"]["figures"])
    checks = {c["name"]: c for s in report["sections"] for c in s["checks"]}
    for name in ("robustness: brightness", "robustness: contrast", "robustness: noise", "robustness: blur",
                 "calibration (ECE)", "accuracy per class", "flash fits", "battery gate",
                 "LiteRT stands in for TFLite Micro"):
        assert checks[name]["mark"] in ("pass", "warn"), name
    assert report["measured"]["test_images"] == 40 and report["measured"]["sweep_images"] == 40
    for fig in (f for s in report["sections"] for f in s["figures"]):
        assert fig["source"] and fig["basis"] in ("measured", "estimated", "cited", "recorded", "given"), fig

    html = (run_dir / "report/report.html").read_text()
    assert "<script" not in html and not re.search(r'(src|href)="(https?:)?//', html) and "url(" not in html
    assert html.count("<img ") == sum(len(s["images"]) for s in report["sections"]) >= 10
    md = (run_dir / "report/report.md").read_text()
    assert not re.search(r"<[A-Za-z/!]", md) and len(md.encode()) < 1 << 20  # a job summary: no HTML, < 1 MiB
    assert "| mark | check | value | threshold | detail |" in md
    assert "Estimated with the kernel set tflm-cmsis-nn (" in md  # the speed section names it and what backs it

    seen, shot = render_in_browser(run_dir / "report/report.html", tmp_path / "browser")
    assert seen["errors"] == [] and seen["broken"] == [], seen
    assert seen["sections"] == SECTIONS and seen["images"] == html.count("<img ")
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"report stage {wall:.1f} s; screenshot kept at {shot}")


def test_a_changed_artifact_is_reported_not_read(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path, n_test=8)
    (run_dir / "data/dataset.npz").write_bytes(b"not the data set")
    built = build_report(run_dir)
    report = json.loads(built.files["report_json"].read_text())
    assert "data.dataset" in report["artifacts_not_current"] and report["measured"] == {}
    card = next(s for s in report["sections"] if s["id"] == "model-card")
    assert any("data.dataset" in p for p in card["problems"])
    overview = report["sections"][0]
    assert any("export" in p for p in overview["problems"])  # stages not run are said, not hidden
    assert any("data.dataset" in p for p in overview["problems"])


def _run_with_export(runs: Path, name: str, seed: int, top1: float, lr: float = 0.002) -> Path:
    manifest = Manifest(runs / name)
    tree = RunConfig().model_dump(mode="json")
    tree["train"].update({"seed": seed, "lr": lr})
    manifest.config = tree
    manifest.stages["export"] = StageRecord(name="export", config_sha256="-", metrics={"test_top1_tflm_int8": top1},
                                            started_at="2026-01-01T00:00:00+00:00", wall_s=1.0)
    manifest.run_dir.mkdir(parents=True)
    manifest.save()
    return manifest.run_dir


def test_stability_is_the_spread_over_runs_that_differ_only_in_seeds(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = _run_with_export(runs, "a", 0, 0.90)
    alone = card.quality(RunView(first), None)
    assert next(c for c in alone.checks if c.name == "stability over seeds").mark == "n/a"
    _run_with_export(runs, "b", 1, 0.93)
    _run_with_export(runs, "c", 2, 0.91)
    _run_with_export(runs, "other-lr", 3, 0.50, lr=0.01)  # another config: not a sample
    sec = card.quality(RunView(first), None)
    check = next(c for c in sec.checks if c.name == "stability over seeds")
    assert check.value == pytest.approx(0.03) and check.mark == "warn" and "a, b, c" in check.detail
    assert [r[0] for r in sec.tables[-1].rows] == ["a", "b", "c"]


def test_measurements_on_known_inputs() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    cal = measure.calibration(probs, labels, bins=10)
    # bins: 0.9 right, 0.6 right, 0.8 right, 0.7 wrong -> |0.6-1| + |0.7-0| + |0.8-1| + |0.9-1|, each / 4
    assert cal.ece == pytest.approx((0.4 + 0.7 + 0.2 + 0.1) / 4)
    m = measure.confusion(labels, probs.argmax(axis=1), 2)
    assert m.tolist() == [[2, 0], [1, 1]]
    assert measure.per_class_accuracy(m).tolist() == [1.0, 0.5]
    img = np.zeros((1, 9, 9, 1), np.uint8)
    img[0, 4, 4] = 255
    blurred = measure.gaussian_blur(img, 1.0)
    assert blurred.sum() == pytest.approx(255, abs=8) and blurred[0, 4, 4] < 255 and blurred[0, 4, 5] > 0
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 8, 8, 1)).astype(np.uint8)
    for p in measure.PERTURBATIONS:
        if p.name != "blur":  # blur's identity (sigma 0) is the clean point of its curve, not a kernel
            assert np.array_equal(p.apply(images, p.identity, rng), images), p.name
        assert p.judged in p.strengths and p.identity not in p.strengths
    bright = next(p for p in measure.PERTURBATIONS if p.name == "brightness")
    assert bright.apply(np.full((1, 2, 2, 1), 250, np.uint8), 0.4, rng).max() == 255  # clipped, not wrapped


@pytest.mark.slow
def test_edge_run_ends_with_the_report_and_edge_report_rebuilds_it(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("data: {image_size: 32, n_train: 96, n_val: 32, n_test: 48, n_calib: 16}\n"
                      "model: {name: vit_lite_xs}\ntrain: {epochs: 2, batch_size: 32, threads: 1}\n"
                      "prune: {enabled: false}\nqat: {epochs: 1, batch_size: 32}\n"
                      "export: {min_tflm_agreement: 0.0, max_size_fraction: null}\nbattery: {runs: 100}\n")
    base = [sys.executable, "-m", "edge"]
    where = ["--runs-dir", str(tmp_path / "runs"), "--run", "t"]
    proc = subprocess.run([*base, "run", *where, "--config", str(config)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[edge] report: running (not run yet)" in proc.stderr
    again = subprocess.run([*base, "run", *where], capture_output=True, text=True, cwd=tmp_path)
    assert "[edge] report: up to date, skipped" in again.stderr, again.stderr[-2000:]
    started = time.perf_counter()
    rebuilt = subprocess.run([*base, "report", *where], capture_output=True, text=True, cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert time.perf_counter() - started < 60
    assert "report.html" in rebuilt.stdout and "checks pass" in rebuilt.stdout
    report = json.loads((tmp_path / "runs/t/report/report.json").read_text())
    card = next(s for s in report["sections"] if s["id"] == "model-card")
    stages = [row[0] for t in card["tables"] if t["title"] == "Top-1 at every stage" for row in t["rows"]]
    assert "QAT fake-quant, test" in stages and "tflm int8, test" in stages
    seen, _ = render_in_browser(tmp_path / "runs/t/report/report.html", tmp_path / "browser")
    assert seen["errors"] == [] and seen["broken"] == [] and seen["sections"] == SECTIONS
    missing = subprocess.run([*base, "report", "--runs-dir", str(tmp_path / "runs"), "--run", "none"],
                             capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == 2 and "no finished stages" in missing.stderr
