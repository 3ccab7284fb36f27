"""The state of a simulation and what every integrator shares: forces, kinetic energy,
degrees of freedom, initial velocities.

Units are OpenMM's: nm, ps, amu, kJ/mol, K. ``MDState`` is an immutable pytree; integrators
map it to the next one with pure functions, so many steps run inside ``jax.lax.scan`` and
gradients flow through them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.units import BOLTZMANN


class MDState(NamedTuple):
    """positions, velocities, forces [N, 3]; potential_energy (kJ/mol); box [3, 3] or None;
    neighbors (a NeighborList or None); step (int); key (PRNG key); extra: integrator- and
    barostat-specific arrays (dict)."""

    positions: jax.Array
    velocities: jax.Array
    forces: jax.Array
    potential_energy: jax.Array
    box: Any
    neighbors: Any
    step: jax.Array
    key: jax.Array
    extra: dict


def inverse_masses(masses) -> np.ndarray:
    m = np.asarray(masses, np.float64)
    return np.where(m > 0, 1.0 / np.where(m > 0, m, 1.0), 0.0)


def kinetic_energy(velocities, masses):
    return 0.5 * jnp.sum(jnp.asarray(masses, velocities.dtype)[:, None] * velocities ** 2)


def degrees_of_freedom(masses, n_constraints: int, remove_com: bool, dim: int = 3) -> int:
    """``dim`` per massive particle, minus constraints, minus ``dim`` if the centre of mass is
    fixed."""
    n = int(np.sum(np.asarray(masses) > 0))
    return dim * n - int(n_constraints) - (dim if remove_com else 0)


def temperature(velocities, masses, dof: int):
    return 2.0 * kinetic_energy(velocities, masses) / (dof * BOLTZMANN)


def remove_com_velocity(v, masses):
    m = jnp.asarray(masses, v.dtype)[:, None]
    com = jnp.sum(m * v, axis=0) / jnp.sum(m)
    return jnp.where(m > 0, v - com, 0.0)


def maxwell_boltzmann(key, masses, temperature_k: float, dtype=jnp.float64, dim: int = 3):
    """Velocities [N, dim] nm/ps drawn at ``temperature_k``; massless particles get zero."""
    inv = jnp.asarray(inverse_masses(masses), dtype)[:, None]
    sigma = jnp.sqrt(BOLTZMANN * temperature_k * inv)
    return sigma * jax.random.normal(key, (len(masses), dim), dtype)
