"""Bonded potentials: conventions and singular geometries (finite energies and gradients)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chronograd.potentials.bonded import (
    bond_angles,
    dihedral_angles,
    harmonic_angle_energy,
    harmonic_bond_energy,
    periodic_torsion_energy,
)


def test_dihedral_convention_is_iupac():
    x = jnp.array([[1.0, 0, 0], [0, 0, 0], [0, 0, 1], [np.cos(0.3), np.sin(0.3), 1]])
    phi = float(dihedral_angles(x, None, jnp.array([[0, 1, 2, 3]]))[0])
    assert phi == pytest.approx(0.3)
    trans = x.at[3].set(jnp.array([-1.0, 0.0, 1.0]))
    assert abs(float(dihedral_angles(trans, None, jnp.array([[0, 1, 2, 3]]))[0])) == pytest.approx(
        np.pi
    )


def test_linear_angle_has_finite_gradient():
    x = jnp.array([[-1.0, 0, 0], [0.0, 0, 0], [1.0, 0, 0]])
    atoms = jnp.array([[0, 1, 2]])
    params = {"angle": jnp.array([2.0]), "k": jnp.array([100.0])}
    assert float(bond_angles(x, None, atoms)[0]) == pytest.approx(np.pi)
    g = jax.grad(harmonic_angle_energy)(x, None, params, atoms)
    assert np.all(np.isfinite(np.asarray(g)))


def test_coincident_bond_atoms_have_finite_gradient():
    x = jnp.zeros((2, 3))
    params = {"length": jnp.array([0.1]), "k": jnp.array([1000.0])}
    atoms = jnp.array([[0, 1]])
    assert float(harmonic_bond_energy(x, None, params, atoms)) == pytest.approx(5.0)
    assert np.all(np.isfinite(np.asarray(jax.grad(harmonic_bond_energy)(x, None, params, atoms))))


def test_collinear_torsion_has_finite_gradient():
    x = jnp.array([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]])
    params = {"phase": jnp.array([0.0]), "k": jnp.array([5.0])}
    atoms = jnp.array([[0, 1, 2, 3]])
    per = jnp.array([2])
    e = periodic_torsion_energy(x, None, params, atoms, per)
    g = jax.grad(periodic_torsion_energy)(x, None, params, atoms, per)
    assert np.isfinite(float(e)) and np.all(np.isfinite(np.asarray(g)))
