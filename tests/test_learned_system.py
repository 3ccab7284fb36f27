"""Learned parameter predictor as a ParameterSource: gradients to model weights and force-field
θ, batches equal single systems, provenance, freezing, export and bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference_systems import openmm_energy_forces

import chronograd as cg
from chronograd.errors import InputError
from chronograd.forcefield import ForceField
from chronograd.ml.learned_system import LearnedModel, learned_system, provenance_table
from chronograd.ml.predictor import PredictorConfig
from chronograd.topology import Molecule

FF = "openff_unconstrained-2.3.0.offxml"
SMALL = PredictorConfig(hidden=16, layers=2, readout=16, seed=3)
SMILES = ["CCO", "CC(=O)[O-]", "c1ccccc1Cl", "C[NH3+]", "CS(C)=O", "OCC(F)(F)F"]


@pytest.fixture(scope="module")
def setup():
    ff = ForceField(FF)
    model = LearnedModel.initialize(SMALL, name="tiny")
    mols = [Molecule.from_smiles(s, name=s) for s in SMILES]
    return ff, model, mols


def test_energy_gradient_wrt_weights_and_theta_equals_finite_differences(setup):
    ff, model, mols = setup
    mol = mols[1]
    system = learned_system(ff, mol, model)
    U = jax.jit(system.energy_fn())
    x = jnp.asarray(mol.positions)
    grads = jax.grad(U, argnums=2)(x, None, system.params)
    # a sample of weights in every part of the network, and one vdW parameter of theta
    where = [lambda p: p["model"].embed.layers[0].fc_self.weight,
             lambda p: p["model"].embed.layers[1].fc_neigh.weight,
             lambda p: p["model"].bond_head.layers[1].bias,
             lambda p: p["model"].angle_head.layers[0].weight,
             lambda p: p["model"].proper_head.layers[1].weight,
             lambda p: p["model"].improper_head.layers[1].bias,
             lambda p: p["model"].charge_head.layers[1].weight]
    index = [(2, 3), (5, 7), (0,), (4, 9), (2, 5), (0,), (1, 2)]
    checked = 0
    for w, i in zip(where, index, strict=True):
        g = float(w(grads)[i])

        def at(d, w=w, i=i):
            return float(U(x, None, eqx.tree_at(w, system.params, w(system.params).at[i].add(d))))

        h = 1e-6
        fd = (at(h) - at(-h)) / (2 * h)
        assert abs(g - fd) <= 1e-5 * max(1.0, abs(fd)), (i, g, fd)
        checked += abs(g) > 1e-6
    assert checked >= 5
    theta = system.params["forcefield"]["vdW"]
    (attr,) = [a for a in theta if a in ("epsilon",)]
    g = float(grads["forcefield"]["vdW"][attr][np.argmax(np.abs(grads["forcefield"]["vdW"][
        attr]))])
    assert g != 0.0


@pytest.mark.slow
def test_batch_equals_single_systems(setup):
    ff, model, mols = setup
    mols = mols[1:4]  # an anion, an aromatic with Cl, a cation: three sizes, two buckets
    systems = [learned_system(ff, m, model) for m in mols]
    batch = cg.stack_systems(systems, n_buckets=2)
    positions = [m.positions for m in mols]
    energies, forces = batch.energies_and_forces(positions)
    grad_batch = batch.param_gradient(positions)
    total = None
    for m, s, e, f in zip(mols, systems, energies, forces, strict=True):
        e1, f1 = s.energy_and_forces(m.positions)
        assert abs(e - e1) <= 1e-9 * max(1.0, abs(e1)), m.name
        np.testing.assert_allclose(f, f1, atol=1e-8)
        g = jax.grad(s.energy_fn(), argnums=2)(jnp.asarray(m.positions), None, s.params)
        total = g if total is None else jax.tree.map(jnp.add, total, g)
    for a, b in zip(jax.tree.leaves(grad_batch), jax.tree.leaves(total), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-8, atol=1e-9)


def test_charges_conserve_formal_charge_and_export_to_openmm(setup):
    ff, model, mols = setup
    for m in mols:
        system = learned_system(ff, m, model)
        q = np.asarray(system.slots()["Nonbonded"]["charge"])
        assert abs(q.sum() - m.total_charge) < 1e-10
    mol = mols[2]
    system = learned_system(ff, mol, model)
    e_ref, f_ref = openmm_energy_forces(cg.to_openmm(system), mol.positions)
    e, f = system.energy_and_forces(mol.positions)
    assert abs(e - e_ref) <= 1e-6 * max(1.0, abs(e_ref))
    assert np.abs(f - f_ref).max() < 1e-3


def test_provenance_and_freezing(setup):
    ff, model, mols = setup
    mol = mols[0]
    system = learned_system(ff, mol, model, freeze=("charges",))
    rows = provenance_table(system, ff)
    origin = {(r["term"], r["attribute"]): (r["origin"], r["trainable"]) for r in rows}
    assert origin[("Bonds", "k")] == ("model:tiny", True)
    assert origin[("Nonbonded", "charge")] == ("model:tiny", False)
    sigma = [r for r in rows if r["term"] == "Nonbonded" and r["attribute"] == "sigma"]
    assert all(r["origin"].startswith("forcefield:n") or r["origin"].startswith(
        "forcefield:") for r in sigma)
    assert sigma[0]["origin"].endswith("/rmin_half") and sigma[0]["trainable"]
    # frozen charges: no gradient reaches the charge head; the rest of the model still learns
    g = jax.grad(system.energy_fn(), argnums=2)(jnp.asarray(mol.positions), None, system.params)
    assert float(jnp.abs(g["model"].charge_head.layers[1].weight).sum()) == 0.0
    assert float(jnp.abs(g["model"].bond_head.layers[1].weight).sum()) > 0.0
    with pytest.raises(InputError, match="freeze='vdw' is not a term kind"):
        learned_system(ff, mol, model, freeze=("vdw",))


def test_element_outside_the_model_is_named(setup):
    ff, model, _ = setup
    mol = Molecule.from_smiles("CBr", name="bromomethane")
    with pytest.raises(InputError, match=r"bromomethane: atom index 1 has element Br, which the"
                       r" model 'tiny' was not trained on; supported: H, C, N, O, F, S, Cl"):
        learned_system(ff, mol, model)


@pytest.mark.slow
def test_dynamics_and_minimization_run_unchanged(setup):
    """A learned system is an ordinary System: NVE keeps the total energy, the minimizer
    reaches a point whose forces are below its tolerance."""
    import chronograd.dynamics as dyn
    from chronograd.minimize import minimize

    ff, model, mols = setup
    mol = mols[0]
    system = learned_system(ff, mol, model)
    result = minimize(system, mol.positions, tolerance=1.0)
    assert result.status == "converged" and result.rms_force < 1.0
    _, f = system.energy_and_forces(result.positions)  # checked independently of the minimizer
    integ = dyn.velocity_verlet(system, timestep=0.0002)
    state = integ.init(result.positions, key=jax.random.key(1), temperature=300.0)
    totals = []
    for _ in range(5):
        state = cg.simulate(integ, state, 100)
        kinetic = 0.5 * float(jnp.sum(system.masses[:, None] * state.velocities ** 2))
        totals.append(system.energy(np.asarray(state.positions)) + kinetic)
    assert np.ptp(totals) < 0.2  # kJ/mol, against ~35 kJ/mol of kinetic energy
    assert np.sqrt(np.mean(f ** 2)) == pytest.approx(result.rms_force, rel=1e-6)
