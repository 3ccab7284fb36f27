"""FIRE: the fast inertial relaxation engine (Bitzek et al., Phys. Rev. Lett. 97, 170201
(2006), doi:10.1103/PhysRevLett.97.170201), with the optax-like ``(init, step)`` shape.

Damped dynamics whose velocity is steered toward the force and whose step grows while the
power F.v stays positive. Constraints are kept by SHAKE/RATTLE projection, so it minimizes
rigid water and H-bond-constrained molecules directly. Choose it for rough starting structures
(clashes): it never takes a step longer than ``max_step``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from chronograd.dynamics.constraints import rattle_velocities, shake


class FireState(NamedTuple):
    positions: jax.Array
    velocities: jax.Array
    forces: jax.Array
    energy: jax.Array
    dt: jax.Array
    alpha: jax.Array
    n_positive: jax.Array
    neighbors: object


def fire(compute, constraints=None, *, dt_start: float = 0.002, dt_max: float = 0.02,
         max_step: float = 0.01, n_min: int = 5, f_inc: float = 1.1, f_dec: float = 0.5,
         alpha_start: float = 0.1, f_alpha: float = 0.99):
    """``(init, step)`` for FIRE; ``compute(x, box, params, nbrs) -> (x, nbrs, U, F)``
    (``chronograd.system.forces.force_fn``). Units: ps-like fictitious time, nm."""

    def init(x, box, params, neighbors):
        x, neighbors, u, f = compute(x, box, params, neighbors)
        z = jnp.zeros_like(x)
        return FireState(x, z, f, u, jnp.asarray(dt_start, x.dtype),
                         jnp.asarray(alpha_start, x.dtype), jnp.asarray(0), neighbors)

    def step(s: FireState, box, params):
        power = jnp.sum(s.forces * s.velocities)
        fnorm = jnp.sqrt(jnp.sum(s.forces ** 2)) + 1e-30
        vnorm = jnp.sqrt(jnp.sum(s.velocities ** 2))
        v = (1 - s.alpha) * s.velocities + s.alpha * s.forces / fnorm * vnorm
        up = power > 0
        n_pos = jnp.where(up, s.n_positive + 1, 0)
        grow = up & (n_pos > n_min)
        dt = jnp.where(grow, jnp.minimum(s.dt * f_inc, dt_max),
                       jnp.where(up, s.dt, s.dt * f_dec))
        alpha = jnp.where(grow, s.alpha * f_alpha, jnp.where(up, s.alpha, alpha_start))
        v = jnp.where(up, v, 0.0)
        v = v + dt * s.forces
        if constraints is not None:
            v = rattle_velocities(v, s.positions, constraints, box)
        dx = dt * v
        longest = jnp.max(jnp.linalg.norm(dx, axis=-1))
        dx = dx * jnp.minimum(1.0, max_step / (longest + 1e-30))
        x = s.positions + dx
        if constraints is not None:
            x = shake(x, s.positions, constraints, box)
        x, nbrs, u, f = compute(x, box, params, s.neighbors)
        return FireState(x, v, f, u, dt, alpha, n_pos, nbrs)

    return init, step
