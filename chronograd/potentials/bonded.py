"""Bonded potentials: harmonic bonds, harmonic angles, periodic torsions.

Each is written once as ``energy(positions, box, params, atoms) -> kJ/mol`` with the functional
forms of OpenMM's HarmonicBondForce, HarmonicAngleForce and PeriodicTorsionForce:

    bond     E = 1/2 k (r - r0)^2              k: kJ/mol/nm^2, r0: nm
    angle    E = 1/2 k (theta - theta0)^2      k: kJ/mol/rad^2, theta0: rad
    torsion  E = k (1 + cos(n phi - phi0))     k: kJ/mol, phi0: rad, n: integer periodicity

``box`` is used for minimum-image displacements when not None (OpenMM's
``usesPeriodicBoundaryConditions``). Singular geometries (coincident atoms, linear angles,
collinear torsion atoms) give finite energies and finite gradients via the double-``where``
trick, never ``nan_to_num``.
"""

from __future__ import annotations

import jax.numpy as jnp

from chronograd.space.periodic import displacement, safe_norm


def _safe_atan2(y, x):
    """atan2 with a zero (not NaN) gradient at the origin."""
    degenerate = (x == 0) & (y == 0)
    return jnp.where(degenerate, 0.0, jnp.arctan2(jnp.where(degenerate, 0.0, y),
                                                  jnp.where(degenerate, 1.0, x)))


def bond_lengths(positions, box, atoms):
    """[B] distances r(atoms[:, 0], atoms[:, 1]), nm."""
    return safe_norm(displacement(positions, atoms[:, 0], atoms[:, 1], box))


def bond_angles(positions, box, atoms):
    """[A] angles i-j-k (j the vertex), rad, in [0, pi]."""
    u = displacement(positions, atoms[:, 0], atoms[:, 1], box)
    v = displacement(positions, atoms[:, 2], atoms[:, 1], box)
    return _safe_atan2(safe_norm(jnp.cross(u, v)), jnp.sum(u * v, axis=-1))


def dihedral_angles(positions, box, atoms):
    """[T] IUPAC dihedral angles i-j-k-l, rad, in (-pi, pi] (trans = pi)."""
    b1 = displacement(positions, atoms[:, 1], atoms[:, 0], box)
    b2 = displacement(positions, atoms[:, 2], atoms[:, 1], box)
    b3 = displacement(positions, atoms[:, 3], atoms[:, 2], box)
    n1 = jnp.cross(b1, b2)
    n2 = jnp.cross(b2, b3)
    y = safe_norm(b2) * jnp.sum(b1 * n2, axis=-1)
    x = jnp.sum(n1 * n2, axis=-1)
    return _safe_atan2(y, x)


def harmonic_bond_energy(positions, box, params, atoms):
    """Sum of 1/2 k (r - length)^2 over bonds.

    Args:
        positions: [N, 3] nm.  box: [3, 3] nm or None.
        params: {"length": [B] nm, "k": [B] kJ/mol/nm^2}.
        atoms: [B, 2] int.
    """
    r = bond_lengths(positions, box, atoms)
    return 0.5 * jnp.sum(params["k"] * (r - params["length"]) ** 2)


def harmonic_angle_energy(positions, box, params, atoms):
    """Sum of 1/2 k (theta - angle)^2 over angles.

    Args:
        params: {"angle": [A] rad, "k": [A] kJ/mol/rad^2}.
        atoms: [A, 3] int, the vertex in the middle.
    """
    theta = bond_angles(positions, box, atoms)
    return 0.5 * jnp.sum(params["k"] * (theta - params["angle"]) ** 2)


def periodic_torsion_energy(positions, box, params, atoms, periodicity):
    """Sum of k (1 + cos(n phi - phase)) over proper and improper torsions.

    Args:
        params: {"phase": [T] rad, "k": [T] kJ/mol}.
        atoms: [T, 4] int.  periodicity: [T] int (static, not a parameter).
    """
    phi = dihedral_angles(positions, box, atoms)
    return jnp.sum(params["k"] * (1.0 + jnp.cos(periodicity * phi - params["phase"])))
