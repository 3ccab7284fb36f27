"""Dynamics against OpenMM, measured in one run on the same system (Sage's rigid TIP3P water,
PME, exported to OpenMM with chronograd.to_openmm so both engines see identical parameters).

1. NVE: velocity Verlet at 1 fs for ``--nve-ps`` ps from the same equilibrated positions and
   velocities; energy drift (linear fit of the total energy) per ns per degree of freedom, in
   kT, and the cost per step. OpenMM runs on its CPU platform (mixed precision) and, for the
   drift of a double-precision engine, we report chronograd in float64.
2. NPT: Langevin (OpenMM's LangevinMiddle scheme, 2 fs, 1/ps) + Monte Carlo barostat (1 bar,
   every 25 steps) at 300 K, ``--npt-ps`` ps after ``--equil-ps`` ps: the mean density with
   its standard error from block averages, in both engines.
Run: `python benchmarks/bench_dynamics.py` (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np
import openmm
import openmm.unit as u

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section  # noqa: E402

import chronograd as cg  # noqa: E402
from chronograd.dynamics import BOLTZMANN, langevin, velocity_verlet  # noqa: E402
from chronograd.dynamics.barostat import monte_carlo_barostat  # noqa: E402
from chronograd.dynamics.runner import simulate  # noqa: E402
from chronograd.minimize import minimize  # noqa: E402
from chronograd.topology.boxes import water_box  # noqa: E402

AVOGADRO = 6.02214076e23


def block_mean(values, n_blocks=10):
    blocks = np.array_split(np.asarray(values), n_blocks)
    means = np.array([b.mean() for b in blocks])
    return float(np.mean(values)), float(means.std(ddof=1) / np.sqrt(n_blocks))


def drift_per_ns_per_dof(times_ps, energies, dof, temperature=300.0):
    slope = np.polyfit(times_ps, energies, 1)[0]  # kJ/mol/ps
    return slope * 1000.0 / dof / (BOLTZMANN * temperature)


class Recorder:
    def __init__(self, every, fn):
        self.every, self.fn, self.values = every, fn, []

    def report(self, state, info):
        self.values.append(self.fn(state, info))


def openmm_context(system, integrator, positions, box, velocities=None):
    omm = cg.to_openmm(system)
    ctx = openmm.Context(omm, integrator, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPeriodicBoxVectors(*[openmm.Vec3(*v) for v in box])
    ctx.setPositions(positions)
    if velocities is not None:
        ctx.setVelocities(velocities)
    return omm, ctx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nve-ps", type=float, default=10.0)
    ap.add_argument("--equil-ps", type=float, default=20.0)
    ap.add_argument("--npt-ps", type=float, default=60.0)
    args = ap.parse_args()

    mols, pos, box = water_box(2.2)  # stays above twice the 0.9 nm cutoff under NPT
    system = cg.ForceField("openff-2.2.1.offxml").create_system(mols, box=box)
    masses = np.asarray(system.masses)
    x = minimize(system, pos, box, tolerance=50.0).positions
    lg = langevin(system, timestep=0.002, temperature=300.0, friction=5.0)
    eq = simulate(lg, lg.init(x, key=jax.random.key(0), temperature=300.0), 2500)

    # ---- NVE -------------------------------------------------------------------------------
    n_nve = int(round(args.nve_ps / 0.001))
    nve = velocity_verlet(system, timestep=0.001, remove_com=True)
    con = nve.constraints  # rigid waters take SETTLE; anything else M-SHAKE
    settled = con is not None and con.settle is not None
    shaken = con is not None and (con.shake_clusters is None or len(con.shake_clusters) > 0)
    constraint_method = " + ".join(["SETTLE"] * settled + ["M-SHAKE"] * shaken) or "none"
    s = nve.init(eq.positions, key=jax.random.key(1), velocities=eq.velocities)
    v0 = np.asarray(s.velocities)
    rec = Recorder(100, lambda st, info: float(st.potential_energy) + 0.5 * float(
        np.sum(masses[:, None] * np.asarray(st.velocities) ** 2)))
    simulate(nve, s, 100)  # compile
    t0 = time.perf_counter()
    simulate(nve, s, n_nve, reporters=[rec])
    t_cg = (time.perf_counter() - t0) / n_nve
    times = np.arange(1, len(rec.values) + 1) * 0.1
    drift_cg = drift_per_ns_per_dof(times, rec.values, nve.dof)
    fluct_cg = float(np.std(rec.values))

    omm_integ = openmm.VerletIntegrator(0.001 * u.picoseconds)
    omm_integ.setConstraintTolerance(1e-8)
    omm, ctx = openmm_context(system, omm_integ, np.asarray(s.positions), box, v0)
    ctx.applyVelocityConstraints(1e-10)
    energies = []
    omm_integ.step(100)
    ctx.setPositions(np.asarray(s.positions))
    ctx.setVelocities(v0)
    t0 = time.perf_counter()
    for _ in range(n_nve // 100):
        omm_integ.step(100)
        st = ctx.getState(getEnergy=True)
        energies.append((st.getPotentialEnergy() + st.getKineticEnergy()).value_in_unit(
            u.kilojoule_per_mole))
    t_omm = (time.perf_counter() - t0) / n_nve
    drift_omm = drift_per_ns_per_dof(times[: len(energies)], energies, nve.dof)
    fluct_omm = float(np.std(energies))

    # ---- NPT -------------------------------------------------------------------------------
    total_mass_g = float(np.sum(masses)) / AVOGADRO
    n_eq, n_prod = int(args.equil_ps / 0.002), int(args.npt_ps / 0.002)
    npt = langevin(system, timestep=0.002, temperature=300.0, friction=1.0)
    baro = monte_carlo_barostat(npt, pressure=1.0, temperature=300.0, frequency=25)
    st = npt.init(eq.positions, key=jax.random.key(2), velocities=eq.velocities)
    st = simulate(npt, st, n_eq, barostat=baro)
    dens = Recorder(50, lambda st, info: total_mass_g / (abs(np.linalg.det(np.asarray(
        st.box))) * 1e-21))
    t0 = time.perf_counter()
    simulate(npt, st, n_prod, barostat=baro, reporters=[dens])
    t_npt_cg = (time.perf_counter() - t0) / n_prod
    rho_cg, err_cg = block_mean(dens.values)

    omm_integ = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1.0 / u.picosecond,
                                                0.002 * u.picoseconds)
    omm_integ.setRandomNumberSeed(2)
    omm = cg.to_openmm(system)
    omm.addForce(openmm.MonteCarloBarostat(1.0 * u.bar, 300 * u.kelvin, 25))
    ctx = openmm.Context(omm, omm_integ, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPeriodicBoxVectors(*[openmm.Vec3(*v) for v in box])
    ctx.setPositions(np.asarray(eq.positions))
    ctx.setVelocities(np.asarray(eq.velocities))
    omm_integ.step(n_eq)
    rho = []
    t0 = time.perf_counter()
    for _ in range(n_prod // 50):
        omm_integ.step(50)
        vol = ctx.getState().getPeriodicBoxVolume().value_in_unit(u.nanometer ** 3)
        rho.append(total_mass_g / (vol * 1e-21))
    t_npt_omm = (time.perf_counter() - t0) / n_prod
    rho_omm, err_omm = block_mean(rho)
    diff = rho_cg - rho_omm
    combined = float(np.hypot(err_cg, err_omm))

    body = "\n".join([
        "## Dynamics vs OpenMM (Sage TIP3P, rigid water, PME, "
        f"{int(np.sum(masses > 0)) // 3} waters)",
        "",
        "Command: `python benchmarks/bench_dynamics.py` (all numbers from one run).",
        machine_line(),
        "",
        f"NVE, velocity Verlet at 1 fs for {args.nve_ps:g} ps from the same positions and"
        f" velocities ({nve.dof} degrees of freedom):",
        "",
        "| engine | energy drift (kT per ns per dof) | total-energy std (kJ/mol) | ms/step |",
        "|---|---|---|---|",
        f"| chronograd (float64, {constraint_method}) | {drift_cg:.2e} | {fluct_cg:.3f} |"
        f" {t_cg * 1e3:.1f} |",
        f"| OpenMM CPU (mixed precision, SETTLE) | {drift_omm:.2e} | {fluct_omm:.3f} |"
        f" {t_omm * 1e3:.2f} |",
        "",
        f"NPT at 300 K and 1 bar (LangevinMiddle 2 fs, friction 1/ps, Monte Carlo barostat"
        f" every 25 steps), {args.npt_ps:g} ps after {args.equil_ps:g} ps of equilibration;"
        " standard errors from 10 block averages:",
        "",
        "| engine | density (g/mL) | ms/step |",
        "|---|---|---|",
        f"| chronograd | {rho_cg:.4f} +- {err_cg:.4f} | {t_npt_cg * 1e3:.1f} |",
        f"| OpenMM CPU | {rho_omm:.4f} +- {err_omm:.4f} | {t_npt_omm * 1e3:.2f} |",
        "",
        f"Difference {diff:+.4f} g/mL = {diff / combined:+.1f} combined standard errors.",
    ])
    write_section("dynamics", body)


if __name__ == "__main__":
    main()
