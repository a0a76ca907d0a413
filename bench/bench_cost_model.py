"""The fitted cost model against every cited MLPerf Tiny point, cross-validated; exits 1 when it fails.

Points and model features: power_profiles/measurements/mlperf_tiny.yaml (each point names its
results file in mlcommons/tiny_results_v0.5 .. v1.3). Prints per kernel set the fitted
coefficients, every point's estimate/measured ratio (fitted on all points, and held out:
leave-one-benchmark-out, leave-one-board-out), the summary errors and the band, and checks the
thresholds of issue 11: median |LOBO latency error| <= 15 %, worst <= 35 %, median |LOBO energy
error| <= 20 %, band coverage of held-out points >= 80 %. When instruction-level figures are
committed (power_profiles/kernels/), it also prints the cost model per op class against them for
the model they measured. Pure data, a fraction of a second. Run:
    .venv/bin/python bench/bench_cost_model.py [--model build/cortex-m/model_int8.tflite]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from edge.power import fit
from edge.power.cost import FITTED_CORES, KERNEL_SETS, estimate_file
from edge.power.kernel_files import base_op, load_kernel_file
from edge.power.profiles import list_profiles, load_mcu
from edge.power.tflite_graph import CLASS_OF

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
        print(f"{name:18s} c_mac {c.c_mac:.2f} c_fc {c.c_fc:.2f} c_in {c.c_in:.2f} c_op {c.c_op:,.0f} "
              f"c_el {c.c_el:g} ({c.points} points; {scale}) -- {desc.get(name, '')}")


def check(v: fit.Validation) -> list[str]:
    """The thresholds that fail."""
    failed = [f"{k} {getattr(v, k):.1%} > {limit:.0%}" for k, limit in THRESHOLDS.items() if getattr(v, k) > limit]
    if v.band_coverage < MIN_COVERAGE:
        failed.append(f"band coverage {v.band_coverage:.0%} < {MIN_COVERAGE:.0%}")
    return failed


def print_instruction_level(model: Path) -> None:
    """Per op class: the cost model vs the committed instruction-level figures of `model` (if any)."""
    sha = hashlib.sha256(model.read_bytes()).hexdigest() if model.is_file() else None
    for mcu_name in list_profiles("mcus"):
        mcu = load_mcu(mcu_name)
        if mcu.core not in FITTED_CORES:
            continue
        for choice, kernel_set in KERNEL_SETS.items():
            kf = load_kernel_file(kernel_set, mcu.core)
            if kf is None:
                continue
            for m in kf.models:
                if m.get("model_sha256") != sha:
                    print(f"{kf.name}: measured model {str(m.get('model_sha256'))[:12]} is not {model} "
                          f"({(sha or 'missing')[:12]}): no comparison")
                    continue
                cost = estimate_file(model, mcu, choice)  # uses the file's per-op figures where it has them
                mlperf = estimate_file(model, mcu, choice, kernel_files=False)  # the MLPerf fit alone
                ours = _by_class(cost)
                fit_only = _by_class(mlperf)
                theirs: dict[str, float] = {}
                for key, cycles in m.get("cycles_by_op", {}).items():
                    cls = CLASS_OF.get(base_op(key), "other")
                    theirs[cls] = theirs.get(cls, 0.0) + float(cycles)
                total = float(m.get("total_cycles") or sum(theirs.values()))
                print(f"{kf.name} on {mcu.name} ({model.name}): cost model {cost.cycles:,.0f} "
                      f"(MLPerf fit alone {mlperf.cycles:,.0f}) vs instruction-level {total:,.0f} cycles "
                      f"(x{cost.cycles / total:.2f}, fit alone x{mlperf.cycles / total:.2f})")
                for cls in sorted(set(ours) | set(theirs), key=lambda k: -theirs.get(k, 0.0)):
                    t = theirs.get(cls, 0.0)
                    ratio = f"x{ours.get(cls, 0.0) / t:.2f}  fit alone x{fit_only.get(cls, 0.0) / t:.2f}" if t else "-"
                    print(f"  {cls:16s} model {ours.get(cls, 0.0):14,.0f}  measured {t:14,.0f} "
                          f"({100 * t / total:5.1f} %)  {ratio}")
                return
    print("instruction-level figures (power_profiles/kernels/): none committed for the default model yet")


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
    print_instruction_level(args.model)
    failed = check(v)
    print()
    print("PASS: every threshold holds" if not failed else "FAIL: " + "; ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
