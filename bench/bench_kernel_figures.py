"""Committed per-op kernel figures (power_profiles/kernels/) for the default model: measured vs fitted.

For every kernel file with a whole-model measurement, prints per op class the instruction-level
cycles measured on the emulated core (qemu, TCG plugin, instructions weighted by the core's
timing table; see power_profiles/kernels/README.md) next to what the fitted per-op coefficients
predict from the same graph features, and the share of cycles; whether the model's ops were in the
fit or it is an out-of-sample check (in_fit). Pure data: no TensorFlow, no
emulator. Run: .venv/bin/python bench/bench_kernel_figures.py
"""

from __future__ import annotations

from pathlib import Path

import yaml

KERNELS = Path(__file__).resolve().parent.parent / "power_profiles" / "kernels"


def main() -> None:
    """Print measured vs coefficient-predicted cycles per op class, per kernel file and model."""
    for path in sorted(KERNELS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for model in data["models"]:
            measured, feats = model["cycles_by_op"], model["features_by_op"]
            total = model["total_cycles"]
            role = "in the fit" if model["in_fit"] else "out-of-sample check"
            print(f"\n{path.stem} ({role}): {model['description']}")
            print(f"  {model['instructions']:,} instructions, {total:,} cycles "
                  f"({sum(measured.values()) / total:.1%} inside op kernels)")
            print(f"  {'op':22s} {'ops':>4s} {'instructions':>13s} {'cycles':>12s} {'share':>6s} "
                  f"{'fitted':>12s} {'fit/meas':>8s}")
            fitted_total = 0.0
            for key, cycles in measured.items():
                coef = data["ops"][key]["coefficients"]
                fitted = sum(c * feats[key][f] for f, c in coef.items())
                fitted_total += fitted
                print(f"  {key:22s} {model['ops_by_op'][key]:4d} {model['instructions_by_op'][key]:13,d} "
                      f"{cycles:12,d} {cycles / total:6.1%} {fitted:12,.0f} {fitted / cycles:8.3f}")
            inside = sum(measured.values())
            print(f"  {'all op kernels':22s} {'':4s} {'':13s} {inside:12,d} {inside / total:6.1%} "
                  f"{fitted_total:12,.0f} {fitted_total / inside:8.3f}")


if __name__ == "__main__":
    main()
