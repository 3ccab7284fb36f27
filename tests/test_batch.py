"""Systems as data: many molecules in one padded, vmapped program (system/batch.py), the pair
policy (system/pairs.py) and term names that do not depend on where a system came from."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from smirnoff_reference import curated_smiles, minidrugbank, to_chronograd

import chronograd as cg
from chronograd.errors import InputError
from chronograd.system import structure as st
from chronograd.system.batch import _pad_system, _sizes
from chronograd.system.pairs import explicit_pairs
from chronograd.topology import Molecule

FF = "openff-2.2.1.offxml"


@functools.cache
def forcefield():
    return cg.ForceField(FF)


@functools.cache
def molecules(n: int = 50):
    """Curated SMILES then MiniDrugBank (the OpenFF toolkit's test set), with conformers."""
    mols = [Molecule.from_smiles(smi, name=name) for smi, name in curated_smiles()]
    for k, off in enumerate(minidrugbank()):
        if len(mols) >= n:
            break
        if off.n_atoms <= 60:
            mols.append(to_chronograd(off, name=off.name or f"drugbank{k}", conformer=True))
    return mols[:n]


@functools.cache
def system(k: int):
    """The k-th molecule's system (built on first use: parametrizing all 50 costs ~30 s)."""
    return forcefield().create_system(molecules()[k], charges="gasteiger")


def positions():
    return [np.asarray(m.positions) for m in molecules()]


@pytest.mark.parametrize("n", [4] + [pytest.param(n, marks=pytest.mark.slow) for n in (12, 50)])
def test_batched_energies_forces_and_theta_gradients_equal_per_molecule(n):
    """n of the 50 molecules spread evenly over their sizes, so that several buckets are
    used (4 in the default suite: each per-molecule reference costs a compilation of ~3 s;
    12 and all 50 in the slow one)."""
    order = np.argsort([m.n_atoms for m in molecules()], kind="stable")
    top = 49 if n > 4 else 36  # the default run skips the largest molecules (compile time)
    picked = [int(order[k]) for k in np.linspace(0, top, n).round().astype(int)]
    syss = [system(k) for k in picked]
    xs = [positions()[k] for k in picked]
    assert len(syss) == n
    batch = cg.stack_systems(syss, n_buckets=4)
    assert len(batch.buckets) >= 2  # one per doubling of the atom count
    energies, forces = batch.energies_and_forces(xs)
    per_theta = batch.param_gradient(xs, per_system=True)
    summed = ravel_pytree(batch.param_gradient(xs))[0]
    terms = batch.energy_terms(xs)
    total = np.zeros_like(np.asarray(summed))
    for k, (sys_k, x) in enumerate(zip(syss, xs, strict=True)):
        # the per-molecule reference: its own program, no padding
        value_and_grads = jax.jit(jax.value_and_grad(sys_k.energy_fn(), argnums=(0, 2)))
        e, (gx, gth) = value_and_grads(x, None, sys_k.params)
        scale = max(abs(float(e)), 1.0)
        assert abs(energies[k] - float(e)) <= 1e-12 * scale, sys_k
        assert np.abs(forces[k] + np.asarray(gx)).max() <= 1e-12 * np.abs(gx).max()
        ref = np.asarray(ravel_pytree(gth)[0])
        got = np.asarray(ravel_pytree(per_theta[k])[0])
        assert np.abs(got - ref).max() <= 1e-12 * np.abs(ref).max()
        assert sum(terms[name][k] for name in terms) == pytest.approx(energies[k], rel=1e-13)
        total += ref
    assert np.abs(np.asarray(summed) - total).max() <= 1e-12 * np.abs(total).max()


def test_padding_contributes_exactly_zero():
    """A molecule padded to a larger bucket: moving the padded atoms anywhere changes nothing
    (bitwise), their forces are exactly 0, and theta rows it does not use get exactly 0."""
    sys3 = system(3)
    x = positions()[3]
    sizes = {k: 3 * v + 5 for k, v in _sizes(sys3).items()}
    padded = _pad_system(sys3, sizes)
    n, n_pad = sys3.n_atoms, sizes["atoms"]
    rng = np.random.default_rng(0)

    def at(filler):
        xp = np.concatenate([x, filler])
        f = jax.jit(jax.value_and_grad(st.total_energy, argnums=(1, 3)))
        return f(padded, xp, None, sys3.params)

    e1, (gx1, gt1) = at(np.zeros((n_pad - n, 3)))
    e2, (gx2, gt2) = at(rng.normal(scale=5.0, size=(n_pad - n, 3)))
    assert float(e1) == float(e2)
    assert np.all(np.asarray(gx1)[n:] == 0.0) and np.all(np.asarray(gx2)[n:] == 0.0)
    flat1, flat2 = ravel_pytree(gt1)[0], ravel_pytree(gt2)[0]
    assert np.array_equal(np.asarray(flat1), np.asarray(flat2))
    e0, (gx0, gt0) = jax.value_and_grad(sys3.energy_fn(), argnums=(0, 2))(
        x, None, sys3.params)
    assert float(e1) == pytest.approx(float(e0), rel=1e-14)
    ref = np.asarray(ravel_pytree(gt0)[0])
    assert np.array_equal(np.asarray(flat1) == 0.0, ref == 0.0)  # same unused rows, exactly 0
    assert np.abs(np.asarray(flat1) - ref).max() <= 1e-13 * np.abs(ref).max()
    assert np.abs(np.asarray(gx1)[:n] - np.asarray(gx0)).max() <= 1e-12 * np.abs(gx0).max()


def test_one_compiled_program_serves_systems_of_equal_padded_shapes():
    """Two different molecules padded to the same sizes run through one compilation."""
    a, b = system(0), system(1)
    sizes = {}
    for s in (a, b):
        for k, v in _sizes(s).items():
            sizes[k] = max(sizes.get(k, 0), v + 4)
    fn = jax.jit(st.total_energy)
    xa = np.concatenate([positions()[0], np.zeros((sizes["atoms"] - a.n_atoms, 3))])
    xb = np.concatenate([positions()[1], np.zeros((sizes["atoms"] - b.n_atoms, 3))])
    ea = fn(_pad_system(a, sizes), xa, None, a.params)
    eb = fn(_pad_system(b, sizes), xb, None, b.params)
    assert fn._cache_size() == 1
    assert float(ea) == pytest.approx(a.energy(positions()[0]), rel=1e-13)
    assert float(eb) == pytest.approx(b.energy(positions()[1]), rel=1e-13)


def test_neighbor_list_and_explicit_pairs_agree():
    """A periodic water box: host neighbor list, in-function neighbor list and the explicit
    list of all non-excluded pairs give the same energies."""
    from reference_systems import water_box

    omm, pos, box = water_box(cutoff=0.7, box_nm=2.0)
    system = cg.from_openmm(omm)
    host = system.energy_terms(pos, box)
    inside = system.energy_terms_fn()(pos, box, system.params)
    nb = system.nonbonded
    pairs = explicit_pairs(nb.n_atoms, nb.exception_atoms)
    explicit = nb.energy_terms(pos, box, system.params[nb.name], (pairs[:, 0], pairs[:, 1]))
    for name in ("lennard_jones", "coulomb"):
        assert float(inside[name]) == pytest.approx(host[name], rel=1e-11)
        assert float(explicit[name]) == pytest.approx(host[name], rel=1e-11)


def test_term_names_do_not_depend_on_origin():
    """The same molecule built from SMIRNOFF and imported from its OpenMM export reports the
    same terms with the same energies, so potential_energy(term=...) means the same."""
    ff = forcefield()
    mol = molecules()[10]
    system = ff.create_system(mol, charges="gasteiger")
    imported = cg.from_openmm(cg.to_openmm(system))
    assert system.term_names() == imported.term_names()
    x = np.asarray(mol.positions)
    a, b = system.energy_terms(x), imported.energy_terms(x)
    assert set(a) == set(b) == {"harmonic_bond", "harmonic_angle", "periodic_torsion",
                                "lennard_jones", "coulomb"}
    for name in a:
        assert a[name] == pytest.approx(b[name], rel=1e-10, abs=1e-10)
    for s in (system, imported):
        u = cg.observables.potential_energy(s, term="periodic_torsion")
        assert float(u(x, None, s.params)) == pytest.approx(a["periodic_torsion"], rel=1e-10)


def test_stacking_refuses_incompatible_systems():
    mols = molecules()[:2]
    ff = forcefield()
    good = [ff.create_system(m, charges="gasteiger") for m in mols]
    other = cg.ForceField("openff-2.0.0.offxml").create_system(mols[1], charges="gasteiger")
    with pytest.raises(InputError, match="b.sdf: made from a different force field"):
        cg.stack_systems([good[0], other], names=["a.sdf", "b.sdf"])
    boxed = ff.create_system(mols[1], charges="gasteiger", box=np.eye(3) * 3.0)
    with pytest.raises(InputError, match="system 1: is periodic or has a nonbonded cutoff"):
        cg.stack_systems([good[0], boxed])
    imported = cg.from_openmm(cg.to_openmm(good[1]))
    with pytest.raises(InputError, match="system 1: its parameters are not a force field"):
        cg.stack_systems([good[0], imported])
    with pytest.raises(InputError, match="3 position arrays for 2 systems"):
        cg.stack_systems(good).energies(positions()[:3])


def test_large_vacuum_system_without_cutoff_is_refused():
    n = 3001
    with pytest.raises(InputError, match="3001 particles without a nonbonded cutoff"):
        explicit_pairs(n, np.zeros((0, 2), int))
