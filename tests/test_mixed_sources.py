"""Systems whose slots come from a force field, frozen values and a differentiable model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chronograd as cg
from chronograd.forcefield.charges import gasteiger_charges


@pytest.fixture(scope="module")
def ff_system():
    ff = cg.ForceField("openff_unconstrained-2.2.1.offxml")
    mol = cg.Molecule.from_smiles("CC(=O)Nc1ccccc1")
    mol.partial_charges = gasteiger_charges(mol)
    return ff, mol, ff.create_system(mol, charges="from-file")


def test_frozen_slots_carry_no_gradient_and_keep_the_energy(ff_system):
    ff, mol, system = ff_system
    x = jnp.asarray(mol.positions)
    # freeze the proper-torsion barriers at the values an OpenMM export carries
    imported = cg.from_openmm(cg.to_openmm(system))
    frozen_k = imported.params["periodic_torsion"]["k"]  # the ProperTorsions force, exported
    mixed = cg.mix_sources(system, frozen={("ProperTorsions", "k"): frozen_k})
    assert mixed.energy(x) == pytest.approx(system.energy(x), rel=1e-12)
    g = jax.grad(mixed.energy_fn(), argnums=2)(x, None, mixed.params)
    assert float(jnp.abs(g["base"]["ProperTorsions"]["k"]).max()) == 0.0
    assert float(jnp.abs(g["base"]["ProperTorsions"]["phase"]).max()) > 0.0
    assert mixed.source.provenance == {("ProperTorsions", "k"): "frozen"}


def test_charges_from_a_differentiable_model(ff_system):
    ff, mol, system = ff_system
    x = jnp.asarray(mol.positions)
    base_q = jnp.asarray(gasteiger_charges(mol))

    def charge_model(w):  # a stand-in for an ML charge model: q = w0 * q_gasteiger + w1 * z
        z = jnp.asarray(mol.atomic_numbers, dtype=base_q.dtype)
        q = w[0] * base_q + w[1] * (z - z.mean())
        return q - q.mean()

    w = jnp.array([1.0, 0.0])
    mixed = cg.mix_sources(system, functions={("Nonbonded", "charge"): ("charges", charge_model,
                                                                        w)})
    # at w = (1, 0) the model reproduces the Gasteiger charges: same energy
    assert mixed.energy(x) == pytest.approx(system.energy(x), rel=1e-10)
    U = mixed.energy_fn()
    g = jax.grad(U, argnums=2)(x, None, mixed.params)
    for k in range(2):
        h = 1e-6
        p_plus = {**mixed.params, "charges": w.at[k].add(h)}
        p_minus = {**mixed.params, "charges": w.at[k].add(-h)}
        fd = (U(x, None, p_plus) - U(x, None, p_minus)) / (2 * h)
        assert float(g["charges"][k]) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)
    # 1-4 electrostatics follow the model's charges (exceptions derived after overriding)
    slots = mixed.slots({**mixed.params, "charges": jnp.array([2.0, 0.0])})
    q = np.asarray(slots["Nonbonded"]["charge"])
    ex = system.nonbonded.exception_atoms
    scale = np.asarray(slots["Nonbonded"]["exception_charge_prod"]) / (q[ex[:, 0]] * q[ex[:, 1]])
    assert set(np.round(scale, 6)) <= {0.0, 0.833333}
    # the force field's gradient still flows where it owns the slots
    assert float(jnp.abs(g["base"]["vdW"]["epsilon"]).max()) > 0
    assert float(jnp.abs(g["base"]["LibraryCharges"]["charge"]).max()) == 0
