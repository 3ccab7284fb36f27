"""MD speed against OpenMM's CPU platform, measured in one run on the same systems (issue 19).

Sage 2.2.1 TIP3P water boxes (rigid water, PME 0.9 nm, tolerance 5e-4), exported to OpenMM
with ``chronograd.to_openmm`` so both engines see identical parameters.

1. Where a chronograd water step goes: energy + forces split into the direct-space pair loop
   and the PME reciprocal sum, the neighbor-list rebuild (and how many steps apart rebuilds
   come in this liquid), the constraint solver, the whole step.
2. LangevinMiddle at 2 fs, 300 K, 1/ps: ms per step, chronograd (float64, and mixed: float32
   forces with a float64 state) and OpenMM CPU (mixed precision, all cores), from the same
   equilibrated positions and velocities.
3. Energy + forces per evaluation, and per atom, from ~2.7k to ~27k atoms, in float64 and
   mixed precision, with the mixed path's energy and force error against float64.

Run: `python benchmarks/bench_md_speed.py` (about 12 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import openmm
import openmm.unit as u

sys.path.insert(0, str(Path(__file__).parent))
from _results import best_time, machine_line, write_section  # noqa: E402

import chronograd as cg  # noqa: E402
from chronograd.dynamics import langevin  # noqa: E402
from chronograd.dynamics.constraints import iterative, shake  # noqa: E402
from chronograd.dynamics.runner import simulate  # noqa: E402
from chronograd.minimize import minimize  # noqa: E402
from chronograd.potentials import ewald  # noqa: E402
from chronograd.system import structure as st  # noqa: E402
from chronograd.system.forces import force_fn  # noqa: E402
from chronograd.topology.boxes import water_box  # noqa: E402

PME_GRID = "fft"  # set by --pme-grid


def water(length_nm):
    mols, pos, box = water_box(length_nm)
    system = cg.ForceField("openff-2.2.1.offxml").create_system(mols, box=box)
    if PME_GRID == "fft":  # the grid OpenMM's CPU platform runs anyway; exported explicitly
        system = system.with_fft_pme_grid()
    x = minimize(system, pos, box, tolerance=50.0).positions
    return system, np.asarray(x), box


def openmm_context(system, box, integrator):
    omm = cg.to_openmm(system)
    ctx = openmm.Context(omm, integrator, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPeriodicBoxVectors(*[openmm.Vec3(*v) for v in box])
    return ctx


def rebuild_interval(integ, state, steps=200, skin=0.1):
    """Mean steps between neighbor-list rebuilds (the list's own displacement rule replayed on
    the positions of every step)."""
    frames = []

    class Every:
        every = 1

        def report(self, s, info):
            frames.append(np.asarray(s.positions))

    simulate(integ, state, steps, reporters=[Every()], chunk=1)
    half_skin2 = (0.5 * skin) ** 2
    box = np.diag(np.asarray(state.box))
    ref, rebuilds = frames[0], 0
    for p in frames[1:]:
        d = p - ref
        d -= np.round(d / box) * box
        if np.max(np.sum(d * d, -1)) > half_skin2:
            rebuilds, ref = rebuilds + 1, p
    return (len(frames) - 1) / max(rebuilds, 1)


def breakdown(system, x, box):
    """ms of: E+F, direct pairs E+F, PME reciprocal E+F, rebuild, SETTLE, M-SHAKE, step."""
    b = jnp.asarray(box)
    xj = jnp.asarray(x)
    fns = system.neighbor_list(skin=0.1)
    nbrs = fns.allocate(xj, b)
    structure = system.structure
    slots = jax.jit(lambda p: st.slots_of(structure, p))(system.params)
    nb = system.nonbonded
    q = slots[nb.name]["charge"]
    ef = jax.jit(jax.value_and_grad(system.energy_fn(neighbor_list=True)))

    def pairs_only(y):  # the nonbonded term as energy_fn evaluates it (one summed pair output)
        return nb.energy(y, b, slots[nb.name], nbrs.pairs())

    def reciprocal(y):
        return ewald.pme_reciprocal_energy(y, b, q, nb.alpha, nb.grid)

    integ = langevin(system, timestep=0.002, temperature=300.0, friction=1.0)
    con = integ.constraints
    moved = xj + 0.002 * jax.random.normal(jax.random.key(3), xj.shape)
    out = {
        "E+F": best_time(ef, xj, b, system.params, nbrs),
        "nonbonded term E+F": best_time(jax.jit(jax.value_and_grad(pairs_only)), xj),
        "PME reciprocal E+F": best_time(jax.jit(jax.value_and_grad(reciprocal)), xj),
        "neighbor-list rebuild": best_time(fns.rebuild, xj, nbrs, b, repeats=5),
        "SETTLE": best_time(jax.jit(lambda y, y0: shake(y, y0, con, b)), moved, xj),
        "M-SHAKE (before)": best_time(
            jax.jit(lambda y, y0: shake(y, y0, iterative(con), b)), moved, xj),
    }
    state = integ.init(x, key=jax.random.key(0), temperature=300.0)
    state = simulate(integ, state, 500)
    out["steps per rebuild"] = rebuild_interval(integ, state)
    return integ, state, out


def chronograd_step(integ, state, n_steps):
    simulate(integ, state, 100)
    t0 = time.perf_counter()
    end = simulate(integ, state, n_steps)
    jax.block_until_ready(end.positions)
    return (time.perf_counter() - t0) / n_steps


def openmm_step(system, state, box, n_steps):
    omm_integ = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1.0 / u.picosecond,
                                                0.002 * u.picoseconds)
    ctx = openmm_context(system, box, omm_integ)
    ctx.setPositions(np.asarray(state.positions))
    ctx.setVelocities(np.asarray(state.velocities))
    omm_integ.step(100)
    t0 = time.perf_counter()
    omm_integ.step(n_steps)
    ctx.getState(getEnergy=True)
    return (time.perf_counter() - t0) / n_steps


def md_steps(integrators, state, box, n_steps, rounds=3, starts=None):
    """ms/step of each chronograd integrator (from ``state``, or its own in ``starts``) and of
    OpenMM, measured in alternating rounds (the fastest round of each: this machine's noise
    only ever adds time)."""
    times = {name: [] for name in [*integrators, "OpenMM CPU"]}
    for _ in range(rounds):
        for name, integ in integrators.items():
            start = (starts or {}).get(name, state)
            times[name].append(chronograd_step(integ, start, n_steps))
        times["OpenMM CPU"].append(openmm_step(integrators["float64"].system, state, box,
                                               n_steps))
    return {name: min(t) for name, t in times.items()}


def energy_forces(system, x, box):
    b, xj = jnp.asarray(box), jnp.asarray(x)
    fns = system.neighbor_list(skin=0.1)
    nbrs = fns.allocate(xj, b)
    double = jax.jit(force_fn(system, fns))
    mixed = jax.jit(force_fn(system, fns, precision="mixed"))
    t_cg = best_time(double, xj, b, system.params, nbrs)
    t_mixed = best_time(mixed, xj, b, system.params, nbrs)
    _, _, e_cg, f_cg = double(xj, b, system.params, nbrs)
    _, _, e_mixed, f_mixed = mixed(xj, b, system.params, nbrs)
    mixed_err = (abs(float(e_mixed - e_cg)) / abs(float(e_cg)),
                 float(jnp.max(jnp.abs(f_mixed - f_cg))))
    ctx = openmm_context(system, box, openmm.VerletIntegrator(0.001))
    ctx.setPositions(x)

    def run():
        return ctx.getState(getEnergy=True, getForces=True)

    t_omm = best_time(run)
    st_omm = run()
    e_omm = st_omm.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
    f_omm = st_omm.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)
    ferr = float(np.max(np.abs(np.asarray(f_cg) - f_omm)))
    return t_cg, t_mixed, t_omm, float(e_cg), e_omm, ferr, mixed_err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=500, help="per round (3 rounds)")
    ap.add_argument("--sizes", type=float, nargs="+", default=[3.0, 4.5, 6.5])
    ap.add_argument("--pme-grid", choices=("fft", "exact"), default="fft",
                    help="chronograd's PME grid: rounded up for FFTs as OpenMM's CPU platform"
                    " runs it (System.with_fft_pme_grid), or the derived sizes")
    args = ap.parse_args()
    global PME_GRID
    PME_GRID = args.pme_grid

    system, x, box = water(3.0)
    n = system.n_atoms
    integ, state, parts = breakdown(system, x, box)
    mixed = langevin(system, timestep=0.002, temperature=300.0, friction=1.0, precision="mixed")
    # the same start with the list's rows 1.25x the widest (JAX MD's head room; 1.15x is
    # System.neighbor_list's): what the narrower list saves a whole step
    at = (jnp.asarray(state.positions), jnp.asarray(box))
    state = state._replace(neighbors=system.neighbor_list().allocate(*at))
    roomy = state._replace(neighbors=system.neighbor_list(capacity_multiplier=1.25).allocate(*at))
    steps = md_steps({"float64": integ, "mixed": mixed, "roomy": integ}, state, box,
                     args.steps, starts={"roomy": roomy})
    t_cg, t_cg_mixed, t_omm = steps["float64"], steps["mixed"], steps["OpenMM CPU"]
    t_roomy = steps["roomy"]
    rows = []
    for length in args.sizes:
        sys_l, x_l, box_l = (system, x, box) if length == 3.0 else water(length)
        t_c, t_m, t_o, e_c, e_o, ferr, (e_err, f_err) = energy_forces(sys_l, x_l, box_l)
        n_l = sys_l.n_atoms
        grid = "x".join(map(str, sys_l.nonbonded.grid))
        rows.append(f"| {n_l} | {grid} | {t_o * 1e3:.2f} | {t_c * 1e3:.1f} | {t_m * 1e3:.1f} |"
                    f" {t_c / t_o:.1f} | {t_m / t_o:.1f} | {t_c / n_l * 1e6:.1f} |"
                    f" {t_o / n_l * 1e6:.2f} | {abs(e_c - e_o) / abs(e_o):.1e} / {ferr:.1e} |"
                    f" {e_err:.1e} / {f_err:.1e} |")
    per_rebuild = parts["steps per rebuild"]
    body = "\n".join([
        f"## MD speed vs OpenMM CPU (issue 19; Sage TIP3P, rigid water, PME, {n} atoms)",
        "",
        f"Command: `python benchmarks/bench_md_speed.py --pme-grid {PME_GRID}` (all numbers"
        " from one run). PME grid: "
        + ("rounded up to FFT-friendly sizes (`System.with_fft_pme_grid`), the grid OpenMM's"
           " CPU platform runs in any case" if PME_GRID == "fft" else
           "the derived sizes (OpenMM's CPU platform still runs its rounded ones)")
        + f"; {'x'.join(map(str, system.nonbonded.grid))} here.",
        machine_line(),
        "",
        f"LangevinMiddle 2 fs, 300 K, friction 1/ps, {args.steps} steps from the same positions"
        " and velocities, fastest of 3 alternating rounds (chronograd float64 and mixed; OpenMM"
        " CPU mixed precision, SETTLE):",
        "",
        "| | chronograd ms/step | OpenMM CPU ms/step | chronograd / OpenMM |",
        "|---|---|---|---|",
        f"| water box, {n} atoms, float64 | {t_cg * 1e3:.1f} | {t_omm * 1e3:.2f} |"
        f" {t_cg / t_omm:.1f} |",
        f"| water box, {n} atoms, mixed | {t_cg_mixed * 1e3:.1f} | {t_omm * 1e3:.2f} |"
        f" {t_cg_mixed / t_omm:.1f} |",
        f"| water box, {n} atoms, float64, list rows 1.25x the widest (JAX MD's head room;"
        f" above: 1.15x, {state.neighbors.max_neighbors} vs {roomy.neighbors.max_neighbors}"
        f" wide) | {t_roomy * 1e3:.1f} | {t_omm * 1e3:.2f} | {t_roomy / t_omm:.1f} |",
        "",
        "Where a chronograd step goes (fastest of repeated calls, ms):",
        "",
        "| part | ms |",
        "|---|---|",
        *[f"| {k} | {v * 1e3:.2f} |" for k, v in parts.items() if k != "steps per rebuild"],
        f"| neighbor-list rebuild per step (every {per_rebuild:.1f} steps) |"
        f" {parts['neighbor-list rebuild'] / per_rebuild * 1e3:.2f} |",
        "",
        "Energy + forces per evaluation (chronograd: jitted value_and_grad with the neighbor list"
        " given; OpenMM: getState(energy, forces)):",
        "",
        "| atoms | PME grid | OpenMM CPU ms | chronograd f64 ms | chronograd mixed ms |"
        " f64 / OpenMM | mixed / OpenMM | chronograd f64 us/atom | OpenMM us/atom |"
        " f64 vs OpenMM: rel. energy / max force diff (kJ/mol/nm) |"
        " mixed vs f64: rel. energy / max force diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    write_section("md-speed", body)


if __name__ == "__main__":
    main()
