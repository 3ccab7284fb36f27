"""Bonded potentials: harmonic bonds, harmonic angles, periodic torsions.

Each is written once as ``energy(positions, box, params, atoms) -> kJ/mol`` with the functional
forms of OpenMM's HarmonicBondForce, HarmonicAngleForce and PeriodicTorsionForce:

    bond     E = 1/2 k (r - r0)^2              k: kJ/mol/nm^2, r0: nm
    Morse    E = D (1 - exp(-a (r - r0)))^2    D: kJ/mol, a: 1/nm, r0: nm
    angle    E = 1/2 k (theta - theta0)^2      k: kJ/mol/rad^2, theta0: rad
    torsion  E = k (1 + cos(n phi - phi0))     k: kJ/mol, phi0: rad, n: integer periodicity

``box`` is used for minimum-image displacements when not None (OpenMM's
``usesPeriodicBoundaryConditions``). Singular geometries (coincident atoms, linear angles,
collinear torsion atoms) give finite energies and finite gradients via the double-``where``
trick, never ``nan_to_num``. Rows of ``atoms`` holding the index N are padding (batched systems)
and contribute exactly zero; geometry comes from ``geometry.py``.
"""

from __future__ import annotations

import jax.numpy as jnp

from chronograd.potentials.geometry import (  # noqa: F401  (re-exported names)
    angles_of,
    bond_angles,
    bond_lengths,
    dihedral_angles,
    dihedrals_of,
    distances_of,
    gather,
)


def harmonic_bond_energy(positions, box, params, atoms):
    """Sum of 1/2 k (r - length)^2 over bonds.

    Args:
        positions: [N, 3] nm.  box: [3, 3] nm or None.
        params: {"length": [B] nm, "k": [B] kJ/mol/nm^2}.
        atoms: [B, 2] int.
    """
    x, valid = gather(positions, atoms)
    r = distances_of(x, box)
    return 0.5 * jnp.sum(jnp.where(valid, params["k"] * (r - params["length"]) ** 2, 0.0))


def morse_bond_energy(positions, box, params, atoms):
    """Sum of D (1 - exp(-a (r - length)))^2 over bonds (zero at the rest length, D when
    broken): OpenMM's usual CustomBondForce Morse bond.

    Args:
        params: {"length": [B] nm, "depth": [B] kJ/mol, "alpha": [B] 1/nm}.
        atoms: [B, 2] int.
    """
    x, valid = gather(positions, atoms)
    r = distances_of(x, box)
    e = -jnp.expm1(-params["alpha"] * (r - params["length"]))
    return jnp.sum(jnp.where(valid, params["depth"] * e * e, 0.0))


def harmonic_angle_energy(positions, box, params, atoms):
    """Sum of 1/2 k (theta - angle)^2 over angles.

    Args:
        params: {"angle": [A] rad, "k": [A] kJ/mol/rad^2}.
        atoms: [A, 3] int, the vertex in the middle.
    """
    x, valid = gather(positions, atoms)
    theta = angles_of(x, box)
    return 0.5 * jnp.sum(jnp.where(valid, params["k"] * (theta - params["angle"]) ** 2, 0.0))


def periodic_torsion_energy(positions, box, params, atoms, periodicity):
    """Sum of k (1 + cos(n phi - phase)) over proper and improper torsions.

    Args:
        params: {"phase": [T] rad, "k": [T] kJ/mol}.
        atoms: [T, 4] int.  periodicity: [T] int (not a parameter).
    """
    x, valid = gather(positions, atoms)
    phi = dihedrals_of(x, box)
    e = params["k"] * (1.0 + jnp.cos(periodicity * phi - params["phase"]))
    return jnp.sum(jnp.where(valid, e, 0.0))
