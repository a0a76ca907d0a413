"""The fitted cost model against every cited MLPerf Tiny point, cross-validated; exits 1 when it fails.

Points and model features: power_profiles/measurements/mlperf_tiny.yaml (each point names its
results file in mlcommons/tiny_results_v0.5 .. v1.3; reruns of the same software on the same board
are listed there as repeats, not counted twice). Prints per kernel set the fitted coefficients,
every point's estimate/measured ratio (fitted on all points, and held out: leave-one-benchmark-out,
leave-one-board-out), the summary errors and the band, the LOBO error per kernel set, and checks the
thresholds of issue 11: median |LOBO latency error| <= 15 %, worst <= 35 %, median |LOBO energy
error| <= 20 %, band coverage of held-out points >= 80 %. With instruction-level figures
(power_profiles/kernels/) it also prints them against every published run of the same kernel set
(measured / instruction-level: the silicon factor above the zero-wait-state lower bound), and the
cost model per op class against their whole-model figures for the model they measured. Pure data,
about a second. Run:
    .venv/bin/python bench/bench_cost_model.py [--model build/cortex-m/model_int8.tflite]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
from pathlib import Path

from edge.power import fit
from edge.power.cost import FITTED_CORES, KERNEL_SETS, estimate_file
from edge.power.crosscheck import MIN_COVERED, silicon_checks
from edge.power.kernel_files import base_op, load_kernel_file
from edge.power.op_keys import op_key, read_op_inputs
from edge.power.profiles import list_profiles, load_mcu, profiles_dir
from edge.power.tflite_graph import CLASS_OF, parse_tflite

THRESHOLDS = {"lobo_latency_median": 0.15, "lobo_latency_worst": 0.35, "lobo_energy_median": 0.20}
MIN_COVERAGE = 0.80


def print_points(held: list[fit.HeldOut]) -> None:
    """Every point: fitted-on-all ratio, LOBO ratio, LOBoard ratio (latency; energy where measured)."""
    feats = fit.benchmark_features()
    by_key = {(h.fold, h.point.kernel_set, h.point.board, h.point.benchmark): h for h in held}
    print(f"{'kernel set':18s} {'board':16s} {'core':10s} {'bench':5s} {'meas ms':>9s} {'all':>6s} {'LOBO':>6s} "
          f"{'LOBO E':>7s} {'LOBoard':>7s}  source")
    for p in fit.points():
        coef = fit.coefficients(p.kernel_set)
        allfit = coef.cycles(feats[p.benchmark], p.board) / p.cycles
        lobo = by_key.get(("benchmark", p.kernel_set, p.board, p.benchmark))
        lob = by_key.get(("board", p.kernel_set, p.board, p.benchmark))
        e = f"{lobo.energy_ratio:7.2f}" if lobo and lobo.energy_ratio is not None else f"{'-':>7s}"
        print(f"{p.kernel_set:18s} {p.board:16s} {p.core:10s} {p.benchmark:5s} {p.latency_ms:9.2f} {allfit:6.2f} "
              f"{lobo.latency_ratio if lobo else float('nan'):6.2f} {e} "
              f"{lob.latency_ratio if lob else float('nan'):7.2f}  {p.latency_source}")


def print_sets() -> None:
    """The fitted coefficients per kernel set."""
    desc = fit.kernel_set_descriptions()
    for name in sorted({p.kernel_set for p in fit.points()}):
        c = fit.coefficients(name)
        scale = ", ".join(f"{b} x{s:.2f}" for b, s in c.board_scale.items())
        print(f"{name:18s} c_mac {c.c_mac:.2f} c_fc {c.c_fc:.2f} c_in {c.c_in:.2f} c_out {c.c_out:.1f} "
              f"c_op {c.c_op:,.0f} c_el {c.c_el:g} ({c.points} points; {scale}) -- {desc.get(name, '')}")


def print_per_set(held: list[fit.HeldOut]) -> None:
    """Leave-one-benchmark-out latency error per kernel set, with its worst point: where a failure comes from."""
    for name in sorted({h.point.kernel_set for h in held}):
        lobo = [h for h in held if h.fold == "benchmark" and h.point.kernel_set == name]
        worst = max(lobo, key=lambda h: abs(h.latency_ratio - 1))
        median = statistics.median(abs(h.latency_ratio - 1) for h in lobo)
        print(f"{name:18s} LOBO latency median {median:6.1%}, worst {abs(worst.latency_ratio - 1):6.1%} "
              f"({worst.point.board} {worst.point.benchmark} x{worst.latency_ratio:.2f}; {len(lobo)} points)")


def print_repeats() -> None:
    """Published reruns of a point's software on the same board: how reproducible one measurement is."""
    reps = fit.repeats()
    if not reps:
        return
    own = {(p.kernel_set, p.board, p.benchmark): p for p in fit.points()}
    dev = [abs(r.latency_ms / own[r.of].latency_ms - 1) for r in reps]
    who = ", ".join(sorted({f"{r.round} {r.submitter}" for r in reps}))
    print(f"repeats: {len(reps)} reruns ({who}) of {len({r.of for r in reps})} points: latency within "
          f"{max(dev):.1%} of the point (median {statistics.median(dev):.2%})")


def check(v: fit.Validation) -> list[str]:
    """The thresholds that fail."""
    failed = [f"{k} {getattr(v, k):.1%} > {limit:.0%}" for k, limit in THRESHOLDS.items() if getattr(v, k) > limit]
    if v.band_coverage < MIN_COVERAGE:
        failed.append(f"band coverage {v.band_coverage:.0%} < {MIN_COVERAGE:.0%}")
    return failed


def print_silicon_checks() -> None:
    """Instruction-level figures against the published runs of the same kernel set (the silicon factor)."""
    shown = False
    for kernel_set in sorted({p.kernel_set for p in fit.points()}):
        for core in FITTED_CORES:
            checks = silicon_checks(kernel_set, core)
            for c in checks:
                p = c.point
                print(f"{kernel_set}-{core} vs {p.board} ({p.core}, {p.clock_hz / 1e6:g} MHz) {p.benchmark:4s}: "
                      f"measured {p.cycles:14,.0f} / instruction-level {c.predicted_cycles:14,.0f} cycles = "
                      f"x{c.factor:.2f} ({100 * c.covered_share:.0f} % of the cycles from the file"
                      f"{'' if c.covered_share >= MIN_COVERED else '; the rest fitted on silicon: not in the band'})")
            shown = shown or bool(checks)
    if not shown:
        print("instruction-level figures: none for a kernel set with published runs")


def _op_key_counts(model: Path) -> dict[str, int]:
    """How many ops of each kernel-file key the model has."""
    graph = parse_tflite(model)
    inputs = read_op_inputs(model)
    counts: dict[str, int] = {}
    for op in graph.ops:
        key = op_key(op, inputs.get(op.index))
        counts[key] = counts.get(key, 0) + 1
    return counts


def print_instruction_level(model: Path) -> None:
    """Per op class: the cost model vs each kernel file's whole-model figures for `model` (same sha256, or at
    least 90 % of the ops with the same kernel-file key)."""
    if not model.is_file():
        print(f"instruction-level comparison: no model at {model}")
        return
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    keys = _op_key_counts(model)
    shown = False
    for path in sorted((profiles_dir() / "kernels").glob("*.yaml")):
        kf = load_kernel_file(*_set_and_core(path))
        mcu = next((load_mcu(n) for n in list_profiles("mcus") if load_mcu(n).core == kf.core), None) if kf else None
        choice = next((c for c, k in KERNEL_SETS.items() if kf and k == kf.kernel_set), None)
        if kf is None or mcu is None or choice is None:
            continue
        for m in kf.models:
            same = m.get("model_sha256") == sha
            theirs_keys = m.get("ops_by_op") or {}
            common = sum(min(n, theirs_keys.get(k, 0)) for k, n in keys.items())
            total = max(sum(keys.values()), sum(theirs_keys.values()), 1)
            if not same and common / total < 0.9:
                continue
            shown = True
            cost = estimate_file(model, mcu, choice)  # uses the file's per-op figures where it has them
            mlperf = estimate_file(model, mcu, choice, kernel_files=False)  # MLPerf fit / profile estimates
            ours, fit_only = _by_class(cost), _by_class(mlperf)
            theirs: dict[str, float] = {}
            for key, cycles in m.get("cycles_by_op", {}).items():
                cls = CLASS_OF.get(base_op(key), "other")
                theirs[cls] = theirs.get(cls, 0.0) + float(cycles)
            inside = sum(theirs.values())
            match = "same file" if same else f"{common} of {total} ops with the same key"
            print(f"{kf.name} on {mcu.name}, {model.name} ({match} as "
                  f"'{str(m.get('description', ''))[:60]}'): cost model {cost.cycles:,.0f} (without the file "
                  f"{mlperf.cycles:,.0f}) vs instruction-level {inside:,.0f} cycles in op kernels "
                  f"(x{cost.cycles / inside:.2f}, without the file x{mlperf.cycles / inside:.2f})")
            for cls in sorted(set(ours) | set(theirs), key=lambda k: -theirs.get(k, 0.0)):
                t = theirs.get(cls, 0.0)
                without = fit_only.get(cls, 0.0) / t if t else 0.0
                ratio = f"x{ours.get(cls, 0.0) / t:.2f}  without the file x{without:.2f}" if t else "-"
                print(f"  {cls:16s} model {ours.get(cls, 0.0):14,.0f}  measured {t:14,.0f} "
                      f"({100 * t / inside:5.1f} %)  {ratio}")
    if not shown:
        print(f"instruction-level figures (power_profiles/kernels/): none for {model} (sha256 {sha[:12]}) or a model "
              "with 90 % of its op keys")


def _set_and_core(path: Path) -> tuple[str, str]:
    """('tflm-cmsis-nn', 'cortex-m4') from tflm-cmsis-nn-cortex-m4.yaml."""
    stem = path.stem
    cut = stem.index("-cortex-") if "-cortex-" in stem else stem.rindex("-")
    return stem[:cut], stem[cut + 1:]


def _by_class(cost) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in cost.layers:
        out[r.op_class] = out.get(r.op_class, 0.0) + r.cycles
    return out


def main() -> int:
    """Print the tables; 0 when every threshold holds, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("build/cortex-m/model_int8.tflite"),
                        help="model for the instruction-level comparison")
    args = parser.parse_args()
    print_sets()
    print()
    held = fit.cross_validate()
    print_points(held)
    v = fit.validate(held)
    print()
    print(f"leave-one-benchmark-out: latency median {v.lobo_latency_median:.1%}, worst {v.lobo_latency_worst:.1%}; "
          f"energy median {v.lobo_energy_median:.1%}")
    print(f"leave-one-board-out:     latency median {v.loboard_latency_median:.1%}, "
          f"worst {v.loboard_latency_worst:.1%}")
    print(f"band (measured / estimate, central 90 % of LOBO): x{v.band[0]:.2f} .. x{v.band[1]:.2f}; "
          f"cross-board x{v.board_band[0]:.2f} .. x{v.board_band[1]:.2f}; "
          f"coverage of held-out points (nested) {v.band_coverage:.0%}")
    print()
    print_per_set(held)
    print_repeats()
    print()
    print_silicon_checks()
    print()
    print_instruction_level(args.model)
    failed = check(v)
    print()
    print("PASS: every threshold holds" if not failed else "FAIL: " + "; ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
