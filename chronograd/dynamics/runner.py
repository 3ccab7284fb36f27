"""``simulate``: run an integrator for many steps in jitted chunks, with reporters between.

Each chunk is ``chunk`` steps inside ``jax.lax.scan`` (one compiled function, reused). At the
start of every chunk the neighbor list is rebuilt with its current capacity, so a run resumed
from a checkpoint at a chunk boundary repeats the uninterrupted run bit for bit. After each
chunk the host checks the flags: a neighbor-list overflow regrows the list and re-runs the
chunk from its start; a non-finite energy or an exploding velocity raises SimulationError
naming the first bad step and keeping the last good state (``error.last_good_state``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.dynamics.state import MDState
from chronograd.errors import ChronogradError
from chronograd.space.neighbor_list import regrow

_COMPILED: dict = {}  # (id(integrator), id(barostat), length) -> (integrator, barostat, fn)
_COMPILED_MAX = 8
MAX_SPEED = 50.0  # nm/ps; water at 300 K moves ~0.6 nm/ps, so this is an explosion


class SimulationError(ChronogradError):
    """A simulation blew up; ``last_good_state`` is the state at the start of the chunk,
    ``step`` the first bad step and ``reason`` what went wrong there."""

    def __init__(self, message, last_good_state=None, *, step: int | None = None,
                 reason: str = ""):
        super().__init__(message)
        self.last_good_state = last_good_state
        self.step = step
        self.reason = reason


def _chunk_fn(integrator, barostat, chunk: int):
    def run(state: MDState, params, protocol):
        if state.neighbors is not None:
            state = state._replace(neighbors=integrator.neighbor_fns.rebuild(
                state.positions, state.neighbors, state.box))

        def body(s, p):
            s = integrator.step(s, params, p)
            if barostat is not None:
                s = jax.lax.cond(s.step % barostat.frequency == 0,
                                 lambda q: barostat.apply(q, params), lambda q: q, s)
            speed = jnp.max(jnp.abs(s.velocities))
            return s, (s.potential_energy, speed)

        return jax.lax.scan(body, state, protocol, length=chunk)

    return jax.jit(run)


def _compiled_chunk(integrator, barostat, length: int):
    """The jitted chunk of ``length`` steps, built once per (integrator, barostat, length).

    The cache holds the integrator and barostat themselves (so their ids stay valid) and keeps
    the most recent few, so that runs alternating integrators (the liquid target's liquid and
    gas phases) or a chunk and its remainder do not recompile.
    """
    key = (id(integrator), id(barostat), length)
    hit = _COMPILED.pop(key, None)
    if hit is None or hit[0] is not integrator or hit[1] is not barostat:
        hit = (integrator, barostat, _chunk_fn(integrator, barostat, length))
    _COMPILED[key] = hit  # most recent last
    while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.pop(next(iter(_COMPILED)))
    return hit[2]


def simulate(integrator, state: MDState, n_steps: int, *, params=None, reporters=(),
             chunk: int | None = None, barostat=None, protocol=None) -> MDState:
    """Advance ``state`` by ``n_steps`` and return the final state.

    Args:
        integrator: from ``chronograd.dynamics`` (velocity_verlet, langevin, ...).
        state: from ``integrator.init`` or ``load_checkpoint``.
        params: the system's parameters (default ``system.params``).
        reporters: objects with ``every`` and ``report(state, info)``; called when the step
            count is a multiple of ``every`` (which must be a multiple of ``chunk``).
        chunk: steps per jitted call (default: gcd(100, reporter intervals)); when
            ``n_steps`` is not a multiple of it, the last call runs the remaining steps (one
            more compiled length, never a call per step). A run resumed from a checkpoint
            repeats the uninterrupted one bit for bit when both use the same chunk and the
            checkpoint step is a multiple of it.
        barostat: a ``monte_carlo_barostat`` for NPT (``barostat.init(state)`` first).
        protocol: per-step inputs, a dict of arrays with leading axis ``n_steps`` (e.g.
            {"temperature": ramp}), or None.

    Raises:
        SimulationError: non-finite energy or exploding velocities (names the step).
    """
    system = integrator.system
    params = system.params if params is None else params
    everies = [r.every for r in reporters]
    if chunk is None:  # a fixed default, so that resumed runs chunk (and rebuild) alike
        chunk = math.gcd(100, *everies)
    bad = [e for e in everies if e % chunk]
    if bad:
        raise ValueError(f"reporter intervals {bad} are not multiples of chunk={chunk}")
    if barostat is not None and "baro_max_dv" not in state.extra:
        state = barostat.init(state)
    info = {"masses": np.asarray(system.masses), "dof": integrator.dof,
            "timestep": integrator.timestep, "integrator": integrator}
    done = 0
    while done < n_steps:
        length = min(chunk, n_steps - done)
        run = _compiled_chunk(integrator, barostat, length)
        p = None if protocol is None else jax.tree_util.tree_map(
            lambda a, lo=done, n=length: jnp.asarray(a)[lo:lo + n], protocol)
        new, (energies, speeds) = run(state, params, p)
        if new.neighbors is not None and bool(new.neighbors.did_overflow):
            grown = regrow(integrator.neighbor_fns, state.positions, state.neighbors,
                           state.box)
            state = state._replace(neighbors=grown)
            continue  # re-run this chunk with the larger list
        energies, speeds = np.asarray(energies), np.asarray(speeds)
        broken = ~np.isfinite(energies) | ~(speeds < MAX_SPEED)
        if broken.any():
            k = int(np.argmax(broken))
            what = ("the potential energy is not finite" if not np.isfinite(energies[k])
                    else f"an atom moves at {speeds[k]:.3g} nm/ps")
            at = int(state.step) + k + 1
            raise SimulationError(
                f"the simulation blew up at step {at}: {what}. The last good state (step"
                f" {int(state.step)}) is kept in error.last_good_state; try a smaller"
                " timestep, minimizing first, or checking the starting structure for clashes",
                state, step=at, reason=what)
        state = new
        done += length
        step = int(state.step)
        for r in reporters:
            if step % r.every == 0:
                r.report(state, info)
    return state
