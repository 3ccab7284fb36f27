"""Bonded energy terms: static atom-index arrays plus the names of their parameters.

A term holds only what is fixed when a system is built (indices, periodicities, options);
its numbers live in the system's parameter pytree ``params[term.name]`` and are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from chronograd.potentials.bonded import (
    harmonic_angle_energy,
    harmonic_bond_energy,
    periodic_torsion_energy,
)


@dataclass(frozen=True, eq=False)
class _BondedTerm:
    """Shared shape of bonded terms: one energy entry named after the term. ``periodic``
    applies minimum-image displacements (OpenMM's usesPeriodicBoundaryConditions)."""

    name: str
    atoms: np.ndarray
    periodic: bool = field(default=False, kw_only=True)
    kind: ClassVar[str]
    param_names: ClassVar[tuple[str, ...]]

    def energy_terms(self, positions, box, params, pairs=None):
        return {self.name: self._energy(positions, box if self.periodic else None, params)}

    def term_names(self) -> tuple[str, ...]:
        return (self.name,)


@dataclass(frozen=True, eq=False)
class HarmonicBondTerm(_BondedTerm):
    """1/2 k (r - length)^2 over ``atoms`` [B, 2]; params {"length" nm, "k" kJ/mol/nm^2}."""

    kind: ClassVar[str] = "harmonic_bond"
    param_names: ClassVar[tuple[str, ...]] = ("length", "k")

    def _energy(self, positions, box, params):
        return harmonic_bond_energy(positions, box, params, jnp.asarray(self.atoms))


@dataclass(frozen=True, eq=False)
class HarmonicAngleTerm(_BondedTerm):
    """1/2 k (theta - angle)^2 over ``atoms`` [A, 3]; params {"angle" rad, "k" kJ/mol/rad^2}."""

    kind: ClassVar[str] = "harmonic_angle"
    param_names: ClassVar[tuple[str, ...]] = ("angle", "k")

    def _energy(self, positions, box, params):
        return harmonic_angle_energy(positions, box, params, jnp.asarray(self.atoms))


@dataclass(frozen=True, eq=False)
class PeriodicTorsionTerm(_BondedTerm):
    """k (1 + cos(n phi - phase)) over ``atoms`` [T, 4] with integer ``periodicity`` [T];
    params {"phase" rad, "k" kJ/mol}. Proper and improper torsions alike."""

    periodicity: np.ndarray = None
    kind: ClassVar[str] = "periodic_torsion"
    param_names: ClassVar[tuple[str, ...]] = ("phase", "k")

    def _energy(self, positions, box, params):
        return periodic_torsion_energy(
            positions, box, params, jnp.asarray(self.atoms), jnp.asarray(self.periodicity)
        )
