"""Are the liquid standard errors honest? Independent NPT replicas of Sage 2.2.1 TIP3P water
(256 molecules, 298.15 K, 1 atm) in OpenMM, each's density and potential energy per molecule
with its standard error from ``chronograd.gradients.mean_std_error`` (the estimator the liquid
fits use), against the spread of the replicas' means.

Each replica: its own lattice (``liquid_box`` seed), minimization, ``--equil-ps`` then
``--prod-ps`` of NPT (LangevinMiddle 2 fs, 1/ps, Monte Carlo barostat every 25 steps, frames
every 25 steps as the fits keep them), OpenMM CPU platform through OpenFF Interchange. The
ratio observed spread / root-mean-square reported error should be near 1 (within ~0.5 for 8
replicas: the spread's own relative error is ~1/sqrt(2 (n-1)) = 27 %). The pooled mean is a
reference for the engine comparison in RESULTS "liquid-water".

Run: `python benchmarks/bench_liquid_replicas.py [--replicas 8] [--equil-ps 10] [--prod-ps 40]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
T, P, N = 298.15, 1.01325, 256


def replica(seed, equil_ps, prod_ps, every=25, *, integrator_seed=None, velocity_seed=None):
    """(density [frames] g/mL, potential energy per molecule [frames] kJ/mol) of one NPT run
    on lattice ``seed`` (integrator and velocity seeds default to 1000 + seed, 2000 + seed)."""
    import openmm.unit as u
    from bench_liquid import openmm_npt

    ctx, integ, system, *_ = openmm_npt(
        "openff-2.2.1.offxml", "O", N, seed=seed,
        integrator_seed=1000 + seed if integrator_seed is None else integrator_seed,
        velocity_seed=2000 + seed if velocity_seed is None else velocity_seed)
    integ.step(int(round(equil_ps / 0.002)))
    mass = sum(system.getParticleMass(i).value_in_unit(u.dalton)
               for i in range(system.getNumParticles()))
    rho, pot = [], []
    for _ in range(int(round(prod_ps / 0.002)) // every):
        integ.step(every)
        st = ctx.getState(getEnergy=True)
        rho.append(mass / st.getPeriodicBoxVolume().value_in_unit(u.nanometer ** 3)
                   / 602.214076)
        pot.append(st.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole) / N)
    return np.asarray(rho), np.asarray(pot)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--equil-ps", type=float, default=10.0)
    ap.add_argument("--prod-ps", type=float, default=40.0)
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    ap.add_argument("--save", default=str(ROOT / "out/bench-liquid-replicas.npz"),
                    help="where the replicas' series are kept for analysis")
    args = ap.parse_args()
    from chronograd.gradients import mean_std_error

    t0 = time.perf_counter()
    series = {"density": [], "potential": []}
    rows = []
    for seed in range(args.replicas):
        rho, pot = replica(seed, args.equil_ps, args.prod_ps)
        d, p = mean_std_error(rho), mean_std_error(pot)
        series["density"].append(rho)
        series["potential"].append(pot)
        rows.append(f"| {seed} | {d['value']:.4f} ± {d['std_error']:.4f} |"
                    f" {d['statistical_inefficiency']:.0f} |"
                    f" {p['value']:.3f} ± {p['std_error']:.3f} |"
                    f" {p['statistical_inefficiency']:.0f} |")
        print(rows[-1], flush=True)
    Path(args.save).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.save, density=np.stack(series["density"]),
             potential=np.stack(series["potential"]))
    summary = []
    for k, unit_ in (("density", "g/mL"), ("potential", "kJ/mol")):
        est = [mean_std_error(s) for s in series[k]]
        means = np.array([e["value"] for e in est])
        rms_se = float(np.sqrt(np.mean([e["std_error"] ** 2 for e in est])))
        spread = float(np.std(means, ddof=1))
        pooled = float(np.mean(means))
        summary.append(f"| {k} ({unit_}) | {pooled:.4f} ± {spread / np.sqrt(len(means)):.4f} |"
                       f" {spread:.4f} | {rms_se:.4f} | {spread / rms_se:.2f} |")
        print(summary[-1], flush=True)
    minutes = (time.perf_counter() - t0) / 60
    body = "\n".join([
        "## Liquid standard errors against replicas (issue 20;"
        " `benchmarks/bench_liquid_replicas.py`)", "",
        f"Command: `python benchmarks/bench_liquid_replicas.py --replicas {args.replicas}"
        f" --equil-ps {args.equil_ps:g} --prod-ps {args.prod_ps:g}` ({minutes:.0f} min).",
        machine_line(), "",
        f"Sage 2.2.1 TIP3P, {N} waters, 298.15 K, 1 atm, OpenMM CPU through Interchange;"
        " per replica its own lattice and seeds, frames every 25 steps (as the fits keep"
        " them); ± from `mean_std_error` (statistical inefficiency g in frames).", "",
        "| replica | density (g/mL) | g | U / molecule (kJ/mol) | g |", "|---|---|---|---|---|",
        *rows, "",
        "| property | pooled mean ± SE of the mean | spread of replica means (SD) |"
        " rms reported SE | spread / reported |", "|---|---|---|---|---|", *summary])
    if not args.no_write:
        write_section("liquid-replicas", body)


if __name__ == "__main__":
    main()
