"""Differentiable graph building and graph-network potentials: envelopes, edge weights, model
energies and forces against central finite differences; invariance (rotation, translation,
permutation) and equivariance of PaiNN's vector features; continuity at the cutoff; periodic
edges from the in-trace neighbor list against an all-pairs minimum-image reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chronograd.errors import InputError
from chronograd.ml.edges import (
    bessel_basis,
    cosine_envelope,
    edge_weights,
    edges_from_pairs,
    polynomial_envelope,
)
from chronograd.ml.potential_models import PotentialConfig
from chronograd.ml.potential_term import PotentialModel, potential_system
from chronograd.system.pairs import explicit_pairs
from chronograd.topology import Molecule

CUTOFF = 0.4
ARCHS = ("schnet", "painn")


def _model(arch, **kw):
    config = PotentialConfig(architecture=arch, cutoff=CUTOFF, hidden=8, layers=2, n_rbf=6,
                             seed=5, **kw)
    return PotentialModel.initialize(config)


def _rotation(seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


@pytest.fixture(scope="module")
def mol():
    return Molecule.from_smiles("OCC(=O)N", name="glycolamide")


@pytest.mark.parametrize("envelope", [cosine_envelope, polynomial_envelope])
def test_envelopes_and_their_slopes_vanish_at_the_cutoff(envelope):
    rc = 0.5
    f = lambda r: envelope(r, rc)  # noqa: E731
    slope = jax.grad(f)
    assert float(f(0.0)) == pytest.approx(1.0)
    assert abs(float(f(rc - 1e-6))) < 1e-9 and float(f(rc + 0.1)) == 0.0
    assert abs(float(slope(rc - 1e-8))) < 1e-6 and float(slope(rc + 0.1)) == 0.0
    # the slope equals central differences inside
    r, h = 0.31, 1e-6
    assert float(slope(r)) == pytest.approx(float((f(r + h) - f(r - h)) / (2 * h)), rel=1e-6)


def test_bessel_basis_is_finite_with_finite_gradient_at_zero():
    g = jax.jacobian(lambda r: bessel_basis(r, 0.5, 4))(0.0)
    assert np.all(np.isfinite(bessel_basis(jnp.asarray(0.0), 0.5, 4))) and np.all(
        np.isfinite(g))


def test_edge_weights_are_differentiable_in_positions(mol):
    x = jnp.asarray(mol.positions)
    pairs = jnp.asarray(explicit_pairs(mol.n_atoms, []))

    def total_weight(x):
        e = edges_from_pairs(x, None, pairs[:, 0], pairs[:, 1], CUTOFF)
        w = edge_weights(e, CUTOFF, "polynomial")
        return jnp.sum(w * e.distances)

    g = np.asarray(jax.grad(total_weight)(x))
    h = 1e-6
    for a, c in [(0, 0), (3, 1), (6, 2)]:
        dx = np.zeros_like(mol.positions)
        dx[a, c] = h
        fd = (total_weight(x + dx) - total_weight(x - dx)) / (2 * h)
        assert g[a, c] == pytest.approx(float(fd), rel=1e-6, abs=1e-9)
    e = edges_from_pairs(x, None, pairs[:, 0], pairs[:, 1], CUTOFF)
    assert float(jnp.max(e.distances)) < CUTOFF  # longer pairs are masked out
    assert int(jnp.sum(e.mask)) == 2 * int(np.sum(
        np.linalg.norm(mol.positions[pairs[:, 0]] - mol.positions[pairs[:, 1]], axis=1)
        < CUTOFF))


@pytest.mark.parametrize("arch", ARCHS)
def test_forces_and_weight_gradients_equal_central_differences(mol, arch):
    system = potential_system(mol, _model(arch))
    U = jax.jit(system.energy_fn())
    x = jnp.asarray(mol.positions)
    _, forces = system.energy_and_forces(mol.positions)
    h = 1e-5
    for a, c in [(0, 0), (2, 1), (5, 2), (8, 0)]:
        dx = np.zeros_like(mol.positions)
        dx[a, c] = h
        fd = -(U(x + dx, None, system.params) - U(x - dx, None, system.params)) / (2 * h)
        assert forces[a, c] == pytest.approx(float(fd), rel=1e-5, abs=1e-6)
    # dU/dw of a filter weight and of the readout, against central differences
    grads = jax.grad(U, argnums=2)(x, None, system.params)["potential"]
    block = "interactions" if arch == "schnet" else "blocks"
    for get in (lambda p: getattr(p, block)[1].filter.weight if arch == "painn"
                else getattr(p, block)[1].filter_in.weight,
                lambda p: p.readout.hidden.weight):
        g = float(get(grads)[0, 1])
        w = system.params["potential"]

        def shifted(d, w=w, get=get):
            leaf = get(w)
            new = jax.tree_util.tree_map(lambda a: a, w)
            import equinox as eqx
            new = eqx.tree_at(get, new, leaf.at[0, 1].add(d))
            return U(x, None, {**system.params, "potential": new})

        fd = (shifted(1e-5) - shifted(-1e-5)) / 2e-5
        assert g == pytest.approx(float(fd), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("arch", ARCHS)
def test_energy_is_invariant_and_forces_rotate(mol, arch):
    system = potential_system(mol, _model(arch))
    x = mol.positions
    e0, f0 = system.energy_and_forces(x)
    R = _rotation(1)
    e1, f1 = system.energy_and_forces(x @ R.T + np.array([0.3, -1.2, 2.0]))
    assert e1 == pytest.approx(e0, abs=1e-9)
    np.testing.assert_allclose(f1, f0 @ R.T, atol=1e-9)
    # permuting the atoms (and their species) permutes the forces, leaves the energy
    perm = np.random.default_rng(2).permutation(mol.n_atoms)
    model = _model(arch)
    numbers = np.array([a.GetAtomicNum() for a in mol.rdmol.GetAtoms()])
    from chronograd.ml.potential_term import with_potential
    from chronograd.system.source import ForceFieldSource
    from chronograd.system.system import System

    base = System(np.ones(mol.n_atoms), (), {}, source=ForceFieldSource({}, {}, ()))
    permuted = with_potential(base, model, numbers[perm])
    e2, f2 = permuted.energy_and_forces(x[perm])
    assert e2 == pytest.approx(e0, abs=1e-9)
    np.testing.assert_allclose(f2, f0[perm], atol=1e-9)


def test_painn_vector_features_are_equivariant(mol):
    model = _model("painn")
    term = model.term([a.GetAtomicNum() for a in mol.rdmol.GetAtoms()])
    x = jnp.asarray(mol.positions)
    R = _rotation(3)

    def features(x):
        edges, _ = term.edges(x, None)
        return model.network.features(jnp.asarray(term.species), edges)

    s0, v0 = features(x)
    s1, v1 = features(x @ R.T + 0.7)
    assert float(jnp.max(jnp.abs(v0))) > 1e-3  # the test sees real vectors
    np.testing.assert_allclose(np.asarray(s1), np.asarray(s0), atol=1e-9)
    np.testing.assert_allclose(np.asarray(v1), np.einsum("ij,njf->nif", R, np.asarray(v0)),
                               atol=1e-9)


@pytest.mark.parametrize("arch", ARCHS)
def test_energy_and_forces_are_continuous_at_the_cutoff(arch):
    mol = Molecule.from_smiles("[H][H].[H][H]", name="two H2")
    model = _model(arch, envelope="polynomial")
    system = potential_system(mol, model)
    x = np.array([[0, 0, 0], [0.074, 0, 0], [0, 0, 0], [0.074, 0, 0]], float)

    def at(d):  # second molecule's first atom exactly d from the first molecule's second
        y = x.copy()
        y[2:] += [0.074 + d, 0.0, 0.0]
        y[3] += [0.0, 0.0, 0.0]
        return system.energy_and_forces(y)

    # crossing rc between atoms 1 and 2 (other pairs stay inside or outside)
    e_in, f_in = at(CUTOFF - 1e-7)
    e_out, f_out = at(CUTOFF + 1e-7)
    assert abs(e_in - e_out) < 1e-9
    np.testing.assert_allclose(f_in, f_out, atol=1e-6)


def test_periodic_edges_from_the_neighbor_list_equal_all_pairs_minimum_image():
    rng = np.random.default_rng(7)
    box = np.diag([1.0, 1.1, 1.2])
    n = 60
    x = rng.uniform(0, 1, (n, 3)) * np.diag(box)
    # keep atoms at least 0.1 nm apart so the test geometry is physical
    model = PotentialModel.initialize(PotentialConfig(cutoff=0.45, hidden=8, layers=2,
                                                      n_rbf=6))
    numbers = np.where(np.arange(n) % 3 == 0, 8, 1)
    term = model.term(numbers, box=box)
    assert term.neighbors is not None
    e_nl = term.energy_terms(jnp.asarray(x), jnp.asarray(box), model.weights)
    pairs = explicit_pairs(n, [])
    edges = edges_from_pairs(jnp.asarray(x), jnp.asarray(box), pairs[:, 0], pairs[:, 1],
                             0.45)
    e_ref = jnp.sum(model.network(jnp.asarray(term.species), edges))
    assert float(e_nl["neural_potential"]) == pytest.approx(float(e_ref), rel=1e-12)


def test_a_box_narrower_than_twice_the_cutoff_is_refused():
    model = PotentialModel.initialize(PotentialConfig(cutoff=0.6))
    with pytest.raises(InputError, match="at least twice the cutoff"):
        model.term([8, 1, 1], box=np.eye(3) * 1.0)


def test_an_unknown_element_names_the_atom():
    model = PotentialModel.initialize(PotentialConfig(elements=(1, 6, 8)))
    mol = Molecule.from_smiles("CCN", name="ethylamine")
    with pytest.raises(InputError, match="atom 2 is N"):
        potential_system(mol, model)
