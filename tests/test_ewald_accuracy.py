"""PME accuracy against a converged Ewald sum, next to OpenMM's own Ewald error (slow).

The default suite checks that chronograd reproduces OpenMM's PME at the same settings (~1e-13).
This checks the physics: both codes' PME at the default tolerance differ from a converged Ewald
reference by the same Ewald error, and chronograd's PME at a tight tolerance converges to it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import openmm.app as app
import pytest
from reference_systems import openmm_energy_forces, water_box

import chronograd as cg


def coulomb(tol, method):
    omm, pos, box = water_box(method=method, ewaldErrorTolerance=tol)
    system = cg.from_openmm(omm)
    return system, omm, pos, box


@pytest.mark.slow
def test_pme_converges_to_ewald_and_matches_openmm_error():
    ref_sys, ref_omm, pos, box = coulomb(1e-8, app.Ewald)
    e_ref = ref_sys.energy_terms(pos, box)["coulomb"]
    rows = []
    for tol in (5e-4, 1e-5, 1e-6):
        system, omm, _, _ = coulomb(tol, app.PME)
        e_cg = system.energy_terms(pos, box)["coulomb"]
        e_total_cg = system.energy(pos, box)
        e_total_omm, _ = openmm_energy_forces(omm, pos, box)
        rows.append((tol, abs(e_cg - e_ref) / abs(e_ref), abs(e_total_cg - e_total_omm) /
                     abs(e_total_omm)))
    for tol, err_vs_ewald, err_vs_openmm in rows:
        print(f"tol {tol:g}: |PME - converged Ewald| / |E| = {err_vs_ewald:.2e}; "
              f"|chronograd - OpenMM| / |E| = {err_vs_openmm:.2e}")
        assert err_vs_openmm < 1e-10
        assert err_vs_ewald < 10 * tol
    assert rows[-1][1] < rows[0][1]
    # chronograd's converged Ewald agrees with OpenMM's Ewald at the same tight tolerance
    e_omm_ewald, _ = openmm_energy_forces(ref_omm, pos, box)
    assert ref_sys.energy(pos, box) == pytest.approx(e_omm_ewald, rel=1e-10)


def test_float32_is_close_to_float64():
    omm, pos, box = water_box(method=app.PME)
    system = cg.from_openmm(omm)
    f64 = jax.jit(jax.value_and_grad(system.energy_fn(neighbor_list=True)))
    nbrs = system.neighbor_list().allocate(pos, box)
    e64, g64 = f64(jnp.asarray(pos), jnp.asarray(box), system.params, nbrs)
    p32 = jax.tree_util.tree_map(lambda p: p.astype(jnp.float32), system.params)
    e32, g32 = f64(jnp.asarray(pos, jnp.float32), jnp.asarray(box, jnp.float32), p32, nbrs)
    assert e32.dtype == jnp.float32 and g32.dtype == jnp.float32
    assert abs(float(e32) - float(e64)) < 1e-5 * abs(float(e64))
    assert np.abs(np.asarray(g32) - np.asarray(g64)).max() < 0.5  # kJ/mol/nm, |F| ~ 1e3
