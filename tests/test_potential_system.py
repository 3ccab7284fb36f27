"""A learned potential is an ordinary energy term: hybrid systems U = U_Sage(θ) + U_NN(w) with
one gradient to θ and w, batches equal single systems, dynamics, minimization and trajectory
gradient estimators run unchanged, the CLI takes --potential, exports refuse it clearly, and
the ASE calculator matches chronograd and drives an ASE optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_helpers import run_cli

import chronograd as cg
from chronograd.errors import InputError
from chronograd.ml.model_files import save_model
from chronograd.ml.potential_models import PotentialConfig
from chronograd.ml.potential_term import PotentialModel, potential_system
from chronograd.topology import Molecule

FF = "openff_unconstrained-2.2.1.offxml"
SMILES = ["CCO", "c1ccccc1O", "CC(=O)N", "O"]


@pytest.fixture(scope="module")
def setup():
    ff = cg.ForceField(FF)
    model = PotentialModel.initialize(PotentialConfig(hidden=8, layers=2, n_rbf=8, seed=2,
                                                      energy_scale=2.0), name="tiny")
    mols = [Molecule.from_smiles(s, name=s) for s in SMILES]
    return ff, model, mols


def test_hybrid_energy_is_the_sum_and_one_gradient_reaches_theta_and_weights(setup):
    ff, model, mols = setup
    mol = mols[0]
    sage = ff.create_system(mol, charges="gasteiger")
    alone = potential_system(mol, model)
    hybrid = potential_system(mol, model, ff=ff, charges="gasteiger")
    x = mol.positions
    terms = hybrid.energy_terms(x)
    expected = {**sage.energy_terms(x), **alone.energy_terms(x)}
    assert terms.keys() == expected.keys()
    for k, v in expected.items():
        assert terms[k] == pytest.approx(v, abs=1e-9)
    g = jax.grad(hybrid.energy_fn(), argnums=2)(jnp.asarray(x), None, hybrid.params)
    g_theta = jax.grad(sage.energy_fn(), argnums=2)(jnp.asarray(x), None, sage.params)
    g_w = jax.grad(alone.energy_fn(), argnums=2)(jnp.asarray(x), None, alone.params)
    for a, b in zip(jax.tree.leaves(g["base"]), jax.tree.leaves(g_theta), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10)
    for a, b in zip(jax.tree.leaves(g["potential"]), jax.tree.leaves(g_w["potential"]),
                    strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10)
    assert max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(g["potential"])) > 0


@pytest.mark.parametrize("with_ff", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_batches_equal_single_systems(setup, with_ff):
    ff, model, mols = setup
    systems = [potential_system(m, model, ff=ff if with_ff else None, charges="gasteiger")
               for m in mols]
    batch = cg.stack_systems(systems, n_buckets=2)
    xs = [m.positions for m in mols]
    energies, forces = batch.energies_and_forces(xs)
    grad = batch.param_gradient(xs)
    total = None
    for s, x, e, f in zip(systems, xs, energies, forces, strict=True):
        e1, f1 = s.energy_and_forces(x)
        assert e == pytest.approx(e1, abs=1e-9)
        np.testing.assert_allclose(f, f1, atol=1e-8)
        g = jax.grad(s.energy_fn(), argnums=2)(jnp.asarray(x), None, s.params)["potential"]
        total = g if total is None else jax.tree.map(jnp.add, total, g)
    for a, b in zip(jax.tree.leaves(grad["potential"]), jax.tree.leaves(total), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-8)


@pytest.mark.slow
def test_dynamics_minimization_and_trajectory_gradients_run_unchanged(setup):
    import chronograd.dynamics as dyn
    from chronograd import observables as obs
    from chronograd.minimize import minimize

    ff, model, mols = setup
    mol = mols[0]
    system = potential_system(mol, model, ff=ff, charges="gasteiger")
    result = minimize(system, mol.positions, tolerance=1.0)
    assert result.status == "converged" and result.rms_force < 1.0
    _, f = system.energy_and_forces(result.positions)
    assert np.sqrt(np.mean(f ** 2)) == pytest.approx(result.rms_force, rel=1e-6)
    integ = dyn.velocity_verlet(system, timestep=0.0002)
    state = integ.init(result.positions, key=jax.random.key(1), temperature=300.0)
    totals = []
    for _ in range(4):
        state = cg.simulate(integ, state, 100)
        kinetic = 0.5 * float(jnp.sum(system.masses[:, None] * state.velocities ** 2))
        totals.append(system.energy(np.asarray(state.positions)) + kinetic)
    assert np.ptp(totals) < 0.2  # kJ/mol, against ~25 kJ/mol of kinetic energy
    # d<U>/dw over a short trajectory: reverse mode equals finite differences (same noise)
    n_base = jax.flatten_util.ravel_pytree(system.params["base"])[0].shape[0]
    wrt = [n_base + 3, n_base + 40]  # two network weights
    lang = dyn.langevin(system, timestep=0.0005, temperature=300.0, friction=5.0)
    s0 = lang.init(result.positions, key=jax.random.key(2), temperature=300.0)
    kw = dict(integrator=lang, state=s0, n_steps=40, wrt=wrt, every=10)
    rev = cg.gradients.gradient(obs.potential_energy(system), adjoint="reverse", **kw)
    fd = cg.gradients.gradient(obs.potential_energy(system), adjoint="finite-difference",
                               **kw)
    np.testing.assert_allclose(rev.flat, fd.flat, rtol=1e-4, atol=1e-6)
    assert np.max(np.abs(rev.flat)) > 1e-3


def test_periodic_potential_runs_md_with_its_own_neighbor_list():
    import chronograd.dynamics as dyn
    from chronograd.topology.boxes import liquid_box

    water = Molecule.from_smiles("O", name="water")
    mols, pos, box = liquid_box(water, 40, density_g_ml=0.9)
    model = PotentialModel.initialize(PotentialConfig(cutoff=0.4, hidden=8, layers=1,
                                                      n_rbf=6))
    system = potential_system(mols, model, box=box)
    assert system.periodic
    e, f = system.energy_and_forces(pos, box)
    # wrapping one molecule by a box vector changes nothing (minimum image)
    shifted = np.array(pos)
    shifted[:3] += box[0]
    e2, f2 = system.energy_and_forces(shifted, box)
    assert e2 == pytest.approx(e, abs=1e-9)
    np.testing.assert_allclose(f2, f, atol=1e-8)
    integ = dyn.langevin(system, timestep=0.0005, temperature=300.0)
    state = cg.simulate(integ, integ.init(pos, key=jax.random.key(0), box=box,
                                          temperature=300.0), 20)
    assert np.isfinite(float(state.potential_energy))


def test_exports_refuse_a_potential_clearly(setup, tmp_path):
    ff, model, mols = setup
    system = potential_system(mols[0], model)
    with pytest.raises(InputError, match="OpenMM System cannot hold"):
        cg.to_openmm(system, system.params)
    with pytest.raises(InputError, match="model directory"):
        cg.save(system, tmp_path / "s.json")


def test_cli_energy_and_simulate_take_a_potential(setup, tmp_path):
    ff, model, mols = setup
    save_model(model, tmp_path / "pot", forcefield=FF)
    sdf = tmp_path / "ethanol.sdf"
    _write_sdf(mols[0], sdf)
    r = run_cli("energy", "--potential", str(tmp_path / "pot"), "--charges", "gasteiger",
                str(sdf), "--json")
    assert r.code == 0, r.err
    import json

    out = json.loads(r.out.strip().splitlines()[-1])
    read = Molecule.from_sdf(sdf)[0]
    system = potential_system(read, model, ff=ff, charges="gasteiger")
    assert out["total"] == pytest.approx(system.energy(read.positions), abs=1e-6)
    assert out["terms"]["neural_potential"] == pytest.approx(
        system.energy_terms(read.positions)["neural_potential"], abs=1e-6)
    r = run_cli("simulate", "--potential", str(tmp_path / "pot"), "--smiles", "CO",
                "--charges", "gasteiger", "--steps", "20", "--report-every", "10",
                "--timestep", "0.5fs", "--minimize", "-o", str(tmp_path / "t.dcd"))
    assert r.code == 0, r.err
    assert (tmp_path / "t.dcd").stat().st_size > 0
    # a potential trained alone refuses --ff; a parameter model's flag refuses it
    save_model(model, tmp_path / "alone", forcefield=None)
    msg = run_cli("energy", "--potential", str(tmp_path / "alone"), "--ff", FF,
                  str(sdf)).one_line_error()
    assert "trained alone" in msg
    msg = run_cli("energy", "--model", str(tmp_path / "alone"), str(sdf)).one_line_error()
    assert "learned potential (use --potential)" in msg


def _write_sdf(mol, path):
    from rdkit import Chem

    m = Chem.Mol(mol.rdmol)
    conf = m.GetConformer()
    for k, p in enumerate(mol.positions * 10.0):
        conf.SetAtomPosition(k, p.tolist())
    w = Chem.SDWriter(str(path))
    w.write(m)
    w.close()


def test_ase_calculator_matches_chronograd_and_runs_an_optimizer(setup):
    from ase import Atoms
    from ase.optimize import BFGS

    from chronograd.interop.ase_calculator import KJ_PER_MOL_IN_EV, ChronogradCalculator

    ff, model, mols = setup
    mol = mols[0]
    system = potential_system(mol, model, ff=ff, charges="gasteiger")
    atoms = Atoms([a.GetSymbol() for a in mol.rdmol.GetAtoms()],
                  positions=mol.positions * 10.0)
    atoms.calc = ChronogradCalculator(system)
    e, f = system.energy_and_forces(mol.positions)
    assert atoms.get_potential_energy() == pytest.approx(e * KJ_PER_MOL_IN_EV, rel=1e-12)
    assert KJ_PER_MOL_IN_EV == pytest.approx(1 / 96.48533212, rel=1e-6)  # 1/F, CODATA
    np.testing.assert_allclose(atoms.get_forces(), f * KJ_PER_MOL_IN_EV / 10.0, rtol=1e-9,
                               atol=1e-12)
    start = atoms.get_potential_energy()
    opt = BFGS(atoms, logfile=None)
    assert opt.run(fmax=0.05, steps=200)
    assert atoms.get_potential_energy() < start
    f_end = system.energy_and_forces(atoms.get_positions() / 10.0)[1] * KJ_PER_MOL_IN_EV / 10
    assert np.max(np.linalg.norm(f_end, axis=1)) < 0.05  # eV/Å, checked independently
