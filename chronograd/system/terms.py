"""Bonded energy terms: static atom-index arrays plus the names of their parameters.

A term holds only what is fixed when a system is built (indices, periodicities, options);
its numbers live in the system's parameter pytree ``params[term.name]`` and are passed in.
Terms are pytrees: index arrays are data (passed into compiled functions, padded and stacked
for batches; a row holding the index N is padding), names and options are static. A term's
``name`` keys its slots; the energy it reports is named after its physics (``report``), the
same whether the system came from OpenMM or from a SMIRNOFF force field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.potentials.bonded import (
    harmonic_angle_energy,
    harmonic_bond_energy,
    morse_bond_energy,
    periodic_torsion_energy,
)


@dataclass(frozen=True, eq=False)
class _BondedTerm:
    """Shared shape of bonded terms: one energy entry named after the term. ``periodic``
    applies minimum-image displacements (OpenMM's usesPeriodicBoundaryConditions)."""

    name: str
    atoms: np.ndarray
    periodic: bool = field(default=False, kw_only=True)
    allows_overlap: ClassVar[bool] = True  # finite at coincident atoms (double-where)
    kind: ClassVar[str]
    report: ClassVar[str]
    param_names: ClassVar[tuple[str, ...]]

    def energy_terms(self, positions, box, params, pairs=None):
        return {self.report: self._energy(positions, box if self.periodic else None, params)}

    def term_names(self) -> tuple[str, ...]:
        return (self.report,)


@dataclass(frozen=True, eq=False)
class HarmonicBondTerm(_BondedTerm):
    """1/2 k (r - length)^2 over ``atoms`` [B, 2]; params {"length" nm, "k" kJ/mol/nm^2}."""

    kind: ClassVar[str] = "harmonic_bond"
    report: ClassVar[str] = "harmonic_bond"
    param_names: ClassVar[tuple[str, ...]] = ("length", "k")

    def _energy(self, positions, box, params):
        return harmonic_bond_energy(positions, box, params, jnp.asarray(self.atoms))


@dataclass(frozen=True, eq=False)
class MorseBondTerm(_BondedTerm):
    """D (1 - exp(-alpha (r - length)))^2 over ``atoms`` [B, 2]; params {"length" nm,
    "depth" kJ/mol, "alpha" 1/nm}. Reported as ``morse_bond``."""

    kind: ClassVar[str] = "morse_bond"
    report: ClassVar[str] = "morse_bond"
    param_names: ClassVar[tuple[str, ...]] = ("length", "depth", "alpha")

    def _energy(self, positions, box, params):
        return morse_bond_energy(positions, box, params, jnp.asarray(self.atoms))


@dataclass(frozen=True, eq=False)
class HarmonicAngleTerm(_BondedTerm):
    """1/2 k (theta - angle)^2 over ``atoms`` [A, 3]; params {"angle" rad, "k" kJ/mol/rad^2}."""

    kind: ClassVar[str] = "harmonic_angle"
    report: ClassVar[str] = "harmonic_angle"
    param_names: ClassVar[tuple[str, ...]] = ("angle", "k")

    def _energy(self, positions, box, params):
        return harmonic_angle_energy(positions, box, params, jnp.asarray(self.atoms))


@dataclass(frozen=True, eq=False)
class PeriodicTorsionTerm(_BondedTerm):
    """k (1 + cos(n phi - phase)) over ``atoms`` [T, 4] with integer ``periodicity`` [T];
    params {"phase" rad, "k" kJ/mol}. Proper and improper torsions alike."""

    periodicity: np.ndarray = None
    kind: ClassVar[str] = "periodic_torsion"
    report: ClassVar[str] = "periodic_torsion"
    param_names: ClassVar[tuple[str, ...]] = ("phase", "k")

    def _energy(self, positions, box, params):
        return periodic_torsion_energy(
            positions, box, params, jnp.asarray(self.atoms), jnp.asarray(self.periodicity)
        )


for _cls in (HarmonicBondTerm, MorseBondTerm, HarmonicAngleTerm):
    jax.tree_util.register_dataclass(_cls, data_fields=["atoms"], meta_fields=["name", "periodic"])
jax.tree_util.register_dataclass(PeriodicTorsionTerm, data_fields=["atoms", "periodicity"],
                                 meta_fields=["name", "periodic"])


@dataclass(frozen=True, eq=False)
class HarmonicTrapTerm:
    """External harmonic traps k/2 |x_a - center|^2 on particles ``atoms`` [A] (OpenMM's
    CustomExternalForce ``0.5*k*((x-x0)^2+(y-y0)^2+(z-z0)^2)``); params {"center" [A, dim] nm,
    "k" [A] kJ/mol/nm^2}. Centre and stiffness are ordinary parameters, so a protocol moves
    them step by step (``dynamics.protocols``) and gradients reach the protocol."""

    name: str
    atoms: np.ndarray
    periodic: bool = False
    allows_overlap: ClassVar[bool] = True
    kind: ClassVar[str] = "harmonic_trap"
    report: ClassVar[str] = "harmonic_trap"
    param_names: ClassVar[tuple[str, ...]] = ("center", "k")

    def term_names(self) -> tuple[str, ...]:
        return (self.report,)

    def energy_terms(self, positions, box, params, pairs=None):
        atoms = jnp.asarray(self.atoms)
        n = positions.shape[0]
        d = positions[jnp.minimum(atoms, n - 1)] - jnp.asarray(params["center"])
        e = 0.5 * jnp.asarray(params["k"]) * jnp.sum(d * d, axis=-1)
        return {self.report: jnp.sum(jnp.where(atoms < n, e, 0.0))}


jax.tree_util.register_dataclass(HarmonicTrapTerm, data_fields=["atoms"],
                                 meta_fields=["name", "periodic"])


@dataclass(frozen=True, eq=False)
class FunctionTerm:
    """A user's own energy term: ``fn(positions, box, params) -> kJ/mol`` (pure JAX; ``box``
    is None unless ``periodic``), its parameters ``params[name]`` a dict of arrays named by
    ``param_names``. It plugs into a System like a built-in term — energies, forces, Hessians,
    parameter gradients, dynamics, protocols and every gradient estimator — and reports its
    energy under ``name``. ``fn`` is static (hashable); its numbers live in params."""

    name: str
    fn: object
    param_names: tuple = ()
    periodic: bool = False
    allows_overlap: bool = True
    kind: ClassVar[str] = "function"

    @property
    def report(self) -> str:
        return self.name

    def term_names(self) -> tuple[str, ...]:
        return (self.name,)

    def validate(self, where: str, slots: dict, n: int) -> None:
        from chronograd.errors import InputError

        missing = [p for p in self.param_names if p not in slots]
        if missing:
            raise InputError(f"{where}: params[{self.name!r}] lacks {missing}")
        for p in self.param_names:
            v = np.asarray(slots[p])
            if v.dtype.kind not in "fiu" or not np.all(np.isfinite(v)):
                raise InputError(f"{where}: parameter {p!r} must hold finite numbers")

    def energy_terms(self, positions, box, params, pairs=None):
        return {self.name: self.fn(positions, box if self.periodic else None, params)}


jax.tree_util.register_dataclass(
    FunctionTerm, data_fields=[],
    meta_fields=["name", "fn", "param_names", "periodic", "allows_overlap"])
