"""Frozen imports stay first-class: an OpenMM System made by another tool (OpenFF Interchange
here) imports with every slot frozen and provenance "openmm", and takes charges from a
differentiable model (NAGL) while everything else stays as imported."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import openmm
import pytest
from reference_systems import openmm_energy_forces
from smirnoff_reference import interchange_system, mol_to_off

from chronograd.errors import InputError
from chronograd.forcefield.charges import gasteiger_charges
from chronograd.ml.imported import import_frozen, with_learned_charges
from chronograd.ml.learned_system import provenance_table
from chronograd.ml.nagl import load_nagl_model
from chronograd.topology import Molecule

NAGL = ("openff-gnn-am1bcc-1.0.0.pt",
        "7981e7f5b0b1e424c9e10a40d9e7606d96dcd3dd2b095cb4eeff6829f92238ee")


def test_frozen_import_then_learned_charges():
    mol = Molecule.from_smiles("CC(=O)Nc1ccc(O)cc1", name="paracetamol")
    omm = interchange_system("openff-2.2.1.offxml", mol_to_off(mol), gasteiger_charges(mol))
    system = import_frozen(omm)
    e_ref, f_ref = openmm_energy_forces(omm, mol.positions)
    e, f = system.energy_and_forces(mol.positions)
    # cg.from_openmm of this Interchange export: bonded terms and Coulomb equal OpenMM's to
    # 1e-12; Lennard-Jones differs by 1e-3 kJ/mol (4e-5 relative; found here, not yet
    # explained), so the import is held to 2e-5 and the charge swap below to 1e-9
    assert e == pytest.approx(e_ref, rel=2e-5)
    assert np.abs(f - f_ref).max() < 0.1  # kJ/mol/nm; 0.04 on the worst atom
    rows = provenance_table(system)
    assert {r["origin"] for r in rows} == {"openmm"} and not any(r["trainable"] for r in rows)
    assert system.params == {}

    nagl = load_nagl_model(*NAGL)
    mixed = with_learned_charges(system, mol, nagl, name="nagl")
    q = np.asarray(mixed.slots()["nonbonded"]["charge"])
    np.testing.assert_allclose(q, nagl.network_charges(nagl.graph(mol)), atol=1e-10)
    # OpenMM with the same charges and the import's 1-4 scaling (5/6 in Sage)
    ref = openmm.XmlSerializer.clone(omm)
    nb = next(x for x in ref.getForces() if isinstance(x, openmm.NonbondedForce))
    old = [nb.getParticleParameters(a)[0]._value for a in range(nb.getNumParticles())]
    for a in range(nb.getNumParticles()):
        _, sig, eps = nb.getParticleParameters(a)
        nb.setParticleParameters(a, q[a], sig, eps)
    for k in range(nb.getNumExceptions()):
        i, j, qq, sig, eps = nb.getExceptionParameters(k)
        scale = qq._value / (old[i] * old[j]) if abs(old[i] * old[j]) > 1e-10 else 0.0
        nb.setExceptionParameters(k, i, j, scale * q[i] * q[j], sig, eps)
    e2_ref, _ = openmm_energy_forces(ref, mol.positions)
    # only charges and 1-4 charge products changed: the energy changes exactly as OpenMM's
    assert mixed.energy(mol.positions) - e == pytest.approx(e2_ref - e_ref, rel=1e-9,
                                                            abs=1e-9)
    origin = {(r["term"], r["attribute"]): (r["origin"], r["trainable"])
              for r in provenance_table(mixed)}
    assert origin[("nonbonded", "charge")] == ("model:nagl", True)
    assert origin[("nonbonded", "sigma")] == ("openmm", False)
    # the energy's gradient reaches the network's weights (one weight against differences)
    U = jax.jit(mixed.energy_fn())
    x = jnp.asarray(mol.positions)
    g = jax.grad(U, argnums=2)(x, None, mixed.params)
    where = lambda p: p["nagl"].readout.layers[1].bias  # noqa: E731
    k = int(np.argmax(np.abs(np.asarray(where(g)))))
    h = 1e-5

    def at(d):
        return float(U(x, None, eqx.tree_at(where, mixed.params, where(mixed.params)
                                            .at[k].add(d))))

    fd = (at(h) - at(-h)) / (2 * h)
    assert float(where(g)[k]) == pytest.approx(fd, rel=1e-5)
    with pytest.raises(InputError, match="give the molecule it was made for"):
        with_learned_charges(system, Molecule.from_smiles("CCO"), nagl)
