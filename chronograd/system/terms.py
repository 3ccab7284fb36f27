"""Bonded energy terms: static atom-index arrays plus the names of their parameters.

A term holds only what is fixed when a system is built (indices, periodicities, options);
its numbers live in the system's parameter pytree ``params[term.name]`` and are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from chronograd.potentials.bonded import (
    harmonic_angle_energy,
    harmonic_bond_energy,
    periodic_torsion_energy,
)


@dataclass(frozen=True, eq=False)
class HarmonicBondTerm:
    """1/2 k (r - length)^2 over ``atoms`` [B, 2]; params {"length" nm, "k" kJ/mol/nm^2}."""

    name: str
    atoms: np.ndarray
    periodic: bool = False
    kind: ClassVar[str] = "harmonic_bond"
    param_names: ClassVar[tuple[str, ...]] = ("length", "k")

    def energy_terms(self, positions, box, params, pairs=None):
        b = box if self.periodic else None
        return {self.name: harmonic_bond_energy(positions, b, params, jnp.asarray(self.atoms))}

    def term_names(self) -> tuple[str, ...]:
        return (self.name,)


@dataclass(frozen=True, eq=False)
class HarmonicAngleTerm:
    """1/2 k (theta - angle)^2 over ``atoms`` [A, 3]; params {"angle" rad, "k" kJ/mol/rad^2}."""

    name: str
    atoms: np.ndarray
    periodic: bool = False
    kind: ClassVar[str] = "harmonic_angle"
    param_names: ClassVar[tuple[str, ...]] = ("angle", "k")

    def energy_terms(self, positions, box, params, pairs=None):
        b = box if self.periodic else None
        return {self.name: harmonic_angle_energy(positions, b, params, jnp.asarray(self.atoms))}

    def term_names(self) -> tuple[str, ...]:
        return (self.name,)


@dataclass(frozen=True, eq=False)
class PeriodicTorsionTerm:
    """k (1 + cos(n phi - phase)) over ``atoms`` [T, 4] with integer ``periodicity`` [T];
    params {"phase" rad, "k" kJ/mol}. Proper and improper torsions alike."""

    name: str
    atoms: np.ndarray
    periodicity: np.ndarray
    periodic: bool = False
    kind: ClassVar[str] = "periodic_torsion"
    param_names: ClassVar[tuple[str, ...]] = ("phase", "k")

    def energy_terms(self, positions, box, params, pairs=None):
        b = box if self.periodic else None
        e = periodic_torsion_energy(
            positions, b, params, jnp.asarray(self.atoms), jnp.asarray(self.periodicity)
        )
        return {self.name: e}

    def term_names(self) -> tuple[str, ...]:
        return (self.name,)
