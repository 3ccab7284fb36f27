"""The force pass of a water box, piece by piece, against the alternatives (issue 19).

On a Sage TIP3P water box (2,655 atoms, PME 0.9 nm, neighbor list with 0.1 nm skin, float64),
one run times:

1. PME charge spreading: one windowed scatter of a 5x5x5 block per atom into a padded grid,
   folded back periodically (``ewald.spread_on_grid``, as chronograd runs it), against the
   point scatter it replaced (125 single-point updates per atom); the spreading alone, its
   derivative, and the reciprocal energy + forces with each;
2. the direct-space pairs: the nonbonded kernel with two outputs (Lennard-Jones and Coulomb
   reported apart: ``energy_terms``) against one summed output (``energy``: what forces
   need), energy + forces, and the pair loop's row-block size;
3. the whole energy + forces (``system.energy_fn``) against OpenMM CPU on the same system.

Each timing is the fastest of 10 calls of one compiled program. Run:
`python benchmarks/bench_force_pass.py` (~3 min).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import openmm  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _results import best_time, machine_line, write_section  # noqa: E402

import chronograd as cg  # noqa: E402
from chronograd.potentials import ewald  # noqa: E402
from chronograd.potentials import pair as pp  # noqa: E402
from chronograd.system import structure as st  # noqa: E402
from chronograd.topology.boxes import water_box  # noqa: E402

BLOCKS = (32, 64, 128, 256, 512)


def point_spread(positions, box, weights, grid, order=ewald.PME_ORDER):
    """The spreading chronograd used before: order^3 single-point scatter updates per atom."""
    n = positions.shape[0]
    s = positions @ jnp.linalg.inv(box)
    u = (s - jnp.floor(s)) * jnp.asarray(grid, dtype=s.dtype)
    base = jnp.floor(u)
    w = ewald.bspline_weights(u - base, order)
    idx = (base.astype(jnp.int32)[:, :, None] + jnp.arange(order)[None, None, :]) % jnp.asarray(
        grid)[None, :, None]
    values = (weights[:, None, None, None] * w[:, 0, :, None, None] * w[:, 1, None, :, None]
              * w[:, 2, None, None, :])
    ix = jnp.broadcast_to(idx[:, 0, :, None, None], values.shape).reshape(n, -1)
    iy = jnp.broadcast_to(idx[:, 1, None, :, None], values.shape).reshape(n, -1)
    iz = jnp.broadcast_to(idx[:, 2, None, None, :], values.shape).reshape(n, -1)
    return jnp.zeros(grid, dtype=s.dtype).at[ix, iy, iz].add(values.reshape(n, -1))


def reciprocal_with(spread, x, box, q, alpha, grid):
    """PME reciprocal energy with a given spreading function (the rest as chronograd's)."""
    original = ewald.spread_on_grid
    ewald.spread_on_grid = spread
    try:
        return jax.jit(jax.value_and_grad(
            lambda y: ewald.pme_reciprocal_energy(y, box, q, alpha, grid))).lower(x).compile()
    finally:
        ewald.spread_on_grid = original


def main():
    mols, pos, box = water_box(3.0)
    system = cg.ForceField("openff-2.2.1.offxml").create_system(mols, box=box)
    x = jnp.asarray(cg.minimize(system, pos, box, tolerance=50.0).positions)
    b = jnp.asarray(box)
    fns = system.neighbor_list(skin=0.1)
    nbrs = fns.allocate(x, b)
    slots = st.slots_of(system.structure, system.params)
    nb = system.nonbonded
    p = slots[nb.name]
    q = p["charge"]
    rows = []

    # 1. PME spreading
    grid = nb.grid
    ref = ewald.spread_on_grid(x, b, q, grid)
    spread_err = float(jnp.max(jnp.abs(point_spread(x, b, q, grid) - ref)))
    cot = jnp.asarray(np.random.default_rng(0).normal(size=grid))
    times = {}
    for name, fn in (("windowed", ewald.spread_on_grid), ("point", point_spread)):
        times[name] = (
            best_time(jax.jit(lambda y, fn=fn: fn(y, b, q, grid)), x),
            best_time(jax.jit(jax.grad(lambda y, fn=fn: jnp.sum(fn(y, b, q, grid) * cot))), x),
            best_time(reciprocal_with(fn, x, b, q, nb.alpha, grid), x),
        )
    e_w, f_w = reciprocal_with(ewald.spread_on_grid, x, b, q, nb.alpha, grid)(x)
    e_p, f_p = reciprocal_with(point_spread, x, b, q, nb.alpha, grid)(x)
    for name, (t_s, t_g, t_ef) in times.items():
        rows.append(f"| PME spreading, {name} scatter | {t_s * 1e3:.2f} | {t_g * 1e3:.2f} |"
                    f" {t_ef * 1e3:.2f} |")

    # 2. direct-space pairs
    atoms = {"charge": q, "sigma": p["sigma"], "epsilon": p["epsilon"]}
    pair_rows = []
    pair_times = {}
    for label, kernel in (("two outputs (terms)", nb._pair_kernel),
                          ("one summed output (total)", nb._summed_kernel)):
        for block in BLOCKS if kernel == nb._summed_kernel else (pp.ROW_BLOCK,):
            def u(y, kernel=kernel, block=block):
                return sum(pp.pair_sum(kernel, y, b, nbrs.pairs(), atoms, cutoff=nb.cutoff,
                                       block=block))
            t_e = best_time(jax.jit(u), x)
            t_ef = best_time(jax.jit(jax.value_and_grad(u)), x)
            pair_times[(label, block)] = t_ef
            pair_rows.append(f"| {label} | {block} | {t_e * 1e3:.2f} | {t_ef * 1e3:.2f} |")

    # 3. whole energy + forces, and OpenMM CPU on the same system
    ef = jax.jit(jax.value_and_grad(system.energy_fn(neighbor_list=True)))
    t_total = best_time(ef, x, b, system.params, nbrs)
    terms = system.energy_terms_fn(neighbor_list=True)
    ef_terms = jax.jit(jax.value_and_grad(
        lambda y, bb, pp_, nn: sum(terms(y, bb, pp_, nn).values())))
    t_terms = best_time(ef_terms, x, b, system.params, nbrs)
    ctx = openmm.Context(cg.to_openmm(system), openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("CPU"))
    ctx.setPeriodicBoxVectors(*[openmm.Vec3(*v) for v in np.asarray(box)])
    ctx.setPositions(np.asarray(x))
    t_omm = best_time(lambda: ctx.getState(getEnergy=True, getForces=True))

    best_block = min((k for k in pair_times if k[0].startswith("one")),
                     key=lambda k: pair_times[k])[1]
    body = "\n".join([
        "## The force pass of a water box, piece by piece (issue 19;"
        " `benchmarks/bench_force_pass.py`)",
        "",
        "Command: `python benchmarks/bench_force_pass.py` (all numbers from one run).",
        machine_line(),
        "",
        f"Sage TIP3P, {x.shape[0]} atoms, PME 0.9 nm (grid {grid}), neighbor list"
        f" {nbrs.pairs()[1].shape}, float64; fastest of 10 calls of one compiled program.",
        "",
        "| PME | spread ms | its derivative ms | reciprocal E+F ms |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Windowed vs point spreading: grids agree to {spread_err:.1e}, reciprocal energies to"
        f" {abs(float(e_w - e_p)):.1e} kJ/mol and forces to"
        f" {float(jnp.max(jnp.abs(f_w - f_p))):.1e} kJ/mol/nm; reciprocal E+F"
        f" {times['point'][2] / times['windowed'][2]:.2f}x faster windowed.",
        "",
        "| direct-space pair kernel | row block | energy ms | energy + forces ms |",
        "|---|---|---|---|",
        *pair_rows,
        "",
        f"Fastest block for the summed kernel: {best_block} rows (default {pp.ROW_BLOCK}).",
        "",
        "| whole system | E+F ms |",
        "|---|---|",
        f"| chronograd, sum of reported terms (two-output pair kernel) | {t_terms * 1e3:.2f} |",
        f"| chronograd, energy_fn (one summed output) | {t_total * 1e3:.2f} |",
        f"| OpenMM CPU (mixed precision), getState(energy, forces) | {t_omm * 1e3:.2f} |",
        "",
        f"chronograd / OpenMM CPU: {t_total / t_omm:.1f}.",
    ])
    write_section("force-pass", body)


if __name__ == "__main__":
    main()
