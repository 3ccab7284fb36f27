"""Protocols: parameters that change step by step, and the work they do.

A protocol lambda(t) is any parameter of a system that a schedule sets at every step (a trap's
centre or stiffness, a field, a coupling); since parameters are an argument of every step,
``integ.step(state, params_at_step)`` is all it takes, and gradients flow to whatever
produced the schedule. Parameterizations map a few coefficients to values on a time grid:

    lam = piecewise_linear(knots, times, duration)   # knot values at equally spaced times
    lam = chebyshev(coeffs, times, duration)         # sum c_k T_k(2 t / duration - 1)

:func:`protocol_work` runs trajectories under a schedule and returns the work of each,
W = sum_i [U(x_i; lambda_{i+1}) - U(x_i; lambda_i)] (the protocol switches, then the system
moves under the new value), pure and differentiable in the schedule, vmapped over keys and
starting positions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.dynamics.state import MDState
from chronograd.errors import InputError


def piecewise_linear(knots, times, duration: float):
    """Values at ``times`` of the line through ``knots`` [K] at equally spaced times 0..T."""
    knots = jnp.asarray(knots)
    grid = jnp.linspace(0.0, duration, knots.shape[0])
    return jnp.interp(times, grid, knots)


def chebyshev(coeffs, times, duration: float):
    """sum_k c_k T_k(2 t / T - 1) at ``times``."""
    u = 2.0 * jnp.asarray(times) / duration - 1.0
    c = jnp.asarray(coeffs)
    t0, t1 = jnp.ones_like(u), u
    out = c[0] * t0
    if c.shape[0] > 1:
        out = out + c[1] * t1
    for k in range(2, c.shape[0]):
        t0, t1 = t1, 2.0 * u * t1 - t0
        out = out + c[k] * t1
    return out


def check_coefficients(coeffs, expected: int, what: str = "protocol"):
    """InputError unless ``coeffs`` holds ``expected`` finite numbers."""
    c = np.asarray(coeffs, np.float64)
    if c.shape != (expected,):
        raise InputError(f"{what}: expected {expected} coefficients, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise InputError(f"{what}: coefficients must be finite, got {c.tolist()}")
    return c


def step_times(n_steps: int, timestep: float):
    """Midpoints (i + 1/2) dt of the ``n_steps`` steps: the protocol value each step uses."""
    return (jnp.arange(n_steps) + 0.5) * timestep


def protocol_work(integ, schedule, positions, key, box=None):
    """Work of one trajectory under ``schedule`` (a params pytree with a leading axis of
    n_steps + 2: the initial value, one value per step, the final value).

    ``positions`` are the starting positions (e.g. drawn from equilibrium at the initial
    value). Pure: ``jax.vmap`` it over keys and positions, ``jax.grad`` it in the schedule.
    For integrators without extra state (Brownian, Langevin, velocity Verlet), without a
    neighbor list; velocities start at zero (Brownian dynamics does not use them).
    Returns (work kJ/mol, final positions).
    """
    energy = integ.system.energy_fn()
    at = lambda i: jax.tree_util.tree_map(lambda a: a[i], schedule)  # noqa: E731
    n_steps = jax.tree_util.tree_leaves(schedule)[0].shape[0] - 2
    u, g = jax.value_and_grad(energy)(positions, box, at(1))
    state = MDState(positions, jnp.zeros_like(positions), -g, u, box, None, jnp.asarray(0), key,
                    {})

    def body(carry, i):
        s, w = carry
        w = w + energy(s.positions, box, at(i + 1)) - energy(s.positions, box, at(i))
        return (integ.step(s, at(i + 2)), w), None

    (state, work), _ = jax.lax.scan(body, (state, jnp.zeros((), positions.dtype)),
                                    jnp.arange(n_steps))
    last = n_steps
    work = work + (energy(state.positions, box, at(last + 1))
                   - energy(state.positions, box, at(last)))
    return work, state.positions


def scheduled(integrator, schedule):
    """The integrator with a protocol built into its step: every step runs the original step
    with ``schedule(params, t)`` (t = (step + 1/2) dt, the step's midpoint), where ``params``
    may carry protocol coefficients beside the system's parameters (extra keys of the
    parameter dict are ignored by the energy). The coefficients are then ordinary parameters
    of a time-independent step, so every trajectory estimator (``gradients.trajectory``:
    forward, windowed, reverse, checkpointed, finite differences) differentiates them.

        def schedule(p, t):
            centre = piecewise_linear(p["Protocol"]["knots"], t, duration)
            return {**p, "Trap": dict(p["Trap"], center=...)}
        integ = scheduled(cg.dynamics.brownian(system, ...), schedule)
    """
    dt = float(integrator.timestep)

    def step(state, params, protocol=None):
        t = (state.step + 0.5) * dt
        return integrator.step(state, schedule(params, t), protocol)

    return integrator._replace(step=step)
