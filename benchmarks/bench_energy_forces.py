"""Energy + forces: chronograd vs OpenMM on the same TIP3P water box with PME, in one run.

chronograd: jit-compiled value_and_grad with a prebuilt neighbor list (its rebuild is timed
separately in bench_neighbor_scaling.py), float64 and float32. OpenMM: CPU platform (its mixed
single/double precision, all cores) and Reference platform (double). Times are medians of
repeated evaluations after warm-up. Run: `python benchmarks/bench_energy_forces.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, median_time, write_section  # noqa: E402

import chronograd as cg  # noqa: E402


def water_system(box_nm: float):
    ff = app.ForceField("amber14/tip3p.xml")
    m = app.Modeller(app.Topology(), [])
    m.addSolvent(ff, boxSize=openmm.Vec3(box_nm, box_nm, box_nm) * u.nanometer)
    omm = ff.createSystem(m.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * u.nanometer,
                          rigidWater=False)
    pos = np.array(m.positions.value_in_unit(u.nanometer))
    box = np.array(m.topology.getPeriodicBoxVectors().value_in_unit(u.nanometer))
    return omm, pos, box




def time_openmm(omm, pos, box, platform_name, repeats):
    ctx = openmm.Context(omm, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName(platform_name))
    ctx.setPeriodicBoxVectors(*[openmm.Vec3(*v) for v in box])
    ctx.setPositions(pos)
    ctx.getState(getEnergy=True, getForces=True)
    return median_time(lambda: ctx.getState(getEnergy=True, getForces=True), repeats)


def time_chronograd(system, pos, box, dtype, repeats):
    x = jnp.asarray(pos, dtype)
    b = jnp.asarray(box, dtype)
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), system.params)
    nbrs = system.neighbor_list().allocate(x, b)
    f = jax.jit(jax.value_and_grad(system.energy_fn(neighbor_list=True)))
    e, g = f(x, b, params, nbrs)
    g.block_until_ready()

    def run():
        _, g = f(x, b, params, nbrs)
        g.block_until_ready()

    return median_time(run, repeats), float(e), np.asarray(-g)


def main():
    rows = []
    for box_nm in (3.0, 4.0):
        omm, pos, box = water_system(box_nm)
        exact = cg.from_openmm(omm)
        # OpenMM's CPU platform rounds the PME grid up for its FFTs; chronograd runs the same
        # rounded grid (System.with_fft_pme_grid); the Reference platform keeps the derived one
        system = exact.with_fft_pme_grid()
        n = omm.getNumParticles()
        t_cpu = time_openmm(omm, pos, box, "CPU", 20)
        t_ref = time_openmm(omm, pos, box, "Reference", 3)
        t64, e64, f64 = time_chronograd(system, pos, box, jnp.float64, 10)
        t32, e32, f32 = time_chronograd(system, pos, box, jnp.float32, 10)
        ferr = np.abs(f32 - f64).max()
        rows.append(
            f"| {n} | {'x'.join(map(str, exact.nonbonded.grid))} -> "
            f"{'x'.join(map(str, system.nonbonded.grid))} | {t_cpu * 1e3:.1f} |"
            f" {t_ref * 1e3:.0f} | {t64 * 1e3:.1f} | {t32 * 1e3:.1f} "
            f"| {t64 / t_cpu:.1f} | {t32 / t_cpu:.1f} | {t64 / t_ref:.2f} | "
            f"{abs(e32 - e64) / abs(e64):.1e} / {ferr:.1e} |"
        )
    body = "\n".join([
        "## Energy + forces, TIP3P water with PME (cutoff 0.9 nm, tolerance 5e-4)",
        "",
        "Command: `python benchmarks/bench_energy_forces.py` (all numbers from one run).",
        machine_line(),
        "",
        "| atoms | PME grid (derived -> run) | OpenMM CPU ms | OpenMM Reference ms |"
        " chronograd f64 ms | chronograd f32 ms "
        "| f64 / CPU | f32 / CPU | f64 / Reference | f32 vs f64 rel. energy / max force err "
        "(kJ/mol/nm) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Ratios are chronograd time divided by OpenMM time (lower is better for chronograd). "
        "chronograd times exclude the neighbor-list rebuild, which a dynamics run amortizes over "
        "many steps; OpenMM's include its own neighbor-list work. chronograd and OpenMM CPU run"
        " the PME grid rounded up to FFT-friendly sizes (OpenMM's CPU platform always does;"
        " chronograd by System.with_fft_pme_grid); the Reference platform runs the derived one.",
    ])
    write_section("energy_forces", body)


if __name__ == "__main__":
    main()
