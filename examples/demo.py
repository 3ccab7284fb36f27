"""chronograd demo: a solvated protein from an OpenMM System to energies, forces and
parameter gradients, checked against OpenMM in the same run.

Data: data/villin/ (villin headpiece in TIP3P water, amber14, PME; see make_villin.py).
Run: `make demo` (or `python examples/demo.py`).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import openmm

import chronograd as cg
from chronograd.interop.files import read_openmm_system_xml, read_pdb_positions

DATA = Path(__file__).resolve().parent.parent / "data" / "villin"
OUT = Path(__file__).resolve().parent.parent / "out"


def openmm_reference(omm, pos, box):
    ctx = openmm.Context(omm, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setPeriodicBoxVectors(*[openmm.Vec3(*v) for v in box])
    ctx.setPositions(pos)
    state = ctx.getState(getEnergy=True, getForces=True)
    e = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    f = state.getForces(asNumpy=True).value_in_unit(
        openmm.unit.kilojoule_per_mole / openmm.unit.nanometer)
    return e, np.asarray(f)


def main():
    t0 = time.perf_counter()
    omm = read_openmm_system_xml(DATA / "villin_solvated.xml")
    pos, box = read_pdb_positions(DATA / "villin_solvated.pdb")
    system = cg.from_openmm(omm)
    nb = system.nonbonded
    print(f"System: {system.n_atoms} atoms, terms {', '.join(system.term_names())}")
    print(f"Nonbonded: {nb.method}, cutoff {nb.cutoff} nm, alpha {nb.alpha:.4f}/nm, "
          f"PME grid {nb.grid}, dispersion correction {nb.use_dispersion_correction}")

    terms = system.energy_terms(pos, box)
    energy, forces = system.energy_and_forces(pos, box)
    e_ref, f_ref = openmm_reference(omm, pos, box)
    print("\nPotential energy (kJ/mol)")
    for name, value in terms.items():
        print(f"  {name:<18}{value:16.4f}")
    print(f"  {'total':<18}{energy:16.4f}   OpenMM Reference: {e_ref:.4f} "
          f"(relative difference {abs(energy - e_ref) / abs(e_ref):.1e})")
    print(f"Forces: max |F| {np.abs(forces).max():.1f} kJ/mol/nm, max deviation from OpenMM "
          f"{np.abs(forces - f_ref).max():.1e} kJ/mol/nm")

    # Gradients with respect to every parameter of the system in one reverse pass.
    x, b = jnp.asarray(pos), jnp.asarray(box)
    nbrs = system.neighbor_list().allocate(x, b)
    U = system.energy_fn(neighbor_list=True)
    grad_params = jax.jit(jax.grad(U, argnums=2))
    t = time.perf_counter()
    g = grad_params(x, b, system.params, nbrs)
    jax.block_until_ready(g)
    n_params = sum(p.size for p in jax.tree_util.tree_leaves(system.params))
    print(f"\ndU/dparams for all {n_params} system parameters in one pass "
          f"({time.perf_counter() - t:.1f} s including compilation):")
    p_nb = system.params["nonbonded"]
    # Exclusions are exceptions with zero charge product and epsilon and a placeholder sigma;
    # show exception gradients for the real (scaled 1-4) pairs only.
    real_14 = np.asarray((p_nb["exception_charge_prod"] != 0) | (p_nb["exception_epsilon"] != 0))
    for term, attrs in g.items():
        for attr, value in attrs.items():
            v = np.asarray(value)
            if attr.startswith("exception_"):
                v = v[real_14]
            print(f"  {term + '.' + attr:<38} |grad|_max {np.abs(v).max():10.3e}")

    # Check one directional derivative against a central finite difference.
    torsion_k = system.params["periodic_torsion"]["k"]
    h = 1e-4
    def with_k(k):
        p = dict(system.params)
        p["periodic_torsion"] = {**system.params["periodic_torsion"], "k": k}
        return p
    direction = torsion_k  # relative change of every torsion barrier
    fd = (system.energy(pos, box, with_k(torsion_k + h * direction))
          - system.energy(pos, box, with_k(torsion_k - h * direction))) / (2 * h)
    ad = float(jnp.vdot(g["periodic_torsion"]["k"], direction))
    print(f"\nd U / d(scale of all torsion barriers): autodiff {ad:.6f}, finite difference "
          f"{fd:.6f} kJ/mol")

    # Mixed partial: how forces move when all charges are scaled (one JVP, no Jacobian).
    dparams = jax.tree_util.tree_map(jnp.zeros_like, system.params)
    dparams["nonbonded"]["charge"] = system.params["nonbonded"]["charge"]
    dF = -cg.mixed_jvp_fn(U)(x, b, system.params, dparams, nbrs)
    print(f"d forces / d(charge scale): max |.| {float(jnp.abs(dF).max()):.1f} kJ/mol/nm")

    OUT.mkdir(exist_ok=True)
    cg.save(system, OUT / "villin_solvated.json")
    reloaded = cg.load(OUT / "villin_solvated.json")
    print(f"\nSaved {OUT / 'villin_solvated.json'}; reloaded energy equals: "
          f"{reloaded.energy(pos, box) == energy}")
    print(f"Done in {time.perf_counter() - t0:.0f} s.")


if __name__ == "__main__":
    main()
