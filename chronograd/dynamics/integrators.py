"""Integrators with the ``(init, step)`` shape: velocity Verlet (NVE), Langevin (BAOAB and
OpenMM's LangevinMiddle scheme), Nose-Hoover chains (NVT) and Brownian dynamics.

    integ = cg.dynamics.langevin(system, timestep=0.002, temperature=300.0, friction=1.0)
    state = integ.init(positions, key=jax.random.key(0), temperature=300.0)
    state = integ.step(state, system.params)                      # one step, pure
    state = integ.step(state, params, {"temperature": 310.0})     # protocol inputs are arrays

Every step is a pure function of (state, params, protocol), differentiable in all three.
The MD integrators take ``precision="mixed"`` (forces in float32, positions and velocities in
float64; a water step 1.5x faster on CPU, energy error ~2e-6 relative) or "double" (default).
Constraints (``system.constraints``: rigid water, bonds to hydrogen) are kept with SHAKE and
RATTLE (``constraints.py``); virtual sites are placed from their parents at every force
evaluation; randomness comes only from the key in the state, so a key reproduces a run bit
for bit. Units: nm, ps, amu, kJ/mol, K; friction in 1/ps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.dynamics.constraints import (
    build_constraints,
    iterative,
    rattle_velocities,
    shake,
)
from chronograd.dynamics.state import (
    MDState,
    degrees_of_freedom,
    inverse_masses,
    kinetic_energy,
    maxwell_boltzmann,
    remove_com_velocity,
)
from chronograd.errors import InputError
from chronograd.system.forces import force_fn
from chronograd.system.pairs import choose_neighbor_list
from chronograd.units import BOLTZMANN


class Integrator(NamedTuple):
    """``init(positions, *, key, box, velocities, temperature, params) -> MDState`` and
    ``step(state, params, protocol=None) -> MDState``; ``dof``: degrees of freedom used for
    temperatures; ``name``; the system, its neighbor-list functions and constraints."""

    init: Callable
    step: Callable
    dof: int
    name: str
    system: Any
    neighbor_fns: Any
    constraints: Any
    timestep: float
    decay: float | None = None  # Langevin velocity memory per step, exp(-friction dt)


def _check_bath(temperature, friction) -> None:
    """A heat bath needs a finite temperature >= 0 K and a finite friction >= 0 1/ps."""
    if not (np.isfinite(temperature) and temperature >= 0):
        raise InputError(f"temperature must be a finite number >= 0 K, got {temperature}")
    if friction is not None and not (np.isfinite(friction) and friction >= 0):
        raise InputError(f"friction must be a finite number >= 0 (1/ps), got {friction}")


def _integrator(system, timestep, name, extra_init, make, *, remove_com, neighbor_list,
                skin=0.1, decay=None, precision="double") -> Integrator:
    """Shared setup (constraints, forces, neighbor list, init); ``make(context)`` returns the
    scheme's kernel ``(state, params, protocol) -> state``."""
    if not (timestep > 0 and np.isfinite(timestep)):
        raise InputError(f"timestep must be positive (ps), got {timestep}")
    masses = np.asarray(system.masses, np.float64)
    bad = np.flatnonzero(~np.isfinite(masses) | (masses < 0))
    if bad.size:
        raise InputError(f"particle {bad[0]} has mass {masses[bad[0]]} amu; masses must be"
                         " finite and >= 0 (0 for virtual sites and fixed particles)")
    con = build_constraints(system.constraints, system.constraint_distances, masses)
    dof = degrees_of_freedom(masses, 0 if con is None else con.n, remove_com, system.dim)
    nl_fns = system.neighbor_list(skin=skin) if choose_neighbor_list(system, neighbor_list) \
        else None
    compute = force_fn(system, nl_fns, precision=precision)
    compute_jit = jax.jit(compute)
    inv_m = jnp.asarray(inverse_masses(masses))[:, None]
    kernel = make(_Context(compute, con, inv_m, masses, dof, timestep))

    def init(positions, *, key, box=None, velocities=None, temperature=None, params=None):
        params = system.params if params is None else params
        x, box = system.check_inputs(positions, box)
        x = jnp.asarray(x)
        box = None if box is None else jnp.asarray(box)
        if con is not None:
            x = jax.jit(shake)(x, x, iterative(con), box)
        key, vkey = jax.random.split(key)
        if velocities is not None:
            v = jnp.asarray(velocities, x.dtype)
        elif temperature is not None:
            v = maxwell_boltzmann(vkey, masses, float(temperature), x.dtype, system.dim)
        else:
            v = jnp.zeros_like(x)
        if remove_com:
            v = remove_com_velocity(v, masses)
        if con is not None:
            v = jax.jit(rattle_velocities)(v, x, con, box)
        v = v * (inv_m > 0)
        nbrs = None if nl_fns is None else nl_fns.allocate(x, box)
        x, nbrs, u, f = compute_jit(x, box, params, nbrs)
        state = MDState(x, v, f, u, box, nbrs, jnp.asarray(0), key, {})
        return state._replace(extra=extra_init(state))

    def step(state, params, protocol=None):
        new = kernel(state, params, {} if protocol is None else protocol)
        return new._replace(step=state.step + 1)

    return Integrator(init, step, dof, name, system, nl_fns, con, timestep, decay)


class _Context(NamedTuple):
    compute: Callable
    con: Any
    inv_m: jax.Array
    masses: np.ndarray
    dof: int
    dt: float

    def constrain_x(self, x_new, x_old, box):
        return x_new if self.con is None else shake(x_new, x_old, self.con, box)

    def constrain_v(self, v, x, box):
        return v if self.con is None else rattle_velocities(v, x, self.con, box)

    def noise(self, key, shape_like, kt):
        """Gaussian velocities with variance kT/m per component (zero for massless)."""
        z = jax.random.normal(key, shape_like.shape, shape_like.dtype)
        return z * jnp.sqrt(kt * self.inv_m)


def _no_extra(state):
    return state.extra


def velocity_verlet(system, *, timestep: float, neighbor_list: bool | None = None,
                    skin: float = 0.1, remove_com: bool = True,
                    precision: str = "double") -> Integrator:
    """NVE: velocity Verlet with RATTLE. ``timestep`` in ps. ``precision="mixed"``: forces in
    float32, positions and velocities in float64 (see ``system.forces.force_fn``)."""

    def make(c: _Context):
        def kernel(s: MDState, params, protocol):
            dt = c.dt
            v = s.velocities + 0.5 * dt * s.forces * c.inv_m
            x = s.positions + dt * v
            x_c = c.constrain_x(x, s.positions, s.box)
            v = v + (x_c - x) / dt
            x, nbrs, u, f = c.compute(x_c, s.box, params, s.neighbors)
            v = c.constrain_v(v + 0.5 * dt * f * c.inv_m, x, s.box)
            return s._replace(positions=x, velocities=v, forces=f, potential_energy=u,
                              neighbors=nbrs)
        return kernel

    return _integrator(system, timestep, "verlet", _no_extra, make, remove_com=remove_com,
                       neighbor_list=neighbor_list, skin=skin, precision=precision)


def langevin(system, *, timestep: float, temperature: float, friction: float = 1.0,
             scheme: str = "middle", neighbor_list: bool | None = None,
             skin: float = 0.1, precision: str = "double") -> Integrator:
    """NVT Langevin dynamics.

    scheme="middle": OpenMM's LangevinMiddleIntegrator (v += dt F/m; x += dt/2 v; O; x += dt/2
    v; constrain; velocities are half-step velocities), the choice for sampling (accurate
    configurational averages at large steps; Zhang et al., J. Phys. Chem. A 123, 6056 (2019),
    doi:10.1021/acs.jpca.9b02771); the half-step velocities' kinetic temperature is exact
    for harmonic modes. scheme="baoab": Leimkuhler & Matthews' BAOAB with on-step velocities
    (Appl. Math. Res. Express 2013, 34, doi:10.1093/amrx/abs010), whose kinetic temperature
    runs cold by O(dt^2) (w^2 dt^2 / 4 for a mode of frequency w: ~0.5 % for rigid water at
    2 fs); its velocities right after the O step, P(v - dt/2 F/m), are what the middle
    scheme reports.
    ``friction`` in 1/ps; ``temperature`` in K, overridable per step as
    ``protocol["temperature"]``. ``precision="mixed"``: forces in float32, state in float64.
    """
    if scheme not in ("middle", "baoab"):
        raise InputError(f"scheme must be 'middle' or 'baoab', got {scheme!r}")
    _check_bath(temperature, friction)

    def make(c: _Context):
        dt = c.dt
        a = float(np.exp(-friction * dt))

        def ou(s, v, key, protocol):
            kt = BOLTZMANN * protocol.get("temperature", temperature)
            return a * v + np.sqrt(1.0 - a * a) * c.noise(key, v, kt)

        def middle(s: MDState, params, protocol):
            key, sub = jax.random.split(s.key)
            v = c.constrain_v(s.velocities + dt * s.forces * c.inv_m, s.positions, s.box)
            x = s.positions + 0.5 * dt * v
            v = ou(s, v, sub, protocol)
            x = x + 0.5 * dt * v
            x_c = c.constrain_x(x, s.positions, s.box)
            v = v + (x_c - x) / dt
            x, nbrs, u, f = c.compute(x_c, s.box, params, s.neighbors)
            return s._replace(positions=x, velocities=v, forces=f, potential_energy=u,
                              neighbors=nbrs, key=key)

        def baoab(s: MDState, params, protocol):
            key, sub = jax.random.split(s.key)
            h = 0.5 * dt
            v = c.constrain_v(s.velocities + h * s.forces * c.inv_m, s.positions, s.box)
            x = s.positions + h * v
            x_c = c.constrain_x(x, s.positions, s.box)
            v = c.constrain_v(v + (x_c - x) / h, x_c, s.box)
            v = c.constrain_v(ou(s, v, sub, protocol), x_c, s.box)
            x = x_c + h * v
            x_c2 = c.constrain_x(x, x_c, s.box)
            v = v + (x_c2 - x) / h
            x, nbrs, u, f = c.compute(x_c2, s.box, params, s.neighbors)
            v = c.constrain_v(v + h * f * c.inv_m, x, s.box)
            return s._replace(positions=x, velocities=v, forces=f, potential_energy=u,
                              neighbors=nbrs, key=key)

        return middle if scheme == "middle" else baoab

    return _integrator(system, timestep, f"langevin-{scheme}", _no_extra, make,
                       remove_com=False, neighbor_list=neighbor_list, skin=skin,
                       decay=float(np.exp(-friction * timestep)), precision=precision)


def nose_hoover(system, *, timestep: float, temperature: float, tau: float = 0.1,
                chain_length: int = 3, neighbor_list: bool | None = None,
                skin: float = 0.1, precision: str = "double") -> Integrator:
    """NVT by a Nose-Hoover chain (Martyna, Klein & Tuckerman, J. Chem. Phys. 97, 2635 (1992),
    doi:10.1063/1.463940), Trotter-split around velocity Verlet with RATTLE. ``tau`` (ps) sets
    the thermostat masses Q_1 = dof kT tau^2, Q_k = kT tau^2. ``state.extra`` holds the chain
    positions and velocities; ``conserved_energy`` gives the extended-system invariant."""
    m_chain = int(chain_length)
    if m_chain < 1:
        raise InputError("chain_length must be >= 1")
    _check_bath(temperature, None)
    if not tau > 0:
        raise InputError(f"tau must be positive (ps), got {tau}")

    def extra_init(state):
        z = jnp.zeros(m_chain, state.positions.dtype)
        return {**state.extra, "chain_xi": z, "chain_v": z}

    def make(c: _Context):
        dt = c.dt

        def half_chain(v, extra, kt):
            q = kt * tau ** 2 * jnp.concatenate([jnp.array([c.dof]), jnp.ones(m_chain - 1)])
            vx, xi = extra["chain_v"], extra["chain_xi"]
            ke2 = 2.0 * kinetic_energy(v, c.masses)
            dt2, dt4, dt8 = dt / 2, dt / 4, dt / 8

            def force(k, vx, ke2):
                if k == 0:
                    return (ke2 - c.dof * kt) / q[0]
                return (q[k - 1] * vx[k - 1] ** 2 - kt) / q[k]

            def sweep(vx, ke2, order):
                for k in order:
                    if k < m_chain - 1:
                        vx = vx.at[k].multiply(jnp.exp(-dt8 * vx[k + 1]))
                    vx = vx.at[k].add(dt4 * force(k, vx, ke2))
                    if k < m_chain - 1:
                        vx = vx.at[k].multiply(jnp.exp(-dt8 * vx[k + 1]))
                return vx

            vx = sweep(vx, ke2, reversed(range(m_chain)))
            xi = xi + dt2 * vx
            scale = jnp.exp(-dt2 * vx[0])
            v = v * scale
            vx = sweep(vx, ke2 * scale ** 2, range(m_chain))
            return v, {**extra, "chain_xi": xi, "chain_v": vx}

        def kernel(s: MDState, params, protocol):
            kt = BOLTZMANN * protocol.get("temperature", temperature)
            v, extra = half_chain(s.velocities, s.extra, kt)
            v = v + 0.5 * dt * s.forces * c.inv_m
            x = s.positions + dt * v
            x_c = c.constrain_x(x, s.positions, s.box)
            v = v + (x_c - x) / dt
            x, nbrs, u, f = c.compute(x_c, s.box, params, s.neighbors)
            v = c.constrain_v(v + 0.5 * dt * f * c.inv_m, x, s.box)
            v, extra = half_chain(v, extra, kt)
            return s._replace(positions=x, velocities=v, forces=f, potential_energy=u,
                              neighbors=nbrs, extra=extra)

        return kernel

    return _integrator(system, timestep, "nose-hoover", extra_init, make, remove_com=True,
                       neighbor_list=neighbor_list, skin=skin, precision=precision)


def nose_hoover_conserved_energy(state: MDState, masses, dof: int, temperature: float,
                                 tau: float):
    """U + K + the chain's kinetic and potential terms (constant up to integration error)."""
    kt = BOLTZMANN * temperature
    m_chain = state.extra["chain_v"].shape[0]
    q = kt * tau ** 2 * jnp.concatenate([jnp.array([dof]), jnp.ones(m_chain - 1)])
    vx, xi = state.extra["chain_v"], state.extra["chain_xi"]
    return (state.potential_energy + kinetic_energy(state.velocities, masses)
            + 0.5 * jnp.sum(q * vx ** 2) + dof * kt * xi[0] + kt * jnp.sum(xi[1:]))


def brownian(system, *, timestep: float, temperature: float, friction: float = 1.0,
             neighbor_list: bool | None = None, skin: float = 0.1,
             precision: str = "double") -> Integrator:
    """Overdamped Langevin (OpenMM's BrownianIntegrator): x += dt F/(m gamma) +
    sqrt(2 kT dt/(m gamma)) xi; velocities are (x_new - x)/dt. ``friction`` gamma in 1/ps."""
    _check_bath(temperature, friction)
    if not friction > 0:
        raise InputError(f"Brownian dynamics needs friction > 0 (1/ps), got {friction}")

    def make(c: _Context):
        dt = c.dt

        def kernel(s: MDState, params, protocol):
            key, sub = jax.random.split(s.key)
            kt = BOLTZMANN * protocol.get("temperature", temperature)
            z = jax.random.normal(sub, s.positions.shape, s.positions.dtype)
            x = (s.positions + dt / friction * s.forces * c.inv_m
                 + jnp.sqrt(2.0 * kt * dt / friction * c.inv_m) * z)
            x_c = c.constrain_x(x, s.positions, s.box)
            v = (x_c - s.positions) / dt
            x, nbrs, u, f = c.compute(x_c, s.box, params, s.neighbors)
            return s._replace(positions=x, velocities=v, forces=f, potential_energy=u,
                              neighbors=nbrs, key=key)

        return kernel

    return _integrator(system, timestep, "brownian", _no_extra, make, remove_com=False,
                       neighbor_list=neighbor_list, skin=skin, precision=precision)


def gradient_descent(system, *, step_size: float,
                     neighbor_list: bool | None = None, skin: float = 0.1) -> Integrator:
    """Gradient descent as a stepping integrator (JAX MD's ``minimize.gradient_descent``):
    x += step_size F, then constraints (SHAKE); ``step_size`` in nm^2 mol/kJ (it is the
    integrator's ``timestep``); velocities hold the step / step_size. With a protocol it
    follows a quasi-static path: each step relaxes under the parameters of that step."""

    def make(c: _Context):
        def kernel(s: MDState, params, protocol):
            x = s.positions + c.dt * s.forces * (c.inv_m > 0)
            x_c = c.constrain_x(x, s.positions, s.box)
            x, nbrs, u, f = c.compute(x_c, s.box, params, s.neighbors)
            return s._replace(positions=x, velocities=(x_c - s.positions) / c.dt, forces=f,
                              potential_energy=u, neighbors=nbrs)

        return kernel

    return _integrator(system, step_size, "gradient-descent", _no_extra, make,
                       remove_com=False, neighbor_list=neighbor_list, skin=skin)


def fire_descent(system, *, dt_start: float = 0.002, dt_max: float = 0.02,
                 max_step: float = 0.01, neighbor_list: bool | None = None,
                 skin: float = 0.1) -> Integrator:
    """FIRE (``minimize.fire``) as a stepping integrator (JAX MD's ``minimize.fire_descent``):
    the same update, its step size, mixing and counter kept in ``state.extra``, so the runner,
    reporters and protocols drive it like any integrator. Start it with zero velocities."""
    from chronograd.minimize.fire import FireState, fire

    def extra_init(state):
        dtype = state.positions.dtype
        return {"dt": jnp.asarray(dt_start, dtype), "alpha": jnp.asarray(0.1, dtype),
                "n_positive": jnp.asarray(0)}

    def make(c: _Context):
        _, fire_step = fire(c.compute, c.con, dt_start=dt_start, dt_max=dt_max,
                            max_step=max_step)

        def kernel(s: MDState, params, protocol):
            e = s.extra
            fs = FireState(s.positions, s.velocities * (c.inv_m > 0), s.forces,
                           s.potential_energy, e["dt"], e["alpha"], e["n_positive"],
                           s.neighbors)
            new = fire_step(fs, s.box, params)
            return s._replace(positions=new.positions, velocities=new.velocities,
                              forces=new.forces, potential_energy=new.energy,
                              neighbors=new.neighbors,
                              extra={"dt": new.dt, "alpha": new.alpha,
                                     "n_positive": new.n_positive})

        return kernel

    return _integrator(system, dt_start, "fire-descent", extra_init, make, remove_com=False,
                       neighbor_list=neighbor_list, skin=skin)
